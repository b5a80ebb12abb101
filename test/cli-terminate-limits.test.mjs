// `tls-splice terminate` against clients that try to exhaust it or to confuse its log (issue 17),
// run as the real command on loopback:
//   - stalled TCP connections (never a byte) are closed at --handshake-timeout, each logged once
//     with its own address and ERR_TLS_HANDSHAKE_TIMEOUT, and a real client is served after them;
//   - two clients failing at the same time are each logged with their own address and error
//     (a client certificate from a rogue CA, a TLS 1.0-only client), and an expired client
//     certificate is logged with OpenSSL's reason;
//   - --max-connections N refuses connection N+1 at once, counts it in
//     tls_splice_connections_refused_total and logs it;
//   - an SNI with a newline gives exactly one text log line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { FIXTURES } from './helpers/peers.mjs';
import { startCli, stopAllClis } from './helpers/cli.mjs';

const CERT_ARGS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const ca = fs.readFileSync(FIXTURES.ca);
const closers = [];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

// An echo backend on loopback that answers `E:` first.
async function echoBackend() {
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('E:');
    socket.pipe(socket);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return `127.0.0.1:${server.address().port}`;
}

// One TLS exchange: what came back after the client half-closed.
function exchange(port, data, options = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options },
      () => socket.end(data));
    const chunks = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
  });
}

function within(ms, promise, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  })]).finally(() => clearTimeout(timer));
}

// A connected TCP socket that never sends a byte; `closed` resolves when the server closes it.
async function stalledConnection(port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  socket.on('data', () => {});
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  closers.push(() => socket.destroy());
  return { socket, client: `127.0.0.1:${socket.localPort}`, closed };
}

function scrape(addr) {
  return new Promise((resolve, reject) => {
    http.get(`http://${addr}/metrics`, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

function metricValue(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function waitUntil(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Client certificates the fixture CA does not vouch for: one from a CA of its own (rogue) and one
// from the fixture CA whose validity ended in 2021 (expired). Made with the openssl command.
function makeBadClientCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-certs-'));
  closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const at = (name) => path.join(dir, name);
  const openssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '30',
    '-subj', '/CN=rogue CA', '-keyout', at('rogue-ca-key.pem'), '-out', at('rogue-ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE']);
  fs.writeFileSync(at('client.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-subj', '/CN=client',
    '-keyout', at('client-key.pem'), '-out', at('client.csr')]);
  openssl(['x509', '-req', '-in', at('client.csr'), '-CA', at('rogue-ca.pem'),
    '-CAkey', at('rogue-ca-key.pem'), '-CAcreateserial', '-days', '30', '-sha256',
    '-extfile', at('client.ext'), '-out', at('rogue.pem')]);
  // `openssl ca` is the command that takes explicit start and end dates.
  fs.mkdirSync(at('db'));
  fs.writeFileSync(at('db/index.txt'), '');
  fs.writeFileSync(at('db/serial'), '1000\n');
  fs.writeFileSync(at('ca.cnf'), `[ca]
default_ca = test
[test]
database = ${at('db/index.txt')}
serial = ${at('db/serial')}
new_certs_dir = ${at('db')}
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
`);
  openssl(['ca', '-batch', '-config', at('ca.cnf'), '-extensions', 'client',
    '-cert', FIXTURES.ca, '-keyfile', path.join(path.dirname(FIXTURES.ca), 'ca-key.pem'),
    '-startdate', '20200101000000Z', '-enddate', '20210101000000Z',
    '-in', at('client.csr'), '-out', at('expired.pem'), '-notext']);
  const key = fs.readFileSync(at('client-key.pem'));
  return {
    rogue: { cert: fs.readFileSync(at('rogue.pem')), key },
    expired: { cert: fs.readFileSync(at('expired.pem')), key },
  };
}

// A TLS client that fails; resolves with its own address (as the server sees it) and its error.
function failingClient(port, options) {
  return new Promise((resolve) => {
    let client;
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost',
      ...options });
    socket.once('connect', () => { client = `127.0.0.1:${socket.localPort}`; });
    // TLS 1.3: the client's handshake is over before the server checked its certificate; the
    // refusal shows when it reads.
    socket.once('secureConnect', () => socket.write('x'));
    socket.on('data', () => {});
    socket.once('error', (err) => resolve({ client, error: err }));
    socket.once('close', () => resolve({ client, error: undefined }));
  });
}

test('--handshake-timeout 1: 100 stalled connections are each closed and logged once, with ' +
  'their own address; a real client is served afterwards', { timeout: 90000 }, async () => {
  const backend = await echoBackend();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend, '--handshake-timeout', '1', '--log', 'json']);
  const stalled = [];
  for (let i = 0; i < 100; i++) stalled.push(await stalledConnection(cli.port));
  const started = Date.now();
  // 1 s of timeout plus a generous margin for a loaded machine.
  await within(30000, Promise.all(stalled.map((s) => s.closed)), 'all stalled connections closed');
  const elapsed = Date.now() - started;
  const timedOut = () => cli.records.filter((r) => r.event === 'connection' &&
    r.reason === 'handshake');
  await waitUntil(() => timedOut().length >= 100, 20000, '100 handshake records');
  // Anything logged twice would show up by now.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const records = timedOut();
  assert.equal(records.length, 100, `${records.length} records (one per connection)`);
  for (const r of records) assert.equal(r.code, 'ERR_TLS_HANDSHAKE_TIMEOUT', JSON.stringify(r));
  assert.deepEqual(records.map((r) => r.client).sort(), stalled.map((s) => s.client).sort());
  for (const r of records) assert.ok(r.durationMs >= 900, `closed after ${r.durationMs} ms`);
  assert.ok(elapsed < 30000, `closed within ${elapsed} ms`);
  assert.equal(await exchange(cli.port, 'after the flood'), 'E:after the flood');
  assert.deepEqual(await cli.stop(), { code: 0, signal: null });
});

