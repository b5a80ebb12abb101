// `tls-splice relay` / `agent` under what an untrusted peer can do (issue 17): public clients
// beyond --max-connections, a flood of idle public clients against agent --max-links, a stalled
// TCP connection on --agents (--handshake-timeout), and an agent (a stand-in speaking the link
// protocol) whose answer tries to write its own log line, a refusing backend under --max-links,
// and --idle-timeout on either end. Loopback only; each test bounded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

import { FIXTURES } from './helpers/peers.mjs';
import { startCli, stopAllClis } from './helpers/cli.mjs';
import { withTimeout } from './helpers/scenarios.mjs';

const RELAY_TLS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey,
  '--client-ca', FIXTURES.ca];
const AGENT_TLS = ['--cert', FIXTURES.clientCert, '--key', FIXTURES.clientKey, '--ca', FIXTURES.ca];

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
  stopAllClis();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(condition, ms, what) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function startRelay(extra = [], { json = true } = {}) {
  const relay = await startCli(['relay', '--agents', '127.0.0.1:0', '--public', '127.0.0.1:0',
    ...RELAY_TLS, ...(json ? ['--log', 'json'] : []), ...extra]);
  const agents = relay.lines.map((l) => /^agents (\S+)$/.exec(l)).find(Boolean)[1];
  relay.agentsPort = Number(agents.split(':').pop());
  relay.agents = agents;
  cleanups.push(() => relay.kill());
  return relay;
}

async function startAgent(relay, backendPort, extra = []) {
  const agent = await startCli(['agent', '--relay', relay.agents, '--to',
    `127.0.0.1:${backendPort}`, ...AGENT_TLS, '--log', 'json', ...extra],
  { ready: /^connected (\S+)$/ });
  cleanups.push(() => agent.kill());
  return agent;
}

// An echo backend that counts what the agent makes it hold: accepted in all, live now, and the
// most live at once.
async function startCountingBackend() {
  const sockets = new Set();
  const counts = { accepted: 0, live: 0, maxLive: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    counts.accepted += 1;
    counts.live += 1;
    counts.maxLive = Math.max(counts.maxLive, counts.live);
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => { counts.live -= 1; sockets.delete(socket); });
    socket.pipe(socket);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port: server.address().port, counts };
}

function connectPublic(port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const ended = new Promise((resolve) => {
    socket.once('end', () => resolve('end'));
    socket.once('error', (err) => resolve(err.code));
    socket.once('close', () => resolve('close'));
  });
  const connected = new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  cleanups.push(() => socket.destroy());
  return { socket, ended, connected };
}

// Bytes through one public client, checked by hash (the echo backend sends them back).
async function echoes(socket, label) {
  const payload = crypto.createHash('sha256').update(label).digest();
  const got = [];
  const back = new Promise((resolve) => socket.on('data', (c) => {
    got.push(c);
    if (Buffer.concat(got).length >= payload.length) resolve(Buffer.concat(got));
  }));
  socket.write(payload);
  const received = await withTimeout(back, 20000, `${label} echoed`);
  assert.equal(received.length, payload.length);
  assert.equal(crypto.createHash('sha256').update(received).digest('hex'),
    crypto.createHash('sha256').update(payload).digest('hex'));
}

