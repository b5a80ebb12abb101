// `tls-splice terminate` with several certificates: chosen by the client's SNI against each
// certificate's subjectAltName (two sites, two CAs, verified by curl --resolve), the first pair
// for clients without SNI, --cert-dir reloaded on SIGHUP (a new file served, a bad file keeping
// the old set, a live connection untouched) and OCSP stapling (`openssl s_client -status`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { runCli, startCli, requireTool, stopAllClis } from './helpers/cli.mjs';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { combined, issue, makeCa, ocspResponse, pkiDir } from './helpers/terminate-pki.mjs';

const run = promisify(execFile);
const closers = [];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

const dir = pkiDir();
closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
const alphaCa = makeCa(dir, 'alpha');
const betaCa = makeCa(dir, 'beta');
const alpha = issue(dir, alphaCa, 'alpha.test', ['alpha.test', '*.w.alpha.test']);
const beta = issue(dir, betaCa, 'beta.test', ['beta.test']);

async function listening(server) {
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return `127.0.0.1:${server.address().port}`;
}

// An HTTP backend that answers its own name.
function site(name) {
  return listening(http.createServer((req, res) => res.end(`${name}\n`)));
}

// A backend that echoes everything back and ends when the client ends.
function echo() {
  return listening(net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  }));
}

// The CN of the certificate the terminator shows for `servername` (undefined: no SNI).
function certificateFor(port, servername) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername,
      rejectUnauthorized: false }, () => {
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.destroy();
      resolve(cn);
    });
    socket.once('error', reject);
  });
}

async function curl(name, port, ca) {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '--cacert', ca,
    '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/`]);
  return stdout;
}

test('two sites from two CAs behind one terminate: each name gets its own certificate and ' +
  'backend, a client without SNI or with an unknown name gets the first pair',
{ timeout: 60000, skip: requireTool('curl', 'curl') }, async () => {
  const [alphaSite, betaSite, fallback] = await Promise.all([site('alpha-backend'),
    site('beta-backend'), site('fallback-backend')]);
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0',
    '--cert', alpha.cert, '--key', alpha.key, '--cert', beta.cert, '--key', beta.key,
    '--sni', `alpha.test=${alphaSite}`, '--sni', `beta.test=${betaSite}`, '--to', fallback]);
  // curl verifies each name against its own CA: a certificate from the other one fails.
  assert.equal(await curl('alpha.test', cli.port, alphaCa.cert), 'alpha-backend\n');
  assert.equal(await curl('beta.test', cli.port, betaCa.cert), 'beta-backend\n');
  await assert.rejects(curl('beta.test', cli.port, alphaCa.cert), /SSL certificate problem|60/);
  assert.equal(await certificateFor(cli.port, undefined), 'alpha.test');
  assert.equal(await certificateFor(cli.port, 'unknown.test'), 'alpha.test');
  assert.equal(await certificateFor(cli.port, 'beta.test'), 'beta.test');
  // *.w.alpha.test stands for exactly one label (RFC 6125).
  assert.equal(await certificateFor(cli.port, 'x.w.alpha.test'), 'alpha.test');
  const otherCli = await startCli(['terminate', '--listen', '127.0.0.1:0',
    '--cert', beta.cert, '--key', beta.key, '--cert', alpha.cert, '--key', alpha.key,
    '--to', fallback]);
  assert.equal(await certificateFor(otherCli.port, 'x.w.alpha.test'), 'alpha.test');
  assert.equal(await certificateFor(otherCli.port, 'y.x.w.alpha.test'), 'beta.test');
  assert.equal(await certificateFor(otherCli.port, undefined), 'beta.test');
});

test('--key before any --cert is a usage error (exit 2)', { timeout: 20000 }, async () => {
  const result = await runCli(['terminate', '--listen', '127.0.0.1:0', '--key', alpha.key,
    '--cert', alpha.cert, '--to', '127.0.0.1:9']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--key .*after the --cert/);
});

