#!/usr/bin/env node
// npm run bench [-- --quick] [-- --only id,id] [-- --tools native,socat] [-- --runs N]
//               [-- --no-micro] [-- --no-save] [-- --pin]
//
// Runs every scenario of bench/lib/scenarios.mjs with every tool, each case in fresh processes,
// repeats interleaved (run 1 of every case, then run 2, ...), then the micro-benchmarks; prints a
// Markdown table and saves bench/results/<date>.{json,md} and docs/bench.svg.
// See bench/README.md.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BENCH_DIR, ROOT, setPinning } from './lib/proc.mjs';
import { SCENARIOS, TOOLS } from './lib/scenarios.mjs';
import { figures, summarize } from './lib/stats.mjs';
import { runMicro } from './lib/micro.mjs';
import { connectionsSvg, hasBulk, hasConnections, markdownReport, svgChart } from './lib/report.mjs';

function parseArgs(argv) {
  const opts = { quick: false, only: null, tools: null, runs: null, micro: true, save: true, pin: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (a.includes('=')) return a.slice(a.indexOf('=') + 1);
      return argv[++i];
    };
    if (a === '--quick') opts.quick = true;
    else if (a.startsWith('--only')) opts.only = value().split(',');
    else if (a.startsWith('--tools')) opts.tools = value().split(',');
    else if (a.startsWith('--runs')) opts.runs = Number(value());
    else if (a === '--no-micro') opts.micro = false;
    else if (a === '--micro-only') opts.only = [];
    else if (a === '--no-save') opts.save = false;
    else if (a === '--pin') opts.pin = true;
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/run.mjs [--quick] [--only ids] [--tools names] [--runs N] ' +
        '[--no-micro] [--micro-only] [--no-save] [--pin]');
      console.log(`scenarios: ${SCENARIOS.map((s) => s.id).join(', ')}`);
      console.log(`standalone scenarios (--only): ${Object.keys(STANDALONE).join(', ')}`);
      console.log(`tools: ${Object.keys(TOOLS).join(', ')}`);
      process.exit(0);
    } else {
      throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  return opts;
}

// Scenarios that are scripts of their own (they compare servers, not tools, and print their own
// report): run with --only <id>, never by default.
const STANDALONE = {
  'hostile-hello': 'hostile-hello.mjs',   // issue 17: fragmented hellos, stalled handshakes
  'cbc-timing': 'cbc-timing.mjs',         // issue 20: CBC open time, valid vs bad padding vs bad MAC
};

function runStandalone(id, opts) {
  const date = new Date().toISOString().slice(0, 10);
  const stamp = `${date}-${id}${opts.quick ? '-quick' : ''}`;
  const dir = path.join(BENCH_DIR, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const args = [path.join(BENCH_DIR, STANDALONE[id])];
  if (opts.quick) args.push('--quick');
  if (opts.runs) args.push('--rounds', String(opts.runs));
  if (opts.save) args.push('--json', path.join(dir, `${stamp}.json`), '--md', path.join(dir, `${stamp}.md`));
  console.log(`${id}: node ${args.map((a) => path.relative(ROOT, a) || a).join(' ')}`);
  execFileSync(process.execPath, args, { stdio: 'inherit' });
  if (opts.save) console.log(`saved bench/results/${stamp}.json, bench/results/${stamp}.md`);
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return null;
  }
}

