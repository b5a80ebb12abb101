// The Markdown report and the SVG chart (hand-written SVG, no chart library).

const TOOL_COLORS = {
  native: '#1f77b4',
  'js-engine': '#9467bd',
  'js-pump': '#ff7f0e',
  socat: '#2ca02c',
  'node-tls-nosink': '#8c564b',
  'plain-node': '#7f7f7f',
  'plain-socat': '#bcbd22',
  'plain-c': '#17becf',
};

const FAST_PEER = '`benchtool peer` (C, OpenSSL 3: 64 records sealed into memory per batch, large writes; read-ahead on receive)';

const PEERS = {
  'tls-to-pipe': `TLS peer: ${FAST_PEER} sending zeros; sink: \`benchtool sink\` reading a FIFO (1 MiB reads, checks every byte is zero, timestamps the first and last)`,
  'tls-to-null': `TLS peer: ${FAST_PEER} sending zeros; sink: /dev/null opened by the process under test (no reader process, so timed by the process itself)`,
  'pipe-to-tls': `source: \`benchtool source\` writing a counter pattern into a FIFO; TLS peer: ${FAST_PEER} receiving, checking the pattern and timestamping`,
  'zero-to-tls': `source: /dev/zero opened by the process under test (the splice engines are stopped once the size went out, the others read exactly the size); TLS peer: ${FAST_PEER} receiving and checking zeros`,
  duplex: `both ways at once, the size each way; near end: \`benchtool source\` and \`benchtool sink\` on FIFOs; far end: ${FAST_PEER} sending the pattern and checking what it gets`,
  bridge: `client: ${FAST_PEER} sending zeros over TLS to the proxy under test; the proxy opens a plain TCP connection to \`benchtool sink --listen\` (checks zeros)`,
  commands: 'the real commands (`node bin/tls-splice.js terminate|proxy|relay|agent`) beside bench/plain-commands.mjs ' +
    '(tls.createServer / tls.connect / net.connect + pipe() both ways). terminate: in front of HAProxy `http-request return`, ' +
    '`h2load --h1 -c 50` over TLS with `Connection: close` (new connections/s) then kept alive (requests/s), CPU per request of ' +
    'the terminator from /proc/<pid>/stat. proxy: curl through the https:// proxy (CONNECT) from a local Node https origin ' +
    'sending zeros, piped into `benchtool sink` (checks every byte); curl\'s speed_download, CPU s/GiB of the proxy. tunnel: ' +
    '`benchtool peer` (plain TCP) → relay public port → mTLS link → agent → `benchtool sink` (checks zeros, times first to ' +
    'last byte); CPU s/GiB of relay + agent together',
  connections: 'backend: HAProxy in mode http answering `http-request return status 200` (its own process, one thread); ' +
    'load: `wrk -t1 -c50` over TLS 1.3, first with `Connection: close` (one TLS handshake per request: new connections/s), ' +
    'then kept alive (requests/s); each terminator sets TCP_NODELAY on both sockets (tls-splice: `spliceTo(..., { engine: \'native\', noDelay: true })` ' +
    'once the backend connected; plain Node: `tls.createServer` + `net.connect` + `pipe` both ways; HAProxy 2.6: mode tcp, `bind ssl crt`, default threads). ' +
    'CPU per connection: /proc/<pid>/stat of the terminator (all threads) over the wrk run, per request; main thread: /proc/<pid>/task/<pid>/schedstat. ' +
    'start(): call to resolve, in the terminator, on a socket whose backend already connected. Idle: a separate Node client opens that many TLS ' +
    'connections (64 handshakes at a time) and holds them; RSS growth of the terminator over its own figure after a warm-up of 100 opened and closed, ' +
    'per connection, and its open fds. A fresh terminator for the idle phase',
  pps: "peer: `benchtool pkt-peer` (C, OpenSSL; records sealed in batches, large writes) sends UDP packets (wrong checksum, so the kernel drops them silently) one record each; timed by the peer from its first write until the TUN's rx_packets counted them all; in a private network namespace",
  pingpong: 'peer: `benchtool pkt-peer` sends an ICMP echo request, the kernel behind the TUN answers, the peer waits for the reply; 1,400 B each way, one exchange at a time; RTT measured by the peer',
};

const SHORT = {
  'tls-to-pipe': 'TLS → pipe',
  'tls-to-null': 'TLS → /dev/null (character device)',
  'pipe-to-tls': 'pipe → TLS',
  'zero-to-tls': '/dev/zero (character device) → TLS',
  duplex: 'pipe ⇄ TLS, both ways at once',
  bridge: 'TLS → proxy → TCP (CONNECT-style hop)',
  pps: '1,400-byte packets, TLS → TUN',
  'concurrency-1': '1 splice, TLS → /dev/null',
  'concurrency-16': '16 splices at once',
  'concurrency-256': '256 splices at once',
  'concurrency-16-x4': '16 splices, 4× the bytes each',
  connections: 'TLS terminator, wrk -c 50',
};

