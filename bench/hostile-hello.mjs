// What an unauthenticated peer can make a server spend before its handshake completes (issue 17),
// tls-splice's createServer() against node:tls createServer() on the same bytes, side by side in
// one invocation (interleaved rounds, rotating order, each server in a fresh process):
//
//   node bench/hostile-hello.mjs [--size 131000] [--connections 10] [--stalled 1000]
//                                [--handshake-timeout 2000] [--rounds 3] [--quick]
//                                [--json FILE] [--md FILE]
//   (or: npm run bench -- --only hostile-hello)
//
// 1. fragmented hello: a well-formed ClientHello of --size bytes (test/helpers/big-hello.mjs)
//    sent one byte per TLS record (6 bytes on the wire per byte: 768 KiB for 131 KB) on
//    --connections connections one after another; each waits for the server's answer (its
//    ServerHello flight: the server read the whole hello) and resets. Figure: the server
//    process's CPU per connection (process.cpuUsage(), every thread), after 3 warm-up
//    connections; the first connection of a fresh process is reported apart (cold JIT).
// 2. stalled handshakes: --stalled TCP connections that never send a byte, against a server with
//    handshakeTimeout --handshake-timeout and a 'tlsClientError' listener (as the commands have).
//    Figures: fds and RSS held at the peak, and the time from the last accept until the server's
//    fd count is back at its baseline (goal: within the timeout + 1 s), or "held" when it is not
//    within the timeout + 5 s.
// The driver (this process) is the client; the server runs in a child: its figures are its own.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

import { bigClientHello, fragmentHandshake } from '../test/helpers/big-hello.mjs';
import { childMessage } from './lib/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(FIXTURES, name));
const KINDS = ['splice', 'node'];
const WARMUP = 3;

function args() {
  const out = { size: 131000, connections: 10, stalled: 1000, handshakeTimeout: 2000, rounds: 3,
    json: null, md: null, role: 'driver', kind: null };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--size') out.size = Number(v());
    else if (a === '--connections') out.connections = Number(v());
    else if (a === '--stalled') out.stalled = Number(v());
    else if (a === '--handshake-timeout') out.handshakeTimeout = Number(v());
    else if (a === '--rounds') out.rounds = Number(v());
    else if (a === '--quick') { out.rounds = 1; out.connections = 5; }
    else if (a === '--json') out.json = path.resolve(v());
    else if (a === '--md') out.md = path.resolve(v());
    else if (a === '--role') out.role = v();
    else if (a === '--kind') out.kind = v();
    else throw new Error(`hostile-hello: unknown argument ${a}`);
  }
  return out;
}

