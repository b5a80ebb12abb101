// One benchmark case in a fresh process: this process is the one under test when the tool is a
// Node tool (tls-splice native or JS engine, the plain JS pump, Node's TLS with no sink, or plain
// TCP with no TLS). bench/run.mjs starts it with a JSON spec as argv[2], after starting the peers
// (socat, benchtool) in their own processes, and reads one JSON line from our stdout:
//   { ok, bytes, startNs, endNs, cpuS, elu, maxRssKb, ... }
// startNs/endNs are process.hrtime.bigint() (CLOCK_MONOTONIC), comparable with the peers' clocks.
//
// Lines before the result ("listening", "ready") tell run.mjs when to start a peer.
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';

// TLS_SPLICE_BENCH_PKG=/path/to/a/copy: benchmark another build of the package (an A/B test of a
// native change) with the same harness.
const { connect, createServer, openTun, spliceTo } = await import(
  process.env.TLS_SPLICE_BENCH_PKG ? `${process.env.TLS_SPLICE_BENCH_PKG}/esm/index.mjs` : '../esm/index.mjs');

// The first performance.eventLoopUtilization() of a fresh process, taken while the loop then sits
// in one long poll (the bridge case: taken in the connection callback, the loop then idles for
// the whole native transfer), read that idle loop as 98-100% busy in 3 of 4 quick runs. Taking
// one here, before any I/O, made it rarer but did not remove it: 7 of 25 runs of the bridge's
// native case after (main thread sampled inside epoll_pwait, 2-3 voluntary context switches over
// the transfer: the loop sleeps, and its idle time is not credited). Hence mainCpuS below, which
// the main-thread figures use (bench/README.md, "ELU").
performance.eventLoopUtilization();

const spec = JSON.parse(process.argv[2]);
const { scenario, tool } = spec;

function say(line) {
  process.stdout.write(`${line}\n`);
}