function fmt(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(Math.min(digits, 1));
  return x.toFixed(digits);
}

function withSpread(s, digits = 2, scale = 1) {
  if (!s) return '—';
  const m = fmt(s.median * scale, digits);
  if (s.n < 2) return m;
  return `${m} (${fmt(s.min * scale, digits)}–${fmt(s.max * scale, digits)})`;
}

function ratio(tool, native, key) {
  const a = tool.summary[key]?.median;
  const b = native?.summary[key]?.median;
  if (!a || !b) return '—';
  return `${(a / b).toFixed(2)}×`;
}

function pct(s) {
  if (!s) return '—';
  return `${(s.median * 100).toFixed(s.median < 0.1 ? 2 : 1)}%`;
}

function failures(t) {
  return t.summary.failures ? ` (${t.summary.failures}/${t.summary.runs} failed)` : '';
}

function streamTable(s) {
  const native = s.tools.find((t) => t.tool === 'native');
  const lines = [
    '| tool | GB/s (min–max) | vs native | CPU s/GiB (min–max) | vs native | main-thread ELU | main-thread CPU | peak RSS MB | peer CPU share |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    lines.push(`| ${t.tool}${failures(t)} | ${withSpread(x.gbps, 3)} | ${ratio(t, native, 'gbps')} | ` +
      `${withSpread(x.cpuPerGiB)} | ${ratio(t, native, 'cpuPerGiB')} | ${pct(x.elu)} | ${pct(x.mainCpuShare)} | ` +
      `${fmt(x.peakRssMB?.median, 0)} | ${pct(x.peerCpuShare)} |`);
  }
  return lines;
}

function ppsTable(s) {
  const native = s.tools.find((t) => t.tool === 'native');
  const lines = [
    '| tool | kpps (min–max) | vs native | GB/s | CPU s/GiB | vs native | CPU µs/packet | main-thread ELU | peak RSS MB |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    const usPerPacket = x.cpuPerGiB ? (x.cpuPerGiB.median / (2 ** 30 / 1400)) * 1e6 : null;
    lines.push(`| ${t.tool}${failures(t)} | ${withSpread(x.kpps, 0)} | ${ratio(t, native, 'kpps')} | ` +
      `${fmt(x.gbps?.median, 3)} | ${withSpread(x.cpuPerGiB)} | ${ratio(t, native, 'cpuPerGiB')} | ` +
      `${fmt(usPerPacket, 2)} | ${pct(x.elu)} | ${fmt(x.peakRssMB?.median, 0)} |`);
  }
  return lines;
}

function pingpongTable(s) {
  const native = s.tools.find((t) => t.tool === 'native');
  const lines = [
    '| tool | RTT p50 µs (min–max) | RTT p99 µs (min–max) | p50 vs native | CPU µs/exchange | main-thread ELU | peak RSS MB |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    lines.push(`| ${t.tool}${failures(t)} | ${withSpread(x.rttP50Us, 1)} | ${withSpread(x.rttP99Us, 1)} | ` +
      `${ratio(t, native, 'rttP50Us')} | ${withSpread(x.cpuUsPerExchange, 1)} | ${pct(x.elu)} | ` +
      `${fmt(x.peakRssMB?.median, 0)} |`);
  }
  return lines;
}

function concurrencyTable(s) {
  const native = s.tools.find((t) => t.tool === 'native');
  const lines = [
    '| tool | aggregate GB/s (min–max) | vs native | CPU s/GiB | vs native | MB per splice (min–max) | main-thread ELU | peak RSS MB |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    lines.push(`| ${t.tool}${failures(t)} | ${withSpread(x.gbps, 3)} | ${ratio(t, native, 'gbps')} | ` +
      `${withSpread(x.cpuPerGiB)} | ${ratio(t, native, 'cpuPerGiB')} | ${withSpread(x.mbPerSplice, 2)} | ` +
      `${pct(x.elu)} | ${fmt(x.peakRssMB?.median, 0)} |`);
  }
  return lines;
}

