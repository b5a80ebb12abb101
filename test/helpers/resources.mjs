// Process resources for leak checks: open fds (from /proc/self/fd) and resident memory, a forced
// GC, and waits that poll until a count is back to its baseline (closing a socket, or a native
// splice's duplicates, completes a few event-loop turns after the call that asked for it).
//
// API
//   fdCount() -> number                      entries in /proc/self/fd (the listing's own fd excluded)
//   fdList() -> string[]                     'fd -> target' lines, for a failure message
//   rssBytes() -> number                     process.memoryUsage().rss
//   gc() -> Promise                          a full GC (exposed with v8.setFlagsFromString, so no
//                                            --expose-gc is needed), then a few turns for finalizers
//   waitForFdCount(baseline, { timeout }) -> Promise<number>
//                                            resolves with the count once it is <= baseline, or
//                                            with the last count after `timeout` ms (never rejects:
//                                            the caller asserts, with fdList() in the message)
//   snapshot() -> Promise<{ fds, rss }>      after a GC
//   memorySnapshot() -> { rss, native, js }   after a GC; assertMemoryBounded(before, bounds, what)
//   assertFdsBack(baseline, what, { timeout })       fd count back to baseline exactly
//   assertRssBounded(baseline, maxGrowthBytes, what) RSS (after a GC) within baseline + max;
//                                            returns the growth. Not asserted under AddressSanitizer
//                                            (LD_PRELOAD of libasan): its quarantine holds up to
//                                            256 MiB of freed memory on purpose.
//   underAsan                                true when the ASan runtime is preloaded
import assert from 'node:assert/strict';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

export function fdCount() {
  // readdirSync opens the directory itself: that fd shows in the listing and is not ours to count.
  return fs.readdirSync('/proc/self/fd').length - 1;
}

export function fdList() {
  const lines = [];
  for (const name of fs.readdirSync('/proc/self/fd')) {
    try {
      lines.push(`${name} -> ${fs.readlinkSync(`/proc/self/fd/${name}`)}`);
    } catch {
      // The listing's own fd, closed by now.
    }
  }
  return lines;
}

export function rssBytes() {
  return process.memoryUsage().rss;
}

let collect = null;

function collector() {
  if (collect === null) {
    if (typeof globalThis.gc === 'function') {
      collect = globalThis.gc;
    } else {
      v8.setFlagsFromString('--expose-gc');
      collect = vm.runInNewContext('gc');
    }
  }
  return collect;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function gc() {
  const run = collector();
  for (let i = 0; i < 3; i++) {
    run();
    await turn();
  }
}

export async function waitForFdCount(baseline, { timeout = 5000 } = {}) {
  const deadline = Date.now() + timeout;
  let count = fdCount();
  while (count > baseline && Date.now() < deadline) {
    await sleep(10);
    count = fdCount();
  }
  return count;
}

export async function snapshot() {
  await gc();
  return { fds: fdCount(), rss: rssBytes() };
}

export async function assertFdsBack(baseline, what, { timeout = 5000 } = {}) {
  const count = await waitForFdCount(baseline, { timeout });
  assert.equal(count, baseline,
    `${what}: ${count} fds open, baseline ${baseline}\n${fdList().join('\n')}`);
}

export const underAsan = /asan/.test(process.env.LD_PRELOAD ?? '');

export async function assertRssBounded(baseline, maxGrowthBytes, what) {
  await gc();
  const rss = rssBytes();
  const mb = (n) => `${(n / 1048576).toFixed(1)} MiB`;
  if (underAsan) {
    console.log(`# ${what}: RSS +${mb(rss - baseline)} (not checked under ASan)`);
    return rss - baseline;
  }
  assert.ok(rss - baseline <= maxGrowthBytes,
    `${what}: RSS grew by ${mb(rss - baseline)} (baseline ${mb(baseline)}, now ${mb(rss)}), ` +
    `more than ${mb(maxGrowthBytes)}`);
  return rss - baseline;
}

// Memory after a GC, split where a leak would show: `native` is RSS less V8's heap reservation
// (native buffers, the allocator's arenas, OpenSSL), `js` the V8 heap still in use. V8 may keep a
// larger heap reserved after a busy round without retaining anything (Node 24 and later grow it
// more eagerly), which RSS alone would take for a leak.
export async function memorySnapshot() {
  await gc();
  const { rss, heapTotal, heapUsed } = process.memoryUsage();
  return { rss, native: rss - heapTotal, js: heapUsed };
}

export async function assertMemoryBounded(baseline, { native, js }, what) {
  const now = await memorySnapshot();
  const mb = (n) => `${(n / 1048576).toFixed(1)} MiB`;
  const growth = { native: now.native - baseline.native, js: now.js - baseline.js,
    rss: now.rss - baseline.rss };
  console.log(`# ${what}: native +${mb(growth.native)}, V8 heap in use +${mb(growth.js)}, ` +
    `RSS +${mb(growth.rss)}`);
  if (underAsan) return growth;
  assert.ok(growth.native <= native, `${what}: native memory grew by ${mb(growth.native)} ` +
    `(RSS less V8's heap), more than ${mb(native)}`);
  assert.ok(growth.js <= js, `${what}: the V8 heap in use grew by ${mb(growth.js)}, ` +
    `more than ${mb(js)}`);
  return growth;
}
