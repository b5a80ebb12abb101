// `tls-splice originate`, run as the real command: plain TCP clients in, a node:tls upstream out
// (a different code path from the tapped sockets under test). Verification is on by default;
// a failed verification must close the plain client without a byte either way.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { startCli, stopAllClis } from './helpers/cli.mjs';

const read = (file) => fs.readFileSync(file);
const servers = [];
after(() => {
  stopAllClis();
  for (const s of servers) s.close();
});

// A node:tls echo upstream: records what each connection sent, echoes it, ends when the client
// ends. `received` lists each connection's bytes; `handshakes` counts finished handshakes.
async function echoUpstream(options = {}) {
  const upstream = { received: [], handshakes: 0, failures: [], peers: [], protocols: [] };
  const server = tls.createServer({
    cert: read(FIXTURES.serverCert), key: read(FIXTURES.serverKey), allowHalfOpen: true,
    ...options,
  }, (socket) => {
    upstream.handshakes += 1;
    upstream.peers.push(socket.getPeerCertificate()?.subject?.CN);
    upstream.protocols.push(socket.alpnProtocol);
    const chunks = [];
    upstream.received.push(chunks);
    socket.on('error', () => {});
    socket.on('data', (c) => chunks.push(c));
    socket.pipe(socket);
  });
  server.on('tlsClientError', (err) => upstream.failures.push(err.code));
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.addr = `127.0.0.1:${server.address().port}`;
  return upstream;
}

// A plain TCP client: sends `data`, half-closes, resolves with what came back and how it ended.
function plainExchange(port, data) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => resolve({ data: Buffer.concat(chunks), error: err.code }));
    socket.on('end', () => resolve({ data: Buffer.concat(chunks), error: null }));
    socket.end(data);
  });
}

