#!/usr/bin/env node
// Builds and runs the libFuzzer targets of test/fuzz/ (clang, -fsanitize=fuzzer,address,undefined).
//
//   npm run fuzz -- <target|all> [seconds]     (default: all, 60 seconds per target)
//   node test/fuzz/run.mjs --list
//
// Each target starts from its committed seed corpus (test/fuzz/corpus/<target>/, read only) and
// writes what it discovers to test/fuzz/out/corpus/<target>/ (gitignored). Any crash, leak,
// sanitizer report, timeout or out-of-memory is a finding: its input is saved as
// test/fuzz/out/artifacts/<target>-<kind>-<sha1> and the script exits non-zero. The closing
// statistics (runs, coverage) are printed per target and written to test/fuzz/out/stats.json.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nativeDir = join(here, '..', 'native');
const outDir = join(here, 'out');
const corpusDir = join(here, 'corpus');

const targets = readdirSync(here)
  .filter((f) => /^fuzz_.*\.cc$/.test(f))
  .map((f) => f.slice(5, -3))
  .sort();

const args = process.argv.slice(2);
if (args[0] === '--list') {
  console.log(targets.join('\n'));
  process.exit(0);
}
const which = args[0] ?? 'all';
const seconds = Number(args[1] ?? 60);
if (!Number.isInteger(seconds) || seconds <= 0) {
  console.error(`seconds must be a positive integer, got ${args[1]}`);
  process.exit(2);
}
const selected = which === 'all' ? targets : [which];
for (const t of selected) {
  if (!targets.includes(t)) {
    console.error(`unknown fuzz target '${t}'; targets: ${targets.join(', ')}`);
    process.exit(2);
  }
}

const build = spawnSync('make', ['-C', nativeDir, '--no-print-directory', 'fuzz'], {
  stdio: 'inherit',
});
if (build.status !== 0) {
  console.error('fuzz build failed');
  process.exit(build.status ?? 1);
}

function runTarget(target) {
  return new Promise((resolve) => {
    const work = join(outDir, 'corpus', target);
    const artifacts = join(outDir, 'artifacts');
    mkdirSync(work, { recursive: true });
    mkdirSync(artifacts, { recursive: true });
    const seeds = join(corpusDir, target);
    const logPath = join(outDir, `${target}.log`);
    const log = createWriteStream(logPath);
    const argv = [
      work,
      seeds,
      `-max_total_time=${seconds}`,
      '-print_final_stats=1',
      '-timeout=10',
      '-rss_limit_mb=2560',
      '-max_len=70000',
      `-artifact_prefix=${join(artifacts, `${target}-`)}`,
    ];
    const env = {
      ...process.env,
      ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0',
      UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'print_stacktrace=1:halt_on_error=1',
    };
    const child = spawn(join(outDir, target), argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const keep = (chunk) => {
      log.write(chunk);
      text += chunk.toString();
      if (text.length > 1 << 20) text = text.slice(-(1 << 19));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (code, signal) => {
      log.end();
      const stat = (name) => {
        const m = text.match(new RegExp(`stat::${name}:\\s+(\\d+)`));
        return m ? Number(m[1]) : null;
      };
      const done = [...text.matchAll(/#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+) ft: (\d+) corp: (\d+)\/(\S+)/g)].pop();
      const result = {
        target,
        seconds,
        exitCode: code,
        signal,
        runs: stat('number_of_executed_units'),
        execPerSec: stat('average_exec_per_sec'),
        peakRssMb: stat('peak_rss_mb'),
        newUnits: stat('new_units_added'),
        coverage: done ? Number(done[2]) : null,
        features: done ? Number(done[3]) : null,
        corpusUnits: done ? Number(done[4]) : null,
        corpusSize: done ? done[5] : null,
        finding: code !== 0 || signal !== null,
        log: logPath,
      };
      resolve(result);
      if (result.finding) {
        const tail = text.split('\n').slice(-60).join('\n');
        console.error(`\n---- ${target}: FINDING (exit ${code}, signal ${signal}); log tail:\n${tail}`);
      }
    });
  });
}

const results = [];
for (const t of selected) {
  console.log(`fuzzing ${t} for ${seconds}s ...`);
  const r = await runTarget(t);
  results.push(r);
  console.log(
    `  ${t}: ${r.runs ?? '?'} runs, ${r.execPerSec ?? '?'} exec/s, coverage ${r.coverage ?? '?'} ` +
      `edges / ${r.features ?? '?'} features, corpus ${r.corpusUnits ?? '?'} units ` +
      `(${r.corpusSize ?? '?'}), peak RSS ${r.peakRssMb ?? '?'} MB, ` +
      `${r.finding ? 'FINDING' : 'no findings'}`,
  );
}
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'stats.json'), JSON.stringify(results, null, 2) + '\n');
const findings = results.filter((r) => r.finding).length;
console.log(`fuzz: ${results.length - findings} passed, ${findings} failed`);
process.exit(findings ? 1 : 0);
