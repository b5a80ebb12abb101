// A Node TLS peer in its own process, driven like `openssl s_client/s_server -quiet`: stdin is sent
// over TLS, received cleartext goes to stdout, status lines go to stderr
// ("LISTENING <port>", "SECURE <protocol> <cipher> reused=<bool>", "ERROR <code> <message>").
// Plain node:tls, not tls-splice: a different code path from the sockets under test.
//
// Usage: node node-peer.mjs '<json>' with the peers.mjs options plus role: 'server' | 'client'.
// Extra Node-only options: ciphers (an OpenSSL cipher string, overrides suite), ecdhCurve,
// minVersion, maxVersion.
import fs from 'node:fs';
import tls from 'node:tls';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const opts = JSON.parse(process.argv[2]);
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const read = (name) => fs.readFileSync(path.join(fixtures, name));

function status(line) {
  process.stderr.write(`${line}\n`);
}

const tlsOptions = {
  minVersion: opts.minVersion ?? opts.version ?? 'TLSv1.2',
  maxVersion: opts.maxVersion ?? opts.version ?? 'TLSv1.3',
};
if (opts.ciphers) tlsOptions.ciphers = opts.ciphers;
else if (opts.suite) tlsOptions.ciphers = opts.suiteOpenssl ?? opts.suite;
if (opts.ecdhCurve) tlsOptions.ecdhCurve = opts.ecdhCurve;
if (opts.psk) {
  const key = Buffer.from(opts.psk.key, 'hex');
  if (opts.role === 'server') {
    tlsOptions.pskCallback = () => key;
  } else {
    tlsOptions.pskCallback = () => ({ psk: key, identity: opts.psk.identity ?? '' });
  }
}

function attach(socket) {
  socket.on('error', (err) => status(`ERROR ${err.code} ${err.message}`));
  socket.on('keylog', (line) => {
    if (opts.keylogFile) fs.appendFileSync(opts.keylogFile, line);
  });
  process.stdin.on('data', (chunk) => {
    if (!socket.write(chunk)) {
      process.stdin.pause();
      socket.once('drain', () => process.stdin.resume());
    }
  });
  socket.on('data', (chunk) => {
    if (!process.stdout.write(chunk)) {
      socket.pause();
      process.stdout.once('drain', () => socket.resume());
    }
  });
  socket.on('end', () => status('END'));
  socket.on('close', () => {
    status('CLOSE');
    process.exitCode = 0;
    setImmediate(() => process.exit());
  });
}

if (opts.role === 'server') {
  if (!opts.noCert) {
    tlsOptions.key = read('server-key.pem');
    tlsOptions.cert = read('server.pem');
  }
  if (opts.clientCert) {
    tlsOptions.requestCert = true;
    tlsOptions.rejectUnauthorized = true;
    tlsOptions.ca = read('ca.pem');
  }
  const server = tls.createServer(tlsOptions, (socket) => {
    status(`SECURE ${socket.getProtocol()} ${socket.getCipher().standardName} reused=${socket.isSessionReused()}`);
    if (opts.naccept !== 0) server.close();
    attach(socket);
  });
  if (opts.keylogFile) server.on('keylog', (line) => fs.appendFileSync(opts.keylogFile, line));
  server.on('tlsClientError', (err) => status(`ERROR ${err.code} ${err.message}`));
  server.listen(opts.port ?? 0, '127.0.0.1', () => status(`LISTENING ${server.address().port}`));
} else {
  if (!opts.noCert) {
    tlsOptions.ca = read('ca.pem');
    tlsOptions.servername = 'localhost';
  } else {
    tlsOptions.rejectUnauthorized = false;
  }
  if (opts.clientCert) {
    tlsOptions.key = read('client-key.pem');
    tlsOptions.cert = read('client.pem');
  }
  if (opts.sessionIn) tlsOptions.session = fs.readFileSync(opts.sessionIn);
  const socket = tls.connect({ host: '127.0.0.1', port: opts.port, ...tlsOptions }, () => {
    status(`SECURE ${socket.getProtocol()} ${socket.getCipher().standardName} reused=${socket.isSessionReused()}`);
  });
  if (opts.sessionOut) socket.on('session', (s) => fs.writeFileSync(opts.sessionOut, s));
  attach(socket);
}
