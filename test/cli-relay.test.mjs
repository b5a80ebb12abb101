// `tls-splice relay` + `tls-splice agent`, a reverse tunnel, as separate processes on loopback:
// public client -> relay --public | relay --agents <= mTLS link <= agent -> backend (--to).
// 100 MB each way hashed, 50 concurrent short connections, a half-close carried through, mTLS
// refusals, the relay restarting under a running agent, the queue timeout, and the agent killed
// mid-transfer reaching the public client as a reset; then every relay's log lines (one record
// per line, no [object Object]). Limits and hostile agents: cli-relay-limits.test.mjs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

import { PrngStream, sha256 } from './helpers/data.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { Cli, runCli, startCli, stopAllClis } from './helpers/cli.mjs';
import { withTimeout } from './helpers/scenarios.mjs';
import { requireProgram } from './helpers/programs.mjs';

const HELPERS = path.join(path.dirname(new URL(import.meta.url).pathname), 'helpers');

const BIG = 100 * 1024 * 1024;
const CHUNK = 1024 * 1024;
const RELAY_TLS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey,
  '--client-ca', FIXTURES.ca];
const AGENT_TLS = ['--cert', FIXTURES.clientCert, '--key', FIXTURES.clientKey, '--ca', FIXTURES.ca];

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
  stopAllClis();
});

// Sends n bytes of PrngStream(seed) with backpressure; resolves when written.
async function sendPrng(socket, seed, n) {
  const prng = new PrngStream(seed);
  for (let left = n; left > 0;) {
    const size = Math.min(CHUNK, left);
    left -= size;
    if (!socket.write(prng.next(size))) {
      await new Promise((resolve, reject) => {
        const onError = (err) => { socket.off('drain', onDrain); reject(err); };
        const onDrain = () => { socket.off('error', onError); resolve(); };
        socket.once('drain', onDrain);
        socket.once('error', onError);
      });
    }
  }
}

function digestOf(seed, n) {
  const prng = new PrngStream(seed);
  const hash = crypto.createHash('sha256');
  for (let left = n; left > 0; left -= Math.min(left, CHUNK)) hash.update(prng.next(Math.min(left, CHUNK)));
  return hash.digest('hex');
}

// Hashes what a socket receives (after `skip` bytes already taken) until 'end' or 'error'.
function hashIncoming(socket) {
  const hash = crypto.createHash('sha256');
  let length = 0;
  return new Promise((resolve) => {
    socket.on('data', (c) => { hash.update(c); length += c.length; });
    socket.once('end', () => resolve({ length, sha256: hash.digest('hex'), ended: true }));
    socket.once('error', (err) => resolve({ length, error: err, ended: false }));
  });
}

// The backend behind the agent. Each connection starts with a line "SEND <n> <label>": it sends
// n bytes of PrngStream(`${label}/down`), hashes everything after the line, and after the
// client's FIN ends its side once its own bytes are out. received.get(label) -> { length, sha256 }.
async function startBackend() {
  const received = new Map();
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(10);
      if (nl < 0) return;
      socket.off('data', onData);
      const [, n, label] = buffered.subarray(0, nl).toString().split(' ');
      const rest = buffered.subarray(nl + 1);
      const hash = crypto.createHash('sha256').update(rest);
      let length = rest.length;
      socket.on('data', (c) => { hash.update(c); length += c.length; });
      const sending = sendPrng(socket, `${label}/down`, Number(n)).catch(() => {});
      socket.once('end', async () => {
        received.set(label, { length, sha256: hash.digest('hex') });
        await sending;
        socket.end();
      });
    };
    socket.on('data', onData);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const backend = { server, received, port: server.address().port,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(r)); } };
  cleanups.push(backend.close);
  return backend;
}

function agentsAddr(relay) {
  return relay.lines.map((l) => /^agents (\S+)$/.exec(l)).find(Boolean)[1];
}

// Every relay the scenarios started, for the last test's look at their log lines.
const relays = [];

