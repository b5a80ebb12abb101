// Micro-benchmarks on the JS side, in a fresh process (bench/lib/micro.mjs starts it): sealing
// and opening one TLS 1.3 record with node:crypto (what a record layer in JS would do), and
// opening one through the binding's one-shot binding.openRecord (which derives the keys on every
// call: it exists for capture's self-check, not for bulk work).
//
// tinybench times with the process's CPU time (user + system), as `openssl speed` and
// bench/native/record_bench do, so that other processes on the machine do not inflate the
// figures. Each task call does a batch of records, so the microsecond clock is fine-grained enough.
//   node bench/micro-js.mjs '{"quick":false}'  ->  one JSON line per (suite, size, op)
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { Bench } from 'tinybench';

const require = createRequire(import.meta.url);
const { binding } = require('../dist/binding.js');

const { quick = false } = JSON.parse(process.argv[2] ?? '{}');

const SUITES = [
  { name: 'TLS_AES_128_GCM_SHA256', id: 0x1301, alg: 'aes-128-gcm', hashLength: 32 },
  { name: 'TLS_CHACHA20_POLY1305_SHA256', id: 0x1303, alg: 'chacha20-poly1305', hashLength: 32 },
];
const SIZES = [1400, 16384];

function cpuNowMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function nonceFor(iv, seq) {
  const nonce = Buffer.from(iv);
  for (let i = 0; i < 8; i++) nonce[11 - i] ^= Number((BigInt(seq) >> BigInt(8 * i)) & 0xffn);
  return nonce;
}

function header(length) {
  return Buffer.from([23, 3, 3, length >> 8, length & 0xff]);
}

// RFC 8446 5.2: seal = AEAD(key, iv ^ seq, aad = header, plaintext || content type).
function seal(suite, key, iv, seq, plaintext) {
  const h = header(plaintext.length + 1 + 16);
  const c = crypto.createCipheriv(suite.alg, key, nonceFor(iv, seq), { authTagLength: 16 });
  c.setAAD(h);
  const body = c.update(plaintext);
  const type = c.update(Buffer.from([23]));
  c.final();
  return Buffer.concat([h, body, type, c.getAuthTag()]);
}

function open(suite, key, iv, seq, record) {
  const d = crypto.createDecipheriv(suite.alg, key, nonceFor(iv, seq), { authTagLength: 16 });
  d.setAAD(record.subarray(0, 5));
  d.setAuthTag(record.subarray(record.length - 16));
  const inner = d.update(record.subarray(5, record.length - 16));
  d.final();
  let end = inner.length;
  while (end > 0 && inner[end - 1] === 0) end--;
  return inner.subarray(0, end - 1);
}

const results = [];
const secret = crypto.createHash('sha256').update('tls-splice bench').digest();
for (const suite of SUITES) {
  const { key, iv } = binding.deriveTls13Keys(suite.id, secret);
  for (const size of SIZES) {
    const plaintext = crypto.randomBytes(size);
    const record = seal(suite, key, iv, 0, plaintext);
    // The native layer and node:crypto must agree before either is timed.
    const opened = binding.openRecord({ version: 0x0304, cipherSuite: suite.id, secret, seq: 0n, record });
    if (!opened || !opened.plaintext.equals(plaintext) || !open(suite, key, iv, 0, record).equals(plaintext)) {
      throw new Error(`micro: ${suite.name} ${size}: records do not round-trip`);
    }
    const batch = size <= 2048 ? 200 : 25;
    const bench = new Bench({ now: cpuNowMs, time: quick ? 150 : 600, warmupTime: quick ? 50 : 150 });
    let seq = 0;
    bench.add('node:crypto seal', () => {
      for (let i = 0; i < batch; i++) seal(suite, key, iv, seq++, plaintext);
    });
    bench.add('node:crypto open', () => {
      for (let i = 0; i < batch; i++) open(suite, key, iv, 0, record);
    });
    bench.add('binding.openRecord (one-shot)', () => {
      for (let i = 0; i < batch; i++) {
        binding.openRecord({ version: 0x0304, cipherSuite: suite.id, secret, seq: 0n, record });
      }
    });
    await bench.run();
    for (const task of bench.tasks) {
      const nsPerRecord = (task.result.latency.mean * 1e6) / batch;
      results.push({
        tool: task.name, suite: suite.name, size, op: task.name.includes('seal') ? 'seal' : 'open',
        nsPerRecord, gbps: size / nsPerRecord, samples: task.result.latency.samplesCount ?? null,
        rme: task.result.latency.rme,
      });
    }
  }
}
for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