// The commands scenario: the tls-splice commands against the same programs with plain Node pipes
// (ratios tls-splice / plain Node) and, for terminate, HAProxy.
function commandsTable(s) {
  const by = (tool) => s.tools.find((t) => t.tool === tool);
  const node = by('js-pump');
  const haproxy = by('haproxy');
  const name = { native: 'tls-splice', 'js-pump': 'plain Node', haproxy: 'HAProxy' };
  const r = (t, ref, key) => (!t || !ref || t === ref ? '—' : ratio(t, ref, key));
  const lines = [
    '| terminate | new connections/s (min–max) | vs plain Node | vs HAProxy | CPU ms/connection | vs plain Node | ' +
      'kept-alive req/s (min–max) | vs plain Node | vs HAProxy | CPU ms/request | h2load errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    lines.push(`| ${name[t.tool] ?? t.tool}${failures(t)} | ${withSpread(x.termConnRate, 0)} | ${r(t, node, 'termConnRate')} | ` +
      `${r(t, haproxy, 'termConnRate')} | ${withSpread(x.termCpuMsPerConn)} | ${r(t, node, 'termCpuMsPerConn')} | ` +
      `${withSpread(x.termKeepAliveRps, 0)} | ${r(t, node, 'termKeepAliveRps')} | ${r(t, haproxy, 'termKeepAliveRps')} | ` +
      `${withSpread(x.termCpuMsPerKeptRequest, 3)} | ${fmt(x.h2loadErrors?.median, 0)} |`);
  }
  lines.push('', ...resumptionRows(s, name, r));
  lines.push('', '| proxy / tunnel | proxy MB/s (min–max) | vs plain Node | proxy CPU s/GiB | vs plain Node | ' +
    'tunnel MB/s (min–max) | vs plain Node | relay+agent CPU s/GiB | vs plain Node |', '|---|---|---|---|---|---|---|---|---|');
  for (const t of s.tools) {
    const x = t.summary;
    if (!x.proxyMBps && !x.tunnelMBps) continue;
    lines.push(`| ${name[t.tool] ?? t.tool}${failures(t)} | ${withSpread(x.proxyMBps, 0)} | ${r(t, node, 'proxyMBps')} | ` +
      `${withSpread(x.proxyCpuPerGiB)} | ${r(t, node, 'proxyCpuPerGiB')} | ${withSpread(x.tunnelMBps, 0)} | ` +
      `${r(t, node, 'tunnelMBps')} | ${withSpread(x.tunnelCpuPerGiB)} | ${r(t, node, 'tunnelCpuPerGiB')} |`);
  }
  return lines;
}

// Session resumption through the terminators (issue 21): wrk's reconnections, counted by the server.
function resumptionRows(s, name, r) {
  const by = (tool) => s.tools.find((t) => t.tool === tool);
  const node = by('js-pump');
  const haproxy = by('haproxy');
  const lines = [
    '| terminate, session resumption | share of offered sessions resumed (wrk) | resumed connections/s (min–max) | ' +
      'vs plain Node | vs HAProxy | share resumed (s_client chain, TLS 1.3) |',
    '|---|---|---|---|---|---|',
  ];
  for (const t of s.tools) {
    const x = t.summary;
    if (!x.termResumedShare) continue;
    lines.push(`| ${name[t.tool] ?? t.tool}${failures(t)} | ${pct(x.termResumedShare)} | ${withSpread(x.termResumedRps, 0)} | ` +
      `${r(t, node, 'termResumedRps')} | ${r(t, haproxy, 'termResumedRps')} | ${pct(x.termChainResumedShare)} |`);
  }
  lines.push('', 'Resumption: `wrk -t 2 -c 50 -H \'Connection: close\'` for the phase length; each connection slot ' +
    'offers the session its previous connection ended with. The terminator counts its handshakes (tls-splice: ' +
    '`tls_splice_handshakes_total{resumed}` on --metrics; plain Node: `isSessionReused()`; HAProxy: `ssl_sess` / ' +
    '`ssl_reused_sess` of `show stat`); share = resumed / (all − 50 first handshakes), goal ≥ 99%. s_client chain: ' +
    '40 `openssl s_client -sess_in previous -sess_out next`, share of reconnections `Reused`.');
  return lines;
}

