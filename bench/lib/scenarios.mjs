// The benchmark scenarios: for each, the tools compared and how one case (scenario x tool) is
// set up, run and measured. Every case gets fresh processes: the process under test (a Node
// process running bench/case.mjs, or socat / benchtool wrapped by `benchtool rusage`) and its
// peers (socat with OpenSSL, benchtool sinks and sources, benchtool pkt-peer), each in its own
// process group, all killed when the case ends.
//
// A case returns the raw figures; run.mjs derives throughput, CPU/GiB and the ratios.
import fs from 'node:fs';
import path from 'node:path';

import { commands } from './commands.mjs';
import { connections } from './connections.mjs';
import {
  BENCHTOOL, BENCH_DIR, Proc, ROOT, createNetns, delay, deleteNetns, freePort, mkfifo, quote,
  readJson, readJsonIfAny, shell, waitJson, waitListening,
} from './proc.mjs';

const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CERT = path.join(FIXTURES, 'server.pem');
const KEY = path.join(FIXTURES, 'server-key.pem');
const CASE = path.join(BENCH_DIR, 'case.mjs');
const SOCAT = 'socat -b 65536';
const SOCAT_TLS_SERVER = `cert=${CERT},key=${KEY},verify=0`;
const TOOL = quote(BENCHTOOL);
const UT = { role: 'under-test' };

export const TOOLS = {
  native: 'tls-splice native engine',
  'js-engine': "tls-splice, engine: 'js'",
  'js-pump': 'JS pump: tls.connect + stream.pipeline',
  socat: 'socat (OpenSSL)',
  'node-tls-nosink': "Node's TLS, data dropped (no sink)",
  'plain-node': 'no TLS: Node stream.pipeline over TCP',
  'plain-socat': 'no TLS: socat over TCP',
  'plain-c': 'no TLS: C forwarder (benchtool tun-fwd)',
  haproxy: 'HAProxy 2.6 (mode tcp, bind ssl): a C TLS terminator, the reference',
};

// Node options for the process under test only, e.g. BENCH_NODE_ARGS='--cpu-prof
// --cpu-prof-dir=/tmp/prof' (NODE_OPTIONS refuses --cpu-prof, and would profile the runner too).
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

// Node under test: bench/case.mjs with `spec`.
function nodeUnderTest(spec, netns = null) {
  return new Proc(`case ${spec.scenario}/${spec.tool}`, process.execPath, [...NODE_ARGS, CASE, JSON.stringify(spec)],
    { netns, role: 'under-test' });
}

function nodeResult(proc) {
  const line = proc.stdout.trim().split('\n').pop();
  let result;
  try {
    result = JSON.parse(line);
  } catch {
    throw new Error(`${proc.name} printed no result (${JSON.stringify(proc.done)}):\n` +
      `${proc.stderr.slice(-2000)}${proc.stdout.slice(-500)}`);
  }
  if (!result.ok) throw new Error(`${proc.name}: ${result.error}`);
  return { kind: 'node', ...result };
}

function rusageResult(file, what) {
  const r = readJsonIfAny(file);
  if (!r) throw new Error(`${what} wrote no rusage report`);
  if (r.status !== 0) throw new Error(`${what} exited with status ${r.status} (signal ${r.signal})`);
  return {
    kind: 'process', cpuS: r.userS + r.sysS, userS: r.userS, sysS: r.sysS, maxRssKb: r.maxRssKb,
    startNs: r.startNs, endNs: r.endNs,
  };
}

// The TLS (or plain TCP) peer of the stream scenarios: `benchtool peer`, C and OpenSSL, which
// seals 64 records at a time into memory and writes them with large writes (about twice as
// fast as socat here), so that the peer is not what limits the process under test.
function fastPeer(port, plain, args) {
  return new Proc('peer', BENCHTOOL, ['peer', '--listen', String(port),
    ...(plain ? [] : ['--tls', '--cert', CERT, '--key', KEY]), ...args.map(String)]);
}