async function startRelay(extra = [], { agents = '127.0.0.1:0', pub = '127.0.0.1:0' } = {}) {
  const relay = await startCli(['relay', '--agents', agents, '--public', pub, ...RELAY_TLS,
    '--log', 'json', ...extra]);
  relay.agents = agentsAddr(relay);
  relays.push(relay);
  return relay;
}

function startAgent(relay, backendPort, extra = []) {
  return startCli(['agent', '--relay', relay.agents, '--to', `127.0.0.1:${backendPort}`,
    ...AGENT_TLS, '--log', 'json', ...extra], { ready: /^connected (\S+)$/ });
}

async function tunnel(extraRelay = [], extraAgent = []) {
  const backend = await startBackend();
  const relay = await startRelay(extraRelay);
  const agent = await startAgent(relay, backend.port, extraAgent);
  cleanups.push(() => agent.kill(), () => relay.kill());
  return { backend, relay, agent };
}

// A public client: asks the backend for `down` bytes, sends `up` bytes, half-closes, and checks
// both directions by hash.
async function exchange(port, label, down, up) {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const incoming = hashIncoming(socket);
  socket.write(`SEND ${down} ${label}\n`);
  await sendPrng(socket, `${label}/up`, up);
  socket.end();
  const got = await incoming;
  socket.destroy();
  assert.equal(got.error, undefined, `${label}: ${got.error?.code}`);
  assert.equal(got.length, down, `${label}: bytes from the backend`);
  assert.equal(got.sha256, digestOf(`${label}/down`, down), `${label}: hash from the backend`);
  return got;
}

function assertBackendGot(backend, label, up) {
  const got = backend.received.get(label);
  assert.ok(got, `${label}: the backend saw the connection end`);
  assert.equal(got.length, up, `${label}: bytes to the backend`);
  assert.equal(got.sha256, digestOf(`${label}/up`, up), `${label}: hash to the backend`);
}

test('100 MB each way through relay and agent, byte-exact, spliced natively at both ends',
  { timeout: 240000 }, async () => {
    const { backend, relay, agent } = await tunnel();
    const publicPort = relay.port;
    await exchange(publicPort, 'big', BIG, BIG);
    assertBackendGot(backend, 'big', BIG);
    const r = await relay.waitForLog((rec) => rec.event === 'connection' && rec.command === 'relay');
    assert.equal(r.engine, 'native');
    assert.equal(r.reason, 'end');
    assert.equal(r.bytesToClient, BIG);
    const a = await agent.waitForLog((rec) => rec.event === 'connection' && rec.command === 'agent');
    assert.equal(a.engine, 'native');
    assert.equal(a.backend, `127.0.0.1:${backend.port}`);
    assert.equal(a.client, r.client, 'the link announced the public client');
  });

test('50 concurrent short connections (more than the pool: the relay queues them)',
  { timeout: 120000 }, async () => {
    const { backend, relay } = await tunnel([], ['--pool', '4']);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      exchange(relay.port, `short-${i}`, 1000 + i, 2000 + i)));
    assert.equal(results.length, 50);
    for (let i = 0; i < 50; i++) assertBackendGot(backend, `short-${i}`, 2000 + i);
  });

test('a half-close is carried through: the reply after the client\'s FIN arrives whole',
  { timeout: 60000 }, async () => {
    const { backend, relay } = await tunnel();
    // "SEND 0": the backend sends nothing until our FIN, then ends; here it replies with
    // nothing but must still see all our bytes, and we must see its end.
    const got = await exchange(relay.port, 'half', 0, 5 * 1024 * 1024 + 1);
    assert.equal(got.ended, true);
    assertBackendGot(backend, 'half', 5 * 1024 * 1024 + 1);
  });