// The connections scenario: tls-splice against plain Node and HAProxy, ratios against both.
function connectionsTable(s) {
  const by = (tool) => s.tools.find((t) => t.tool === tool);
  const node = by('js-pump');
  const haproxy = by('haproxy');
  const r = (t, ref, key) => (t === ref ? '—' : ratio(t, ref, key));
  const levelA = s.tools.map((t) => t.summary.idleA?.median).find(Boolean);
  const levelB = s.tools.map((t) => t.summary.idleB?.median).find(Boolean);
  const name = { native: 'tls-splice', 'js-pump': 'plain Node', haproxy: 'HAProxy' };
  const lines = [
    '| terminator | new connections/s (min–max) | vs plain Node | vs HAProxy | CPU ms per connection | ' +
      'main-thread ms per connection | kept-alive requests/s | vs plain Node | vs HAProxy | ' +
      `main-thread ms per connection while ${levelA ?? '?'} idle ones open | start() p50 / p99 ms under wrk | ` +
      `start() p50 / p99 ms, idle opens | KiB per idle connection at ${levelA ?? '?'} (fds)` +
      `${levelB ? ` | KiB per idle connection at ${levelB} (fds)` : ''} |`,
    `|---|---|---|---|---|---|---|---|---|---|---|---|---|${levelB ? '---|' : ''}`,
  ];
  for (const t of s.tools) {
    const x = t.summary;
    const pair = (a, b) => (a ? `${fmt(a.median, 2)} / ${fmt(b?.median, 2)}` : '—');
    lines.push(`| ${name[t.tool] ?? t.tool}${failures(t)} | ${withSpread(x.connRate, 0)} | ${r(t, node, 'connRate')} | ` +
      `${r(t, haproxy, 'connRate')} | ${withSpread(x.cpuMsPerConn, 2)} | ${withSpread(x.mainMsPerConn, 2)} | ` +
      `${withSpread(x.keepAliveRps, 0)} | ${r(t, node, 'keepAliveRps')} | ${r(t, haproxy, 'keepAliveRps')} | ` +
      `${withSpread(x.setupMainMsPerConn, 2)} | ${pair(x.startP50Ms, x.startP99Ms)} | ` +
      `${pair(x.idleStartP50Ms, x.idleStartP99Ms)} | ${fmt(x.kbPerIdleA?.median, 1)} (${fmt(x.fdsA?.median, 0)})` +
      `${levelB ? ` | ${fmt(x.kbPerIdleB?.median, 1)} (${fmt(x.fdsB?.median, 0)})` : ''} |`);
  }
  return lines;
}

function microTable(micro) {
  const lines = [
    '| suite | size | op | native record layer ns (GB/s) | node:crypto ns (GB/s) | vs native | binding.openRecord ns | openssl speed -evp -aead ns (GB/s) | vs native | openssl speed -evp, streaming ns (GB/s) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const find = (tool, r) => micro.rows.find((x) => x.tool.startsWith(tool) && x.suite === r.suite &&
    x.size === r.size && x.op === r.op);
  for (const r of micro.rows.filter((x) => x.tool === 'tls-splice native record layer')) {
    const node = find(`node:crypto ${r.op}`, r);
    const one = find('binding.openRecord', r);
    const speed = find('openssl speed -evp -aead', r);
    const stream = find('openssl speed -evp (streaming', r);
    const cell = (x) => (x ? `${fmt(x.nsPerRecord, 0)} (${fmt(x.gbps, 2)})` : '—');
    lines.push(`| ${r.suite} | ${r.size} | ${r.op} | ${cell(r)} | ${cell(node)} | ` +
      `${node ? `${(node.gbps / r.gbps).toFixed(2)}×` : '—'} | ${one ? fmt(one.nsPerRecord, 0) : '—'} | ` +
      `${cell(speed)} | ${speed ? `${(speed.gbps / r.gbps).toFixed(2)}×` : '—'} | ${cell(stream)} |`);
  }
  return lines;
}

function med(results, scenario, tool, key) {
  const s = results.scenarios.find((x) => x.id === scenario);
  return s?.tools.find((t) => t.tool === tool)?.summary[key]?.median ?? null;
}

// The issue's goals, each checked against this run's medians (measured, never asserted).
export function goals(results) {
  const out = [];
  const check = (text, value, target, ok) => {
    if (value === null || target === null || !Number.isFinite(value) || !Number.isFinite(target)) return;
    out.push({ text, value, target, met: ok(value, target) });
  };
  const ratioOf = (sc, a, b, key = 'gbps') => {
    const x = med(results, sc, a, key);
    const y = med(results, sc, b, key);
    return x !== null && y ? x / y : null;
  };
  for (const sc of ['tls-to-null', 'zero-to-tls']) {
    check(`${sc}: native ≥ 3× the JS pump (fs streams)`, ratioOf(sc, 'native', 'js-pump'), 3, (v, t) => v >= t);
  }
  check("tls-to-null: native ≥ 0.9× Node's TLS read rate with no sink",
    ratioOf('tls-to-null', 'native', 'node-tls-nosink'), 0.9, (v, t) => v >= t);
  for (const sc of ['tls-to-pipe', 'pipe-to-tls', 'duplex', 'bridge']) {
    check(`${sc}: native ≥ 1.3× the JS pump (net.Socket)`, ratioOf(sc, 'native', 'js-pump'), 1.3, (v, t) => v >= t);
    check(`${sc}: native ahead of socat`, ratioOf(sc, 'native', 'socat'), 1, (v, t) => v > t);
    check(`${sc}: native within 10% of the plain copy (Node, no TLS)`, ratioOf(sc, 'native', 'plain-node'), 0.9, (v, t) => v >= t);
    check(`${sc}: native within 10% of the plain copy (socat, no TLS)`, ratioOf(sc, 'native', 'plain-socat'), 0.9, (v, t) => v >= t);
  }
  for (const s of results.scenarios) {
    // The main thread's CPU share (schedstat), not ELU: ELU has read an idle loop as 98-99% busy
    // (bench/README.md, "ELU"). Runs from before the main-thread figure fall back to ELU.
    const main = med(results, s.id, 'native', 'mainCpuShare');
    if (main !== null) check(`${s.id}: native main-thread CPU < 2%`, main, 0.02, (v, t) => v < t);
    else check(`${s.id}: native main-thread ELU < 2%`, med(results, s.id, 'native', 'elu'), 0.02, (v, t) => v < t);
    if (s.unit === 'pingpong') continue;
    check(`${s.id}: native CPU/GiB ≤ 0.5× the JS pump's`, ratioOf(s.id, 'native', 'js-pump', 'cpuPerGiB'), 0.5, (v, t) => v <= t);
    check(`${s.id}: native CPU/GiB below socat's`, ratioOf(s.id, 'native', 'socat', 'cpuPerGiB'), 1, (v, t) => v < t);
  }
  const small = med(results, 'concurrency-16', 'native', 'mbPerSplice');
  const large = med(results, 'concurrency-16-x4', 'native', 'mbPerSplice');
  check('native memory per splice flat with transfer size (16 splices, 4× the bytes: ratio ≤ 1.1)',
    small && large ? large / small : null, 1.1, (v, t) => v <= t);
  return out;
}

// Issue 11's goals for the connections scenario, against this run's medians.
export function connectionGoals(results) {
  const out = [];
  const get = (tool, key) => med(results, 'connections', tool, key);
  const check = (text, value, target, ok, unit = '') => {
    if (value === null || !Number.isFinite(value)) return;
    out.push({ text, value, target, met: ok(value, target), unit });
  };
  const rate = get('native', 'connRate');
  const nodeRate = get('js-pump', 'connRate');
  if (rate !== null && nodeRate) {
    check('new connections/s ≥ 1.0× plain Node', rate / nodeRate, 1.0, (v, t) => v >= t, '×');
    check('new connections/s ≥ 0.9× plain Node (at least)', rate / nodeRate, 0.9, (v, t) => v >= t, '×');
  }
  const main = get('native', 'mainMsPerConn');
  const nodeMain = get('js-pump', 'mainMsPerConn');
  if (main !== null && nodeMain) check('main-thread ms per connection ≤ 1.2× plain Node', main / nodeMain, 1.2, (v, t) => v <= t, '×');
  check('start() p50 ≤ 0.5 ms (idle opens)', get('native', 'idleStartP50Ms'), 0.5, (v, t) => v <= t, ' ms');
  for (const key of ['kbPerIdleA', 'kbPerIdleB']) {
    const n = get('native', key === 'kbPerIdleA' ? 'idleA' : 'idleB');
    const kb = get('native', key);
    if (n === null) continue;
    check(`RSS per idle splice ≤ 24 KiB (at ${n})`, kb, 24, (v, t) => v <= t, ' KiB');
    const nodeKb = get('js-pump', key);
    if (nodeKb !== null) check(`RSS per idle splice under plain Node's (at ${n})`, kb, nodeKb, (v, t) => v < t, ' KiB');
  }
  return out;
}

export function markdownReport(results) {
  const m = results.machine;
  const lines = [];
  lines.push(`# tls-splice benchmarks: ${results.date.slice(0, 10)} (${results.mode} mode)`);
  lines.push('');
  lines.push(`Machine: ${m.nproc} × ${m.cpu}, ${m.memGiB} GiB, Linux ${m.kernel}; Node ${m.node} ` +
    `(OpenSSL ${m.nodeOpenssl}); ${m.systemOpenssl}; socat ${m.socat}. ` +
    `Load average: ${results.load.before.join(' ')} before, median ${results.load.duringMedian} / max ` +
    `${results.load.duringMax} (1-minute) during the run. Shared with other work: see bench/README.md.`);
  lines.push('');
  const p = results.params;
  if (results.git) {
    lines.push(`Code: commit ${results.git.commit}${results.git.dirty.length ? ` with uncommitted changes to ${results.git.dirty.map((l) => l.slice(3)).join(', ')} (the working tree is shared)` : ''}` +
      `${results.pinned ? '; process under test pinned to its own CPU with taskset' : ''}.`);
    lines.push('');
  }
  if (results.scenarios.some((s) => s.unit === 'commands')) {
    lines.push(`commands: terminate phases of ${p.commandSeconds} s each, proxy download ${p.proxyBytes / 2 ** 20} MiB, ` +
      `tunnel ${p.tunnelBytes / 1e6} MB.`, '');
  }
  lines.push(`${results.runs} run(s) per case, interleaved; median (min–max). Stream size ` +
    `${p.bytes / 2 ** 20} MiB; ${p.packets} packets; ${p.exchanges} ping-pong exchanges. ` +
    'Throughput: bytes / (last − first byte at the sink) where there is a sink process, else the ' +
    "process's own transfer span (/dev/null; socat: its lifetime). CPU: user+system of the process " +
    'under test (all its threads), per GiB moved. ELU: main-thread event-loop utilisation during the ' +
    'transfer (Node tools); main-thread CPU: that thread\'s CPU time over the same span, from the ' +
    'scheduler (/proc/self/task/<pid>/schedstat), which cannot read an idle thread as busy. Peer CPU share: CPU seconds of the TLS peer / transfer seconds (near 100% ' +
    'means the peer may be the limit).');
  lines.push('');
  for (const s of results.scenarios) {
    lines.push(`## ${s.title}`);
    lines.push('');
    if (PEERS[s.id]) lines.push(`${PEERS[s.id]}.`, '');
    if (s.unit === 'pps') lines.push(...ppsTable(s));
    else if (s.unit === 'pingpong') lines.push(...pingpongTable(s));
    else if (s.unit === 'concurrency') lines.push(...concurrencyTable(s));
    else if (s.unit === 'connections') lines.push(...connectionsTable(s));
    else if (s.unit === 'commands') lines.push(...commandsTable(s));
    else lines.push(...streamTable(s));
    const errors = s.tools.flatMap((t) => (t.summary.errors ?? []).map((e) => `${t.tool}: ${e.split('\n')[0]}`));
    if (errors.length) lines.push('', ...errors.map((e) => `- failed: ${e}`));
    lines.push('');
  }
  if (results.micro) {
    lines.push('## Micro: seal / open one TLS 1.3 record');
    lines.push('');
    lines.push('CPU time per record. Native: `bench/native/record_bench` (src-native\'s RecordLayer, ' +
      'built against the system libssl). node:crypto: createCipheriv/createDecipheriv per record, ' +
      'as a JS record layer does (tinybench). binding.openRecord derives the keys on every call ' +
      '(it serves capture\'s self-check). `openssl speed -evp -aead`: the AEAD per record in a ' +
      'TLS-like sequence (new IV, 13-byte AAD, update, final; in place, no tag handling); ' +
      '`openssl speed -evp`: the streaming cipher with no per-record work, an upper bound.');
    lines.push('');
    lines.push(...microTable(results.micro));
    lines.push('');
  }
  const cg = connectionGoals(results);
  if (cg.length) {
    lines.push('## Goals of issue 11 (connections), against this run\'s medians');
    lines.push('');
    lines.push('| goal | measured | target | met |', '|---|---|---|---|');
    for (const x of cg) {
      lines.push(`| ${x.text} | ${x.value.toFixed(2)}${x.unit} | ${fmt(x.target, 2)}${x.unit} | ${x.met ? 'yes' : '**no**'} |`);
    }
    lines.push('');
  }
  const g = goals(results);
  if (g.length) {
    lines.push('## Goals of issue 4, against this run\'s medians');
    lines.push('');
    lines.push('| goal | measured | target | met |', '|---|---|---|---|');
    for (const x of g) {
      const share = /ELU|main-thread CPU/.test(x.text);
      lines.push(`| ${x.text} | ${share ? `${(x.value * 100).toFixed(2)}%` : x.value.toFixed(2)} | ` +
        `${share ? `${(x.target * 100).toFixed(0)}%` : x.target} | ${x.met ? 'yes' : '**no**'} |`);
    }
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}

// --- SVG ------------------------------------------------------------------------------------------

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

export function hasBulk(results) {
  return results.scenarios.some((s) => s.unit !== 'connections' && s.unit !== 'commands');
}

export function hasConnections(results) {
  return results.scenarios.some((s) => s.unit === 'connections' && s.tools.some((t) => t.summary.connRate));
}

// The connections scenario's chart: new connections/s and kept-alive requests/s (higher is
// better), and CPU and main-thread ms per new connection (lower is better), per terminator.
export function connectionsSvg(results) {
  const s = results.scenarios.find((x) => x.unit === 'connections');
  const tools = s.tools.filter((t) => t.summary.connRate);
  const name = { native: 'tls-splice', 'js-pump': 'plain Node', haproxy: 'HAProxy' };
  const color = { native: TOOL_COLORS.native, 'js-pump': TOOL_COLORS['js-pump'], haproxy: '#d62728' };
  const panels = [
    { key: 'connRate', title: 'New connections/s, Connection: close (higher is better)', digits: 0 },
    { key: 'keepAliveRps', title: 'Requests/s on kept-alive connections (higher is better)', digits: 0 },
    { key: 'cpuMsPerConn', title: 'CPU ms per new connection, all threads (lower is better)', digits: 2 },
    { key: 'mainMsPerConn', title: 'Main-thread CPU ms per new connection (lower is better)', digits: 2 },
  ];
  const barH = 16;
  const panelW = 300;
  const labelW = 90;
  const colW = labelW + panelW + 70;
  const left = 10;
  const top = 60;
  const panelH = tools.length * barH + 40;
  const width = left + 2 * colW;
  const height = top + 2 * panelH + 20;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="${left}" y="18" font-size="14" font-weight="bold">${esc(`A TLS terminator in front of a plain HTTP backend, wrk -c 50 — ${results.date.slice(0, 10)} (${results.mode}, median of ${results.runs}; whiskers: min–max)`)}</text>`);
  const m = results.machine;
  out.push(`<text x="${left}" y="34" fill="#555">${esc(`${m.nproc} × ${m.cpu}, Linux ${m.kernel}, Node ${m.node}; tls-splice: createServer + spliceTo (native), plain Node: tls.createServer + pipe, HAProxy 2.6: mode tcp, bind ssl`)}</text>`);
  panels.forEach((p, i) => {
    const x0 = left + (i % 2) * colW + labelW;
    const y0 = top + Math.floor(i / 2) * panelH;
    const vals = tools.map((t) => t.summary[p.key]).filter(Boolean);
    const max = niceMax(Math.max(...vals.map((v) => v.max ?? v.median)));
    out.push(`<text x="${x0 - labelW}" y="${y0}" font-weight="bold">${esc(p.title)}</text>`);
    tools.forEach((t, j) => {
      const v = t.summary[p.key];
      const by = y0 + 8 + j * barH;
      out.push(`<text x="${x0 - 6}" y="${by + barH - 5}" text-anchor="end" fill="#333">${esc(name[t.tool] ?? t.tool)}</text>`);
      if (!v) {
        out.push(`<text x="${x0 + 4}" y="${by + barH - 5}" fill="#999">n/a</text>`);
        return;
      }
      const w = (x) => Math.max(0.5, Math.min(panelW, (x / max) * panelW));
      out.push(`<rect x="${x0}" y="${by}" width="${w(v.median).toFixed(1)}" height="${barH - 4}" fill="${color[t.tool] ?? '#333'}"/>`);
      if (v.n > 1) {
        out.push(`<line x1="${(x0 + w(v.min)).toFixed(1)}" x2="${(x0 + w(v.max)).toFixed(1)}" y1="${by + (barH - 4) / 2}" y2="${by + (barH - 4) / 2}" stroke="#000"/>`);
      }
      out.push(`<text x="${(x0 + w(Math.max(v.median, v.max ?? 0)) + 4).toFixed(1)}" y="${by + barH - 5}" fill="#333">${fmt(v.median, p.digits)}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export function svgChart(results) {
  const scenarios = results.scenarios.filter((s) => s.unit !== 'pingpong' && s.unit !== 'connections' && s.unit !== 'commands');
  const tools = [...new Set(scenarios.flatMap((s) => s.tools.map((t) => t.tool)))];
  const barH = 11;
  const gap = 10;
  const labelW = 250;
  const panelW = 330;
  const panelGap = 60;
  const top = 78;
  const left = 10;
  const width = left + labelW + 2 * panelW + panelGap + 60;
  const rows = [];
  let y = top;
  for (const s of scenarios) {
    const present = s.tools.filter((t) => t.summary.gbps);
    rows.push({ s, y, tools: present });
    y += Math.max(1, present.length) * barH + gap + 16;
  }
  const height = y + 40;
  const maxGbps = niceMax(Math.max(...scenarios.flatMap((s) => s.tools.map((t) => t.summary.gbps?.max ?? 0))));
  // Small packets and many short connections cost some tools far more CPU per GiB than the bulk
  // streams: the axis fits the stream scenarios, and longer bars are clipped and labelled.
  const streamCpu = scenarios.filter((s) => s.unit === 'stream')
    .flatMap((s) => s.tools.map((t) => t.summary.cpuPerGiB?.max ?? 0));
  const maxCpu = niceMax(streamCpu.length ? Math.max(...streamCpu) * 1.1
    : Math.max(...scenarios.flatMap((s) => s.tools.map((t) => t.summary.cpuPerGiB?.median ?? 0))));
  const x1 = left + labelW;
  const x2 = x1 + panelW + panelGap;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="${left}" y="18" font-size="14" font-weight="bold">tls-splice benchmarks — ${esc(results.date.slice(0, 10))} (${esc(results.mode)}, median of ${results.runs}; whiskers: min–max)</text>`);
  const m = results.machine;
  out.push(`<text x="${left}" y="34" fill="#555">${esc(`${m.nproc} × ${m.cpu}, Linux ${m.kernel}, Node ${m.node}; size ${results.params.bytes / 2 ** 20} MiB; ping-pong RTTs are in the table only`)}</text>`);
  // Legend.
  let lx = left;
  for (const t of tools) {
    out.push(`<rect x="${lx}" y="44" width="10" height="10" fill="${TOOL_COLORS[t] ?? '#333'}"/>`);
    out.push(`<text x="${lx + 14}" y="53">${esc(t)}</text>`);
    lx += 14 + t.length * 6.2 + 14;
  }
  const axis = (x0, max, title, unit) => {
    out.push(`<text x="${x0}" y="${top - 6}" font-weight="bold">${esc(title)}</text>`);
    for (let i = 0; i <= 4; i++) {
      const x = x0 + (panelW * i) / 4;
      out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${height - 34}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${x}" y="${height - 22}" text-anchor="middle" fill="#555">${fmt((max * i) / 4, 2)}</text>`);
    }
    out.push(`<text x="${x0 + panelW / 2}" y="${height - 8}" text-anchor="middle" fill="#555">${esc(unit)}</text>`);
  };
  axis(x1, maxGbps, 'Throughput (higher is better)', 'GB/s');
  axis(x2, maxCpu, 'CPU of the process under test per GiB (lower is better)', 'CPU seconds per GiB');
  for (const row of rows) {
    out.push(`<text x="${left}" y="${row.y + 10}"><tspan font-weight="bold">${esc(row.s.id)}</tspan><tspan fill="#555">\u00a0— ${esc(SHORT[row.s.id] ?? '')}</tspan></text>`);
    let by = row.y + 14;
    for (const t of row.tools) {
      const color = TOOL_COLORS[t.tool] ?? '#333';
      const g = t.summary.gbps;
      const c = t.summary.cpuPerGiB;
      out.push(`<text x="${x1 - 6}" y="${by + barH - 2}" text-anchor="end" fill="#333">${esc(t.tool)}</text>`);
      const w = (v, max) => Math.max(0.5, Math.min(panelW, (v / max) * panelW));
      out.push(`<rect x="${x1}" y="${by}" width="${w(g.median, maxGbps).toFixed(1)}" height="${barH - 2}" fill="${color}"/>`);
      if (g.n > 1) {
        out.push(`<line x1="${(x1 + w(g.min, maxGbps)).toFixed(1)}" x2="${(x1 + w(g.max, maxGbps)).toFixed(1)}" y1="${by + (barH - 2) / 2}" y2="${by + (barH - 2) / 2}" stroke="#000" stroke-width="1"/>`);
      }
      out.push(`<text x="${(x1 + w(Math.max(g.median, g.max), maxGbps) + 4).toFixed(1)}" y="${by + barH - 2}" fill="#333">${fmt(g.median, 3)}</text>`);
      if (c) {
        const clipped = c.median > maxCpu;
        out.push(`<rect x="${x2}" y="${by}" width="${w(c.median, maxCpu).toFixed(1)}" height="${barH - 2}" fill="${color}"${clipped ? ' fill-opacity="0.6"' : ''}/>`);
        if (c.n > 1 && !clipped) {
          out.push(`<line x1="${(x2 + w(c.min, maxCpu)).toFixed(1)}" x2="${(x2 + w(c.max, maxCpu)).toFixed(1)}" y1="${by + (barH - 2) / 2}" y2="${by + (barH - 2) / 2}" stroke="#000" stroke-width="1"/>`);
        }
        const labelX = clipped ? x2 + panelW - 4 : x2 + w(Math.max(c.median, c.n > 1 ? c.max : 0), maxCpu) + 4;
        out.push(`<text x="${labelX.toFixed(1)}" y="${by + barH - 2}" ${clipped ? 'text-anchor="end" fill="#fff" font-weight="bold"' : 'fill="#333"'}>${fmt(c.median, 2)}${clipped ? ' ▸' : ''}</text>`);
      }
      by += barH;
    }
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
