// The `connections` scenario (issue 11): what a connection costs a TLS terminator in front of a
// plain HTTP backend. Three terminators side by side in one run, each in fresh processes:
//   native   tls-splice: createServer() + spliceTo(tlsSocket, backend) (bench/terminator.mjs)
//   js-pump  plain Node: tls.createServer() + net.connect() + pipe()      (bench/terminator.mjs)
//   haproxy  HAProxy 2.6, mode tcp, `bind ... ssl crt FILE`               (the reference)
// The backend is HAProxy in mode http answering every request with `http-request return` (C, cheap,
// its own process). One case, two phases, each with a fresh terminator:
//   1. load (wrk, -t1 -c50): new connections/s with one TLS handshake per request
//      (`-H 'Connection: close'`), then requests/s on kept-alive connections. CPU per connection
//      of the whole process (/proc/<pid>/stat, all threads, dead ones included) and of its main
//      thread (/proc/<pid>/task/<pid>/schedstat: the scheduler's count, never an idle loop read
//      as busy), start() latency percentiles (tls-splice, measured in the terminator).
//   2. idle: `bench/idle-clients.mjs` opens 1,000 (and 5,000 in full mode) TLS connections and
//      holds them; RSS and fd count of the terminator with that many idle spliced / piped /
//      proxied connections, against its own figure after a warm-up of 100 opened and closed.
//      The main thread's CPU while the first 1,000 are set up, per connection.
import fs from 'node:fs';
import path from 'node:path';

import { BENCH_DIR, Proc, ROOT, delay, freePort, waitListening } from './proc.mjs';

const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CERT = path.join(FIXTURES, 'server.pem');
const KEY = path.join(FIXTURES, 'server-key.pem');
const TERMINATOR = path.join(BENCH_DIR, 'terminator.mjs');
const IDLE_CLIENTS = path.join(BENCH_DIR, 'idle-clients.mjs');
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
// The fd limit here is 20,000: HAProxy wants about 2 fds per connection for its maxconn, so a
// few thousand above the 5,000 idle connections measured.
const HAPROXY_MAXCONN = 6000;
const WARMUP = 100;

export const CONNECTION_TOOLS = ['native', 'js-pump', 'haproxy'];

// --- /proc ------------------------------------------------------------------------------------------

const TICK_NS = 1e7;  // USER_HZ 100

function procCpuNs(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_NS;   // utime + stime, all threads
}