test('the relay refuses links without a certificate from --client-ca', { timeout: 60000 },
  async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.kill());
    const [host, port] = [relay.agents.replace(/:\d+$/, ''), Number(relay.agents.split(':').pop())];
    // Another CA and a client certificate it signed.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-otherca-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const f = (name) => path.join(dir, name);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-days', '2', '-subj', '/CN=other CA', '-keyout', f('ca-key.pem'), '-out', f('ca.pem'),
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'],
    { stdio: 'ignore' });
    execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', '/CN=rogue agent', '-keyout', f('key.pem'), '-out', f('csr.pem')], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', f('csr.pem'), '-CA', f('ca.pem'), '-CAkey',
      f('ca-key.pem'), '-CAcreateserial', '-days', '2', '-out', f('cert.pem')], { stdio: 'ignore' });

    const attempt = (opts) => new Promise((resolve) => {
      const socket = tls.connect({ host, port, ca: fs.readFileSync(FIXTURES.ca), ...opts });
      socket.on('error', (err) => resolve(err.code));
      socket.on('data', (d) => { resolve(`data ${d}`); socket.destroy(); });
      socket.on('close', () => resolve('closed'));
    });
    const agentCert = { cert: fs.readFileSync(FIXTURES.clientCert),
      key: fs.readFileSync(FIXTURES.clientKey) };
    // The control: a certificate from --client-ca is greeted.
    assert.equal(await withTimeout(attempt(agentCert), 10000, 'agent cert'),
      'data {"relay":"tls-splice"}\n');
    // TLS 1.3: the client learns of the refusal after its Finished, from the relay's alert.
    assert.equal(await withTimeout(attempt({}), 10000, 'no cert'),
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    // Another CA: Node's server checks the chain after the handshake and closes; no greeting.
    const other = { cert: fs.readFileSync(f('cert.pem')), key: fs.readFileSync(f('key.pem')) };
    assert.doesNotMatch(await withTimeout(attempt(other), 10000, 'other CA'), /^data/);
    const rec = await relay.waitForLog((r) => r.event === 'connection' && r.reason === 'handshake');
    assert.equal(rec.side, 'agents');
    assert.match(rec.client, /^127\.0\.0\.1:\d+$/);
    // An agent with that certificate is never up: it says why and keeps retrying.
    const backend = await startBackend();
    const rogue = new Cli(['agent', '--relay', relay.agents, '--to', `127.0.0.1:${backend.port}`,
      '--cert', f('cert.pem'), '--key', f('key.pem'), '--ca', FIXTURES.ca]);
    cleanups.push(() => rogue.kill());
    await rogue.waitForStderr(/no link to the relay 127\.0\.0\.1:\d+ \(.*--client-ca/);
    assert.deepEqual(rogue.lines, [], 'the rogue agent printed "connected"');
  });

test('no agent link within --queue-timeout: the public client is reset', { timeout: 60000 },
  async () => {
    const relay = await startRelay(['--queue-timeout', '0.3']);
    cleanups.push(() => relay.kill());
    const socket = net.connect({ host: '127.0.0.1', port: relay.port });
    const got = await withTimeout(hashIncoming(socket), 20000, 'reset');
    assert.equal(got.error?.code, 'ECONNRESET');
    const rec = await relay.waitForLog((r) => r.event === 'connection' && r.reason === 'refused');
    assert.equal(rec.code, 'ERR_TLS_SPLICE_NO_AGENT');
  });

test('the relay restarts: the agent reconnects with backoff and serves again',
  { timeout: 90000 }, async () => {
    const backend = await startBackend();
    const first = await startRelay();
    const agent = await startAgent(first, backend.port, ['--max-backoff', '0.5']);
    cleanups.push(() => agent.kill());
    await exchange(first.port, 'before', 10000, 10000);
    await first.kill();
    // Same addresses: the agent's --relay and the public port stay valid.
    const second = await startRelay([], { agents: first.agents, pub: `127.0.0.1:${first.port}` });
    cleanups.push(() => second.kill());
    // The relay queues this client until the agent's new link arrives.
    await exchange(second.port, 'after', 20000, 30000);
    assertBackendGot(backend, 'after', 30000);
    await agent.waitForStderr(/no link to the relay/);
  });