// The peer's CPU seconds (its own rusage, or that of benchtool rusage around it).
function peerCpu(file) {
  const r = readJsonIfAny(file);
  if (!r || r.userS === undefined) return null;
  return { cpuS: r.userS + r.sysS };
}

async function waitAll(procs, timeout) {
  await Promise.all(procs.map((p) => p.wait(timeout)));
}

async function sinkResult(file, expect) {
  const s = await waitJson(file);
  if (!s.ok) throw new Error(`the sink found wrong bytes at offset ${s.badAt}`);
  if (expect.exact !== undefined && s.bytes !== expect.exact) {
    throw new Error(`the sink got ${s.bytes} bytes, expected ${expect.exact}`);
  }
  if (expect.atLeast !== undefined && s.bytes < expect.atLeast) {
    throw new Error(`the sink got ${s.bytes} bytes, expected at least ${expect.atLeast}`);
  }
  return s;
}

// Issue 20: TLS 1.2 AES-CBC. The peer (benchtool, OpenSSL) allows only this suite and refuses
// encrypt_then_mac, so every tool gets MAC-then-encrypt with HMAC-SHA1: the record protection of
// PSK-AES128-CBC-SHA (0x008C), with a certificate key exchange because socat 1.7.4 has no PSK.
const CBC = {
  id: 'cbc',
  title: 'TLS 1.2 ECDHE-RSA-AES128-SHA (AES-128-CBC, HMAC-SHA1, MAC-then-encrypt)',
  peerArgs: ['--tls12-cipher', 'ECDHE-RSA-AES128-SHA', '--no-etm'],
};
const CBC_TOOLS = ['native', 'js-engine', 'socat'];

// --- 1. TLS -> fd ---------------------------------------------------------------------------------

function tlsToFd(sink, cbc = null) {
  return {
    id: `tls-to-${sink}${cbc ? `-${cbc.id}` : ''}`,
    title: (sink === 'pipe' ? 'TLS → pipe (fast reader)' : 'TLS → character device (/dev/null)') +
      (cbc ? `, ${cbc.title}` : ''),
    unit: 'stream',
    tools: cbc ? CBC_TOOLS : sink === 'pipe'
      ? ['native', 'js-engine', 'js-pump', 'socat', 'plain-node', 'plain-socat']
      : ['native', 'js-engine', 'js-pump', 'socat', 'node-tls-nosink', 'plain-node', 'plain-socat'],
    async run(tool, { bytes, tmp, timeout }) {
      const plain = tool.startsWith('plain');
      const port = freePort();
      const peerReport = path.join(tmp, 'peer.json');
      const peer = fastPeer(port, plain, ['--send', bytes, '--fill', 'zero', '--report', peerReport,
        ...(cbc ? cbc.peerArgs : [])]);
      const procs = [peer];
      try {
        await peer.waitFor(/listening/);
        const fifo = sink === 'pipe' ? mkfifo(path.join(tmp, 'sink.fifo')) : null;
        const sinkReport = path.join(tmp, 'sink.json');
        if (fifo) {
          procs.push(shell('sink', `exec ${TOOL} sink --check zero --report ${quote(sinkReport)} < ${quote(fifo)}`));
        }
        let ut;
        const utReport = path.join(tmp, 'ut.json');
        if (tool === 'socat' || tool === 'plain-socat') {
          const from = plain ? `TCP:127.0.0.1:${port}` : `OPENSSL:127.0.0.1:${port},verify=0`;
          const to = fifo ? `STDOUT > ${quote(fifo)}` : 'OPEN:/dev/null';
          ut = shell('socat under test', `exec ${TOOL} rusage --report ${quote(utReport)} -- ${SOCAT} -u ${from} ${to}`, UT);
        } else {
          ut = nodeUnderTest({ scenario: 'tls-to-fd', tool, sink, sinkPath: fifo, port, bytes });
        }
        procs.push(ut);
        await waitAll(procs, timeout);
        const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, 'socat');
        if (fifo) result.sink = await sinkResult(sinkReport, { exact: bytes });
        else if (result.bytes !== undefined && result.bytes !== bytes) {
          throw new Error(`moved ${result.bytes} bytes, expected ${bytes}`);
        }
        result.bytes = bytes;
        result.peer = peerCpu(peerReport);
        return result;
      } finally {
        for (const p of procs) p.kill();
      }
    },
  };
}