// utime + stime of the main thread, in ms (clock ticks of 10 ms).
function threadCpuMs() {
  const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const fdCount = () => fs.readdirSync('/proc/self/fd').length - 1;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the process under test ----------------------------------------------------------------------

async function server(kind, handshakeTimeout) {
  const options = { key: read('server-key.pem'), cert: read('server.pem'), handshakeTimeout };
  const lib = kind === 'splice' ? await import(path.join(ROOT, 'dist', 'index.js')) : null;
  const srv = kind === 'splice' ? lib.createServer(options) : tls.createServer(options);
  const clientErrors = {};
  // Like the commands: log (here: count) handshake failures.
  srv.on('tlsClientError', (err) => { clientErrors[err.code] = (clientErrors[err.code] ?? 0) + 1; });
  let accepted = 0;
  let lastAcceptAt = 0;
  srv.on('connection', () => {
    accepted++;
    lastAcceptAt = performance.now();
  });
  await new Promise((resolve) => srv.listen({ port: 0, host: '127.0.0.1', backlog: 2048 }, resolve));
  const open = () => new Promise((resolve) => srv.getConnections((err, n) => resolve(err ? -1 : n)));
  const counters = () => ({ cpu: process.cpuUsage(), mainMs: threadCpuMs(), fds: fdCount(),
    rss: process.memoryUsage().rss, clientErrors: { ...clientErrors } });
  process.on('message', async (msg) => {
    if (msg.type === 'counters') {
      if (msg.gc) globalThis.gc?.();
      process.send({ type: 'counters', ...counters(), open: await open(), accepted });
    } else if (msg.type === 'idle') {
      // Until every connection is gone (the measured ones end with the client's reset).
      while (await open() > 0) await delay(5);
      process.send({ type: 'idle', ...counters() });
    } else if (msg.type === 'watch-stalled') {
      // All msg.count connections accepted, then the fd count back at msg.baselineFds?
      const t0 = performance.now();
      while (accepted < msg.count && performance.now() - t0 < 60000) await delay(5);
      let peakFds = fdCount();
      let peakRss = process.memoryUsage().rss;
      const deadline = lastAcceptAt + msg.deadlineMs;
      let backAt = null;
      while (performance.now() < deadline) {
        const fds = fdCount();
        peakFds = Math.max(peakFds, fds);
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        if (fds <= msg.baselineFds) {
          backAt = performance.now();
          break;
        }
        await delay(10);
      }
      process.send({ type: 'stalled', accepted, peakFds, peakRss, fdsNow: fdCount(),
        backAfterMs: backAt === null ? null : backAt - lastAcceptAt, clientErrors: { ...clientErrors } });
    } else if (msg.type === 'exit') {
      process.exit(0);
    }
  });
  process.send({ type: 'ready', port: srv.address().port });
}

// ---- the driver (client) --------------------------------------------------------------------------

function once(child, type) {
  return childMessage(child, type, 'hostile-hello');
}

async function ask(child, type, extra = {}) {
  const reply = once(child, type);
  child.send({ type, ...extra });
  return reply;
}

function startServer(kind, opts) {
  const self = fileURLToPath(import.meta.url);
  const execArgv = ['--expose-gc', ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
  return fork(self, ['--role', 'server', '--kind', kind, '--handshake-timeout', String(opts.handshakeTimeout)],
    { stdio: 'inherit', execArgv });
}

async function stopServer(child) {
  child.send({ type: 'exit' });
  await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
}

// One connection: the whole fragmented hello, then wait for the server's answer, then reset.
function sendHello(port, wire) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let answered = 0;
    socket.on('data', (chunk) => {
      answered += chunk.length;
      socket.resetAndDestroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => (answered > 0 ? resolve() :
      reject(new Error('hostile-hello: the server closed without answering the hello'))));
    socket.write(wire);
  });
}

const cpuMs = (a, b) => (b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system) / 1000;

async function fragmentedCase(kind, opts, wire) {
  const child = startServer(kind, opts);
  try {
    const { port } = await once(child, 'ready');
    const fresh = await ask(child, 'counters', { gc: true });
    await sendHello(port, wire);
    const afterFirst = await ask(child, 'idle');
    for (let i = 1; i < WARMUP; i++) await sendHello(port, wire);
    await ask(child, 'idle');
    const begun = await ask(child, 'counters', { gc: true });
    for (let i = 0; i < opts.connections; i++) await sendHello(port, wire);
    const ended = await ask(child, 'idle');
    return {
      kind,
      firstCpuMs: cpuMs(fresh, afterFirst),
      cpuMsPerConn: cpuMs(begun, ended) / opts.connections,
      mainMsPerConn: (ended.mainMs - begun.mainMs) / opts.connections,
      clientErrors: ended.clientErrors,
    };
  } finally {
    await stopServer(child);
  }
}

async function stalledCase(kind, opts) {
  const child = startServer(kind, opts);
  const sockets = [];
  try {
    const { port } = await once(child, 'ready');
    const baseline = await ask(child, 'counters', { gc: true });
    const watched = once(child, 'stalled');
    child.send({ type: 'watch-stalled', count: opts.stalled, baselineFds: baseline.fds,
      deadlineMs: opts.handshakeTimeout + 5000 });
    let ended = 0;
    for (let i = 0; i < opts.stalled; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(opts.stalled, i + 100); j++) {
        const socket = net.connect({ port, host: '127.0.0.1' });
        socket.on('error', () => {});
        socket.once('close', () => { ended++; });
        sockets.push(socket);
        batch.push(new Promise((resolve) => { socket.once('connect', resolve); socket.once('close', resolve); }));
      }
      await Promise.all(batch);
    }
    const result = await watched;
    return {
      kind,
      stalled: opts.stalled,
      accepted: result.accepted,
      baselineFds: baseline.fds,
      peakFds: result.peakFds,
      fdsAtEnd: result.fdsNow,
      kbPerStalled: (result.peakRss - baseline.rss) / 1024 / opts.stalled,
      backAfterMs: result.backAfterMs,
      clientsClosed: ended,
      clientErrors: result.clientErrors,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
    await stopServer(child);
  }
}

function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)];
}