// Kills the agent once the public client has received 8 MiB of an endless download, and
// resolves with how the client's socket ended. `upload`: the client keeps sending too. The client
// is test/helpers/reset-probe.py: a Node client cannot tell a reset from a FIN reliably (libuv
// takes a hang-up after a short read for EOF, and a pending write consumes the ECONNRESET).
async function killAgentMidTransfer({ upload }) {
  const { relay, agent } = await tunnel();
  const probe = spawn('python3', [path.join(HELPERS, 'reset-probe.py'), String(relay.port),
    `SEND ${10 * BIG} killed`, String(8 * CHUNK), upload ? '1' : '0'],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const outcome = new Promise((resolve) => {
    probe.stdout.on('data', (d) => {
      out += d;
      if (out.includes('KILL\n') && agent.child.exitCode === null && !agent.child.killed) {
        agent.child.kill('SIGKILL');
      }
      const last = /(END|RESET|TIMEOUT|ERROR-\w+) (\d+)\n/.exec(out);
      if (last) resolve(last[1] === 'END' ? { ended: true, length: Number(last[2]) }
        : { error: last[1] === 'RESET' ? 'ECONNRESET' : last[1], length: Number(last[2]) });
    });
  });
  try {
    const got = await withTimeout(outcome, 60000, 'the client sees the end of the link');
    const rec = await relay.waitForLog((r) => r.event === 'connection' && r.command === 'relay');
    return { got, rec };
  } finally {
    probe.kill();
  }
}

test('the agent killed mid-transfer (both ways busy): the public client gets ECONNRESET',
  { timeout: 90000, skip: requireProgram('python3', 'python3') }, async () => {
    const { got, rec } = await killAgentMidTransfer({ upload: true });
    assert.equal(got.ended, undefined, 'the client saw a clean end of a truncated stream');
    assert.equal(got.error, 'ECONNRESET');
    assert.ok(rec.reason !== 'end' || rec.truncated, `relay end: ${JSON.stringify(rec)}`);
  });

// The link's FIN without close_notify must not reach the client as a FIN. The relay resets the
// client when the splice ends truncated, but before that the library passes the peer's EOF on
// to a socket target (shutdown SHUT_WR) unless it has onTruncation: 'reset', which the relay
// asks for. (The case above passes without it at times: when the agent dies with unread bytes
// its kernel sends a reset, not a FIN.)
test('the agent killed mid-download (client silent): a reset, not a clean end',
  { timeout: 90000, skip: requireProgram('python3', 'python3') }, async () => {
  const { got, rec } = await killAgentMidTransfer({ upload: false });
  assert.equal(got.ended, undefined, 'the client saw a clean end of a truncated stream');
  assert.equal(got.error, 'ECONNRESET');
  // Killed inside a record: the end is the error ERR_TLS_SPLICE_TRUNCATED_RECORD, a truncation too.
  assert.ok(rec.truncated === true || rec.code === 'ERR_TLS_SPLICE_TRUNCATED_RECORD',
    `relay end: ${JSON.stringify(rec)}`);
});

test('SIGTERM: the relay drains a live tunnel (the client gets its bytes and an end) and exits 0; so does the agent',
  { timeout: 60000 }, async () => {
    const { relay, agent } = await tunnel();
    const socket = net.connect({ host: '127.0.0.1', port: relay.port, allowHalfOpen: true });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const incoming = hashIncoming(socket);
    let length = 0;
    const got1000 = new Promise((resolve) => socket.on('data', (c) => {
      length += c.length;
      if (length >= 1000) resolve();
    }));
    // The backend sends 1000 bytes and waits for our FIN, which never comes: a live splice.
    socket.write('SEND 1000 drain\n');
    await withTimeout(got1000, 20000, '1000 bytes');
    const relayExit = await relay.stop('SIGTERM');
    assert.deepEqual(relayExit, { code: 0, signal: null });
    const got = await withTimeout(incoming, 20000, 'client end');
    assert.equal(got.error, undefined, got.error?.code);
    assert.equal(got.length, 1000);
    assert.equal(got.sha256, digestOf('drain/down', 1000));
    socket.destroy();
    assert.match(relay.stderr, /draining/);
    assert.deepEqual(await agent.stop('SIGTERM'), { code: 0, signal: null });
  });

test('proxy, relay, agent: --help, bad flags exit 2, an unreadable certificate exits 1 naming it',
  { timeout: 60000 }, async () => {
    const proxyHelp = await runCli(['proxy', '--help']);
    assert.equal(proxyHelp.code, 0);
    assert.match(proxyHelp.stdout, /Usage: tls-splice proxy /);
    assert.ok(proxyHelp.stdout.includes('--allow'), 'proxy --help mentions --allow');
    for (const [name, flags] of [
      ['relay', ['--queue-timeout', '--max-connections', '--handshake-timeout', '--idle-timeout',
        '--fin-timeout']],
      ['agent', ['--pool', '--max-links', '--idle-timeout', '--fin-timeout']]]) {
      const help = await runCli([name, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`Usage: tls-splice ${name} `));
      for (const flag of flags) {
        assert.match(help.stdout, new RegExp(`^  ${flag} .*\\(default`, 'm'),
          `${name} --help documents ${flag} and its default`);
      }
    }
    const missing = await runCli(['relay', '--agents', '127.0.0.1:0']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing --public, --cert, --key, --client-ca/);
    assert.match(missing.stderr, /Usage: tls-splice relay/);
    const badAllow = await runCli(['proxy', '--listen', '127.0.0.1:0', '--cert', FIXTURES.serverCert,
      '--key', FIXTURES.serverKey, '--allow', 'no-port-here']);
    assert.equal(badAllow.code, 2);
    assert.match(badAllow.stderr, /--allow: "no-port-here" is not HOST:PORT/);
    const badPool = await runCli(['agent', '--relay', '127.0.0.1:1', '--to', '127.0.0.1:1',
      ...AGENT_TLS, '--pool', '0']);
    assert.equal(badPool.code, 2);
    const badLinks = await runCli(['agent', '--relay', '127.0.0.1:1', '--to', '127.0.0.1:1',
      ...AGENT_TLS, '--max-links', '0']);
    assert.equal(badLinks.code, 2);
    assert.match(badLinks.stderr, /--max-links: "0" is not a positive integer/);
    const badMax = await runCli(['relay', '--agents', '127.0.0.1:0', '--public', '127.0.0.1:0',
      ...RELAY_TLS, '--max-connections', 'many']);
    assert.equal(badMax.code, 2);
    assert.match(badMax.stderr, /--max-connections: "many" is not a positive integer/);
    const badProxy = await runCli(['agent', '--relay', '127.0.0.1:1', '--to', '127.0.0.1:1',
      ...AGENT_TLS, '--proxy-protocol', 'v3']);
    assert.equal(badProxy.code, 2);
    assert.match(badProxy.stderr, /--proxy-protocol: "v3" is not v1 or v2/);
    const missingFile = path.join(os.tmpdir(), 'tls-splice-no-such-cert.pem');
    for (const args of [
      ['proxy', '--listen', '127.0.0.1:0', '--cert', missingFile, '--key', FIXTURES.serverKey],
      ['relay', '--agents', '127.0.0.1:0', '--public', '127.0.0.1:0', '--cert', missingFile,
        '--key', FIXTURES.serverKey, '--client-ca', FIXTURES.ca],
      ['agent', '--relay', '127.0.0.1:1', '--to', '127.0.0.1:1', '--cert', missingFile,
        '--key', FIXTURES.clientKey, '--ca', FIXTURES.ca],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.ok(r.stderr.includes(missingFile), `${args[0]} names the file: ${r.stderr}`);
      assert.match(r.stderr, /ENOENT/);
    }
  });

// A stand-in agent speaking the link protocol over a TCP socket of its own, so that the test can
// reset it: the relay must pass a failed link on to its public client as a reset.
test('a link reset by its agent mid-stream resets the public client (no FIN first)',
  { timeout: 60000 }, async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.kill());
    const [host, port] = [relay.agents.replace(/:\d+$/, ''), Number(relay.agents.split(':').pop())];
    const raw = net.connect({ host, port });
    const link = tls.connect({ socket: raw, servername: 'localhost', ca: fs.readFileSync(FIXTURES.ca),
      cert: fs.readFileSync(FIXTURES.clientCert), key: fs.readFileSync(FIXTURES.clientKey) });
    link.on('error', () => {});
    let text = '';
    const lines = (n) => withTimeout(new Promise((resolve) => {
      const check = () => { if (text.split('\n').length > n) resolve(text.split('\n')); };
      link.on('data', (d) => { text += d; check(); });
      check();
    }), 20000, `${n} lines from the relay`);
    assert.equal((await lines(1))[0], '{"relay":"tls-splice"}');
    const client = net.connect({ host: '127.0.0.1', port: relay.port, allowHalfOpen: true });
    const outcome = new Promise((resolve) => {
      let length = 0;
      client.on('data', (c) => { length += c.length; if (length === 3) raw.resetAndDestroy(); });
      client.once('end', () => resolve({ ended: true, length }));
      client.once('error', (err) => resolve({ error: err.code, length }));
    });
    const announced = JSON.parse((await lines(2))[1]);
    assert.match(announced.client, /^127\.0\.0\.1:\d+$/);
    link.write('{"ok":true}\nabc');
    const got = await withTimeout(outcome, 20000, 'the client sees the reset');
    assert.deepEqual(got, { error: 'ECONNRESET', length: 3 });
    const rec = await relay.waitForLog((r) => r.event === 'connection' && r.command === 'relay');
    assert.equal(rec.code, 'ECONNRESET');
    assert.equal(rec.client, announced.client);
  });

