// `tls-splice proxy` against real clients: curl through an https:// proxy URL (a 100 MB download
// through a CONNECT tunnel, hashed; an upload hashed by the origin; absolute-URI requests), raw
// TLS clients for what curl will not send (pipelined tunnel bytes, half-close, malformed heads),
// and headless Chromium loading an HTTPS page through it. Every refusal is an HTTP answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

import { PrngStream, sha256 } from './helpers/data.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { requireTool, startCli, stopAllClis } from './helpers/cli.mjs';
import { withTimeout } from './helpers/scenarios.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CA = FIXTURES.ca;
const CERT = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const DOWNLOAD = 100 * 1024 * 1024;
const UPLOAD = 16 * 1024 * 1024;
const noCurl = requireTool('curl', 'curl');
const noChromium = requireTool('chromium', 'chromium');

let origin;
after(() => {
  origin?.child.kill('SIGKILL');
  stopAllClis();
});

before(async () => {
  const child = spawn(process.execPath, [path.join(here, 'helpers', 'origin-server.mjs')],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await withTimeout(new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
      if (text.includes('\n')) resolve(text);
    });
    child.once('exit', (code) => reject(new Error(`origin exited ${code}`)));
  }), 10000, 'origin');
  const m = /https=(\d+) http=(\d+)/.exec(line);
  origin = { child, https: Number(m[1]), http: Number(m[2]) };
});

// Runs curl; stdout is hashed as it streams (a 100 MB body is never held).
function curl(args, { input } = {}) {
  return withTimeout(new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--max-time', '60', ...args],
      { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const hash = crypto.createHash('sha256');
    let length = 0;
    let head = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      hash.update(d);
      length += d.length;
      if (head.length < 65536) head += d.toString('latin1');
    });
    child.stderr.on('data', (d) => { stderr += d; });
    if (input) {
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    }
    child.on('close', (code) => resolve({ code, length, sha256: hash.digest('hex'), stdout: head,
      stderr }));
  }), 90000, `curl ${args.join(' ')}`);
}

const viaProxy = (proxy, ...more) => ['--proxy', `https://127.0.0.1:${proxy.port}`,
  '--proxy-cacert', CA, ...more];

function expectedDigest(seed, n) {
  const prng = new PrngStream(seed);
  const hash = crypto.createHash('sha256');
  for (let left = n; left > 0; left -= Math.min(left, 1 << 20)) hash.update(prng.next(Math.min(left, 1 << 20)));
  return hash.digest('hex');
}

// A TLS client to the proxy that writes `bytes` at once and collects everything until the end.
async function rawExchange(proxy, bytes, { alpn = ['http/1.1'], endAfterWrite = false } = {}) {
  const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost',
    ca: fs.readFileSync(CA), ALPNProtocols: alpn });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const chunks = [];
  socket.on('data', (c) => chunks.push(c));
  const ended = new Promise((resolve, reject) => {
    socket.once('end', resolve);
    socket.once('error', reject);
  });
  if (endAfterWrite) socket.end(bytes); else socket.write(bytes);
  await withTimeout(ended, 20000, 'proxy answer');
  socket.destroy();
  return { alpn: socket.alpnProtocol, bytes: Buffer.concat(chunks) };
}

test('CONNECT: curl downloads 100 MB and uploads 16 MB through the tunnel, spliced natively',
  { skip: noCurl, timeout: 180000 }, async () => {
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
      '--allow', '127.0.0.1:*', '--log', 'json']);
    try {
      const url = `https://127.0.0.1:${origin.https}/bytes/${DOWNLOAD}/proxy-download`;
      const down = await curl(viaProxy(proxy, '--cacert', CA, '-o', '-', url));
      assert.equal(down.code, 0, down.stderr);
      assert.equal(down.length, DOWNLOAD);
      assert.equal(down.sha256, expectedDigest('proxy-download', DOWNLOAD));
      const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.method === 'CONNECT');
      assert.equal(rec.engine, 'native');
      assert.equal(rec.backend, `127.0.0.1:${origin.https}`);
      assert.ok(rec.bytesToClient > DOWNLOAD, `bytes to the client: ${rec.bytesToClient}`);
      assert.equal(rec.code, undefined);

      const body = new PrngStream('proxy-upload').next(UPLOAD);
      const up = await curl(viaProxy(proxy, '--cacert', CA, '--data-binary', '@-',
        '-H', 'Content-Type: application/octet-stream',
        `https://127.0.0.1:${origin.https}/hash`), { input: body });
      assert.equal(up.code, 0, up.stderr);
      assert.equal(up.stdout, `${UPLOAD} ${sha256(body)}`);
    } finally {
      await proxy.kill();
    }
  });

test('absolute-URI requests are forwarded (GET, POST hashed, keep-alive)', { skip: noCurl,
  timeout: 60000 }, async () => {
  const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
    '--allow', '127.0.0.1:*', '--log', 'json']);
  try {
    const base = `http://127.0.0.1:${origin.http}`;
    const get = await curl(viaProxy(proxy, `${base}/some/path?q=1`, `${base}/second`));
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, `origin GET /some/path?q=1 host=127.0.0.1:${origin.http}` +
      `origin GET /second host=127.0.0.1:${origin.http}`);
    const body = new PrngStream('proxy-post').next(3 * 1024 * 1024 + 1);
    const post = await curl(viaProxy(proxy, '--data-binary', '@-', `${base}/hash`),
      { input: body });
    assert.equal(post.code, 0, post.stderr);
    assert.equal(post.stdout, `${body.length} ${sha256(body)}`);
    // The proxy's own credentials header never reaches the origin (hop-by-hop).
    const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.method === 'POST');
    assert.equal(rec.status, 200);
    assert.equal(rec.bytesFromClient, body.length);
  } finally {
    await proxy.kill();
  }
});

test('without --allow: CONNECT only to port 443, forwarding only to port 80, never to loopback (403)',
  { skip: noCurl, timeout: 60000 }, async () => {
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT, '--log', 'json']);
    try {
      const tunnel = await curl(viaProxy(proxy, '--cacert', CA, '-w', '%{http_connect}',
        '-o', '/dev/null', `https://127.0.0.1:${origin.https}/`));
      assert.notEqual(tunnel.code, 0);
      assert.equal(tunnel.stdout, '403');
      const fwd = await curl(viaProxy(proxy, '-w', ' %{http_code}',
        `http://127.0.0.1:${origin.http}/`));
      assert.match(fwd.stdout, /ERR_TLS_SPLICE_PROXY_DENIED.* 403$/s);
      const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.status === 403);
      assert.equal(rec.code, 'ERR_TLS_SPLICE_PROXY_DENIED');
      // The default ports do not open the proxy's own host: loopback is refused on them too
      // (more internal addresses in cli-proxy-security.test.mjs).
      const local = await curl(viaProxy(proxy, '--cacert', CA, '-w', '%{http_connect}',
        '-o', '/dev/null', 'https://localhost/'));
      assert.equal(local.stdout, '403');
      const local80 = await curl(viaProxy(proxy, '-w', ' %{http_code}', 'http://127.0.0.9/'));
      assert.match(local80.stdout, /internal address.* 403$/s);
    } finally {
      await proxy.kill();
    }
  });

test('--auth: 407 with Proxy-Authenticate without or with wrong credentials', { skip: noCurl,
  timeout: 60000 }, async () => {
  const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
    '--allow', '127.0.0.1:*', '--auth', 'alice:s3cret:x']);
  try {
    const url = `https://127.0.0.1:${origin.https}/page/authorized`;
    for (const creds of [[], ['--proxy-user', 'alice:wrong'], ['--proxy-user', 'bob:s3cret:x']]) {
      const r = await curl(viaProxy(proxy, '--cacert', CA, '-v', ...creds, url));
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /< HTTP\/1\.1 407 /);
      assert.match(r.stderr, /< Proxy-Authenticate: Basic realm="tls-splice proxy"/i);
    }
    const ok = await curl(viaProxy(proxy, '--cacert', CA, '--proxy-user', 'alice:s3cret:x', url));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /<p id="marker">authorized<\/p>/);
    const fwd = await curl(viaProxy(proxy, '-w', ' %{http_code}',
      `http://127.0.0.1:${origin.http}/`));
    assert.match(fwd.stdout, / 407$/);
    const fwdOk = await curl(viaProxy(proxy, '--proxy-user', 'alice:s3cret:x',
      `http://127.0.0.1:${origin.http}/x`));
    assert.equal(fwdOk.stdout, `origin GET /x host=127.0.0.1:${origin.http}`);
  } finally {
    await proxy.kill();
  }
});

test('an unreachable destination is 502, for CONNECT and for forwarding', { skip: noCurl,
  timeout: 60000 }, async () => {
  const closed = net.createServer();
  await new Promise((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = closed.address().port;
  await new Promise((r) => closed.close(r));
  const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
    '--allow', '127.0.0.1:*', '--log', 'json']);
  try {
    const tunnel = await curl(viaProxy(proxy, '-w', '%{http_connect}', '-o', '/dev/null',
      `https://127.0.0.1:${deadPort}/`));
    assert.equal(tunnel.stdout, '502');
    const fwd = await curl(viaProxy(proxy, '-w', ' %{http_code}',
      `http://127.0.0.1:${deadPort}/`));
    assert.match(fwd.stdout, /ECONNREFUSED.* 502$/s);
    const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.status === 502);
    assert.equal(rec.code, 'ECONNREFUSED');
  } finally {
    await proxy.kill();
  }
});

test('malformed requests get 400 over the TLS session; ALPN is http/1.1 only',
  { timeout: 60000 }, async () => {
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
      '--allow', '127.0.0.1:*']);
    try {
      for (const head of [
        'GARBAGE\r\n\r\n',
        'CONNECT no-port-here HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET / HTTP/1.1\r\nHost: origin-form.example\r\n\r\n',
        'GET http://127.0.0.1/ HTTP/1.1\r\nHost : space\r\n\r\n',
      ]) {
        const { bytes } = await rawExchange(proxy, head);
        assert.match(bytes.toString('latin1'), /^HTTP\/1\.1 400 Bad Request\r\n/, head);
      }
      const big = await rawExchange(proxy, `GET http://a/ HTTP/1.1\r\nX: ${'y'.repeat(20000)}`);
      assert.match(big.bytes.toString('latin1'), /^HTTP\/1\.1 431 /);
      const { alpn } = await rawExchange(proxy, 'GARBAGE\r\n\r\n', { alpn: ['h2', 'http/1.1'] });
      assert.equal(alpn, 'http/1.1');
      await assert.rejects(rawExchange(proxy, 'x', { alpn: ['h2'] }),
        { code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' });
    } finally {
      await proxy.kill();
    }
  });

test('CONNECT with the tunnel bytes pipelined in the same write, then a half-close',
  { timeout: 60000 }, async () => {
    // A backend that hashes what it receives and, after the client's FIN, answers with it.
    const backend = net.createServer({ allowHalfOpen: true }, (socket) => {
      const hash = crypto.createHash('sha256');
      let length = 0;
      socket.on('data', (c) => { hash.update(c); length += c.length; });
      socket.on('end', () => socket.end(`${length} ${hash.digest('hex')}`));
    });
    await new Promise((r) => backend.listen(0, '127.0.0.1', r));
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
      '--allow', '127.0.0.1:*', '--log', 'json']);
    try {
      const port = backend.address().port;
      const tunnelBytes = new PrngStream('pipelined').next(4 * 1024 * 1024 + 5);
      const request = Buffer.from(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n` +
        `Host: 127.0.0.1:${port}\r\n\r\n`);
      const { bytes } = await rawExchange(proxy, Buffer.concat([request, tunnelBytes]),
        { endAfterWrite: true });
      const text = bytes.toString('latin1');
      assert.equal(text, 'HTTP/1.1 200 Connection Established\r\n\r\n' +
        `${tunnelBytes.length} ${sha256(tunnelBytes)}`);
      const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.method === 'CONNECT');
      assert.equal(rec.engine, 'native');
      // The bytes that came with the head are the splice's `head`; whether stats.bytesIn counts
      // them is the library's choice, so the end-to-end check is the hash above.
      assert.ok(rec.bytesFromClient > 0 && rec.bytesFromClient <= tunnelBytes.length);
    } finally {
      await proxy.kill();
      backend.close();
    }
  });

test('headless Chromium loads an HTTPS page through the proxy', { skip: noChromium,
  timeout: 120000 }, async () => {
  const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
    '--allow', '127.0.0.1:*', '--log', 'json']);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-chromium-'));
  try {
    const marker = `through-the-proxy-${crypto.randomBytes(6).toString('hex')}`;
    const chromium = spawn('chromium', ['--headless', '--no-sandbox', '--disable-gpu',
      '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`,
      `--proxy-server=https://127.0.0.1:${proxy.port}`,
      // Without it Chromium silently bypasses the proxy for loopback destinations.
      '--proxy-bypass-list=<-loopback>',
      '--ignore-certificate-errors', '--dump-dom',
      `https://127.0.0.1:${origin.https}/page/${marker}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let dom = '';
    chromium.stdout.on('data', (d) => { dom += d; });
    chromium.stderr.resume();
    const code = await withTimeout(new Promise((r) => chromium.on('close', r)), 90000,
      'chromium').catch((err) => {
      chromium.kill('SIGKILL');
      throw err;
    });
    assert.equal(code, 0);
    assert.match(dom, new RegExp(`<p id="marker">${marker}</p>`));
    // It went through the proxy: the tunnel to the origin is in the proxy's log.
    const rec = await proxy.waitForLog((r) => r.event === 'connection' &&
      r.method === 'CONNECT' && r.backend === `127.0.0.1:${origin.https}`, 20000);
    assert.equal(rec.engine, 'native');
  } finally {
    await proxy.kill();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test('a CONNECT after a forwarded request on the same connection is spliced too',
  { timeout: 60000 }, async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
    await new Promise((r) => echo.listen(0, '127.0.0.1', r));
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
      '--allow', '127.0.0.1:*', '--log', 'json']);
    try {
      const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost',
        ca: fs.readFileSync(CA) });
      await new Promise((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      let text = '';
      const waitFor = (re) => withTimeout(new Promise((resolve) => {
        const check = () => {
          if (re.test(text)) {
            socket.off('data', onData);
            resolve();
          }
        };
        const onData = (d) => { text += d.toString('latin1'); check(); };
        socket.on('data', onData);
        check();
      }), 20000, `${re}`);
      socket.write(`GET http://127.0.0.1:${origin.http}/first HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitFor(/origin GET \/first host=127\.0\.0\.1:\d+$/);
      const echoed = new PrngStream('after-get').next(1024 * 1024);
      text = '';
      socket.write(Buffer.concat([Buffer.from(`CONNECT 127.0.0.1:${echo.address().port} ` +
        'HTTP/1.1\r\nHost: y\r\n\r\n'), echoed.subarray(0, 1000)]));
      await waitFor(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
      const chunks = [Buffer.from(text.slice('HTTP/1.1 200 Connection Established\r\n\r\n'.length),
        'latin1')];
      socket.on('data', (d) => chunks.push(d));
      const ended = new Promise((r) => socket.once('end', r));
      socket.end(echoed.subarray(1000));
      await withTimeout(ended, 20000, 'echo end');
      assert.equal(sha256(Buffer.concat(chunks)), sha256(echoed));
      const rec = await proxy.waitForLog((r) => r.event === 'connection' && r.method === 'CONNECT');
      assert.equal(rec.engine, 'native');
    } finally {
      await proxy.kill();
      echo.close();
    }
  });

test('SIGHUP reloads the proxy certificate; a live tunnel survives; SIGTERM exits 0',
  { timeout: 60000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-proxy-reload-'));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    fs.copyFileSync(FIXTURES.serverCert, cert);
    fs.copyFileSync(FIXTURES.serverKey, key);
    const echo = net.createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
    await new Promise((r) => echo.listen(0, '127.0.0.1', r));
    const proxy = await startCli(['proxy', '--listen', '127.0.0.1:0', '--cert', cert, '--key', key,
      '--allow', '127.0.0.1:*']);
    const fingerprint = async () => {
      const s = tls.connect({ host: '127.0.0.1', port: proxy.port, rejectUnauthorized: false });
      await new Promise((resolve, reject) => {
        s.once('secureConnect', resolve);
        s.once('error', reject);
      });
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      return fp;
    };
    try {
      const before = await fingerprint();
      // A live tunnel through the proxy.
      const tunnel = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost',
        ca: fs.readFileSync(CA) });
      await new Promise((resolve, reject) => {
        tunnel.once('secureConnect', resolve);
        tunnel.once('error', reject);
      });
      const chunks = [];
      tunnel.on('data', (c) => chunks.push(c));
      tunnel.write(`CONNECT 127.0.0.1:${echo.address().port} HTTP/1.1\r\nHost: e\r\n\r\nbefore|`);
      // A new certificate and key in place, then SIGHUP.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
        'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-keyout', key, '-out', cert], { stdio: 'ignore' });
      proxy.signal('SIGHUP');
      await proxy.waitForStderr(/reloaded certificates/);
      const after = await fingerprint();
      assert.notEqual(after, before);
      const ended = new Promise((r) => tunnel.once('end', r));
      tunnel.end('after');
      await withTimeout(ended, 20000, 'tunnel end');
      assert.equal(Buffer.concat(chunks).toString(),
        'HTTP/1.1 200 Connection Established\r\n\r\nbefore|after');
      assert.deepEqual(await proxy.stop('SIGTERM'), { code: 0, signal: null });
    } finally {
      await proxy.kill();
      echo.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