const fmt = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '–');
const range = (rs, key, d = 1) => `${fmt(median(rs.map((r) => r[key])), d)} ` +
  `(${fmt(Math.min(...rs.map((r) => r[key])), d)}–${fmt(Math.max(...rs.map((r) => r[key])), d)})`;

function report(opts, fragmented, stalled, wireBytes) {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const nodeCpu = median(fragmented.filter((r) => r.kind === 'node').map((r) => r.cpuMsPerConn));
  const lines = [
    `## Fragmented ClientHello: ${opts.size} bytes, 1 byte per record (${(wireBytes / 1024).toFixed(0)} KiB on the wire)`,
    '',
    `${opts.connections} measured connections after ${WARMUP} warm-up ones, one at a time, per fresh server ` +
      `process; median (min–max) of ${opts.rounds} interleaved rounds; load average ${load}.`,
    '',
    '| server | process CPU ms/conn | main thread ms/conn | first connection, cold (ms) | CPU vs node:tls |',
    '|---|---|---|---|---|',
  ];
  for (const kind of KINDS) {
    const rs = fragmented.filter((r) => r.kind === kind);
    const label = kind === 'splice' ? 'tls-splice createServer()' : 'node:tls createServer()';
    lines.push(`| ${label} | ${range(rs, 'cpuMsPerConn')} | ${range(rs, 'mainMsPerConn')} | ` +
      `${range(rs, 'firstCpuMs')} | ${fmt(median(rs.map((r) => r.cpuMsPerConn)) / nodeCpu, 2)}× |`);
  }
  lines.push('', `## ${opts.stalled} stalled handshakes (TCP connections that never send a byte), ` +
    `handshakeTimeout ${opts.handshakeTimeout} ms, a 'tlsClientError' listener`, '',
  '| server | fds baseline → peak | KiB RSS per stalled conn | fds back at baseline after the last accept | clients closed by the server |',
  '|---|---|---|---|---|');
  for (const kind of KINDS) {
    for (const r of stalled.filter((s) => s.kind === kind)) {
      const label = kind === 'splice' ? 'tls-splice createServer()' : 'node:tls createServer()';
      const back = r.backAfterMs === null
        ? `not within ${opts.handshakeTimeout + 5000} ms (${r.fdsAtEnd} fds held)`
        : `${fmt(r.backAfterMs, 0)} ms (goal ≤ ${opts.handshakeTimeout + 1000})`;
      lines.push(`| ${label} | ${r.baselineFds} → ${r.peakFds} | ${fmt(r.kbPerStalled)} | ${back} | ` +
        `${r.clientsClosed} / ${r.stalled} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function driver(opts) {
  const wire = fragmentHandshake(bigClientHello(opts.size), 1);
  const fragmented = [];
  const stalled = [];
  for (let round = 0; round < opts.rounds; round++) {
    const order = KINDS.map((_, i) => KINDS[(i + round) % KINDS.length]);
    for (const kind of order) {
      const r = await fragmentedCase(kind, opts, wire);
      fragmented.push({ round, ...r });
      process.stderr.write(`  [${round + 1}/${opts.rounds}] fragmented hello ${kind.padEnd(6)} ` +
        `${fmt(r.cpuMsPerConn)} CPU ms/conn (main ${fmt(r.mainMsPerConn)}, first ${fmt(r.firstCpuMs)})\n`);
    }
  }
  // Once per kind: the figure is a time against a timer, not a rate to average.
  for (const kind of KINDS) {
    const r = await stalledCase(kind, opts);
    stalled.push(r);
    process.stderr.write(`  stalled ${kind.padEnd(6)} fds ${r.baselineFds} → ${r.peakFds}, back after ` +
      `${r.backAfterMs === null ? 'never (within the deadline)' : `${fmt(r.backAfterMs, 0)} ms`}, ` +
      `${r.clientsClosed}/${r.stalled} clients closed\n`);
  }
  const md = report(opts, fragmented, stalled, wire.length);
  process.stdout.write(`\n${md}`);
  const results = { date: new Date().toISOString(), opts, machine: { nproc: os.cpus().length, node: process.version,
    loadavg: os.loadavg() }, fragmented, stalled };
  if (opts.json) fs.writeFileSync(opts.json, `${JSON.stringify(results, null, 2)}\n`);
  if (opts.md) fs.writeFileSync(opts.md, md);
}

const opts = args();
if (opts.role === 'server') await server(opts.kind, opts.handshakeTimeout);
else await driver(opts);