// --- 2. fd -> TLS ---------------------------------------------------------------------------------

function fdToTls(source) {
  return {
    id: `${source}-to-tls`,
    title: source === 'pipe' ? 'pipe → TLS' : 'character device (/dev/zero) → TLS',
    unit: 'stream',
    tools: ['native', 'js-engine', 'js-pump', 'socat', 'plain-node', 'plain-socat'],
    async run(tool, { bytes, tmp, timeout }) {
      const plain = tool.startsWith('plain');
      const port = freePort();
      const sinkReport = path.join(tmp, 'sink.json');
      const check = source === 'pipe' ? 'pattern' : 'zero';
      // The peer receives, checks every byte and timestamps the first and the last.
      const peer = fastPeer(port, plain, ['--recv', '--check', check, '--report', sinkReport]);
      const procs = [peer];
      try {
        await peer.waitFor(/listening/);
        const fifo = source === 'pipe' ? mkfifo(path.join(tmp, 'source.fifo')) : null;
        if (fifo) {
          procs.push(shell('source', `exec ${TOOL} source --bytes ${bytes} --fill pattern > ${quote(fifo)}`));
        }
        let ut;
        const utReport = path.join(tmp, 'ut.json');
        if (tool === 'socat' || tool === 'plain-socat') {
          const to = plain ? `TCP:127.0.0.1:${port}` : `OPENSSL:127.0.0.1:${port},verify=0`;
          const from = fifo ? 'STDIN' : `OPEN:/dev/zero,readbytes=${bytes}`;
          ut = shell('socat under test', `exec ${TOOL} rusage --report ${quote(utReport)} -- ` +
            `${SOCAT} -u ${from} ${to}${fifo ? ` < ${quote(fifo)}` : ''}`, UT);
        } else {
          ut = nodeUnderTest({ scenario: 'fd-to-tls', tool, source, sourcePath: fifo, port, bytes });
        }
        procs.push(ut);
        await waitAll(procs, timeout);
        const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, 'socat');
        // /dev/zero: the splice engines are stopped once `bytes` went out, so a little more may.
        result.sink = await sinkResult(sinkReport, fifo ? { exact: bytes } : { atLeast: bytes });
        result.bytes = result.sink.bytes;
        result.peer = peerCpu(sinkReport);
        return result;
      } finally {
        for (const p of procs) p.kill();
      }
    },
  };
}

// --- 3. duplex ------------------------------------------------------------------------------------

const duplex = {
  id: 'duplex',
  title: 'duplex: pipe ⇄ TLS, both directions at once',
  unit: 'stream',
  tools: ['native', 'js-engine', 'js-pump', 'socat', 'plain-node', 'plain-socat'],
  async run(tool, { bytes, tmp, timeout }) {
    const plain = tool.startsWith('plain');
    const port = freePort();
    const farReport = path.join(tmp, 'far.json');
    // The far end sends `bytes` and checks every byte it gets, both at once.
    const peer = fastPeer(port, plain, ['--send', bytes, '--fill', 'pattern', '--recv', '--check', 'pattern',
      '--report', farReport]);
    const procs = [peer];
    try {
      await peer.waitFor(/listening/);
      const sourceFifo = mkfifo(path.join(tmp, 'source.fifo'));
      const sinkFifo = mkfifo(path.join(tmp, 'sink.fifo'));
      const sinkReport = path.join(tmp, 'sink.json');
      procs.push(shell('source', `exec ${TOOL} source --bytes ${bytes} --fill pattern > ${quote(sourceFifo)}`));
      procs.push(shell('sink', `exec ${TOOL} sink --check pattern --report ${quote(sinkReport)} < ${quote(sinkFifo)}`));
      let ut;
      const utReport = path.join(tmp, 'ut.json');
      if (tool === 'socat' || tool === 'plain-socat') {
        const to = plain ? `TCP:127.0.0.1:${port}` : `OPENSSL:127.0.0.1:${port},verify=0`;
        ut = shell('socat under test', `exec ${TOOL} rusage --report ${quote(utReport)} -- ` +
          `${SOCAT} -t 30 ${to} STDIO < ${quote(sourceFifo)} > ${quote(sinkFifo)}`, UT);
      } else {
        ut = nodeUnderTest({ scenario: 'duplex', tool, sourcePath: sourceFifo, sinkPath: sinkFifo, port, bytes });
      }
      procs.push(ut);
      await waitAll(procs, timeout);
      const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, 'socat');
      const near = await sinkResult(sinkReport, { exact: bytes });
      const far = await sinkResult(farReport, { exact: bytes });
      result.bytes = near.bytes + far.bytes;
      // Both directions' sinks: from the first byte either saw to the last byte either saw.
      result.sink = {
        firstNs: String([BigInt(near.firstNs), BigInt(far.firstNs)].reduce((a, b) => (a < b ? a : b))),
        lastNs: String([BigInt(near.lastNs), BigInt(far.lastNs)].reduce((a, b) => (a > b ? a : b))),
        bytes: result.bytes,
      };
      result.peer = peerCpu(farReport);
      return result;
    } finally {
      for (const p of procs) p.kill();
    }
  },
};

// --- 4. bridge ------------------------------------------------------------------------------------

const bridge = {
  id: 'bridge',
  title: 'TLS ↔ TCP bridge: client → TLS → proxy → TCP → sink',
  unit: 'stream',
  tools: ['native', 'js-engine', 'js-pump', 'socat', 'plain-node', 'plain-socat'],
  async run(tool, { bytes, tmp, timeout }) {
    const plain = tool.startsWith('plain');
    const port = freePort();
    const sinkPort = freePort();
    const sinkReport = path.join(tmp, 'sink.json');
    const sink = new Proc('tcp sink', BENCHTOOL,
      ['sink', '--listen', String(sinkPort), '--check', 'zero', '--report', sinkReport]);
    const procs = [sink];
    try {
      await sink.waitFor(/listening/);
      let ut;
      const utReport = path.join(tmp, 'ut.json');
      if (tool === 'socat' || tool === 'plain-socat') {
        const listen = plain ? `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`
          : `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,${SOCAT_TLS_SERVER}`;
        ut = shell('socat under test', `exec ${TOOL} rusage --report ${quote(utReport)} -- ` +
          `${SOCAT} -t 30 ${listen} TCP:127.0.0.1:${sinkPort}`, UT);
        procs.push(ut);
        await waitListening(port, { proc: ut });
      } else {
        ut = nodeUnderTest({ scenario: 'bridge', tool, port, sinkPort, bytes, certPath: CERT, keyPath: KEY });
        procs.push(ut);
        await ut.waitFor(/listening/);
      }
      const peerReport = path.join(tmp, 'peer.json');
      const client = new Proc('client', BENCHTOOL, ['peer', '--connect', String(port),
        ...(plain ? [] : ['--tls']), '--send', String(bytes), '--fill', 'zero', '--report', peerReport]);
      procs.push(client);
      await waitAll(procs, timeout);
      const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, 'socat');
      result.sink = await sinkResult(sinkReport, { exact: bytes });
      result.bytes = bytes;
      result.peer = peerCpu(peerReport);
      return result;
    } finally {
      for (const p of procs) p.kill();
    }
  },
};

// --- 5. small packets over a TUN ------------------------------------------------------------------

const TUN = 'tsb0';
const TUN_ADDR = '10.77.0.1/24';

function packetScenario(mode, cbc = null) {
  return {
    id: cbc ? `${mode}-${cbc.id}` : mode,
    title: (mode === 'pps'
      ? 'small packets: 1,400-byte IPv4 packets, TLS → TUN, one record each'
      : 'ping-pong: 1,400-byte ICMP echo through TLS ⇄ TUN') + (cbc ? `, ${cbc.title}` : ''),
    unit: mode,
    tools: cbc ? CBC_TOOLS : ['native', 'js-engine', 'js-pump', 'socat', 'plain-c'],
    async run(tool, { packets, exchanges, tmp, timeout, size = 1400 }) {
      const plain = tool === 'plain-c';
      const netns = createNetns(`tsbench-${process.pid}-${Math.floor(Math.random() * 1e6)}`);
      const procs = [];
      try {
        const port = 4433;
        const peerReport = path.join(tmp, 'peer.json');
        const count = mode === 'pps' ? packets : exchanges;
        const peer = new Proc('pkt-peer', BENCHTOOL, ['pkt-peer', '--port', String(port),
          ...(plain ? [] : ['--tls', '--cert', CERT, '--key', KEY, ...(cbc ? cbc.peerArgs : [])]),
          '--mode', mode === 'pps' ? 'send' : 'pingpong',
          '--count', String(count), '--size', String(size), '--tun', TUN, '--report', peerReport],
        { netns, stdio: ['pipe', 'pipe', 'pipe'] });
        procs.push(peer);
        await peer.waitFor(/listening/);
        let ut;
        const utReport = path.join(tmp, 'ut.json');
        if (tool === 'socat') {
          ut = new Proc('socat under test', BENCHTOOL, ['rusage', '--report', utReport, '--',
            'socat', '-b', '65536', '-t', '0.2', `OPENSSL:127.0.0.1:${port},verify=0,nodelay`,
            `TUN:${TUN_ADDR},tun-name=${TUN},tun-type=tun,no-pi,up`], { netns, ...UT });
        } else if (plain) {
          ut = new Proc('tun-fwd under test', BENCHTOOL, ['rusage', '--report', utReport, '--',
            BENCHTOOL, 'tun-fwd', '--connect', String(port), '--tun', TUN, '--addr', TUN_ADDR], { netns, ...UT });
        } else {
          ut = nodeUnderTest({ scenario: mode, tool, port, tunName: TUN, tunAddr: TUN_ADDR }, netns);
        }
        procs.push(ut);
        await peer.waitFor(/connected/);
        if (ut.child.spawnargs.includes(CASE)) {
          await ut.waitFor(/ready/);
        } else {
          // socat / tun-fwd: wait until the TUN is up, then give it a moment.
          const deadline = Date.now() + 10000;
          while (!fs.existsSync(`/proc/${ut.child.pid}`) || !(await tunUp(netns))) {
            if (Date.now() > deadline || ut.done) throw new Error(`${ut.name}: the TUN never came up\n${ut.stderr}`);
            await delay(20);
          }
          await delay(100);
        }
        peer.child.stdin.write('go\n');
        await peer.wait(timeout);
        if (peer.done.code !== 0) throw new Error(`pkt-peer failed: ${peer.stderr}`);
        await ut.wait(timeout);
        const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, ut.name);
        const p = readJson(peerReport);
        if (mode === 'pps') {
          if (p.received < p.packets) throw new Error(`the TUN saw ${p.received} of ${p.packets} packets`);
          result.packets = p.packets;
          result.bytes = p.packets * size;
          result.sink = { firstNs: p.startNs, lastNs: p.doneNs, bytes: result.bytes };
        } else {
          delete result.packets;
          result.exchanges = p.exchanges;
          result.bytes = p.exchanges * size * 2;
          result.rtt = { p50Us: p.p50Us, p90Us: p.p90Us, p99Us: p.p99Us, minUs: p.minUs, maxUs: p.maxUs };
          result.sink = { firstNs: p.startNs, lastNs: p.doneNs, bytes: result.bytes };
        }
        return result;
      } finally {
        for (const p of procs) p.kill();
        await Promise.all(procs.map((p) => p.exited));
        deleteNetns(netns);
      }
    },
  };
}

async function tunUp(netns) {
  const { execFileSync } = await import('node:child_process');
  try {
    const out = execFileSync('ip', ['-n', netns, 'addr', 'show', 'dev', TUN], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.includes('UP') && out.includes('10.77.0.1');
  } catch {
    return false;
  }
}

// --- 6. concurrency -------------------------------------------------------------------------------

// `scale`: the same with `scale` times the bytes, to show whether memory grows with the size.
function concurrencyScenario(connections, { scale = 1, tools = ['native', 'js-engine', 'js-pump', 'socat'] } = {}) {
  return {
    id: `concurrency-${connections}${scale > 1 ? `-x${scale}` : ''}`,
    title: `concurrency: ${connections} splice${connections > 1 ? 's' : ''} at once, TLS → /dev/null` +
      `${scale > 1 ? `, ${scale}× the bytes (memory vs transfer size)` : ''}`,
    unit: 'concurrency',
    connections,
    tools,
    async run(tool, { bytes, tmp, timeout }) {
      const per = Math.floor((bytes * scale) / connections);
      const port = freePort();
      const peerReport = path.join(tmp, 'peer.json');
      // socat forks one sender per connection.
      const peer = shell('socat fork sender', `exec ${TOOL} rusage --report ${quote(peerReport)} -- ` +
        `${SOCAT} -u OPEN:/dev/zero,readbytes=${per} ` +
        `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=1024,${SOCAT_TLS_SERVER}`);
      const procs = [peer];
      try {
        await waitListening(port, { proc: peer });
        let ut;
        const utReport = path.join(tmp, 'ut.json');
        if (tool === 'socat') {
          ut = shell('socat under test', `exec ${TOOL} rusage --report ${quote(utReport)} -- sh -c ` +
            quote(`for i in $(seq ${connections}); do ${SOCAT} -u OPENSSL:127.0.0.1:${port},verify=0 OPEN:/dev/null & done; wait`), UT);
        } else {
          ut = nodeUnderTest({ scenario: 'concurrency', tool, port, connections, bytes: per });
        }
        procs.push(ut);
        await ut.wait(timeout);
        const result = ut.child.spawnargs.includes(CASE) ? nodeResult(ut) : rusageResult(utReport, 'socat');
        if (result.bytes !== undefined && result.bytes !== per * connections) {
          throw new Error(`moved ${result.bytes} bytes, expected ${per * connections}`);
        }
        result.bytes = per * connections;
        result.connections = connections;
        // The fork server never exits by itself: SIGTERM lets benchtool rusage report.
        process.kill(peer.child.pid, 'SIGTERM');
        await peer.wait(5000).catch(() => {});
        result.peer = peerCpu(peerReport);
        return result;
      } finally {
        for (const p of procs) p.kill();
      }
    },
  };
}

export const SCENARIOS = [
  tlsToFd('pipe'),
  tlsToFd('null'),
  fdToTls('pipe'),
  fdToTls('zero'),
  duplex,
  bridge,
  packetScenario('pps'),
  packetScenario('pingpong'),
  packetScenario('pps', CBC),
  tlsToFd('pipe', CBC),
  concurrencyScenario(1),
  concurrencyScenario(16),
  concurrencyScenario(256),
  concurrencyScenario(16, { scale: 4, tools: ['native', 'js-engine'] }),
  connections,
  commands,
];
