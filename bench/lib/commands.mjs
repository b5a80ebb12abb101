// The `commands` scenario (issue 12): the real `tls-splice` commands (bin/tls-splice.js, each in
// its own process) beside the same programs written with a plain Node pipe
// (bench/plain-commands.mjs: tls.createServer / tls.connect / net.connect + pipe()), and HAProxy
// for the terminator. Loopback only; every process is a fresh child, killed when the case ends.
//   1. terminate, in front of HAProxy `http-request return` (a plain HTTP backend): h2load --h1
//      -c 50, first with `Connection: close` (one TLS handshake per request: new connections/s),
//      then kept alive (requests/s); CPU per request of the terminator from /proc/<pid>/stat.
//      Then session resumption (issue 21), as wrk does it: `wrk -c WRK_CONNECTIONS -H
//      'Connection: close'` reconnects each connection slot after every response and offers the
//      session the slot's previous connection ended with (SSL_clear keeps it). The server counts
//      full and resumed handshakes (terminate: tls_splice_handshakes_total{resumed} on
//      --metrics; plain Node: isSessionReused() on a stats port; HAProxy: ssl_sess and
//      ssl_reused_sess of `show stat` on its stats socket), before and after: share resumed =
//      resumed / (all handshakes - one first full handshake per slot), and resumed
//      connections/s over wrk's run. Also a chain of RESUME_CHAIN `openssl s_client -sess_in
//      previous -sess_out next` (TLS 1.3), the share of offered sessions resumed as OpenSSL's
//      client sees it. HAProxy runs with tls-ticket-keys, whose callback asks for no renewal
//      under the current key: no TLS 1.3 ticket after a resumption, so every other connection
//      of a chain is a full handshake (with OpenSSL's built-in keys, no tls-ticket-keys,
//      HAProxy renews and resumes them all).
//   2. proxy: curl downloads `proxyBytes` from a local HTTPS origin (Node https, zeros) through an
//      https:// proxy's CONNECT tunnel into `benchtool sink` (checks every byte); MB/s as curl
//      measured it, CPU s/GiB of the proxy.
//   3. tunnel: relay + agent (mutual TLS link) carry `tunnelBytes` from a plain TCP client
//      (`benchtool peer`) through the relay's public port to `benchtool sink` (checks zeros, times
//      first to last byte); MB/s at the sink, CPU s/GiB of relay + agent together.
// tools: native = the tls-splice commands, js-pump = plain Node, haproxy = terminate only.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { BENCHTOOL, BENCH_DIR, Proc, ROOT, freePort, quote, shell, waitJson, waitListening } from './proc.mjs';
import { haproxyBackend } from './connections.mjs';

const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CERT = path.join(FIXTURES, 'server.pem');
const KEY = path.join(FIXTURES, 'server-key.pem');
// HAProxy's maxconn in this scenario (a few thousand: the fd limit here is 20,000).
const HAPROXY_MAXCONN = 4000;
const CA = path.join(FIXTURES, 'ca.pem');
const CLIENT_CERT = path.join(FIXTURES, 'client.pem');
const CLIENT_KEY = path.join(FIXTURES, 'client-key.pem');
const BIN = path.join(ROOT, 'bin', 'tls-splice.js');
const PLAIN = path.join(BENCH_DIR, 'plain-commands.mjs');
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const UT = { role: 'under-test' };

export const COMMAND_TOOLS = ['native', 'js-pump', 'haproxy'];

const TICK_NS = 1e7;  // USER_HZ 100

// CPU of a process, all its threads (exited ones included), in seconds.
function cpuS(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * TICK_NS) / 1e9;
}

const cpuOf = (procs) => procs.reduce((a, p) => a + cpuS(p.child.pid), 0);

function tlsSplice(name, args) {
  return new Proc(`tls-splice ${name}`, process.execPath, [...NODE_ARGS, BIN, name, ...args], UT);
}

function plainNode(spec, role = UT) {
  return new Proc(`plain ${spec.mode}`, process.execPath, [...NODE_ARGS, PLAIN, JSON.stringify(spec)], role);
}

const addr = (port) => `127.0.0.1:${port}`;