test('agent --proxy-protocol v1 / v2: the backend learns the public client\'s address first',
  { timeout: 60000 }, async () => {
    for (const version of ['v1', 'v2']) {
      const received = [];
      const backend = net.createServer({ allowHalfOpen: true }, (s) => {
        const chunks = [];
        s.on('data', (c) => chunks.push(c));
        s.on('end', () => {
          received.push(Buffer.concat(chunks));
          s.end('done');
        });
      });
      await new Promise((r) => backend.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise((r) => backend.close(r)));
      const relay = await startRelay();
      const agent = await startAgent(relay, backend.address().port,
        ['--proxy-protocol', version]);
      cleanups.push(() => agent.kill(), () => relay.kill());
      const client = net.connect({ host: '127.0.0.1', port: relay.port, allowHalfOpen: true });
      await new Promise((resolve, reject) => {
        client.once('connect', resolve);
        client.once('error', reject);
      });
      const clientPort = client.localPort;
      const reply = hashIncoming(client);
      client.end('payload');
      const got = await withTimeout(reply, 20000, `${version} reply`);
      assert.equal(got.length, 4);
      const bytes = received[0];
      if (version === 'v1') {
        assert.equal(bytes.toString('latin1'),
          `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${relay.port}\r\npayload`);
      } else {
        const expected = Buffer.alloc(16 + 12);
        Buffer.from('0d0a0d0a000d0a515549540a', 'hex').copy(expected, 0);
        expected[12] = 0x21;             // version 2, PROXY
        expected[13] = 0x11;             // TCP over IPv4
        expected.writeUInt16BE(12, 14);  // two addresses and two ports
        Buffer.from([127, 0, 0, 1, 127, 0, 0, 1]).copy(expected, 16);
        expected.writeUInt16BE(clientPort, 24);
        expected.writeUInt16BE(relay.port, 26);
        assert.deepEqual(bytes, Buffer.concat([expected, Buffer.from('payload')]));
      }
      client.destroy();
    }
  });

// Issue 17, item 10: an object stringified into a log line, and OpenSSL's error text (which can
// end in a newline) making blank lines in text mode. Every line of every relay above: a JSON
// record whose strings are single lines without [object Object].
test('the relays of the scenarios above logged one record per line, none with [object Object]',
  { timeout: 10000 }, () => {
    assert.ok(relays.length >= 8, `${relays.length} relays`);
    let records = 0;
    for (const relay of relays) {
      for (const line of relay.stderr.split('\n').slice(0, -1)) {
        assert.doesNotMatch(line, /\[object Object\]/);
        const record = JSON.parse(line);
        records += 1;
        for (const [key, value] of Object.entries(record)) {
          if (typeof value === 'string') {
            assert.doesNotMatch(value, /\n|\s$/, `${key} of ${line}`);
          }
        }
      }
    }
    assert.ok(records > relays.length, `${records} records`);
  });
