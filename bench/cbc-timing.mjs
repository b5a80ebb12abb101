// Issue 20: is opening a TLS 1.2 AES-CBC record as fast when its padding is bad as when its MAC
// is bad (Lucky Thirteen)? Runs bench/native/out/cbc_timing (see cbc_timing.cc for what it
// builds and measures) and prints its figures as a table:
//
//   node bench/cbc-timing.mjs [--samples 200000] [--size 64,1400] [--quick] [--json FILE] [--md FILE]
//   (or: npm run bench -- --only cbc-timing)
//
// --quick: 50,000 samples per record instead of 200,000. Timing is wall-clock per open
// (CLOCK_MONOTONIC); a loaded machine adds outliers, which the trimmed figures drop.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BENCH_DIR } from './lib/proc.mjs';

const CBC_TIMING = path.join(BENCH_DIR, 'native', 'out', 'cbc_timing');

function args() {
  const out = { samples: 200000, sizes: '64,1400', json: null, md: null };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--quick') out.samples = 50000;
    else if (a === '--samples') out.samples = Number(v());
    else if (a === '--size') out.sizes = v();
    else if (a === '--rounds') v();  // accepted from run.mjs; one round of interleaved samples
    else if (a === '--json') out.json = path.resolve(v());
    else if (a === '--md') out.md = path.resolve(v());
    else throw new Error(`unknown option ${a}`);
  }
  return out;
}

function markdown(rows, command) {
  const lines = [
    '# CBC record open time: valid vs bad padding vs bad MAC (issue 20)', '',
    `\`${command}\`, ${rows[0]?.samples ?? 0} samples per record, interleaved; ns per open.`,
    'Welch t on samples below the pooled 99th percentile; KS D against its critical value at alpha 0.001.', '',
    '| suite | size | mode | A | B | median A | median B | B-A (median) | B-A (trimmed mean) | Welch t | KS D (crit.) |',
    '|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.suite} | ${r.size} | ${r.mode} | ${r.a} | ${r.b} | ${r.medianA} | ${r.medianB} | ` +
      `${r.medianDiffNs} | ${r.trimmedMeanDiffNs.toFixed(2)} | ${r.welchT.toFixed(2)} | ` +
      `${r.ksD.toFixed(4)} (${r.ksDCritical001.toFixed(4)}) |`);
  }
  return `${lines.join('\n')}\n`;
}

const opts = args();
execFileSync('make', ['-s', '-C', path.join(BENCH_DIR, 'native'), 'out/cbc_timing'], { stdio: 'inherit' });
const cmdArgs = ['--samples', String(opts.samples), '--size', opts.sizes];
const out = execFileSync(CBC_TIMING, cmdArgs, { encoding: 'utf8' });
const rows = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const md = markdown(rows, `bench/native/out/cbc_timing ${cmdArgs.join(' ')}`);
console.log(md);
if (opts.json) fs.writeFileSync(opts.json, `${JSON.stringify({ date: new Date().toISOString(), rows }, null, 2)}\n`);
if (opts.md) fs.writeFileSync(opts.md, md);