function requirePrograms() {
  for (const [program, pkg] of Object.entries({ haproxy: 'haproxy', h2load: 'nghttp2-client', curl: 'curl' })) {
    const found = (process.env.PATH ?? '').split(':').some((dir) => fs.existsSync(path.join(dir, program)));
    if (!found) throw new Error(`${program} is not installed: apt-get install ${pkg}`);
  }
}

// --- 1. terminate ---------------------------------------------------------------------------------

// h2load's summary: requests done / succeeded / failed / errored, and its req/s.
function parseH2load(out) {
  const fin = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  if (!fin || !req) throw new Error(`h2load printed no summary:\n${out.slice(-1500)}`);
  return {
    seconds: Number(fin[1]) * (fin[2] === 'ms' ? 1e-3 : 1),
    rps: Number(fin[3]),
    done: Number(req[3]),
    succeeded: Number(req[4]),
    errors: Number(req[5]) + Number(req[6]) + Number(req[7]),
  };
}

// h2load -D hangs after its duration when the server closes every connection (nghttp2 1.52), so
// the Connection: close phase is bounded by a request count (-n): a first run of 200 requests
// (also the warm-up) estimates the rate, the measured run asks for `seconds` of that rate.
async function h2load(port, pid, { seconds, close, timeout }) {
  const run = async (n) => {
    const args = ['--h1', '-c', '50'];
    if (n) args.push('-n', String(n));
    else args.push('-D', String(seconds));
    if (close) args.push('-H', 'Connection: close');
    args.push(`https://127.0.0.1:${port}/`);
    const a = cpuS(pid);
    const p = new Proc(`h2load${close ? ' (Connection: close)' : ''}`, 'h2load', args);
    await p.wait(timeout);
    const b = cpuS(pid);
    if (p.done.code !== 0) throw new Error(`h2load failed (${JSON.stringify(p.done)}): ${p.stderr}${p.stdout.slice(-1500)}`);
    const r = parseH2load(p.stdout);
    if (r.succeeded === 0) throw new Error(`h2load: no request succeeded:\n${p.stdout.slice(-1500)}`);
    return { ...r, requests: n ?? null, cpuS: b - a, cpuMsPerRequest: ((b - a) * 1e3) / r.succeeded };
  };
  if (!close) return run(null);
  const probe = await run(200);
  const n = Math.max(200, Math.min(100000, Math.round(probe.rps * seconds)));
  return { ...(await run(n)), probeRps: probe.rps };
}

// How many chained connections measure the resumed share (each is an s_client process).
const RESUME_CHAIN = 40;

// HAProxy as the terminator, with a tls-ticket-keys file (base64 lines of 48 bytes) and a stats
// socket (statsSocket) for its handshake counts.
function haproxyTicketTerminator(tmp, port, backendPort, statsSocket) {
  const pem = path.join(tmp, 'server-with-key.pem');
  fs.writeFileSync(pem, Buffer.concat([fs.readFileSync(CERT), fs.readFileSync(KEY)]));
  const keys = path.join(tmp, 'ticket-keys');
  fs.writeFileSync(keys, [0, 1, 2].map(() => crypto.randomBytes(48).toString('base64')).join('\n') + '\n');
  const cfg = path.join(tmp, 'terminator-tickets.cfg');
  fs.writeFileSync(cfg, [
    'global', `  maxconn ${HAPROXY_MAXCONN}`, `  stats socket ${statsSocket} mode 600 level user`,
    'defaults', '  mode tcp', '  timeout client 60s', '  timeout connect 5s', '  timeout server 60s',
    'frontend tls', `  bind 127.0.0.1:${port} ssl crt ${pem} tls-ticket-keys ${keys}`, '  default_backend plain',
    'backend plain', `  server be 127.0.0.1:${backendPort}`,
    '',
  ].join('\n'));
  return new Proc('haproxy terminator', 'haproxy', ['-db', '-f', cfg], UT);
}

