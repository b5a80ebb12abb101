// The cost of a connection on the server side (issue 11): N TLS connections, one handshake and
// one small request/response each, against a server in a fresh process, for each server kind side
// by side in one invocation (interleaved rounds, rotating order).
//
//   node bench/connection-cost.mjs [--connections 1000] [--concurrency 16] [--rounds 3]
//                                  [--kinds plain,tap,splice] [--cpu-prof DIR] [--json FILE]
//
// Server kinds (the process under test):
//   plain   node:tls createServer; each connection: read the request, answer, end
//   tap     tls-splice createServer, same handler (the record tap, no splice)
//   splice  tls-splice createServer; each connection is spliced (native engine) to a plain TCP
//           backend in the client process, which reads the request, answers and ends
// The clients (plain node:tls, 16 at a time) and the backend run in another process, so the
// figures of the process under test are its own. Figures per connection:
//   main ms   CPU time of the main thread only (utime + stime of /proc/self/task/<pid>/stat,
//             which counts what the thread ran, never an idle poll), over the N connections
//   cpu ms    CPU time of the whole process (process.cpuUsage(): native I/O threads included)
//   conn/s    N / wall time from the first connect to the last close, seen by the clients
//   start ms  (splice) p50 / p99 of spliceTo().start(), call to resolve
// A/B: a kind written `tap:base` (or `splice:base`) loads the package at $TLS_SPLICE_BASE_PKG
// (another build, e.g. of an older commit) instead of this one. For perf: CONNECTION_COST_NODE_ARGS
// adds node options to the server (e.g. --perf-basic-prof), and CONNECTION_COST_MARK names a file
// that gets the server's pid when the measured connections begin.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

import { childMessage } from './lib/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(FIXTURES, name));
const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');

function args() {
  const out = { connections: 1000, concurrency: 16, rounds: 3, kinds: ['plain', 'tap', 'splice'],
    cpuProf: null, json: null, role: 'driver' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--connections') out.connections = Number(v());
    else if (a === '--concurrency') out.concurrency = Number(v());
    else if (a === '--rounds') out.rounds = Number(v());
    else if (a === '--kinds') out.kinds = v().split(',');
    else if (a === '--cpu-prof') out.cpuProf = path.resolve(v());
    else if (a === '--json') out.json = path.resolve(v());
    else if (a === '--role') out.role = v();
    else if (a === '--kind') out.kind = v();
    else throw new Error(`connection-cost: unknown argument ${a}`);
  }
  return out;
}

// utime + stime of one thread, in ms (clock ticks of 10 ms on Linux; sysconf(_SC_CLK_TCK) = 100).
function threadCpuMs(tid = process.pid) {
  const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// ---- the process under test ----------------------------------------------------------------------

async function server(fullKind) {
  const [kind, variant] = fullKind.split(':');
  const pkg = variant === 'base' ? process.env.TLS_SPLICE_BASE_PKG : ROOT;
  if (!pkg) throw new Error('connection-cost: set TLS_SPLICE_BASE_PKG for a :base kind');
  const lib = kind === 'plain' ? null : await import(path.join(pkg, 'dist', 'index.js'));
  const options = { key: read('server-key.pem'), cert: read('server.pem') };
  const startTimes = [];
  let backendPort = 0;
  const onPlain = (socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end(RESPONSE));
  };
  const onSplice = (socket) => {
    socket.on('error', () => {});
    const backend = net.connect(backendPort, '127.0.0.1');
    backend.on('error', () => {});
    backend.setNoDelay(true);
    backend.once('connect', () => {
      const t0 = process.hrtime.bigint();
      const handle = lib.spliceTo(socket, backend, { engine: 'native', autoClose: true });
      handle.start().then(() => {
        startTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }, () => socket.destroy());
    });
  };
  const handler = kind === 'splice' ? onSplice : onPlain;
  const srv = kind === 'plain' ? tls.createServer(options, handler) :
    lib.createServer(options, handler);
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  process.on('message', (msg) => {
    if (msg.type === 'backend') {
      backendPort = msg.port;
      process.send({ type: 'ready', port: srv.address().port });
    } else if (msg.type === 'begin') {
      globalThis.gc?.();
      startTimes.length = 0;
      process.send({
        type: 'begun', mainMs: threadCpuMs(), cpu: process.cpuUsage(), rss: process.memoryUsage().rss,
      });
    } else if (msg.type === 'end') {
      const cpu = process.cpuUsage();
      const sorted = [...startTimes].sort((a, b) => a - b);
      process.send({
        type: 'ended', mainMs: threadCpuMs(), cpu, rss: process.memoryUsage().rss,
        startP50: percentile(sorted, 0.5), startP99: percentile(sorted, 0.99), starts: sorted.length,
      });
    } else if (msg.type === 'exit') {
      process.exit(0);
    }
  });
}

// ---- clients and backend (another process) --------------------------------------------------------

