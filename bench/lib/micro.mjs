// 7. Micro-benchmarks: seal and open one TLS 1.3 record of 1,400 B and 16 KiB.
//   - tls-splice's native record layer (bench/native/record_bench, the same src-native code built
//     against the system's libssl: the binding exposes no seal/open loop);
//   - node:crypto doing the same AEAD, and binding.openRecord (bench/micro-js.mjs, tinybench);
//   - the limit: `openssl speed -evp -aead` (per record, TLS-like: IV, AAD, update, final each
//     time) and `openssl speed -evp` (the streaming cipher, no per-record work at all).
// Each in its own fresh process; all timed in CPU time.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { BENCH_DIR, RECORD_BENCH } from './proc.mjs';

const EVP = {
  TLS_AES_128_GCM_SHA256: 'aes-128-gcm',
  TLS_CHACHA20_POLY1305_SHA256: 'chacha20-poly1305',
};

function jsonLines(text) {
  return text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// perRecord: `-aead`, OpenSSL 3.0's "TLS-like sequence" (a new IV, 13 bytes of AAD, update, final
// for every buffer); without it, one key and IV and a stream of updates: the bare cipher.
function opensslSpeed(cipher, size, decrypt, seconds, perRecord) {
  const args = ['speed', '-evp', cipher, '-bytes', String(size), '-seconds', String(seconds)];
  if (decrypt) args.push('-decrypt');
  if (perRecord) args.push('-aead');
  const out = execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // The last line: "<NAME>   <n>k" in 1000s of bytes per second (user CPU time).
  const m = out.trim().split('\n').pop().match(/([\d.]+)k\s*$/);
  if (!m) throw new Error(`cannot parse openssl speed output:\n${out}`);
  const bytesPerSecond = Number(m[1]) * 1000;
  return { nsPerRecord: (size / bytesPerSecond) * 1e9, gbps: bytesPerSecond / 1e9 };
}

export async function runMicro({ quick }) {
  const rows = [];
  const native = jsonLines(execFileSync(RECORD_BENCH, ['--seconds', quick ? '0.25' : '1'],
    { encoding: 'utf8' }));
  for (const r of native) rows.push({ tool: 'tls-splice native record layer', ...r });
  const js = jsonLines(execFileSync(process.execPath,
    [path.join(BENCH_DIR, 'micro-js.mjs'), JSON.stringify({ quick })], { encoding: 'utf8' }));
  rows.push(...js);
  for (const suite of Object.keys(EVP)) {
    for (const size of [1400, 16384]) {
      for (const op of ['seal', 'open']) {
        rows.push({ tool: 'openssl speed -evp -aead (per record)', suite, size, op,
          ...opensslSpeed(EVP[suite], size, op === 'open', quick ? 1 : 2, true) });
        rows.push({ tool: 'openssl speed -evp (streaming cipher)', suite, size, op,
          ...opensslSpeed(EVP[suite], size, op === 'open', quick ? 1 : 2, false) });
      }
    }
  }
  // Ratios to the native record layer, per (suite, size, op).
  for (const r of rows) {
    const base = rows.find((n) => n.tool === 'tls-splice native record layer' && n.suite === r.suite &&
      n.size === r.size && n.op === r.op);
    if (base) r.vsNative = r.gbps / base.gbps;
    console.log(`  ${r.suite.padEnd(30)} ${String(r.size).padStart(5)} ${r.op}  ${r.tool.padEnd(38)} ` +
      `${r.nsPerRecord.toFixed(0).padStart(7)} ns  ${r.gbps.toFixed(2)} GB/s`);
  }
  return { timing: 'CPU time (user+system) of the process doing the work', rows };
}