test('two clients failing at once are each logged with their own address and error; an ' +
  'expired certificate is logged as CERT_HAS_EXPIRED', { timeout: 60000 }, async () => {
  const certs = makeBadClientCertificates();
  const backend = await echoBackend();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--client-ca', FIXTURES.ca, '--to', backend, '--log', 'json']);
  const [rogue, old] = await Promise.all([
    failingClient(cli.port, certs.rogue),
    failingClient(cli.port, { maxVersion: 'TLSv1', minVersion: 'TLSv1' }),
  ]);
  assert.ok(rogue.client && old.client, 'both clients connected');
  const logged = (client) => cli.waitForLog((r) => r.event === 'connection' &&
    r.client === client, 20000);
  const rogueRecord = await logged(rogue.client);
  const oldRecord = await logged(old.client);
  assert.equal(rogueRecord.reason, 'handshake');
  assert.equal(rogueRecord.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', JSON.stringify(rogueRecord));
  assert.equal(oldRecord.reason, 'handshake');
  // OpenSSL's own reason: which one depends on its version (3.0: UNSUPPORTED_PROTOCOL; 3.5,
  // Node 22 and later, whose client then sends an unexpected record: UNEXPECTED_MESSAGE).
  assert.match(oldRecord.code, /^ERR_SSL_/, JSON.stringify(oldRecord));

  const expired = await failingClient(cli.port, certs.expired);
  const expiredRecord = await cli.waitForLog((r) => r.event === 'connection' &&
    r.client === expired.client, 20000);
  assert.equal(expiredRecord.code, 'CERT_HAS_EXPIRED', JSON.stringify(expiredRecord));
  // Exactly one record per failed client, and nothing reached the backend.
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const c of [rogue.client, old.client, expired.client]) {
    assert.equal(cli.records.filter((r) => r.client === c).length, 1, c);
  }
  assert.equal(cli.records.filter((r) => r.event === 'connection' && r.backend).length, 0);
  assert.deepEqual(await cli.stop(), { code: 0, signal: null });
});

test('--max-connections 5: the 6th connection is closed at once, counted and logged',
  { timeout: 60000 }, async () => {
    const backend = await echoBackend();
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend, '--max-connections', '5', '--handshake-timeout', '120',
      '--metrics', '127.0.0.1:0', '--log', 'json']);
    const metricsAddr = cli.lines.map((l) => /^metrics (\S+)$/.exec(l)).find(Boolean)[1];
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await stalledConnection(cli.port));
    // The command has accepted all five (not merely the kernel) before the sixth comes.
    await waitUntil(async () => metricValue(await scrape(metricsAddr),
      'tls_splice_connections_total') === 5, 20000, 'five accepted connections');
    const sixth = await stalledConnection(cli.port);
    await within(10000, sixth.closed, 'the 6th connection closed');
    for (const h of held) assert.equal(h.socket.destroyed, false, 'the first five stay open');
    const refusal = await cli.waitForLog((r) => r.code === 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS');
    assert.equal(refusal.max, 5);
    assert.equal(refusal.client, sixth.client);
    const text = await scrape(metricsAddr);
    assert.equal(metricValue(text, 'tls_splice_connections_refused_total'), 1, text);
    assert.equal(metricValue(text, 'tls_splice_connections_total'), 5, text);
    // One of the five leaves: a real client gets in.
    held[0].socket.destroy();
    await waitUntil(async () => metricValue(await scrape(metricsAddr),
      'tls_splice_connections_active') === 4, 20000, 'four active connections');
    assert.equal(await exchange(cli.port, 'in'), 'E:in');
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('an SNI with a newline gives exactly one text log line, the name escaped',
  { timeout: 30000 }, async () => {
    const backend = await echoBackend();
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend]);
    const forged = 'a.example\nterminate: 10.9.9.9:1 -> 10.0.0.1:80 in=0 out=0 end=end';
    assert.equal(await exchange(cli.port, 'x', { servername: forged, rejectUnauthorized: false }),
      'E:x');
    await cli.waitForStderr(/end=/);
    // The record is written with one write(); give a stray second line time to show anyway.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = cli.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, cli.stderr);
    assert.match(lines[0], /^terminate: 127\.0\.0\.1:\d+ -> /);
    assert.ok(lines[0].includes(`sni=${JSON.stringify(forged)}`), lines[0]);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });
