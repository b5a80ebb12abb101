// Figures from raw case results, and their median and spread over repeats.
import { COMMAND_FIGURES, commandFigures } from './commands.mjs';
import { CONNECTION_FIGURES, connectionFigures } from './connections.mjs';

export const GIB = 2 ** 30;

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function spread(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  return { min: Math.min(...v), max: Math.max(...v), n: v.length };
}

function ns(value) {
  return value === undefined || value === null ? null : BigInt(value);
}

// One run of one case -> the figures reported.
export function figures(raw) {
  if (raw.kind === 'connections') return connectionFigures(raw);
  if (raw.kind === 'commands') return commandFigures(raw);
  const f = { bytes: raw.bytes };
  // The transfer time: from the first to the last byte at the sink when there is one (measured
  // outside the process under test, the same way for every tool); else the process's own span.
  const first = ns(raw.sink?.firstNs);
  const last = ns(raw.sink?.lastNs);
  let seconds;
  if (first !== null && last !== null && last > first) {
    seconds = Number(last - first) / 1e9;
    f.timedBy = 'sink';
  } else {
    seconds = Number(ns(raw.endNs) - ns(raw.startNs)) / 1e9;
    f.timedBy = raw.kind === 'node' ? 'process' : 'process lifetime';
  }
  f.seconds = seconds;
  f.gbps = raw.bytes / seconds / 1e9;
  f.cpuS = raw.cpuS;
  f.cpuPerGiB = raw.cpuS / (raw.bytes / GIB);
  f.elu = raw.kind === 'node' ? raw.elu : null;
  // The main thread's CPU time over the ELU's span, as a share of it (the scheduler's account:
  // an idle thread cannot read as busy here, whatever ELU says).
  if (raw.kind === 'node' && raw.mainCpuShare !== undefined) f.mainCpuShare = raw.mainCpuShare;
  f.peakRssMB = raw.maxRssKb / 1024;
  if (raw.peer) f.peerCpuShare = raw.peer.cpuS / seconds;
  if (raw.packets !== undefined) f.kpps = raw.packets / seconds / 1e3;
  if (raw.rtt) {
    f.rttP50Us = raw.rtt.p50Us;
    f.rttP99Us = raw.rtt.p99Us;
    f.cpuUsPerExchange = (raw.cpuS * 1e6) / raw.exchanges;
  }
  if (raw.connections !== undefined) {
    f.connections = raw.connections;
    // Node: what the process grew by from before its first connection to its peak, per
    // connection (TLS state, splice buffers, JS objects). socat: one process per connection.
    f.mbPerSplice = raw.kind === 'node'
      ? (raw.maxRssKb - raw.rssBeforeKb) / 1024 / raw.connections
      : raw.maxRssKb / 1024;
  }
  return f;
}

export const FIGURES = ['gbps', 'cpuPerGiB', 'elu', 'mainCpuShare', 'peakRssMB', 'peerCpuShare', 'kpps', 'rttP50Us',
  'rttP99Us', 'cpuUsPerExchange', 'mbPerSplice', 'seconds', ...CONNECTION_FIGURES, ...COMMAND_FIGURES];

// All runs of one (scenario, tool) -> { fig: { median, min, max, n } }.
export function summarize(runs) {
  const ok = runs.filter((r) => r.figures);
  const out = { runs: runs.length, failures: runs.length - ok.length };
  for (const key of FIGURES) {
    const values = ok.map((r) => r.figures[key]);
    const m = median(values);
    if (m === null) continue;
    out[key] = { median: m, ...spread(values) };
  }
  const errors = runs.filter((r) => r.error).map((r) => r.error);
  if (errors.length) out.errors = errors;
  return out;
}