function machine() {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? os.cpus()[0]?.model;
  return {
    nproc: Number(sh('nproc', [])) || os.cpus().length,
    cpu,
    kernel: os.release(),
    node: process.version,
    nodeOpenssl: process.versions.openssl,
    systemOpenssl: sh('openssl', ['version']),
    socat: sh('socat', ['-V'])?.match(/socat version ([^\s]+)/)?.[1] ?? null,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

function loadavg() {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

function ensureBuilt() {
  execFileSync('make', ['-s', '-C', path.join(BENCH_DIR, 'native')], { stdio: 'inherit' });
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first');
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const standalone = (opts.only ?? []).filter((id) => STANDALONE[id] !== undefined);
  if (standalone.length > 0) {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) {
      throw new Error('dist/ is missing: run `npm run build` first');
    }
    for (const id of standalone) runStandalone(id, opts);
    opts.only = opts.only.filter((id) => STANDALONE[id] === undefined);
    if (opts.only.length === 0) return;
  }
  ensureBuilt();
  if (opts.pin) setPinning({ underTest: String(os.cpus().length - 1), peers: `0-${Math.max(0, os.cpus().length - 2)}` });
  const quick = opts.quick;
  const runs = opts.runs ?? (quick ? 1 : 3);
  const params = quick
    ? { bytes: 128 * 2 ** 20, concurrencyBytes: 128 * 2 ** 20, packets: 50000, exchanges: 3000, timeout: 60000,
      connSeconds: 2, idleCounts: [300], commandSeconds: 2, proxyBytes: 64 * 2 ** 20, tunnelBytes: 50 * 10 ** 6 }
    : { bytes: 2 ** 30, concurrencyBytes: 2 ** 30, packets: 300000, exchanges: 10000, timeout: 180000,
      connSeconds: 10, idleCounts: [1000, 5000], commandSeconds: 10, proxyBytes: 256 * 2 ** 20, tunnelBytes: 100 * 10 ** 6 };
  const scenarios = SCENARIOS.filter((s) => !opts.only || opts.only.includes(s.id));
  const cases = [];
  for (const s of scenarios) {
    for (const tool of s.tools) {
      if (!opts.tools || opts.tools.includes(tool)) cases.push({ scenario: s, tool, runs: [] });
    }
  }
  const started = new Date();
  const load = { before: loadavg(), samples: [] };
  console.log(`tls-splice benchmarks (${quick ? 'quick' : 'full'}): ${cases.length} cases x ${runs} runs; ` +
    `load average ${load.before.join(' ')}`);
  const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-bench-'));
  try {
    for (let r = 0; r < runs; r++) {
      // Interleaved repeats; each repeat also rotates the tool order within a scenario, so no
      // tool always runs right after the same neighbour.
      for (const s of scenarios) {
        const mine = cases.filter((c) => c.scenario === s);
        const order = mine.map((_, i) => mine[(i + r) % mine.length]);
        for (const c of order) {
          const tmp = fs.mkdtempSync(path.join(tmpRoot, `${s.id}-${c.tool}-`));
          const bytes = s.unit === 'concurrency' ? params.concurrencyBytes : params.bytes;
          const t0 = Date.now();
          let run;
          try {
            const raw = await s.run(c.tool, { ...params, bytes, tmp, timeout: params.timeout });
            run = { raw, figures: figures(raw) };
          } catch (err) {
            run = { error: String(err.message ?? err).slice(0, 2000) };
          }
          c.runs.push(run);
          load.samples.push(loadavg()[0]);
          const f = run.figures;
          const what = f?.termConnRate !== undefined
            ? `terminate ${f.termConnRate.toFixed(0)} new conn/s (${f.termCpuMsPerConn.toFixed(2)} CPU ms/conn), ` +
              `kept-alive ${f.termKeepAliveRps.toFixed(0)} req/s` +
              (f.proxyMBps !== undefined ? `; proxy ${f.proxyMBps.toFixed(0)} MB/s, ${f.proxyCpuPerGiB.toFixed(2)} CPU s/GiB` : '') +
              (f.tunnelMBps !== undefined ? `; tunnel ${f.tunnelMBps.toFixed(0)} MB/s, ${f.tunnelCpuPerGiB.toFixed(2)} CPU s/GiB` : '') +
              (f.h2loadErrors ? `, ${f.h2loadErrors} h2load errors` : '')
            : f?.connRate !== undefined
            ? `${f.connRate.toFixed(0)} new connections/s, ${f.cpuMsPerConn.toFixed(2)} CPU ms/conn` +
              (f.mainMsPerConn !== null ? ` (main thread ${f.mainMsPerConn.toFixed(2)})` : '') +
              `, kept-alive ${f.keepAliveRps.toFixed(0)} req/s` +
              (f.startP50Ms !== undefined ? `, start() p50 ${f.startP50Ms.toFixed(2)} ms p99 ${f.startP99Ms.toFixed(2)} ms` : '') +
              (f.kbPerIdleA !== undefined ? `, ${f.kbPerIdleA.toFixed(1)} KiB/idle conn @${f.idleA} (${f.fdsA} fds)` : '') +
              (f.kbPerIdleB !== undefined ? `, ${f.kbPerIdleB.toFixed(1)} KiB @${f.idleB} (${f.fdsB} fds)` : '') +
              (f.wrkErrors ? `, ${f.wrkErrors} wrk errors` : '')
            : f
            ? `${f.gbps.toFixed(3)} GB/s, ${f.cpuPerGiB.toFixed(2)} CPU s/GiB` +
              (f.elu !== null ? `, ELU ${(f.elu * 100).toFixed(1)}%` : '') +
              (f.mainCpuShare !== undefined ? `, main thread CPU ${(f.mainCpuShare * 100).toFixed(1)}%` : '') +
              (f.kpps ? `, ${f.kpps.toFixed(0)} kpps` : '') +
              (f.rttP50Us ? `, RTT p50 ${f.rttP50Us.toFixed(0)} us p99 ${f.rttP99Us.toFixed(0)} us` : '') +
              (f.mbPerSplice !== undefined ? `, ${f.mbPerSplice.toFixed(2)} MB/splice` : '')
            : `FAILED: ${opts.verbose ? run.error : run.error.split('\n')[0]}`;
          console.log(`  [${r + 1}/${runs}] ${s.id.padEnd(15)} ${c.tool.padEnd(16)} ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
          fs.rmSync(tmp, { recursive: true, force: true });
        }
      }
    }
  } finally {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  }

  let micro = null;
  if (opts.micro) {
    console.log('micro-benchmarks: seal/open one record');
    micro = await runMicro({ quick });
  }
  load.after = loadavg();

  const results = {
    date: started.toISOString(),
    mode: quick ? 'quick' : 'full',
    runs,
    params,
    pinned: opts.pin,
    // What was measured: the commit, and any uncommitted change to the code under test (the
    // working tree is shared; build/ is whatever was last built from it).
    git: {
      commit: sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
      dirty: (sh('git', ['-C', ROOT, 'status', '--short', '--', 'lib', 'src-native', 'binding.gyp']) ?? '')
        .split('\n').filter(Boolean),
    },
    machine: machine(),
    load: {
      before: load.before,
      after: load.after,
      duringMedian: load.samples.length ? load.samples.slice().sort((a, b) => a - b)[Math.floor(load.samples.length / 2)] : null,
      duringMax: load.samples.length ? Math.max(...load.samples) : null,
    },
    tools: TOOLS,
    scenarios: scenarios.map((s) => ({
      id: s.id,
      title: s.title,
      unit: s.unit,
      tools: cases.filter((c) => c.scenario === s).map((c) => ({
        tool: c.tool,
        summary: summarize(c.runs),
        runs: c.runs.map((run) => (run.figures ? { figures: run.figures, raw: run.raw } : run)),
      })),
    })),
    micro,
  };
  const md = markdownReport(results);
  console.log(`\n${md}`);
  if (opts.save) {
    const dir = path.join(BENCH_DIR, 'results');
    fs.mkdirSync(dir, { recursive: true });
    // A run of some scenarios only (--only) is saved under its own name: it never replaces the
    // results of a run of all of them.
    const stamp = results.date.slice(0, 10) + (opts.only?.length ? `-${opts.only.join('+')}` : '') +
      (quick ? '-quick' : '');
    fs.writeFileSync(path.join(dir, `${stamp}.json`), `${JSON.stringify(results, null, 2)}\n`);
    fs.writeFileSync(path.join(dir, `${stamp}.md`), md);
    // Quick runs are for development: their charts stay next to their results (gitignored), and
    // so does the bulk chart of a run of some scenarios only.
    const charts = [];
    if (hasBulk(results)) {
      charts.push([quick || opts.only ? path.join(dir, `${stamp}.svg`) : path.join(ROOT, 'docs', 'bench.svg'), svgChart(results)]);
    }
    if (hasConnections(results)) {
      charts.push([quick ? path.join(dir, `${stamp}.connections.svg`) : path.join(ROOT, 'docs', 'bench-connections.svg'),
        connectionsSvg(results)]);
    }
    for (const [file, svg] of charts) fs.writeFileSync(file, svg);
    const svgPath = charts.map(([file]) => path.relative(ROOT, file)).join(', ');
    console.log(`saved bench/results/${stamp}.json, bench/results/${stamp}.md, ${svgPath}`);
  }
}

await main();