async function clients() {
  const backend = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('data', () => socket.end(RESPONSE));
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  process.send({ type: 'backend', port: backend.address().port });
  const one = (port) => new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read('ca.pem') });
    let got = 0;
    socket.on('data', (chunk) => { got += chunk.length; });
    socket.once('secureConnect', () => socket.write(REQUEST));
    socket.once('end', () => socket.end());
    socket.once('close', () => (got === RESPONSE.length ? resolve() :
      reject(new Error(`connection-cost: a client got ${got} bytes`))));
    socket.once('error', reject);
  });
  process.on('message', async (msg) => {
    if (msg.type !== 'run') return;
    const t0 = process.hrtime.bigint();
    let next = 0;
    let failed = null;
    const worker = async () => {
      while (next < msg.connections && failed === null) {
        next++;
        await one(msg.port).catch((err) => { failed = err; });
      }
    };
    await Promise.all(Array.from({ length: msg.concurrency }, worker));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.send({ type: 'done', seconds, error: failed?.message ?? null });
  });
}

// ---- driver ---------------------------------------------------------------------------------------

function once(child, type) {
  return childMessage(child, type, 'connection-cost');
}

async function runCase(kind, opts) {
  const self = fileURLToPath(import.meta.url);
  const execArgv = ['--expose-gc', ...(process.env.CONNECTION_COST_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
  if (opts.cpuProf) {
    fs.mkdirSync(opts.cpuProf, { recursive: true });
    execArgv.push('--cpu-prof', '--cpu-prof-dir', opts.cpuProf, '--cpu-prof-name',
      `${kind.replace(':', '-')}-${Date.now()}.cpuprofile`);
  }
  const client = fork(self, ['--role', 'clients'], { stdio: 'inherit' });
  const srv = fork(self, ['--role', 'server', '--kind', kind], { stdio: 'inherit', execArgv });
  try {
    const { port: backendPort } = await once(client, 'backend');
    srv.send({ type: 'backend', port: backendPort });
    const { port } = await once(srv, 'ready');
    // Warm-up: JIT, TLS contexts, the native I/O threads.
    client.send({ type: 'run', port, connections: 50, concurrency: opts.concurrency });
    await once(client, 'done');
    srv.send({ type: 'begin' });
    const begun = await once(srv, 'begun');
    if (process.env.CONNECTION_COST_MARK) fs.writeFileSync(process.env.CONNECTION_COST_MARK, `${srv.pid}\n`);
    client.send({ type: 'run', port, connections: opts.connections, concurrency: opts.concurrency });
    const done = await once(client, 'done');
    if (done.error) throw new Error(done.error);
    // Let the last closes and splice ends run before reading the counters.
    await new Promise((resolve) => setTimeout(resolve, 300));
    srv.send({ type: 'end' });
    const ended = await once(srv, 'ended');
    const n = opts.connections;
    const cpuMs = (ended.cpu.user + ended.cpu.system - begun.cpu.user - begun.cpu.system) / 1000;
    return {
      kind,
      connPerSec: n / done.seconds,
      mainMsPerConn: (ended.mainMs - begun.mainMs) / n,
      cpuMsPerConn: cpuMs / n,
      startP50: ended.startP50,
      startP99: ended.startP99,
    };
  } finally {
    srv.send({ type: 'exit' });
    client.kill();
    await new Promise((resolve) => (srv.exitCode !== null ? resolve() : srv.once('exit', resolve)));
  }
}

function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)];
}

function fmt(v, digits = 2) {
  return Number.isFinite(v) ? v.toFixed(digits) : '–';
}

async function driver(opts) {
  const results = [];
  for (let round = 0; round < opts.rounds; round++) {
    const order = opts.kinds.map((_, i) => opts.kinds[(i + round) % opts.kinds.length]);
    for (const kind of order) {
      const r = await runCase(kind, opts);
      results.push({ round, ...r });
      process.stderr.write(`round ${round} ${kind}: ${fmt(r.connPerSec, 0)} conn/s, main ` +
        `${fmt(r.mainMsPerConn)} ms/conn, cpu ${fmt(r.cpuMsPerConn)} ms/conn\n`);
    }
  }
  const lines = [
    `${opts.connections} connections, ${opts.concurrency} at a time, median of ${opts.rounds} ` +
      `interleaved rounds; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`,
    '',
    '| server | conn/s | main thread ms/conn | process CPU ms/conn | start() p50 / p99 ms | main ms vs plain | conn/s vs plain |',
    '|---|---|---|---|---|---|---|',
  ];
  const plainMain = median(results.filter((r) => r.kind === 'plain').map((r) => r.mainMsPerConn));
  const plainRate = median(results.filter((r) => r.kind === 'plain').map((r) => r.connPerSec));
  for (const kind of opts.kinds) {
    const rs = results.filter((r) => r.kind === kind);
    const main = median(rs.map((r) => r.mainMsPerConn));
    const range = (key, d) => `${fmt(median(rs.map((r) => r[key])), d)} (${fmt(Math.min(...rs.map((r) => r[key])), d)}–${fmt(Math.max(...rs.map((r) => r[key])), d)})`;
    lines.push(`| ${kind} | ${range('connPerSec', 0)} | ${range('mainMsPerConn')} | ` +
      `${range('cpuMsPerConn')} | ${kind.startsWith('splice') ? `${fmt(median(rs.map((r) => r.startP50)))} / ${fmt(median(rs.map((r) => r.startP99)))}` : '–'} | ` +
      `${fmt(main / plainMain)}× | ${fmt(median(rs.map((r) => r.connPerSec)) / plainRate)}× |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (opts.json) fs.writeFileSync(opts.json, JSON.stringify({ opts, results }, null, 2));
}

const opts = args();
if (opts.role === 'server') await server(opts.kind);
else if (opts.role === 'clients') await clients();
else await driver(opts);