// The wrk-like chain: each connection offers the session the previous one ended with.
async function resumedShare(port, tmp, timeout) {
  let previous = null;
  let reused = 0;
  for (let i = 0; i < RESUME_CHAIN; i++) fs.rmSync(path.join(tmp, `chain-${i}.sess`), { force: true });
  for (let i = 0; i < RESUME_CHAIN; i++) {
    const next = path.join(tmp, `chain-${i}.sess`);
    const args = ['s_client', '-connect', addr(port), '-tls1_3', '-ign_eof', '-sess_out', next];
    if (previous) args.push('-sess_in', previous);
    const p = new Proc('s_client', 'sh', ['-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl ${args.join(' ')} 2>/dev/null`]);
    await p.wait(timeout);
    if (previous && /^Reused,/m.test(p.stdout)) reused += 1;
    // A connection that got no ticket leaves no session to offer (as wrk's SSL_clear reuse):
    // the next one is a full handshake.
    previous = fs.existsSync(next) && fs.statSync(next).size > 0 ? next : null;
  }
  return reused / (RESUME_CHAIN - 1);   // the first connection has nothing to offer
}

// wrk's connection slots in the resumption phase: each slot's first handshake is a full one.
const WRK_CONNECTIONS = 50;

// { full, resumed } handshakes the terminator has completed so far, from its own counters.
async function terminateHandshakes(metricsPort) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const count = (v) => Number(new RegExp(`^tls_splice_handshakes_total\\{resumed="${v}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { full: count('false'), resumed: count('true') };
}

const plainHandshakes = async (statsPort) => (await fetch(`http://127.0.0.1:${statsPort}/`)).json();

// HAProxy's frontend counters: ssl_sess counts full handshakes, ssl_reused_sess resumed ones.
function haproxyHandshakes(statsSocket) {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = net.connect(statsSocket);
    c.on('error', reject);
    c.on('data', (d) => { out += d; });
    c.on('end', () => {
      const [head, ...rows] = out.split('\n').map((line) => line.split(','));
      const col = (name) => head.indexOf(name === 'pxname' ? '# pxname' : name);
      const fe = rows.find((r) => r[col('pxname')] === 'tls' && r[col('svname')] === 'FRONTEND');
      if (!fe || col('ssl_sess') < 0) reject(new Error(`HAProxy's show stat has no ssl counters:\n${out.slice(0, 500)}`));
      else resolve({ full: Number(fe[col('ssl_sess')]), resumed: Number(fe[col('ssl_reused_sess')]) });
    });
    c.end('show stat\n');
  });
}

// wrk -H 'Connection: close': one handshake a request, each slot offering its last session.
async function wrkResumed(port, handshakes, seconds, timeout) {
  const a = await handshakes();
  const p = new Proc('wrk (Connection: close)', 'wrk', ['-t', '2', '-c', String(WRK_CONNECTIONS), '-d', `${seconds}s`,
    '-H', 'Connection: close', `https://127.0.0.1:${port}/`]);
  await p.wait(timeout);
  const b = await handshakes();
  const m = /(\d+) requests in ([\d.]+)(m?s)/.exec(p.stdout);
  if (p.done.code !== 0 || !m) throw new Error(`wrk failed (${JSON.stringify(p.done)}): ${p.stderr}${p.stdout.slice(-1500)}`);
  const wrkSeconds = Number(m[2]) * (m[3] === 'ms' ? 1e-3 : 1);
  const full = b.full - a.full;
  const resumed = b.resumed - a.resumed;
  // Every request had its own connection: fewer handshakes than requests means the counters
  // were not read right.
  if (full + resumed < Number(m[1])) {
    throw new Error(`the terminator counted ${full + resumed} handshakes for wrk's ${m[1]} requests`);
  }
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(p.stdout);
  return {
    requests: Number(m[1]), seconds: wrkSeconds, full, resumed,
    socketErrors: errors ? errors.slice(1).reduce((x, y) => x + Number(y), 0) : 0,
    share: resumed / Math.max(1, full + resumed - WRK_CONNECTIONS),
    rps: resumed / wrkSeconds,
  };
}

async function terminate(tool, { commandSeconds, tmp, timeout }) {
  const backendPort = freePort();
  const port = freePort();
  const procs = [haproxyBackend(tmp, backendPort, HAPROXY_MAXCONN)];
  try {
    await waitListening(backendPort, { proc: procs[0] });
    let ut;
    let handshakes;
    if (tool === 'haproxy') {
      const statsSocket = path.join(tmp, 'haproxy-stats.sock');
      ut = haproxyTicketTerminator(tmp, port, backendPort, statsSocket);
      handshakes = () => haproxyHandshakes(statsSocket);
    } else if (tool === 'native') {
      const metricsPort = freePort();
      ut = tlsSplice('terminate', ['--listen', addr(port), '--cert', CERT, '--key', KEY, '--to', addr(backendPort),
        '--metrics', addr(metricsPort)]);
      handshakes = () => terminateHandshakes(metricsPort);
    } else {
      const statsPort = freePort();
      ut = plainNode({ mode: 'terminate', port, to: backendPort, cert: CERT, key: KEY, statsPort });
      handshakes = () => plainHandshakes(statsPort);
    }
    procs.push(ut);
    if (tool === 'haproxy') await waitListening(port, { proc: ut });
    else await ut.waitFor(/listening/);
    const opts = { seconds: commandSeconds, timeout: (commandSeconds * 3 + 30) * 1000 };
    const close = await h2load(port, ut.child.pid, { ...opts, close: true });
    const keepAlive = await h2load(port, ut.child.pid, { ...opts, close: false });
    const resumed = { ...(await wrkResumed(port, handshakes, commandSeconds, opts.timeout)),
      chainShare: await resumedShare(port, tmp, timeout) };
    return { close, keepAlive, resumed };
  } finally {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
  }
}

// --- 2. proxy -------------------------------------------------------------------------------------

async function proxy(tool, { proxyBytes, tmp, timeout }) {
  const originPort = freePort();
  const port = freePort();
  const origin = plainNode({ mode: 'origin', port: originPort, cert: CERT, key: KEY, bytes: proxyBytes }, {});
  const procs = [origin];
  try {
    await origin.waitFor(/listening/);
    const ut = tool === 'native'
      ? tlsSplice('proxy', ['--listen', addr(port), '--cert', CERT, '--key', KEY, '--allow', '127.0.0.1:*'])
      : plainNode({ mode: 'proxy', port, cert: CERT, key: KEY });
    procs.push(ut);
    await ut.waitFor(/listening/);
    const a = cpuS(ut.child.pid);
    // The download goes into `benchtool sink`, which checks every byte is zero and counts them;
    // curl's own figures go to stderr.
    const sinkReport = path.join(tmp, 'proxy-sink.json');
    const curl = shell('curl | sink', `exec curl -sS --proxy https://127.0.0.1:${port} --proxy-cacert ${quote(CA)} ` +
      `--cacert ${quote(CA)} -w '%{stderr}result %{http_code} %{size_download} %{speed_download} %{time_total}\\n' ` +
      `https://127.0.0.1:${originPort}/ | exec ${quote(BENCHTOOL)} sink --check zero --report ${quote(sinkReport)}`);
    procs.push(curl);
    await curl.wait(timeout);
    const b = cpuS(ut.child.pid);
    const line = /result (\d+) (\d+) (\S+) (\S+)/.exec(curl.stderr);
    if (curl.done.code !== 0 || !line) throw new Error(`curl | sink failed (${JSON.stringify(curl.done)}): ${curl.stderr}`);
    const [status, size, speed, total] = line.slice(1).map(Number);
    if (status !== 200 || size !== proxyBytes) {
      throw new Error(`curl got status ${status} and ${size} bytes, expected 200 and ${proxyBytes}`);
    }
    const s = await waitJson(sinkReport);
    if (!s.ok || s.bytes !== proxyBytes) {
      throw new Error(`the proxy sink got ${s.bytes} bytes (${s.ok ? 'all zeros' : `wrong at offset ${s.badAt}`}), expected ${proxyBytes} zeros`);
    }
    return { bytes: size, bytesPerS: speed, seconds: total, cpuS: b - a };
  } finally {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
  }
}

// --- 3. tunnel ------------------------------------------------------------------------------------

async function tunnel(tool, { tunnelBytes, tmp, timeout }) {
  const sinkPort = freePort();
  const agentsPort = freePort();
  const port = freePort();
  const sinkReport = path.join(tmp, 'tunnel-sink.json');
  const sink = new Proc('tcp sink', BENCHTOOL, ['sink', '--listen', String(sinkPort), '--check', 'zero',
    '--report', sinkReport]);
  const procs = [sink];
  try {
    await sink.waitFor(/listening/);
    let relay;
    let agent;
    if (tool === 'native') {
      relay = tlsSplice('relay', ['--agents', addr(agentsPort), '--public', addr(port), '--cert', CERT, '--key', KEY,
        '--client-ca', CA]);
      procs.push(relay);
      await relay.waitFor(/listening/);
      agent = tlsSplice('agent', ['--relay', addr(agentsPort), '--to', addr(sinkPort), '--cert', CLIENT_CERT,
        '--key', CLIENT_KEY, '--ca', CA, '--servername', 'localhost']);
    } else {
      relay = plainNode({ mode: 'relay', agentsPort, port, cert: CERT, key: KEY, ca: CA });
      procs.push(relay);
      await relay.waitFor(/listening/);
      agent = plainNode({ mode: 'agent', relayPort: agentsPort, to: sinkPort, cert: CLIENT_CERT, key: CLIENT_KEY,
        ca: CA, pool: 4 });
    }
    procs.push(agent);
    await agent.waitFor(/connected/);
    const a = cpuOf([relay, agent]);
    const client = new Proc('client', BENCHTOOL, ['peer', '--connect', String(port), '--send', String(tunnelBytes),
      '--fill', 'zero', '--report', path.join(tmp, 'tunnel-client.json')]);
    procs.push(client);
    await Promise.all([client.wait(timeout), sink.wait(timeout)]);
    const b = cpuOf([relay, agent]);
    const s = await waitJson(sinkReport);
    if (!s.ok) throw new Error(`the tunnel sink found wrong bytes at offset ${s.badAt}`);
    if (s.bytes !== tunnelBytes) throw new Error(`the tunnel sink got ${s.bytes} bytes, expected ${tunnelBytes}`);
    return { bytes: s.bytes, seconds: Number(BigInt(s.lastNs) - BigInt(s.firstNs)) / 1e9, cpuS: b - a };
  } finally {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
  }
}

export const commands = {
  id: 'commands',
  title: 'commands: the tls-splice commands (terminate, proxy, relay + agent) beside plain Node pipes',
  unit: 'commands',
  tools: COMMAND_TOOLS,
  async run(tool, params) {
    requirePrograms();
    const t0 = Date.now();
    const term = await terminate(tool, params);
    const phaseMs = { terminate: Date.now() - t0 };
    if (tool === 'haproxy') return { kind: 'commands', tool, terminate: term, phaseMs };
    const t1 = Date.now();
    const prox = await proxy(tool, params);
    phaseMs.proxy = Date.now() - t1;
    const t2 = Date.now();
    const tun = await tunnel(tool, params);
    phaseMs.tunnel = Date.now() - t2;
    return { kind: 'commands', tool, terminate: term, proxy: prox, tunnel: tun, phaseMs };
  },
};

const GIB = 2 ** 30;

// One run -> its figures (stats.mjs figures() hands `commands` results here).
export function commandFigures(raw) {
  const f = {
    termConnRate: raw.terminate.close.rps,
    termCpuMsPerConn: raw.terminate.close.cpuMsPerRequest,
    termKeepAliveRps: raw.terminate.keepAlive.rps,
    termCpuMsPerKeptRequest: raw.terminate.keepAlive.cpuMsPerRequest,
    h2loadErrors: raw.terminate.close.errors + raw.terminate.keepAlive.errors,
  };
  if (raw.terminate.resumed) {
    f.termResumedShare = raw.terminate.resumed.share;
    f.termResumedRps = raw.terminate.resumed.rps;
    f.termChainResumedShare = raw.terminate.resumed.chainShare;
  }
  if (raw.proxy) {
    f.proxyMBps = raw.proxy.bytesPerS / 1e6;
    f.proxyCpuPerGiB = raw.proxy.cpuS / (raw.proxy.bytes / GIB);
  }
  if (raw.tunnel) {
    f.tunnelMBps = raw.tunnel.bytes / raw.tunnel.seconds / 1e6;
    f.tunnelCpuPerGiB = raw.tunnel.cpuS / (raw.tunnel.bytes / GIB);
  }
  return f;
}

export const COMMAND_FIGURES = ['termConnRate', 'termCpuMsPerConn', 'termKeepAliveRps', 'termCpuMsPerKeptRequest',
  'h2loadErrors', 'termResumedShare', 'termResumedRps', 'termChainResumedShare',
  'proxyMBps', 'proxyCpuPerGiB', 'tunnelMBps', 'tunnelCpuPerGiB'];
