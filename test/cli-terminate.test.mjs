// `tls-splice terminate`, run as the real command against real clients and backends on loopback:
// curl (--http2 to an h2c backend, --http1.1 to an HTTP/1.1 one), h2load, Node TLS clients for
// SNI routing, mutual TLS, half-close and signals, and HAProxy as the PROXY v1/v2 receiver.
// Every transfer checks length and SHA-256 both ways.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { FIXTURES, freePort, waitForListening } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { startCli, requireTool, stopAllClis } from './helpers/cli.mjs';

const run = promisify(execFile);
const CERT_ARGS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const ca = fs.readFileSync(FIXTURES.ca);
const closers = [];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

// Listens on loopback; at the end, every connection it accepted is destroyed and it is closed.
async function listening(server) {
  const connections = new Set();
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const socket of connections) socket.destroy();
    server.close(() => resolve());
  }));
  return `127.0.0.1:${server.address().port}`;
}

// A backend that answers `${name}:` and then echoes, ending when the client ends.
async function namedEcho(name) {
  const backend = { name, connections: 0, sockets: new Set() };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    backend.connections += 1;
    backend.sockets.add(socket);
    socket.on('close', () => backend.sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(`${name}:`);
    socket.pipe(socket);
  });
  closers.push(() => { for (const s of backend.sockets) s.destroy(); });
  backend.addr = await listening(server);
  return backend;
}

function collect(socket) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

function tlsClient(port, options = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost',
      ...options }, () => resolve(socket));
    socket.once('error', reject);
  });
}

// One request over a fresh TLS connection: what came back (a Buffer) after the client half-closed.
async function exchange(port, data, options = {}) {
  const socket = await tlsClient(port, options);
  const received = collect(socket);
  socket.end(data);
  return received;
}

