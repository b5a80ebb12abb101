// Summarizes a V8 .cpuprofile (node --cpu-prof): self time per function and total (inclusive)
// time for functions matching a filter, in ms, biggest first.
//   node bench/cpuprofile-summary.mjs FILE [--top 30] [--match REGEX] [--per N]
// --per N divides every figure by N (e.g. the number of connections).
import fs from 'node:fs';

const argv = process.argv.slice(2);
const file = argv[0];
let top = 30;
let match = null;
let per = 1;
for (let i = 1; i < argv.length; i++) {
  if (argv[i] === '--top') top = Number(argv[++i]);
  else if (argv[i] === '--match') match = new RegExp(argv[++i]);
  else if (argv[i] === '--per') per = Number(argv[++i]);
}
const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfUs = new Map();
const deltas = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i + 1] ?? 0));
}
const name = (n) => {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^.*\/(dist|node_modules|bench)\//, '$1/').replace(/^node:/, '')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};
const self = new Map();
const total = new Map();
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  const key = name(n);
  self.set(key, (self.get(key) ?? 0) + us);
  // Inclusive: once per distinct function on the stack.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = name(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    total.set(k, (total.get(k) ?? 0) + us);
  }
}
const all = [...selfUs.values()].reduce((a, b) => a + b, 0);
const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
const ms = (us) => (us / 1000 / per).toFixed(3);
console.log(`profile: ${ms(all)} ms sampled, ${ms(all - idle)} ms not idle (per ${per})`);
console.log('\nself time:');
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${ms(v).padStart(9)}  ${k}`);
if (match) {
  console.log(`\ninclusive time, functions matching ${match}:`);
  for (const [k, v] of [...total].filter(([k]) => match.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${ms(v).padStart(9)}  ${k}`);
  }
}