function mainThreadCpuNs(pid) {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

function rssKb(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function sample(pid) {
  return { cpuNs: procCpuNs(pid), mainNs: mainThreadCpuNs(pid), rssKb: rssKb(pid), fds: fdCount(pid),
    atNs: process.hrtime.bigint() };
}

// Waits until the process's fd count has not moved for 600 ms: every connection the clients
// opened has reached the backend (or failed).
async function settle(pid, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last = -1;
  let still = 0;
  while (Date.now() < deadline) {
    const n = fdCount(pid);
    still = n === last ? still + 1 : 0;
    if (still >= 3) return;
    last = n;
    await delay(200);
  }
}

// --- processes ------------------------------------------------------------------------------------

// HAProxy as the cheap HTTP backend, and as the reference TLS terminator (mode tcp, ssl);
// bench/lib/commands.mjs uses both too.
export function haproxyBackend(tmp, port, maxconn = HAPROXY_MAXCONN) {
  const cfg = path.join(tmp, 'backend.cfg');
  fs.writeFileSync(cfg, [
    'global', `  maxconn ${maxconn}`, '  nbthread 1',
    'defaults', '  mode http', '  timeout client 60s', '  timeout connect 5s', '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend backend', `  bind 127.0.0.1:${port}`,
    '  http-request return status 200 content-type text/plain string ok',
    '',
  ].join('\n'));
  return new Proc('haproxy backend', 'haproxy', ['-db', '-f', cfg]);
}

export function haproxyTerminator(tmp, port, backendPort, maxconn = HAPROXY_MAXCONN) {
  const pem = path.join(tmp, 'server-with-key.pem');
  fs.writeFileSync(pem, Buffer.concat([fs.readFileSync(CERT), fs.readFileSync(KEY)]));
  const cfg = path.join(tmp, 'terminator.cfg');
  fs.writeFileSync(cfg, [
    'global', `  maxconn ${maxconn}`,
    'defaults', '  mode tcp', '  timeout client 60s', '  timeout connect 5s', '  timeout server 60s',
    'frontend tls', `  bind 127.0.0.1:${port} ssl crt ${pem}`, '  default_backend plain',
    'backend plain', `  server be 127.0.0.1:${backendPort}`,
    '',
  ].join('\n'));
  return new Proc('haproxy terminator', 'haproxy', ['-db', '-f', cfg], { role: 'under-test' });
}

async function startTerminator(tool, tmp, backendPort) {
  const port = freePort();
  let proc;
  if (tool === 'haproxy') {
    proc = haproxyTerminator(tmp, port, backendPort);
    await waitListening(port, { proc });
  } else {
    const spec = { tool, port, backendPort, certPath: CERT, keyPath: KEY };
    proc = new Proc(`terminator ${tool}`, process.execPath, [...NODE_ARGS, TERMINATOR, JSON.stringify(spec)],
      { role: 'under-test', stdio: ['pipe', 'pipe', 'pipe'] });
    await proc.waitFor(/listening/);
  }
  return { proc, port, pid: proc.child.pid };
}

// The terminator's own report (Node tools): counts and start() latencies since the last one.
async function report(term) {
  if (!term.proc.child.stdin) return null;
  const before = term.proc.stdout.length;
  term.proc.child.stdin.write('report\n');
  const deadline = Date.now() + 5000;
  for (;;) {
    const tail = term.proc.stdout.slice(before);
    const line = tail.split('\n').find((l) => l.startsWith('{"report"'));
    if (line && tail.includes(`${line}\n`)) return JSON.parse(line);
    if (Date.now() > deadline || term.proc.done) throw new Error(`${term.proc.name} sent no report`);
    await delay(10);
  }
}

// wrk's summary: requests, seconds, requests/s, socket errors, non-2xx responses.
function parseWrk(out) {
  const m = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
  if (!m) throw new Error(`wrk printed no summary:\n${out}`);
  const seconds = Number(m[2]) * (m[3] === 'ms' ? 1e-3 : 1);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: Number(m[1]),
    seconds,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number(m[1]) / seconds),
    socketErrors: errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

async function wrk(port, { seconds, close, timeout }) {
  const args = ['-t1', '-c50', `-d${seconds}s`, '--timeout', '5s'];
  if (close) args.push('-H', 'Connection: close');
  args.push(`https://127.0.0.1:${port}/`);
  const p = new Proc(`wrk${close ? ' (Connection: close)' : ''}`, 'wrk', args);
  await p.wait(timeout);
  if (p.done.code !== 0) throw new Error(`wrk failed (${JSON.stringify(p.done)}): ${p.stderr}${p.stdout}`);
  return parseWrk(p.stdout);
}

// One load phase: wrk with the terminator sampled from /proc around it.
async function loadPhase(term, opts) {
  await report(term);                       // resets the start() latencies
  const a = sample(term.pid);
  const w = await wrk(term.port, opts);
  const b = sample(term.pid);
  const r = await report(term);
  const conns = opts.close ? w.requests : null;
  return {
    ...w,
    cpuMs: (b.cpuNs - a.cpuNs) / 1e6,
    mainCpuMs: term.proc.child.stdin ? (b.mainNs - a.mainNs) / 1e6 : null,
    cpuMsPerRequest: (b.cpuNs - a.cpuNs) / 1e6 / w.requests,
    mainMsPerRequest: term.proc.child.stdin ? (b.mainNs - a.mainNs) / 1e6 / w.requests : null,
    connections: conns,
    terminator: r,
    rssKb: b.rssKb,
  };
}

async function idlePhase(term, counts, timeout) {
  const clients = new Proc('idle clients', process.execPath, [IDLE_CLIENTS, String(term.port)],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    const command = async (line, pattern) => {
      const before = clients.stdout.length;
      clients.child.stdin.write(`${line}\n`);
      const deadline = Date.now() + timeout;
      while (!pattern.test(clients.stdout.slice(before))) {
        if (clients.done) throw new Error(`idle clients exited: ${clients.stderr.slice(-1500)}`);
        if (Date.now() > deadline) throw new Error(`idle clients: no answer to "${line}"`);
        await delay(20);
      }
      await settle(term.pid);
    };
    // Warm-up: the first connections load code and fill caches once per process.
    await command(`open ${WARMUP}`, /opened \d+/);
    await command('close', /closed/);
    await report(term);
    const base = sample(term.pid);
    const levels = [];
    let prev = base;
    for (const n of counts) {
      await command(`open ${n}`, /opened \d+/);
      const s = sample(term.pid);
      const r = await report(term);
      levels.push({
        connections: n,
        rssKb: s.rssKb,
        fds: s.fds,
        kbPerConnection: (s.rssKb - base.rssKb) / n,
        // Main-thread CPU per connection while these were set up (from the previous level).
        mainMsPerConnection: term.proc.child.stdin ? (s.mainNs - prev.mainNs) / 1e6 / (n - (prev.connections ?? 0)) : null,
        cpuMsPerConnection: (s.cpuNs - prev.cpuNs) / 1e6 / (n - (prev.connections ?? 0)),
        running: r?.running ?? null,
        startMs: r?.startMs ?? null,
        errors: r?.errors ?? null,
      });
      prev = { ...s, connections: n };
    }
    return { base: { rssKb: base.rssKb, fds: base.fds }, levels };
  } finally {
    clients.kill();
  }
}

// The Debian package of each program this scenario runs, for the error when one is missing.
const NEEDS = { haproxy: 'haproxy', wrk: 'wrk' };

function requirePrograms() {
  for (const [program, pkg] of Object.entries(NEEDS)) {
    const found = (process.env.PATH ?? '').split(':').some((dir) => {
      try {
        fs.accessSync(path.join(dir, program), fs.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) throw new Error(`${program} is not installed: apt-get install ${pkg}`);
  }
}

export const connections = {
  id: 'connections',
  title: 'connections: a TLS terminator in front of a plain HTTP backend (wrk -c 50)',
  unit: 'connections',
  tools: CONNECTION_TOOLS,
  async run(tool, { connSeconds, idleCounts, tmp, timeout }) {
    requirePrograms();
    const backendPort = freePort();
    const backend = haproxyBackend(tmp, backendPort);
    const procs = [backend];
    try {
      await waitListening(backendPort, { proc: backend });
      const wrkTimeout = (connSeconds + 30) * 1000;
      const phaseMs = {};
      const timed = async (name, fn) => {
        const t0 = Date.now();
        const r = await fn();
        phaseMs[name] = Date.now() - t0;
        return r;
      };
      let term = await startTerminator(tool, tmp, backendPort);
      procs.push(term.proc);
      const close = await timed('close', () => loadPhase(term, { seconds: connSeconds, close: true, timeout: wrkTimeout }));
      const keepAlive = await timed('keepAlive', () => loadPhase(term, { seconds: connSeconds, close: false, timeout: wrkTimeout }));
      term.proc.kill();
      await term.proc.exited;
      term = await startTerminator(tool, tmp, backendPort);
      procs.push(term.proc);
      const idle = await timed('idle', () => idlePhase(term, idleCounts, timeout));
      return { kind: 'connections', tool, close, keepAlive, idle, phaseMs };
    } finally {
      for (const p of procs) p.kill();
      await Promise.all(procs.map((p) => p.exited));
    }
  },
};

// One run -> its figures (stats.mjs figures() hands connection results here).
export function connectionFigures(raw) {
  const f = {
    connRate: raw.close.rps,
    cpuMsPerConn: raw.close.cpuMsPerRequest,
    mainMsPerConn: raw.close.mainMsPerRequest,
    keepAliveRps: raw.keepAlive.rps,
    cpuMsPerKeptRequest: raw.keepAlive.cpuMsPerRequest,
    wrkErrors: raw.close.socketErrors + raw.close.non2xx + raw.keepAlive.socketErrors + raw.keepAlive.non2xx,
  };
  if (raw.close.terminator?.startMs) {
    f.startP50Ms = raw.close.terminator.startMs.p50;
    f.startP99Ms = raw.close.terminator.startMs.p99;
  }
  const first = raw.idle.levels[0];
  if (first?.startMs) {
    f.idleStartP50Ms = first.startMs.p50;
    f.idleStartP99Ms = first.startMs.p99;
  }
  if (first) {
    f.setupMainMsPerConn = first.mainMsPerConnection;
    f.setupCpuMsPerConn = first.cpuMsPerConnection;
  }
  // RSS per idle connection and fds at the first and second level (1,000 and 5,000 in full mode).
  const [la, lb] = raw.idle.levels;
  if (la) {
    f.idleA = la.connections;
    f.kbPerIdleA = la.kbPerConnection;
    f.fdsA = la.fds;
  }
  if (lb) {
    f.idleB = lb.connections;
    f.kbPerIdleB = lb.kbPerConnection;
    f.fdsB = lb.fds;
    f.rssBMB = lb.rssKb / 1024;
  }
  return f;
}

export const CONNECTION_FIGURES = ['connRate', 'cpuMsPerConn', 'mainMsPerConn', 'keepAliveRps',
  'cpuMsPerKeptRequest', 'wrkErrors', 'startP50Ms', 'startP99Ms', 'idleStartP50Ms', 'idleStartP99Ms',
  'setupMainMsPerConn', 'setupCpuMsPerConn', 'idleA', 'kbPerIdleA', 'fdsA', 'idleB', 'kbPerIdleB', 'fdsB',
  'rssBMB'];