// TCP connections from this host to `port` that are not yet gone (TIME-WAIT excluded): the
// agent's links to the relay, as the kernel sees them.
function socketsTo(port) {
  const out = execFileSync('ss', ['-Htan', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('TIME-WAIT')).length;
}

test('public clients beyond --max-connections are closed at once and logged',
  { timeout: 60000 }, async () => {
    const backend = await startCountingBackend();
    const relay = await startRelay(['--max-connections', '3', '--queue-timeout', '60']);
    await startAgent(relay, backend.port, ['--pool', '3']);
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const c = connectPublic(relay.port);
      await c.connected;
      clients.push(c);
    }
    // All three are accepted and spliced: the backend holds them.
    await until(() => backend.counts.live === 3, 20000, 'three backend connections');
    const extra = connectPublic(relay.port);
    await extra.connected;
    const localPort = extra.socket.localPort;
    // Closed at once, not after --queue-timeout (60 s).
    const how = await withTimeout(extra.ended, 10000, 'the fourth client closed');
    assert.ok(['end', 'close', 'ECONNRESET'].includes(how), how);
    const rec = await relay.waitForLog((r) => r.code === 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS');
    assert.equal(rec.client, `127.0.0.1:${localPort}`);
    assert.equal(rec.max, 3);
    assert.equal(backend.counts.accepted, 3, 'the dropped client never reached the backend');
    // The three still work.
    for (const [i, c] of clients.entries()) await echoes(c.socket, `kept-${i}`);
    // One leaves: a new client is accepted again.
    clients[0].socket.destroy();
    await until(() => backend.counts.live === 2, 20000, 'the first client gone');
    const again = connectPublic(relay.port);
    await again.connected;
    await echoes(again.socket, 'again');
  });

test('agent --max-links 2: 20 idle public clients never make it hold more than 2 links or ' +
  'backend connections; the rest wait, then are reset with ERR_TLS_SPLICE_NO_AGENT',
{ timeout: 90000 }, async () => {
  const backend = await startCountingBackend();
  const relay = await startRelay(['--queue-timeout', '4']);
  await startAgent(relay, backend.port, ['--max-links', '2']);
  let maxLinks = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      maxLinks = Math.max(maxLinks, socketsTo(relay.agentsPort));
      await sleep(100);
    }
  })();
  try {
    const clients = [];
    for (let i = 0; i < 20; i++) clients.push(connectPublic(relay.port));
    await Promise.all(clients.map((c) => c.connected));
    // Two are spliced (the backend holds them) and the agent is asked for more, which it
    // refuses: the other 18 wait at the relay, then are refused there.
    const refusals = () => relay.records.filter((r) => r.event === 'connection' &&
      r.code === 'ERR_TLS_SPLICE_NO_AGENT').length;
    await until(() => refusals() + backend.counts.accepted >= 20, 30000,
      'every client spliced or refused');
    assert.equal(backend.counts.maxLive, 2, 'the most backend connections at once');
    assert.equal(refusals(), 18);
    assert.equal(backend.counts.accepted, 2);
    // The two spliced clients leave: the agent opens links again and serves a new one.
    for (const c of clients) c.socket.destroy();
    await until(() => backend.counts.live === 0, 20000, 'the spliced clients gone');
    const next = connectPublic(relay.port);
    await next.connected;
    await echoes(next.socket, 'after the flood');
    assert.equal(backend.counts.accepted, 3);
  } finally {
    sampling = false;
    await sampler;
  }
  assert.ok(maxLinks >= 1 && maxLinks <= 2, `the agent held ${maxLinks} links at once`);
  assert.equal(backend.counts.maxLive, 2, 'the most backend connections at once');
});

// A stand-in agent: a real mTLS link to the relay, speaking the link protocol by hand.
async function standInLink(relay) {
  const link = tls.connect({ host: '127.0.0.1', port: relay.agentsPort, servername: 'localhost',
    ca: fs.readFileSync(FIXTURES.ca), cert: fs.readFileSync(FIXTURES.clientCert),
    key: fs.readFileSync(FIXTURES.clientKey) });
  link.on('error', () => {});
  cleanups.push(() => link.destroy());
  let text = '';
  link.on('data', (d) => { text += d; });
  const lines = (n) => withTimeout((async () => {
    while (text.split('\n').length <= n) await sleep(20);
    return text.split('\n').slice(0, n);
  })(), 20000, `${n} lines from the relay`);
  assert.equal((await lines(1))[0], '{"relay":"tls-splice"}');
  return { link, lines };
}

test('an agent\'s answer with a newline in its code cannot forge a relay log line',
  { timeout: 60000 }, async () => {
    const relay = await startRelay([], { json: false });
    const forged = 'relay: 6.6.6.6:666 -> - in=0 out=0 ms=0 engine=- end=FORGED';
    for (const [code, logged] of [[`X\n${forged}`, 'ERR_TLS_SPLICE_LINK_PROTOCOL'],
      [`ECONNREFUSED ${forged}`, 'ERR_TLS_SPLICE_LINK_PROTOCOL'],
      [{ toString: 'x' }, 'ERR_TLS_SPLICE_LINK_PROTOCOL'],
      ['ECONNREFUSED', 'ECONNREFUSED']]) {
      const { link, lines } = await standInLink(relay);
      const client = connectPublic(relay.port);
      await client.connected;
      const announced = JSON.parse((await lines(2))[1]);
      link.end(`${JSON.stringify({ ok: false, code })}\n`);
      assert.equal(await withTimeout(client.ended, 20000, 'the client reset'), 'ECONNRESET');
      const match = await relay.waitForStderr(new RegExp(
        `^relay: ${announced.client.replace(/[.[\]]/g, '\\$&')} .*$`, 'm'));
      assert.match(match[0], new RegExp(` end=refused code=${logged} `));
    }
    assert.doesNotMatch(relay.stderr, /FORGED|6\.6\.6\.6|\[object Object\]/);
    for (const line of relay.stderr.split('\n').slice(0, -1)) {
      assert.match(line, /^relay: \S+ -> /, `one record per line: ${JSON.stringify(line)}`);
    }
  });