function finish(result) {
  // A pipe: this write is synchronous on Linux, so the line is out before we leave.
  process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`);
  // A JS pump reading a TUN through fs leaves a thread-pool thread blocked in read(), which
  // process.exit() would wait for (libuv joins its threads at exit): leave at once instead.
  if (spec.tunName) process.kill(process.pid, 'SIGKILL');
  process.exit(0);
}

process.on('uncaughtException', (err) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: `${err.code ?? ''} ${err.stack}` })}\n`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: `${err?.code ?? ''} ${err?.stack ?? err}` })}\n`);
  process.exit(1);
});

// CPU nanoseconds the main thread (tid == pid) has run: the scheduler's own account
// (/proc/self/task/<pid>/schedstat, first field), so an idle thread can never read as busy,
// unlike ELU. Falls back to utime+stime of .../stat (10 ms ticks).
function mainThreadCpuNs() {
  const task = `/proc/self/task/${process.pid}`;
  try {
    return Number(fs.readFileSync(`${task}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    const fields = fs.readFileSync(`${task}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 1e7;   // utime, stime in 1/100 s
  }
}

// What the process spends between start() and stop(): CPU of every thread (the native I/O
// threads included), the main thread's own CPU and event-loop utilisation, and the time span.
//
// For the splice engines, transferStarted() is called once start() has resolved: the event-loop
// utilisation is that of the transfer, and the handover before it (capture, quiet point) is
// reported on its own as handoverMs. CPU counts both.
function measure() {
  const cpu0 = process.cpuUsage();
  let main0 = mainThreadCpuNs();
  let elu0 = performance.eventLoopUtilization();
  const startNs = process.hrtime.bigint();
  let handoverMs = null;
  let eluStartNs = null;
  return {
    startNs,
    transferStarted() {
      eluStartNs = process.hrtime.bigint();
      handoverMs = Number(eluStartNs - startNs) / 1e6;
      elu0 = performance.eventLoopUtilization();
      main0 = mainThreadCpuNs();
      // For profiling the transfer alone: `perf record -p` once this file exists.
      if (process.env.BENCH_MARK_FILE) fs.writeFileSync(process.env.BENCH_MARK_FILE, 'transfer\n');
    },
    stop(extra = {}) {
      const endNs = process.hrtime.bigint();
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0);
      const mainCpuS = (mainThreadCpuNs() - main0) / 1e9;
      return {
        startNs: String(startNs),
        endNs: String(endNs),
        cpuS: (cpu.user + cpu.system) / 1e6,
        userS: cpu.user / 1e6,
        sysS: cpu.system / 1e6,
        elu: elu.utilization,
        // The main thread's CPU over the same span as `elu` (from start() resolving when there
        // is a handover), and that as a share of the span: the cross-check of ELU.
        mainCpuS,
        mainCpuShare: mainCpuS / (Number(endNs - (eluStartNs ?? startNs)) / 1e9),
        transferStartNs: String(eluStartNs ?? startNs),
        handoverMs,
        maxRssKb: process.resourceUsage().maxRSS,
        ...extra,
      };
    },
  };
}

function currentRssKb() {
  const statm = fs.readFileSync('/proc/self/statm', 'utf8').split(' ');
  return (Number(statm[1]) * 4096) / 1024;
}

// allowHalfOpen, for the pumps that move both directions (duplex, bridge): ending one direction
// must keep the other (close_notify is a half-close in TLS 1.3); without it Node destroys the
// socket and stream.pipeline reports a premature close. One-way pumps keep Node's default, which
// ends our side when the peer's ends.
const halfOpen = scenario === 'duplex' || scenario === 'bridge';
const tlsClientOptions = {
  host: '127.0.0.1', port: spec.port, rejectUnauthorized: false, allowHalfOpen: halfOpen,
};

async function tlsConnect(kind) {
  const socket = kind === 'node' ? tls.connect(tlsClientOptions) : connect(tlsClientOptions);
  await once(socket, 'secureConnect');
  return socket;
}

async function tcpConnect(port = spec.port) {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: halfOpen });
  await once(socket, 'connect');
  return socket;
}

function openSink() {
  // A FIFO opened for writing blocks until its reader (the sink process) has opened it.
  return fs.openSync(spec.sinkPath, 'w');
}

function openSource() {
  return fs.openSync(spec.sourcePath, 'r');
}

// The sink a JS pump writes to: net.Socket for pipes and sockets, fs for a character device
// (net.Socket refuses those with ERR_INVALID_FD_TYPE).
function jsWritable(fd, kind) {
  if (kind === 'pipe') return new net.Socket({ fd, readable: false, writable: true });
  return fs.createWriteStream(null, { fd, autoClose: true });
}

function jsReadable(fd, kind, bytes) {
  if (kind === 'pipe') return new net.Socket({ fd, readable: true, writable: false });
  // /dev/zero never ends: read exactly `bytes` (positioned reads work on it).
  return fs.createReadStream(null, { fd, start: 0, end: bytes - 1, highWaterMark: 64 * 1024 });
}

function checkEnd(end, what) {
  if (end.error) throw Object.assign(new Error(`${what}: ${end.error.message}`), { code: end.error.code });
}

// --- 1. TLS -> fd --------------------------------------------------------------------------------

async function tlsToFd() {
  const { sink } = spec;  // 'pipe' | 'null'
  const openFd = () => (sink === 'pipe' ? openSink() : fs.openSync('/dev/null', 'w'));
  if (tool === 'native' || tool === 'js-engine') {
    const socket = await tlsConnect('splice');
    const fd = openFd();
    const m = measure();
    const handle = spliceTo(socket, { writeFd: fd }, {
      direction: 'in', engine: tool === 'native' ? 'native' : 'js',
    });
    await handle.start();
    m.transferStarted();
    const end = await handle.closed;
    const r = m.stop({ bytes: end.stats.bytesIn, engine: handle.engine });
    fs.closeSync(fd);
    checkEnd(end, 'splice');
    return r;
  }
  if (tool === 'js-pump' || tool === 'plain-node') {
    const socket = tool === 'js-pump' ? await tlsConnect('node') : await tcpConnect();
    const out = jsWritable(openFd(), sink);
    const m = measure();
    await pipeline(socket, out);
    return m.stop({ bytes: out.bytesWritten });
  }
  if (tool === 'node-tls-nosink') {
    // Node's own TLS read rate: decrypt and drop.
    const socket = await tlsConnect('node');
    let bytes = 0;
    const m = measure();
    socket.on('data', (chunk) => { bytes += chunk.length; });
    await once(socket, 'end');
    return m.stop({ bytes });
  }
  throw new Error(`no tool ${tool} for ${scenario}`);
}

// --- 2. fd -> TLS --------------------------------------------------------------------------------

async function fdToTls() {
  const { source, bytes } = spec;  // 'pipe' | 'zero'
  const openFd = () => (source === 'pipe' ? openSource() : fs.openSync('/dev/zero', 'r'));
  if (tool === 'native' || tool === 'js-engine') {
    const socket = await tlsConnect('splice');
    const fd = openFd();
    const m = measure();
    const handle = spliceTo(socket, { readFd: fd }, {
      direction: 'out', engine: tool === 'native' ? 'native' : 'js',
    });
    await handle.start();
    m.transferStarted();
    let timer = null;
    if (source === 'zero') {
      // /dev/zero never ends: stop once `bytes` went out. Checked every 50 ms: this polling is
      // the harness's, and shows in the event-loop utilisation (about 0.3%).
      timer = setInterval(() => {
        if (handle.stats().bytesOut >= bytes) {
          clearInterval(timer);
          handle.stop({ graceful: true });
        }
      }, 50);
    }
    const end = await handle.closed;
    if (timer) clearInterval(timer);
    const r = m.stop({ bytes: end.stats.bytesOut, engine: handle.engine, reason: end.reason });
    fs.closeSync(fd);
    checkEnd(end, 'splice');
    return r;
  }
  if (tool === 'js-pump' || tool === 'plain-node') {
    const socket = tool === 'js-pump' ? await tlsConnect('node') : await tcpConnect();
    const input = jsReadable(openFd(), source, bytes);
    const m = measure();
    await pipeline(input, socket);
    return m.stop({ bytes: socket.bytesWritten });
  }
  throw new Error(`no tool ${tool} for ${scenario}`);
}

// --- 3. duplex -----------------------------------------------------------------------------------

async function duplex() {
  if (tool === 'native' || tool === 'js-engine') {
    const socket = await tlsConnect('splice');
    const readFd = openSource();
    const writeFd = openSink();
    const m = measure();
    const handle = spliceTo(socket, { readFd, writeFd }, {
      engine: tool === 'native' ? 'native' : 'js',
    });
    await handle.start();
    m.transferStarted();
    const end = await handle.closed;
    const r = m.stop({ bytes: end.stats.bytesIn + end.stats.bytesOut, bytesIn: end.stats.bytesIn,
      bytesOut: end.stats.bytesOut, engine: handle.engine });
    fs.closeSync(readFd);
    try { fs.closeSync(writeFd); } catch { /* closed with the splice */ }
    checkEnd(end, 'splice');
    return r;
  }
  if (tool === 'js-pump' || tool === 'plain-node') {
    const socket = tool === 'js-pump' ? await tlsConnect('node') : await tcpConnect();
    const input = jsReadable(openSource(), 'pipe');
    const out = jsWritable(openSink(), 'pipe');
    const m = measure();
    await Promise.all([pipeline(input, socket, { end: true }), pipeline(socket, out)]);
    return m.stop({ bytes: out.bytesWritten + socket.bytesWritten, bytesIn: out.bytesWritten,
      bytesOut: socket.bytesWritten });
  }
  throw new Error(`no tool ${tool} for ${scenario}`);
}

// --- 4. TLS <-> TCP bridge (a CONNECT-style proxy hop) -------------------------------------------

async function bridge() {
  const key = fs.readFileSync(spec.keyPath);
  const cert = fs.readFileSync(spec.certPath);
  let resolveDone;
  const done = new Promise((resolve, reject) => { resolveDone = { resolve, reject }; });
  let server;
  const onClient = async (client) => {
    try {
      server.close();
      const backend = await tcpConnect(spec.sinkPort);
      const m = measure();
      if (tool === 'native' || tool === 'js-engine') {
        const handle = spliceTo(client, backend, {
          engine: tool === 'native' ? 'native' : 'js', autoClose: true,
        });
        await handle.start();
        m.transferStarted();
        const end = await handle.closed;
        checkEnd(end, 'splice');
        resolveDone.resolve(m.stop({ bytes: end.stats.bytesIn, engine: handle.engine }));
      } else {
        // What a proxy does today: pipe both ways.
        await Promise.all([pipeline(client, backend), pipeline(backend, client)]);
        resolveDone.resolve(m.stop({ bytes: backend.bytesWritten }));
      }
    } catch (err) {
      resolveDone.reject(err);
    }
  };
  if (tool === 'native' || tool === 'js-engine') {
    server = createServer({ key, cert }, onClient);
  } else if (tool === 'js-pump') {
    server = tls.createServer({ key, cert, allowHalfOpen: true }, onClient);
  } else if (tool === 'plain-node') {
    server = net.createServer({ allowHalfOpen: true }, onClient);
  } else {
    throw new Error(`no tool ${tool} for ${scenario}`);
  }
  server.listen(spec.port, '127.0.0.1');
  await once(server, 'listening');
  say('listening');
  return done;
}

// --- 5. small packets over a TUN ------------------------------------------------------------------

// IPv4 packets out of a byte stream, one per chunk pushed: what a user's JS pump needs in front
// of a TUN (each write() to a TUN is exactly one packet).
class Ipv4Cutter extends Transform {
  #pending = null;

  _transform(chunk, _encoding, callback) {
    let data = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (data.length >= 20) {
      const length = data.readUInt16BE(2);
      if (length < 20) return callback(new Error('bad IPv4 packet length'));
      if (data.length < length) break;
      this.push(data.subarray(0, length));
      data = data.subarray(length);
    }
    this.#pending = data.length ? data : null;
    callback();
  }
}

// One fs.write per packet (no writev: the TUN would take a batch as a single packet).
function tunWritable(fd) {
  return new Writable({
    highWaterMark: 256 * 1024,
    write(chunk, _encoding, callback) {
      fs.write(fd, chunk, 0, chunk.length, null, (err) => callback(err));
    },
  });
}

function setUpTun() {
  const tun = openTun({ name: spec.tunName });
  execFileSync('ip', ['addr', 'add', spec.tunAddr, 'dev', tun.name]);
  execFileSync('ip', ['link', 'set', tun.name, 'up']);
  return tun;
}

async function packets() {
  const pingpong = scenario === 'pingpong';
  if (tool === 'native' || tool === 'js-engine') {
    const socket = await tlsConnect('splice');
    const tun = setUpTun();
    const handle = spliceTo(socket, tun.fd, {
      framing: 'ip', direction: pingpong ? 'duplex' : 'in',
      engine: tool === 'native' ? 'native' : 'js',
    });
    await handle.start();
    const m = measure();
    say('ready');
    // Duplex: the TUN never ends, so the splice is stopped once the peer has closed.
    handle.on('end', () => { if (pingpong) handle.stop({ graceful: true }); });
    const end = await handle.closed;
    checkEnd(end, 'splice');
    return m.stop({ packets: end.stats.packetsIn, packetsOut: end.stats.packetsOut,
      bytes: end.stats.bytesIn + end.stats.bytesOut, engine: handle.engine });
  }
  if (tool === 'js-pump') {
    const socket = await tlsConnect('node');
    socket.setNoDelay(true);
    const tun = setUpTun();
    const m = measure();
    let packetsIn = 0;
    const cutter = new Ipv4Cutter();
    cutter.on('data', () => { packetsIn++; });
    const toTun = pipeline(socket, cutter, tunWritable(tun.fd));
    if (pingpong) {
      const fromTun = fs.createReadStream(null, { fd: tun.fd, highWaterMark: 65536, autoClose: false });
      fromTun.on('data', (packet) => socket.write(packet));
    }
    say('ready');
    await toTun;
    return m.stop({ packets: packetsIn });
  }
  throw new Error(`no tool ${tool} for ${scenario}`);
}

// --- 6. concurrency ------------------------------------------------------------------------------

async function concurrency() {
  const { connections } = spec;
  const rssBeforeKb = currentRssKb();
  const sockets = [];
  const kind = tool === 'js-pump' ? 'node' : 'splice';
  // Connect in batches so the peer's accept queue never overflows.
  for (let i = 0; i < connections; i += 16) {
    const batch = [];
    for (let j = i; j < Math.min(connections, i + 16); j++) batch.push(tlsConnect(kind));
    sockets.push(...await Promise.all(batch));
  }
  const rssConnectedKb = currentRssKb();
  const nullFd = fs.openSync('/dev/null', 'w');
  const m = measure();
  let bytes = 0;
  if (tool === 'native' || tool === 'js-engine') {
    const handles = sockets.map((s) => spliceTo(s, { writeFd: nullFd }, {
      direction: 'in', engine: tool === 'native' ? 'native' : 'js',
    }));
    await Promise.all(handles.map((h) => h.start()));
    m.transferStarted();
    const ends = await Promise.all(handles.map((h) => h.closed));
    for (const end of ends) {
      checkEnd(end, 'splice');
      bytes += end.stats.bytesIn;
    }
  } else if (tool === 'js-pump') {
    const outs = sockets.map(() => fs.createWriteStream(null, { fd: nullFd, autoClose: false }));
    await Promise.all(sockets.map((s, i) => pipeline(s, outs[i])));
    for (const out of outs) bytes += out.bytesWritten;
  } else {
    throw new Error(`no tool ${tool} for ${scenario}`);
  }
  const r = m.stop({ bytes, rssBeforeKb, rssConnectedKb });
  fs.closeSync(nullFd);
  return r;
}

const scenarios = {
  'tls-to-fd': tlsToFd,
  'fd-to-tls': fdToTls,
  duplex,
  bridge,
  pps: packets,
  pingpong: packets,
  concurrency,
};

finish(await scenarios[scenario]());
