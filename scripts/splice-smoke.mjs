// A native splice moving bytes both ways, for an installed copy of tls-splice on any machine (the
// release checks run it under qemu for arm64, and with no compiler on PATH for x64):
//
//   node splice-smoke.mjs <consumer-dir> <fixtures-dir>
//
// <consumer-dir> is a project with tls-splice in its node_modules (installed from the release
// tarball); <fixtures-dir> holds server.pem, server-key.pem and ca.pem (test/fixtures). A
// tls-splice server splices its TLS connection natively to a TCP backend; a plain Node TLS
// client and the backend each send SMOKE_MIB MiB (default 4) of seeded data at once, and each
// side's bytes are checked by length and SHA-256. Prints one JSON line; exits 1 with the reason on
// any failure or after SMOKE_TIMEOUT_S seconds (default 300: qemu is slow).
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

const [consumerDir, fixturesDir] = process.argv.slice(2);
if (!consumerDir || !fixturesDir) {
  console.error('usage: node splice-smoke.mjs <consumer-dir> <fixtures-dir>');
  process.exit(2);
}
const SIZE = Number(process.env.SMOKE_MIB ?? 4) * 1024 * 1024;
const TIMEOUT_MS = Number(process.env.SMOKE_TIMEOUT_S ?? 300) * 1000;

const deadline = setTimeout(() => fail(`no result after ${TIMEOUT_MS / 1000} s`), TIMEOUT_MS);
function fail(reason) {
  console.error(`splice-smoke (${process.arch}): FAILED: ${reason}`);
  process.exit(1);
}

// Deterministic bytes from a seed (AES-CTR keystream): both ends can be checked without sharing
// a file.
function seeded(seed, length) {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}
const sha256 = (buffer) => createHash('sha256').update(buffer).digest('hex');

// Collects what a socket receives; resolves once `length` bytes are in (or on EOF).
function collect(socket, length) {
  const chunks = [];
  let received = 0;
  return new Promise((resolve) => {
    const done = () => resolve(Buffer.concat(chunks));
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= length) done();
    });
    socket.on('end', done);
    socket.on('close', done);
  });
}

const requireFromConsumer = createRequire(path.join(path.resolve(consumerDir), 'package.json'));
const { createServer, spliceTo } = requireFromConsumer('tls-splice');
const packageDir = path.dirname(requireFromConsumer.resolve('tls-splice/package.json'));
// Which binary node-gyp-build picks for this process: it must be the release's prebuild.
const binaryPath = requireFromConsumer('node-gyp-build').path(packageDir);
if (!binaryPath.includes(`${path.sep}prebuilds${path.sep}linux-${process.arch}${path.sep}`)) {
  fail(`the addon loads from ${binaryPath}, not from prebuilds/linux-${process.arch}/`);
}

const fixture = (name) => readFileSync(path.join(fixturesDir, name));
const toBackend = seeded('client->backend', SIZE);
const toClient = seeded('backend->client', SIZE);
const started = Date.now();

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}
const backendReceived = deferred();
const clientReceived = deferred();
const spliceClosed = deferred();
let handle;

// The backend sends its bytes at once and closes once it has the client's.
const backend = net.createServer({ allowHalfOpen: true }, (socket) => {
  backend.close();
  collect(socket, SIZE).then((bytes) => {
    socket.end();
    backendReceived.resolve(bytes);
  });
  socket.write(toClient);
});
backend.listen(0, '127.0.0.1', () => startTlsServer(backend.address().port));

function startTlsServer(backendPort) {
  const server = createServer({ key: fixture('server-key.pem'), cert: fixture('server.pem') },
    async (tlsSocket) => {
      server.close();
      try {
        handle = spliceTo(tlsSocket, { host: '127.0.0.1', port: backendPort }, { engine: 'native' });
        await handle.start();
        spliceClosed.resolve(await handle.closed);
      } catch (err) {
        spliceClosed.reject(err);
      }
    });
  server.listen(0, '127.0.0.1', () => startClient(server.address().port));
}

// The client sends its bytes as soon as the handshake is done and closes once it has the
// backend's.
function startClient(port) {
  const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fixture('ca.pem') });
  client.on('error', (err) => fail(`client: ${err.code ?? ''} ${err.message}`));
  client.once('secureConnect', () => {
    collect(client, SIZE).then((bytes) => {
      client.end();
      clientReceived.resolve(bytes);
    });
    client.write(toBackend);
  });
}

try {
  const [atBackend, atClient, end] = await Promise.all([
    backendReceived.promise, clientReceived.promise, spliceClosed.promise,
  ]);
  if (handle.engine !== 'native') fail(`engine is ${handle.engine}, not native`);
  if (atBackend.length !== SIZE || sha256(atBackend) !== sha256(toBackend)) {
    fail(`client -> backend: ${atBackend.length} of ${SIZE} bytes, sha256 ${sha256(atBackend)}, ` +
      `sent ${sha256(toBackend)}`);
  }
  if (atClient.length !== SIZE || sha256(atClient) !== sha256(toClient)) {
    fail(`backend -> client: ${atClient.length} of ${SIZE} bytes, sha256 ${sha256(atClient)}, ` +
      `sent ${sha256(toClient)}`);
  }
  if (end.error) fail(`the splice ended with ${end.error.code}: ${end.error.message}`);
  clearTimeout(deadline);
  console.log(JSON.stringify({
    ok: true, arch: process.arch, node: process.version, engine: handle.engine,
    binary: path.relative(packageDir, binaryPath), bytesEachWay: SIZE, reason: end.reason,
    sha256ToBackend: sha256(atBackend), sha256ToClient: sha256(atClient), ms: Date.now() - started,
  }));
} catch (err) {
  fail(`${err.code ?? ''} ${err.message}`);
}