test('byte-exact echo through a verified upstream (8 MiB, hashed both ways), native engine',
  { timeout: 60000 }, async () => {
    const upstream = await echoUpstream();
    const cli = await startCli(['originate', '--listen', '127.0.0.1:0', '--connect', upstream.addr,
      '--servername', 'localhost', '--ca', FIXTURES.ca, '--log', 'json']);
    const SIZE = 8 * 1024 * 1024;
    const sent = new PrngStream('originate/echo').next(SIZE);
    const { data, error } = await plainExchange(cli.port, sent);
    assert.equal(error, null);
    const atUpstream = Buffer.concat(upstream.received[0]);
    assert.equal(atUpstream.length, SIZE);
    assert.equal(sha256(atUpstream), sha256(sent));
    assert.equal(data.length, SIZE);
    assert.equal(sha256(data), sha256(sent));
    const record = await cli.waitForLog((r) => r.event === 'connection');
    assert.equal(record.engine, 'native');
    assert.equal(record.reason, 'end');
    assert.equal(record.bytesFromClient, SIZE);
    assert.equal(record.bytesToClient, SIZE);
    assert.equal(record.verified, true);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

for (const [name, args, codeRe] of [
  ['a wrong CA', ['--servername', 'localhost', '--ca', FIXTURES.clientCert],
    /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/],
  ['the default roots (the test CA is not among them)', ['--servername', 'localhost'],
    /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF/],
  ['a name the certificate does not carry', ['--servername', 'other.test', '--ca', FIXTURES.ca],
    /ERR_TLS_CERT_ALTNAME_INVALID/],
]) {
  test(`${name}: the plain client gets no byte, the upstream none either, the log says why`,
    { timeout: 30000 }, async () => {
      const upstream = await echoUpstream();
      const cli = await startCli(['originate', '--listen', '127.0.0.1:0', '--connect',
        upstream.addr, ...args, '--log', 'json'], { env: { NODE_EXTRA_CA_CERTS: '' } });
      const { data, error } = await plainExchange(cli.port, 'a secret the upstream must not see');
      assert.equal(data.length, 0);
      assert.equal(error, 'ECONNRESET');
      const record = await cli.waitForLog((r) => r.event === 'connection');
      assert.equal(record.reason, 'failed');
      assert.match(record.code, codeRe);
      assert.ok(record.error.length > 0);
      assert.equal(record.bytesFromClient, 0);
      assert.equal(upstream.received.flat().reduce((n, c) => n + c.length, 0), 0);
      assert.deepEqual(await cli.stop(), { code: 0, signal: null });
    });
}

test('--insecure (only when asked) carries a connection to an upstream it cannot verify',
  { timeout: 30000 }, async () => {
    const upstream = await echoUpstream();
    const cli = await startCli(['originate', '--listen', '127.0.0.1:0', '--connect', upstream.addr,
      '--insecure', '--log', 'json']);
    const { data, error } = await plainExchange(cli.port, 'insecure but asked for');
    assert.equal(error, null);
    assert.equal(data.toString(), 'insecure but asked for');
    const record = await cli.waitForLog((r) => r.event === 'connection');
    assert.equal(record.verified, false);
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('--cert/--key present a client certificate; --alpn is offered', { timeout: 30000 },
  async () => {
    const upstream = await echoUpstream({ requestCert: true, rejectUnauthorized: true,
      ca: read(FIXTURES.ca), ALPNProtocols: ['x-other', 'x-test'] });
    const base = ['originate', '--listen', '127.0.0.1:0', '--connect', upstream.addr,
      '--servername', 'localhost', '--ca', FIXTURES.ca, '--alpn', 'x-test'];
    const withCert = await startCli([...base, '--cert', FIXTURES.clientCert,
      '--key', FIXTURES.clientKey]);
    const ok = await plainExchange(withCert.port, 'mutual');
    assert.equal(ok.data.toString(), 'mutual');
    assert.equal(upstream.protocols[0], 'x-test');
    assert.ok(upstream.peers[0], 'the upstream saw a client certificate');
    await withCert.stop();
    const without = await startCli(base);
    const refused = await plainExchange(without.port, 'no certificate');
    assert.equal(refused.data.length, 0);
    assert.equal(upstream.received.length, 1);
    await without.stop();
  });

test('--max-connections 2: a third plain client is closed at once and logged; the two held ' +
  'connections still carry their bytes', { timeout: 30000 }, async () => {
    const upstream = await echoUpstream();
    const cli = await startCli(['originate', '--listen', '127.0.0.1:0', '--connect', upstream.addr,
      '--servername', 'localhost', '--ca', FIXTURES.ca, '--max-connections', '2',
      '--log', 'json']);
    const open = async () => {
      const socket = net.connect(cli.port, '127.0.0.1');
      const chunks = [];
      socket.on('data', (c) => chunks.push(c));
      socket.on('error', () => {});
      const closed = new Promise((resolve) => socket.once('close', resolve));
      await new Promise((resolve) => socket.once('connect', resolve));
      return { socket, chunks, closed, client: `127.0.0.1:${socket.localPort}` };
    };
    const held = [await open(), await open()];
    // Both are spliced (the upstream saw their handshakes) before the third comes.
    const deadline = Date.now() + 15000;
    while (upstream.handshakes < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(upstream.handshakes, 2);
    const third = await open();
    let timer;
    await Promise.race([third.closed, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('the third connection was not closed')), 10000);
    })]).finally(() => clearTimeout(timer));
    const refusal = await cli.waitForLog((r) => r.code === 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS');
    assert.equal(refusal.max, 2);
    assert.equal(refusal.client, third.client);
    assert.equal(upstream.handshakes, 2, 'the refused client cost no upstream connection');
    for (const [i, h] of held.entries()) {
      const payload = Buffer.from(`held ${i}`);
      const ended = new Promise((resolve) => h.socket.once('end', resolve));
      h.socket.end(payload);
      await ended;
      assert.equal(Buffer.concat(h.chunks).toString(), payload.toString());
    }
    assert.deepEqual(await cli.stop(), { code: 0, signal: null });
  });

test('--idle-timeout, --fin-timeout, --max-connections: bad values are usage errors (exit 2)',
  { timeout: 30000 }, async () => {
    const { runCli } = await import('./helpers/cli.mjs');
    for (const [flag, value] of [['--idle-timeout', '0'], ['--fin-timeout', 'x'],
      ['--max-connections', '0']]) {
      const r = await runCli(['originate', '--listen', '127.0.0.1:0', '--connect',
        '127.0.0.1:1', flag, value]);
      assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`);
      assert.ok(r.stderr.includes(flag), r.stderr);
      assert.match(r.stderr, /is not a|must be more than 0/, r.stderr);
    }
  });
