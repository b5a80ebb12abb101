// Where a TLS terminator's main thread spends its time, per phase of a connection: reads a
// `perf record -g` of the terminator (bench/terminator-ab.sh with PERF=1 records one, with
// node --perf-basic-prof so that JS frames have names) and sorts each sample of the main thread
// into the first phase its stack belongs to.
//
//   node bench/perf-phases.mjs PERF_DATA MAIN_TID [MAIN_MS_PER_CONNECTION]
//
// With the main thread's CPU per connection (measured outside perf, which slows the process
// down), prints each phase's share in ms per connection too.
import { execFileSync } from 'node:child_process';

const [file, tid, perConnection] = process.argv.slice(2);
if (!file || !tid) {
  console.error('usage: node bench/perf-phases.mjs PERF_DATA MAIN_TID [MAIN_MS_PER_CONNECTION]');
  process.exit(2);
}

// First match wins: a capture that calls into OpenSSL counts as capture, a handshake read
// that reached OpenSSL through the record tap counts as the handshake.
const kPhases = [
  ['capture: session proof, snapshot, SSL free, tap detach',
    /dist\/capture\.js|dist\/spent-socket\.js|captureSession/],
  ['native splice construct + start (hand-off to its I/O thread)',
    /startNative|SpliceWrap::start|SpliceWrap>::Constructor/],
  ['splice end on the main thread (close report, release)',
    /onEngineClose|releaseSpentSocket|dist\/splice\.js:4[0-9][0-9]|ThreadSafeFunction|CallJs/],
  ['TLS handshake in OpenSSL (the same work as plain Node)',
    new RegExp(['SSL_do_handshake', 'ossl_statem', 'tls_process', 'tls_construct', 'ssl3_',
      'SSL_read', 'SSL_write', 'tls13_', 'ossl_rsa', 'x25519', 'EVP_DigestSign', 'RSA_'].join('|'))],
  ['JS streams: the record tap and JSStreamSocket (plain Node: its pipe() of the data)',
    /dist\/tap\.js|js_stream_socket|streams\/duplex|streams\/readable|streams\/writable/],
  ['accept + TLSSocket set-up', /onconnection|tlsConnectionListener|TLSSocket|_tls_wrap/],
  ['backend connect', /internalConnect|afterConnect|connectBackend/],
  ['garbage collection', /v8::internal::Heap|Scavenge|MarkCompact/],
  ['event loop, I/O syscalls, other', /./],
];

const out = execFileSync('perf', ['script', '-i', file, '--tid', tid, '-F', 'ip,sym'],
  { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
const counts = new Map(kPhases.map(([name]) => [name, 0]));
let samples = 0;
const classify = (frames) => {
  if (frames.length === 0) return;
  samples++;
  for (const [name, re] of kPhases) {
    if (frames.some((f) => re.test(f))) {
      counts.set(name, counts.get(name) + 1);
      return;
    }
  }
};
let frames = [];
for (const line of out.split('\n')) {
  const text = line.trim();
  if (text === '') {
    classify(frames);
    frames = [];
    continue;
  }
  frames.push(text.replace(/^[0-9a-f]+\s+/, ''));
}
classify(frames);
const ms = Number(perConnection);
console.log(`main thread (tid ${tid}): ${samples} samples` +
  (ms > 0 ? `, ${ms.toFixed(2)} ms per connection` : ''));
for (const [name] of kPhases) {
  const share = samples === 0 ? 0 : counts.get(name) / samples;
  const perConn = ms > 0 ? `  ${(share * ms).toFixed(3)} ms` : '';
  console.log(`  ${(share * 100).toFixed(1).padStart(5)}%${perConn}  ${name}`);
}