test('bytes on an idle link: the relay logs the protocol error by its code, not [object Object]',
  { timeout: 60000 }, async () => {
    const relay = await startRelay([], { json: false });
    const { link } = await standInLink(relay);
    const closed = new Promise((resolve) => link.once('close', resolve));
    link.write('unasked\n');
    await withTimeout(closed, 20000, 'the relay closes the link');
    const match = await relay.waitForStderr(/^relay: agent .* sent bytes on an idle link.*$/m);
    assert.match(match[0], /code=ERR_TLS_SPLICE_LINK_PROTOCOL: \w/);
    assert.doesNotMatch(relay.stderr, /\[object Object\]/);
  });

test('a stalled TCP connection to --agents is closed after --handshake-timeout, logged once',
  { timeout: 60000 }, async () => {
    const relay = await startRelay(['--handshake-timeout', '1']);
    const startedAt = Date.now();
    const stalled = net.connect({ host: '127.0.0.1', port: relay.agentsPort });
    stalled.on('error', () => {});
    cleanups.push(() => stalled.destroy());
    await new Promise((resolve) => stalled.once('connect', resolve));
    const client = `127.0.0.1:${stalled.localPort}`;
    const closed = new Promise((resolve) => stalled.once('close', resolve));
    await withTimeout(closed, 15000, 'the relay closes the stalled connection');
    assert.ok(Date.now() - startedAt >= 900, 'closed before --handshake-timeout');
    const rec = await relay.waitForLog((r) => r.event === 'connection' && r.client === client);
    assert.equal(rec.reason, 'handshake');
    assert.equal(rec.code, 'ERR_TLS_HANDSHAKE_TIMEOUT');
    assert.equal(rec.side, 'agents');
    await sleep(500);
    assert.equal(relay.records.filter((r) => r.client === client).length, 1, 'logged once');
  });

test('agent --max-links 1, backend refusing: each client is reset with ECONNREFUSED, and the ' +
  'refused link is given back', { timeout: 60000 }, async () => {
  const closed = net.createServer();
  await new Promise((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = closed.address().port;
  await new Promise((r) => closed.close(r));
  const relay = await startRelay(['--queue-timeout', '20']);
  const agent = await startAgent(relay, deadPort, ['--max-links', '1']);
  for (let i = 0; i < 3; i++) {
    const client = connectPublic(relay.port);
    await client.connected;
    assert.equal(await withTimeout(client.ended, 30000, `client ${i} reset`), 'ECONNRESET');
    await until(() => relay.records.filter((r) => r.event === 'connection' &&
      r.reason === 'refused').length === i + 1, 20000, `refusal ${i} logged`);
  }
  const refusals = relay.records.filter((r) => r.event === 'connection');
  assert.deepEqual(refusals.map((r) => r.code), ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
  const failed = agent.records.filter((r) => r.event === 'connection' && r.reason === 'failed');
  assert.equal(failed.length, 3);
  assert.equal(failed[0].code, 'ECONNREFUSED');
  assert.equal(failed[0].client, refusals[0].client, 'the agent names the announced client');
});

test('--idle-timeout on either end ends a silent spliced client (end=idle) and frees its link',
  { timeout: 90000 }, async () => {
    for (const [relayFlags, agentFlags, ender] of [[['--idle-timeout', '1'], [], 'relay'],
      [[], ['--idle-timeout', '1'], 'agent']]) {
      const backend = await startCountingBackend();
      const relay = await startRelay(relayFlags);
      const agent = await startAgent(relay, backend.port, ['--max-links', '1', ...agentFlags]);
      const startedAt = Date.now();
      const client = connectPublic(relay.port);
      await client.connected;
      await echoes(client.socket, `idle-${ender}`);
      // Then silence both ways: the splice on `ender` ends it, the client and backend see it.
      await withTimeout(client.ended, 30000, `${ender} ends the idle client`);
      await until(() => backend.counts.live === 0, 30000, 'the backend connection closed');
      assert.ok(Date.now() - startedAt >= 900, 'ended before --idle-timeout');
      const cli = ender === 'relay' ? relay : agent;
      const rec = await cli.waitForLog((r) => r.event === 'connection' && r.command === ender);
      assert.equal(rec.reason, 'idle', JSON.stringify(rec));
      // With --max-links 1 the link came back: a new client is served.
      const next = connectPublic(relay.port);
      await next.connected;
      await echoes(next.socket, `after-idle-${ender}`);
      next.socket.destroy();
    }
  });