test('--cert-dir: name order picks the default; SIGHUP serves a new file, a bad file keeps ' +
  'the old set and says why, a live connection goes on', { timeout: 90000 }, async () => {
  const certDir = path.join(dir, 'certs');
  fs.mkdirSync(certDir);
  combined(alpha, path.join(certDir, '10-alpha.pem'));                  // chain and key in one
  fs.copyFileSync(beta.cert, path.join(certDir, '20-beta.pem'));       // NAME.pem + NAME.key
  fs.copyFileSync(beta.key, path.join(certDir, '20-beta.key'));
  const backend = await echo();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', '--cert-dir', certDir,
    '--to', backend]);
  assert.equal(await certificateFor(cli.port, undefined), 'alpha.test');
  assert.equal(await certificateFor(cli.port, 'beta.test'), 'beta.test');
  assert.equal(await certificateFor(cli.port, 'gamma.test'), 'alpha.test');

  // A connection spliced before the reloads, checked after them.
  const live = tls.connect({ host: '127.0.0.1', port: cli.port, servername: 'beta.test',
    ca: fs.readFileSync(betaCa.cert) });
  await new Promise((resolve, reject) => { live.once('secureConnect', resolve);
    live.once('error', reject); });
  const received = [];
  live.on('data', (chunk) => received.push(chunk));

  const gammaCa = makeCa(dir, 'gamma');
  const gamma = issue(dir, gammaCa, 'gamma.test', ['gamma.test']);
  combined(gamma, path.join(certDir, '30-gamma.pem'));
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reloaded certificates/, 20000);
  assert.equal(await certificateFor(cli.port, 'gamma.test'), 'gamma.test');

  // A bad file: the reload fails naming it, the old set (gamma included) stays.
  fs.writeFileSync(path.join(certDir, '40-broken.pem'), 'not a certificate\n');
  fs.rmSync(path.join(certDir, '20-beta.pem'));
  fs.rmSync(path.join(certDir, '20-beta.key'));
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reload failed[^\n]*40-broken\.pem/, 20000);
  assert.equal(await certificateFor(cli.port, 'gamma.test'), 'gamma.test');
  assert.equal(await certificateFor(cli.port, 'beta.test'), 'beta.test');

  // Fixed: the removed beta files are gone from the next set.
  fs.rmSync(path.join(certDir, '40-broken.pem'));
  cli.signal('SIGHUP');
  await waitUntil(async () => await certificateFor(cli.port, 'beta.test') === 'alpha.test');
  assert.equal(await certificateFor(cli.port, 'gamma.test'), 'gamma.test');

  const data = prngBytes(7, 256 * 1024);
  live.end(data);
  await new Promise((resolve, reject) => { live.once('end', resolve); live.once('error', reject); });
  const back = Buffer.concat(received);
  assert.equal(back.length, data.length);
  assert.equal(sha256(back), sha256(data));
  live.destroy();
});

async function waitUntil(condition, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('--ocsp staples a real OCSP response for its certificate (openssl s_client -status); ' +
  'the other certificate staples none; NAME.ocsp in a --cert-dir too',
{ timeout: 60000 }, async () => {
  const backend = await echo();
  const response = ocspResponse(dir, alphaCa, alpha, path.join(dir, 'alpha.ocsp'));
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0',
    '--cert', alpha.cert, '--key', alpha.key, '--ocsp', response,
    '--cert', beta.cert, '--key', beta.key, '--to', backend]);
  const status = async (port, name) => {
    const { stdout } = await run('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} ` +
      `-servername ${name} -status </dev/null 2>/dev/null`], { timeout: 20000 });
    return stdout;
  };
  const stapled = await status(cli.port, 'alpha.test');
  assert.match(stapled, /OCSP Response Status: successful/);
  assert.match(stapled, /Cert Status: good/);
  assert.match(await status(cli.port, 'beta.test'), /OCSP response: no response sent/);

  const ocspDir = path.join(dir, 'ocsp-dir');
  fs.mkdirSync(ocspDir);
  combined(beta, path.join(ocspDir, 'beta.pem'));
  ocspResponse(dir, betaCa, beta, path.join(ocspDir, 'beta.ocsp'));
  const dirCli = await startCli(['terminate', '--listen', '127.0.0.1:0', '--cert-dir', ocspDir,
    '--to', backend]);
  assert.match(await status(dirCli.port, 'beta.test'), /Cert Status: good/);
});