test('curl --http2 reaches the h2c backend and curl --http1.1 the HTTP/1.1 one; h2load runs',
  { timeout: 90000, skip: requireTool('curl', 'curl') }, async (t) => {
    const h2c = http2.createServer((req, res) => res.end(`h2c ${req.httpVersion} ${req.url}`));
    const h1 = http.createServer((req, res) => res.end(`http1 ${req.httpVersion} ${req.url}`));
    const h2cAddr = await listening(h2c);
    const h1Addr = await listening(h1);
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--alpn', `h2=${h2cAddr}`, '--alpn', `http/1.1=${h1Addr}`, '--log', 'json']);
    const url = `https://localhost:${cli.port}/path`;
    const resolve = ['--resolve', `localhost:${cli.port}:127.0.0.1`, '--cacert', FIXTURES.ca];
    const { stdout: viaH2 } = await run('curl', ['-sS', '--http2', ...resolve, url]);
    assert.equal(viaH2, 'h2c 2.0 /path');
    const { stdout: viaH1 } = await run('curl', ['-sS', '--http1.1', ...resolve, url]);
    assert.equal(viaH1, 'http1 1.1 /path');
    const h2record = await cli.waitForLog((r) => r.event === 'connection' && r.alpn === 'h2');
    assert.equal(h2record.engine, 'native');
    assert.equal(h2record.backend, h2cAddr);
    assert.equal(h2record.reason, 'end');

    await t.test('h2load', { skip: requireTool('h2load', 'nghttp2-client') }, async () => {
      const { stdout } = await run('h2load', ['-n', '200', '-c', '4', '-m', '4',
        `https://127.0.0.1:${cli.port}/`], { timeout: 60000 });
      assert.match(stdout, /200 succeeded/, stdout);
      assert.match(stdout, /Application protocol: h2/, stdout);
      const { stdout: h1out } = await run('h2load', ['--h1', '-n', '100', '-c', '2',
        `https://127.0.0.1:${cli.port}/`], { timeout: 60000 });
      assert.match(h1out, /100 succeeded/, h1out);
    });
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('SNI routes: exact and wildcard names; an unknown name fails the handshake', { timeout: 30000 },
  async () => {
    const a = await namedEcho('A');
    const b = await namedEcho('B');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--sni', `a.test=${a.addr}`, '--sni', `*.b.test=${b.addr}`]);
    // The certificate is for localhost: the name checked is not the SNI sent.
    const opts = (servername) => ({ servername, checkServerIdentity: () => undefined });
    assert.equal((await exchange(cli.port, 'one', opts('a.test'))).toString(), 'A:one');
    assert.equal((await exchange(cli.port, 'two', opts('A.TEST'))).toString(), 'A:two');
    assert.equal((await exchange(cli.port, 'three', opts('x.b.test'))).toString(), 'B:three');
    for (const name of ['c.test', 'y.x.b.test', 'b.test']) {
      await assert.rejects(exchange(cli.port, 'four', opts(name)), (err) => {
        assert.match(err.code, /^(ECONNRESET|ERR_SSL_|EPIPE)/, `${name}: ${err.code}`);
        return true;
      });
    }
    assert.equal(a.connections, 2);
    assert.equal(b.connections, 1);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('--client-ca: a client without a certificate is refused, one with a certificate is spliced',
  { timeout: 30000 }, async () => {
    const echo = await namedEcho('E');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--client-ca', FIXTURES.ca, '--to', echo.addr, '--log', 'json']);
    await assert.rejects(exchange(cli.port, 'no cert'), (err) => {
      assert.match(err.code, /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|ECONNRESET/, err.code);
      return true;
    });
    const refused = await cli.waitForLog((r) => r.event === 'connection' &&
      r.reason === 'handshake');
    assert.match(refused.code, /PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE/, refused.code);
    assert.match(refused.client, /^127\.0\.0\.1:\d+$/);
    assert.equal(echo.connections, 0);
    const withCert = await exchange(cli.port, 'with cert', {
      cert: fs.readFileSync(FIXTURES.clientCert), key: fs.readFileSync(FIXTURES.clientKey),
    });
    assert.equal(withCert.toString(), 'E:with cert');
    assert.equal(echo.connections, 1);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('--proxy-protocol v1 and v2: HAProxy (accept-proxy) sees the client address',
  { timeout: 60000, skip: requireTool('haproxy', 'haproxy') }, async () => {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-haproxy-'));
    const cfg = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, `global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:${port} accept-proxy
  http-request return status 200 content-type text/plain lf-string "src=%[src]:%[src_port] dst=%[dst]:%[dst_port]"
`);
    const haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let haproxyLog = '';
    haproxy.stderr.on('data', (d) => { haproxyLog += d; });
    closers.push(() => { haproxy.kill('SIGKILL'); fs.rmSync(dir, { recursive: true }); });
    await waitForListening(port, { timeout: 10000 });
    for (const version of ['v1', 'v2']) {
      const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
        '--proxy-protocol', version, '--to', `127.0.0.1:${port}`]);
      const socket = await tlsClient(cli.port);
      const received = collect(socket);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      const response = (await received).toString();
      assert.match(response, /^HTTP\/1\.1 200/, `${version}: ${response}\n${haproxyLog}`);
      assert.ok(response.endsWith(`src=127.0.0.1:${socket.localPort} ` +
        `dst=127.0.0.1:${cli.port}`), `${version}: ${response}`);
      assert.deepEqual(await cli.stop(), { code: 0, signal: null });
    }
  });

test('half-close carried through: 4 MiB each way, the reply after the client shut down its side',
  { timeout: 60000 }, async () => {
    const SIZE = 4 * 1024 * 1024;
    const up = new PrngStream('terminate/up').next(SIZE);
    const down = new PrngStream('terminate/down').next(SIZE);
    let backendGot;
    const backend = net.createServer({ allowHalfOpen: true }, (socket) => {
      const chunks = [];
      socket.on('data', (c) => chunks.push(c));
      // Replies only once the client's side has ended: a half-close that did not travel would
      // leave this waiting.
      socket.on('end', () => {
        backendGot = Buffer.concat(chunks);
        socket.end(down);
      });
    });
    const addr = await listening(backend);
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS, '--to', addr,
      '--log', 'json']);
    const socket = await tlsClient(cli.port);
    const clientAddr = `127.0.0.1:${socket.localPort}`;
    const received = collect(socket);
    socket.end(up);
    const got = await received;
    assert.equal(backendGot.length, SIZE);
    assert.equal(sha256(backendGot), sha256(up));
    assert.equal(got.length, SIZE);
    assert.equal(sha256(got), sha256(down));
    const record = await cli.waitForLog((r) => r.event === 'connection');
    assert.equal(record.engine, 'native');
    assert.equal(record.reason, 'end');
    assert.equal(record.bytesFromClient, SIZE);
    assert.equal(record.bytesToClient, SIZE);
    assert.equal(record.client, clientAddr);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

function scrape(text, name, labels) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) &&
    Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

async function metricsText(cli) {
  const addr = cli.lines.map((l) => /^metrics (\S+)$/.exec(l)).find(Boolean)[1];
  const res = await fetch(`http://${addr}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  return res.text();
}

test('--metrics: Prometheus text with connections, handshake failures, bytes, ends, engine',
  { timeout: 30000 }, async () => {
    const echo = await namedEcho('M');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', echo.addr, '--metrics', '127.0.0.1:0', '--log', 'json']);
    const payload = new PrngStream('metrics').next(100_000);
    const reply = await exchange(cli.port, payload);
    assert.equal(reply.length, 2 + payload.length);
    await cli.waitForLog((r) => r.event === 'connection' && r.reason === 'end');
    // Not TLS at all: a failed handshake.
    const plain = net.connect(cli.port, '127.0.0.1');
    plain.on('error', () => {});
    const plainPort = await new Promise((resolve) => plain.on('connect', () =>
      resolve(plain.localPort)));
    plain.end('GET / HTTP/1.0\r\n\r\n');
    const failed = await cli.waitForLog((r) => r.event === 'connection' &&
      r.reason === 'handshake');
    assert.equal(failed.client, `127.0.0.1:${plainPort}`);
    assert.match(failed.code, /^ERR_(SSL|TLS_SPLICE)_/);
    const text = await metricsText(cli);
    assert.equal(scrape(text, 'tls_splice_connections_total', {}), 2, text);
    assert.equal(scrape(text, 'tls_splice_bytes_total', { direction: 'from_client' }), 100_000);
    assert.equal(scrape(text, 'tls_splice_bytes_total', { direction: 'to_client' }), 100_002);
    assert.equal(scrape(text, 'tls_splice_splice_ends_total', { reason: 'end' }), 1, text);
    assert.equal(scrape(text, 'tls_splice_splices_total', { engine: 'native' }), 1, text);
    const failures = text.split('\n').filter((l) => l.startsWith('tls_splice_handshake_failures'));
    assert.equal(failures.length, 1, text);
    assert.equal(Number(failures[0].split(' ').at(-1)), 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(scrape(await metricsText(cli), 'tls_splice_connections_active', {}), 0);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('SIGTERM: stops accepting, ends a live splice gracefully (close_notify), exits 0',
  { timeout: 30000 }, async () => {
    const echo = await namedEcho('D');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', echo.addr, '--log', 'json', '--drain-timeout', '5']);
    const socket = await tlsClient(cli.port);
    const chunks = [];
    socket.on('data', (c) => chunks.push(c));
    socket.write('live');
    while (Buffer.concat(chunks).toString() !== 'D:live') {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // The client answers the terminator's close_notify with its own end, as a polite peer does.
    const ended = new Promise((resolve) => socket.once('end', () => { socket.end(); resolve(); }));
    const exited = cli.stop('SIGTERM');
    await ended;
    assert.deepEqual(await exited, { code: 0, signal: null });
    const record = cli.records.find((r) => r.event === 'connection');
    assert.equal(record.reason, 'stopped');
    assert.equal(record.engine, 'native');
    await assert.rejects(tlsClient(cli.port), { code: 'ECONNREFUSED' });
  });

test('SIGTERM with a splice that cannot drain: aborted at --drain-timeout, exit 0',
  { timeout: 30000 }, async () => {
    // A backend that never reads, with a receive buffer of a few KiB set by the test, not the
    // machine's (one may hold the whole flood in kernel buffers, and the splice then drains).
    const { stuckBackend } = await import('./helpers/stuck-backend.mjs');
    const stuck = await stuckBackend();
    closers.push(() => stuck.close());
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', stuck.addr, '--log', 'json', '--drain-timeout', '0.5']);
    const socket = await tlsClient(cli.port);
    socket.on('error', () => {});
    // And a small fixed send buffer on the command's socket to it: left to the kernel, that one
    // grows while the backend's window is closed, and a stop could deliver what the splice holds.
    await stuck.accepted();
    await stuck.shrinkPeerSndbuf(cli.child.pid);
    // Until every buffer on the way is full, whatever their sizes on this machine: the splice
    // then holds bytes it cannot deliver.
    const { floodUntilStalled } = await import('./helpers/flood.mjs');
    await floodUntilStalled(socket);
    assert.deepEqual(await cli.stop('SIGTERM'), { code: 0, signal: null });
    const record = cli.records.find((r) => r.event === 'connection');
    assert.equal(record.reason, 'aborted');
    socket.destroy();
  });

test('SIGHUP reloads the certificate: new connections see it, a live one survives',
  { timeout: 60000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-reload-'));
    closers.push(() => fs.rmSync(dir, { recursive: true }));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    fs.copyFileSync(FIXTURES.serverCert, cert);
    fs.copyFileSync(FIXTURES.serverKey, key);
    const echo = await namedEcho('R');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', '--cert', cert,
      '--key', key, '--to', echo.addr]);
    const insecure = { rejectUnauthorized: false };
    const live = await tlsClient(cli.port, insecure);
    assert.equal(live.getPeerCertificate().subject.CN, 'localhost');
    const liveChunks = [];
    live.on('data', (c) => liveChunks.push(c));
    live.write('before');

    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
      '-out', cert, '-days', '1', '-subj', '/CN=reloaded.test'], { stdio: 'ignore' });
    cli.signal('SIGHUP');
    await cli.waitForStderr(/reloaded certificates/);
    const fresh = await tlsClient(cli.port, insecure);
    assert.equal(fresh.getPeerCertificate().subject.CN, 'reloaded.test');
    fresh.destroy();

    // A broken reload keeps the certificate in use.
    fs.writeFileSync(key, 'not a key');
    cli.signal('SIGHUP');
    await cli.waitForStderr(/reload failed, keeping the previous certificates/);
    const again = await tlsClient(cli.port, insecure);
    assert.equal(again.getPeerCertificate().subject.CN, 'reloaded.test');
    again.destroy();

    const rest = collect(live);
    live.end('after');
    await rest;
    assert.equal(Buffer.concat(liveChunks).toString(), 'R:beforeafter');
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('--workers 2: connections served by both processes, metrics summed, SIGTERM exits 0',
  { timeout: 60000 }, async () => {
    const echo = await namedEcho('W');
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', echo.addr, '--workers', '2', '--metrics', '127.0.0.1:0', '--log', 'json'],
    { timeout: 30000 });
    const N = 6;
    for (let i = 0; i < N; i++) {
      const payload = new PrngStream(`workers/${i}`).next(10_000);
      const reply = await exchange(cli.port, payload);
      assert.equal(reply.length, 2 + payload.length);
    }
    let text;
    for (let i = 0; i < 100; i++) {
      text = await metricsText(cli);
      if (scrape(text, 'tls_splice_splice_ends_total', { reason: 'end' }) === N) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // node:cluster hands connections round-robin: both workers served some.
    const workers = new Set(cli.records.filter((r) => r.event === 'connection').map((r) => r.worker));
    assert.deepEqual([...workers].sort(), [1, 2]);
    assert.equal(scrape(text, 'tls_splice_connections_total', {}), N, text);
    assert.equal(scrape(text, 'tls_splice_splice_ends_total', { reason: 'end' }), N, text);
    assert.equal(scrape(text, 'tls_splice_bytes_total', { direction: 'from_client' }), N * 10_000);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });
