// `tls-splice proxy` against the attacks of issue 17, one regression test per finding, driven by
// raw TLS clients on loopback (what curl will not send) and small origins in this process:
//   3  every request head on a kept-alive connection has --head-timeout; idle ones --idle-timeout
//   4  internal destinations (loopback, private, link-local...) are refused unless allowed exactly
//   5  a spliced tunnel with no byte either way ends at --idle-timeout
//   6  a request body keeps its framing whatever the method (no smuggled second request)
//   8  requests pipelined before a CONNECT are answered, in order, before its 200
//   9  an origin answering 101, or not at all, gets the client a 502 / 504
//   11 '*' in an --allow host never crosses a dot; bad patterns are usage errors
// and the limits: --max-connections, --handshake-timeout, --fin-timeout, at most 64 requests
// pipelined ahead of their answers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';

import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { runCli, startCli, stopAllClis } from './helpers/cli.mjs';
import { withTimeout } from './helpers/scenarios.mjs';

const CERT = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const CA = fs.readFileSync(FIXTURES.ca);
const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

after(() => stopAllClis());

const startProxy = (...flags) => startCli(['proxy', '--listen', '127.0.0.1:0', ...CERT,
  '--log', 'json', ...flags]);

// A TLS client to the proxy that keeps what it receives; waitFor() resolves when it matches.
async function client(proxy, { allowHalfOpen = false } = {}) {
  const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost',
    ca: CA, ALPNProtocols: ['http/1.1'], allowHalfOpen });
  await withTimeout(new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  }), 10000, 'TLS handshake with the proxy');
  const c = { socket, received: Buffer.alloc(0), error: null };
  const listeners = new Set();
  socket.on('data', (d) => {
    c.received = Buffer.concat([c.received, d]);
    for (const fn of [...listeners]) fn();
  });
  socket.on('error', (err) => { c.error = err; });
  c.closed = new Promise((resolve) => socket.once('close', () => {
    c.closedAt = Date.now();
    resolve();
    for (const fn of [...listeners]) fn();
  }));
  c.text = () => c.received.toString('latin1');
  c.waitFor = (re, ms = 20000) => withTimeout(new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(c.text());
      if (m) {
        listeners.delete(check);
        resolve(m);
      } else if (c.closedAt !== undefined) {
        listeners.delete(check);
        reject(new Error(`closed before ${re}; received ${JSON.stringify(c.text())}`));
      }
    };
    listeners.add(check);
    check();
  }), ms, `${re}; received so far ${JSON.stringify(c.text())}`);
  return c;
}

// One request on a fresh connection; resolves with everything up to the proxy's close.
async function exchange(proxy, bytes, ms = 20000) {
  const c = await client(proxy);
  c.socket.write(bytes);
  await withTimeout(c.closed, ms, `the proxy's answer to ${JSON.stringify(String(bytes))}`);
  return c.text();
}

async function listening(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
}

// An origin that records every request node:http parses from what the proxy sent it.
async function recordingOrigin(handler = (req, res) => res.end('ok')) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers,
        body: Buffer.concat(chunks).toString('latin1') });
      handler(req, res);
    });
  });
  const port = await listening(server);
  return { server, port, requests };
}

test('a second request head trickled after a 407 gets 408 at --head-timeout (finding 3)',
  { timeout: 60000 }, async () => {
    const proxy = await startProxy('--auth', 'alice:s3cret', '--head-timeout', '1');
    try {
      const c = await client(proxy);
      c.socket.write('GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor(/^HTTP\/1\.1 407 [^]*\r\n\r\n[^]*ERR_TLS_SPLICE_PROXY_AUTH\)\n$/);
      // The 407 kept the connection alive; now a head at one byte every 300 ms (24 s in all).
      const head = 'GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: trickled.example\r\n\r\n';
      const startedAt = Date.now();
      let sent = 0;
      const trickle = setInterval(() => {
        if (sent < head.length && !c.socket.destroyed) c.socket.write(head[sent++]);
      }, 300);
      try {
        await withTimeout(c.closed, 15000, 'the proxy closing the trickled head');
      } finally {
        clearInterval(trickle);
      }
      assert.match(c.text(), /HTTP\/1\.1 408 Request Timeout\r\n/);
      assert.ok(c.closedAt - startedAt < 8000, `closed after ${c.closedAt - startedAt} ms`);
    } finally {
      await proxy.kill();
    }
  });

test('a kept-alive connection with no next request closes at --idle-timeout', { timeout: 60000 },
  async () => {
    const proxy = await startProxy('--auth', 'alice:s3cret', '--idle-timeout', '1');
    try {
      const c = await client(proxy);
      c.socket.write('GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor(/ERR_TLS_SPLICE_PROXY_AUTH\)\n$/);
      const answeredAt = Date.now();
      await withTimeout(c.closed, 15000, 'the idle connection closing');
      assert.ok(c.closedAt - answeredAt >= 900, `closed after ${c.closedAt - answeredAt} ms`);
    } finally {
      await proxy.kill();
    }
  });

const DENIED = /^HTTP\/1\.1 403 Forbidden\r\n[^]*ERR_TLS_SPLICE_PROXY_DENIED/;
const INTERNAL_TARGETS = ['127.0.0.1', '127.0.0.9', '2130706441', '[::1]', '[::ffff:127.0.0.1]',
  '10.1.2.3', '169.254.169.254', '0.0.0.0', '224.0.0.1', '[fe80::1]', '[fd00::1]', 'localhost'];

test('without --allow, internal destinations are 403 for CONNECT :443 and forwarding :80 ' +
  '(finding 4)', { timeout: 120000 }, async () => {
  const proxy = await startProxy('--dial-timeout', '2');
  try {
    for (const host of INTERNAL_TARGETS) {
      const tunnel = await exchange(proxy,
        `CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
      assert.match(tunnel, DENIED, `CONNECT ${host}`);
      const fwd = await exchange(proxy, `GET http://${host}/ HTTP/1.1\r\nHost: ${host}\r\n` +
        'Connection: close\r\n\r\n');
      assert.match(fwd, DENIED, `GET ${host}`);
    }
    const rec = await proxy.waitForLog((r) => r.status === 403 && r.backend === 'localhost:443');
    assert.match(rec.error, /internal address/);
  } finally {
    await proxy.kill();
  }
});

test('a "*" in an --allow host never reaches an internal address; exact names, addresses and ' +
  'CIDR blocks do (finding 4)', { timeout: 60000 }, async () => {
  const origin = await recordingOrigin();
  const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  const echoPort = await listening(echo);
  const cases = [
    [[`*:${origin.port}`, `*:${echoPort}`], 403],
    [[`127.0.0.*:${origin.port}`, `127.0.0.*:${echoPort}`], 403],
    [[`localhost:${origin.port}`, `localhost:${echoPort}`], 200, 'localhost'],
    [[`127.0.0.1:${origin.port}`, `127.0.0.1:${echoPort}`], 200],
    [['127.0.0.0/8:*'], 200],
    [[`[::ffff:127.0.0.0]/104:${origin.port}-${echoPort > origin.port ? echoPort : origin.port}`,
      `127.0.0.0/8:${Math.min(origin.port, echoPort)}`], 200],
  ];
  try {
    for (const [patterns, status, host = '127.0.0.1'] of cases) {
      const proxy = await startProxy(...patterns.flatMap((p) => ['--allow', p]));
      try {
        const fwd = await exchange(proxy, `GET http://${host}:${origin.port}/x HTTP/1.1\r\n` +
          'Host: h\r\nConnection: close\r\n\r\n');
        assert.match(fwd, new RegExp(`^HTTP/1\\.1 ${status} `), `GET with ${patterns}: ${fwd}`);
        const c = await client(proxy);
        c.socket.write(`CONNECT ${host}:${echoPort} HTTP/1.1\r\nHost: h\r\n\r\nping`);
        if (status === 200) {
          await c.waitFor(new RegExp(`^${ESTABLISHED}ping$`));
        } else {
          await c.waitFor(/^HTTP\/1\.1 403 /);
        }
        c.socket.destroy();
      } finally {
        await proxy.kill();
      }
    }
  } finally {
    origin.server.close();
    echo.close();
  }
});

test("'*' in an --allow host matches within one label, never across a dot (finding 11)",
  { timeout: 60000 }, async () => {
    const proxy = await startProxy('--allow', '10.0.0.*:443', '--allow', '*.example.com:443',
      '--dial-timeout', '2');
    try {
      for (const host of ['10.0.0.1.attacker.example', 'a.b.example.com', 'example.com']) {
        const text = await exchange(proxy, `CONNECT ${host}:443 HTTP/1.1\r\nHost: x\r\n\r\n`);
        assert.match(text, /^HTTP\/1\.1 403 Forbidden\r\n/, host);
      }
      const rec = await proxy.waitForLog((r) => r.backend === 'example.com:443');
      assert.equal(rec.code, 'ERR_TLS_SPLICE_PROXY_DENIED');
    } finally {
      await proxy.kill();
    }
  });

test('a bad --allow pattern is a usage error (exit 2)', { timeout: 60000 }, async () => {
  for (const pattern of ['10.0.0.0/33:443', 'host:0', 'host:9-8', 'host:70000', 'ho st:1',
    '[::1:443', 'a..b:443', 'host', '[fc00::]/129:1', 'host:x']) {
    const r = await runCli(['proxy', '--listen', '127.0.0.1:0', ...CERT, '--allow', pattern]);
    assert.equal(r.code, 2, `${pattern}: ${r.stderr}`);
    assert.match(r.stderr, /--allow/);
  }
});

test('a request body keeps its framing whatever the method; CL with TE, or TE not chunked, ' +
  'is 400 (finding 6)', { timeout: 60000 }, async () => {
  const origin = await recordingOrigin();
  const proxy = await startProxy('--allow', `127.0.0.1:${origin.port}`);
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  const chunked = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
  const base = `http://127.0.0.1:${origin.port}`;
  try {
    for (const method of ['GET', 'DELETE', 'OPTIONS']) {
      const text = await exchange(proxy, `${method} ${base}/${method} HTTP/1.1\r\nHost: x\r\n` +
        `Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`);
      assert.match(text, /^HTTP\/1\.1 200 /, text);
    }
    const text = await exchange(proxy, `GET ${base}/named HTTP/1.1\r\nHost: x\r\n` +
      `Content-Length: ${smuggled.length}\r\nConnection: Content-Length, close\r\n\r\n${smuggled}`);
    assert.match(text, /^HTTP\/1\.1 200 /, text);
    // The origin saw four requests, each with the would-be smuggled request as its body.
    await withTimeout((async () => {
      while (origin.requests.length < 4) await new Promise((r) => setTimeout(r, 50));
    })(), 10000, 'four requests at the origin');
    assert.deepEqual(origin.requests.map((r) => [r.method, r.url, r.body]),
      [['GET', '/GET', smuggled], ['DELETE', '/DELETE', smuggled],
        ['OPTIONS', '/OPTIONS', smuggled], ['GET', '/named', smuggled]]);
    for (const framing of ['Content-Length: 5\r\nTransfer-Encoding: chunked',
      'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: gzip']) {
      const refused = await exchange(proxy, `POST ${base}/te HTTP/1.1\r\nHost: x\r\n${framing}` +
        '\r\n\r\n0\r\n\r\n');
      assert.match(refused, /^HTTP\/1\.1 400 Bad Request\r\n/, framing);
    }
    assert.equal(origin.requests.length, 4);
  } finally {
    await proxy.kill();
    origin.server.close();
  }
});

test('requests pipelined before a CONNECT are answered, in order, before its 200 (finding 8)',
  { timeout: 60000 }, async () => {
    // The first answer is slow, so that the CONNECT behind it is parsed long before it.
    const origin = await recordingOrigin((req, res) => {
      setTimeout(() => res.end(`answer ${req.url}`), req.url === '/slow' ? 1000 : 0);
    });
    const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
    const echoPort = await listening(echo);
    const proxy = await startProxy('--allow', `127.0.0.1:${origin.port}`,
      '--allow', `127.0.0.1:${echoPort}`);
    try {
      const c = await client(proxy);
      const get = (p) => `GET http://127.0.0.1:${origin.port}${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
      c.socket.write(get('/slow') + get('/fast') +
        `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: y\r\n\r\ntunnel-bytes`);
      await c.waitFor(/tunnel-bytes$/);
      const text = c.text();
      const slow = text.indexOf('answer /slow');
      const fast = text.indexOf('answer /fast');
      const established = text.indexOf(ESTABLISHED);
      assert.ok(slow > 0 && fast > slow && established > fast, JSON.stringify(text));
      assert.ok(text.endsWith(`${ESTABLISHED}tunnel-bytes`), JSON.stringify(text));
      // The tunnel works both ways after that.
      const bytes = new PrngStream('after-pipelined').next(256 * 1024);
      const from = c.received.length;
      c.socket.write(bytes);
      await withTimeout((async () => {
        while (c.received.length < from + bytes.length) await new Promise((r) => setTimeout(r, 20));
      })(), 20000, 'the echo');
      assert.equal(sha256(c.received.subarray(from)), sha256(bytes));
      c.socket.destroy();
      const rec = await proxy.waitForLog((r) => r.method === 'CONNECT' && r.event === 'connection');
      assert.equal(rec.engine, 'native');
      assert.ok(!/ERR_TLS_SPLICE_SPENT/.test(proxy.stderr), proxy.stderr);
    } finally {
      await proxy.kill();
      origin.server.close();
      echo.close();
    }
  });

test('more than 64 requests pipelined ahead of their answers close the connection',
  { timeout: 60000 }, async () => {
    // An origin that never answers: every request waits behind the first.
    const origin = net.createServer((s) => { s.on('error', () => {}); s.resume(); });
    const port = await listening(origin);
    const proxy = await startProxy('--allow', `127.0.0.1:${port}`);
    try {
      const c = await client(proxy);
      const get = `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: x\r\n\r\n`;
      c.socket.write(get.repeat(100));
      await withTimeout(c.closed, 15000, 'the proxy closing the connection');
      const rec = await proxy.waitForLog((r) => r.code === 'ERR_TLS_SPLICE_TOO_MANY_PIPELINED');
      assert.equal(rec.reason, 'refused');
    } finally {
      await proxy.kill();
      origin.close();
    }
  });

// An origin for the answer tests: 'switch' answers 101 with Upgrade, 'bare-switch' 101 without,
// 'silent' reads the request and never answers.
async function answeringOrigin() {
  const origin = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      if (origin.mode === 'switch') {
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n');
      } else if (origin.mode === 'bare-switch') {
        s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
      }
    });
  });
  origin.port = await listening(origin);
  return origin;
}

test('an origin answering 101 gets the client a 502 (finding 9)', { timeout: 60000 }, async () => {
  const origin = await answeringOrigin();
  const proxy = await startProxy('--allow', `127.0.0.1:${origin.port}`);
  try {
    for (origin.mode of ['switch', 'bare-switch']) {
      const text = await exchange(proxy, `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\n` +
        'Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', 15000);
      assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*101 Switching Protocols/, origin.mode);
    }
    const rec = await proxy.waitForLog((r) => r.status === 502 && r.event === 'connection');
    assert.equal(rec.code, 'ERR_TLS_SPLICE_BAD_ANSWER');
  } finally {
    await proxy.kill();
    origin.close();
  }
});

test('an origin that never answers gets the client a 504 at --idle-timeout', { timeout: 60000 },
  async () => {
    const origin = await answeringOrigin();
    origin.mode = 'silent';
    const proxy = await startProxy('--allow', `127.0.0.1:${origin.port}`, '--idle-timeout', '2');
    try {
      const startedAt = Date.now();
      const text = await exchange(proxy, `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\n` +
        'Host: x\r\n\r\n', 15000);
      assert.match(text, /^HTTP\/1\.1 504 Gateway Timeout\r\n[^]*ETIMEDOUT/);
      assert.ok(Date.now() - startedAt >= 1900, `504 after ${Date.now() - startedAt} ms`);
    } finally {
      await proxy.kill();
      origin.close();
    }
  });

test('a tunnel with no byte either way ends at --idle-timeout (finding 5)', { timeout: 60000 },
  async () => {
    const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
    const echoPort = await listening(echo);
    const proxy = await startProxy('--allow', `127.0.0.1:${echoPort}`, '--idle-timeout', '1');
    try {
      const c = await client(proxy);
      c.socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: y\r\n\r\nhello`);
      await c.waitFor(/hello$/);
      const quietSince = Date.now();
      await withTimeout(c.closed, 20000, 'the idle tunnel ending');
      assert.ok(c.closedAt - quietSince >= 900, `ended after ${c.closedAt - quietSince} ms`);
      const rec = await proxy.waitForLog((r) => r.method === 'CONNECT' && r.event === 'connection');
      assert.equal(rec.reason, 'idle');
    } finally {
      await proxy.kill();
      echo.close();
    }
  });

test('a half-closed tunnel ends at --fin-timeout when the other side stays silent',
  { timeout: 60000 }, async () => {
    // The destination answers and ends its side; the client keeps its own open and says nothing.
    const backend = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('bye'));
    });
    const port = await listening(backend);
    const proxy = await startProxy('--allow', `127.0.0.1:${port}`, '--fin-timeout', '1');
    try {
      const c = await client(proxy, { allowHalfOpen: true });
      const ended = new Promise((resolve) => c.socket.once('end', resolve));
      c.socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: y\r\n\r\nhello`);
      await c.waitFor(/bye$/);
      await withTimeout(ended, 10000, "the destination's end reaching the client");
      const halfClosedAt = Date.now();
      // The client sees nothing more than the end it already saw (its TLS socket cannot tell the
      // proxy's FIN from the close_notify before it): the log says when the tunnel ended.
      const rec = await proxy.waitForLog((r) => r.method === 'CONNECT' && r.event === 'connection',
        20000);
      assert.equal(rec.reason, 'idle');
      assert.ok(Date.now() - halfClosedAt >= 900, `ended after ${Date.now() - halfClosedAt} ms`);
      c.socket.destroy();
    } finally {
      await proxy.kill();
      backend.close();
    }
  });

test('--max-connections: a connection over the cap is closed at once and logged',
  { timeout: 60000 }, async () => {
    const proxy = await startProxy('--max-connections', '2');
    const held = [];
    try {
      held.push(await client(proxy), await client(proxy));
      const third = net.connect(proxy.port, '127.0.0.1');
      third.on('error', () => {});
      third.resume();
      await withTimeout(new Promise((r) => third.once('close', r)), 10000, 'the third closing');
      const rec = await proxy.waitForLog((r) => r.code === 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS');
      assert.equal(rec.max, 2);
      // The two held ones still work.
      held[0].socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await held[0].waitFor(/^HTTP\/1\.1 400 /);
    } finally {
      for (const c of held) c.socket.destroy();
      await proxy.kill();
    }
  });

test('--handshake-timeout: a connection that never finishes its handshake is closed',
  { timeout: 60000 }, async () => {
    const proxy = await startProxy('--handshake-timeout', '1');
    try {
      const silent = net.connect(proxy.port, '127.0.0.1');
      silent.on('error', () => {});
      silent.resume();
      const startedAt = Date.now();
      await withTimeout(new Promise((r) => silent.once('close', r)), 15000,
        'the proxy closing a silent connection');
      assert.ok(Date.now() - startedAt >= 900);
      const rec = await proxy.waitForLog((r) => r.reason === 'handshake');
      assert.equal(rec.code, 'ERR_TLS_HANDSHAKE_TIMEOUT');
    } finally {
      await proxy.kill();
    }
  });

test('--help documents the policy and every limit', { timeout: 30000 }, async () => {
  const r = await runCli(['proxy', '--help']);
  for (const flag of ['--allow', '--head-timeout', '--dial-timeout', '--handshake-timeout',
    '--max-connections', '--idle-timeout', '--fin-timeout']) {
    assert.match(r.stdout, new RegExp(flag));
  }
  assert.match(r.stdout, /CIDR/);
});
