// binding.RecordOpener (issue 11): the keys of one direction derived once, then records opened at
// any sequence number. Checked against the independent node:crypto oracle, for TLS 1.3 and 1.2
// suites: records it sealed open at their own sequence number and at no other, a flipped bit
// does not open, wipe() makes open() throw ERR_TLS_SPLICE_INVALID_STATE, and bad parameters
// throw ERR_TLS_SPLICE_INVALID_ARG.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';

import { binding } from '../dist/binding.js';
import { RecordCipher, TLS12, TLS13 } from './helpers/tls-oracle.mjs';

const SUITES = [
  { version: TLS13, suite: 0x1301, secretLength: 32 },  // TLS_AES_128_GCM_SHA256
  { version: TLS13, suite: 0x1302, secretLength: 48 },  // TLS_AES_256_GCM_SHA384
  { version: TLS13, suite: 0x1303, secretLength: 32 },  // TLS_CHACHA20_POLY1305_SHA256
  { version: TLS12, suite: 0xc02f, keyLength: 16, ivLength: 4 },   // ECDHE-RSA-AES128-GCM-SHA256
  { version: TLS12, suite: 0xcca8, keyLength: 32, ivLength: 12 },  // ECDHE-RSA-CHACHA20-POLY1305
];

for (const { version, suite, secretLength, keyLength, ivLength } of SUITES) {
  test(`0x${suite.toString(16)}: records open at their sequence number only`, () => {
    const keys = version === TLS13 ? { secret: crypto.randomBytes(secretLength) } :
      { key: crypto.randomBytes(keyLength), iv: crypto.randomBytes(ivLength) };
    const sealer = new RecordCipher({ version, suite, ...keys, seq: 3n });
    const plaintexts = [Buffer.from('first'), crypto.randomBytes(300), Buffer.from([1, 0])];
    const records = plaintexts.map((p, i) => sealer.seal(i === 2 ? 21 : 23, p));
    const opener = new binding.RecordOpener({ version, cipherSuite: suite, ...keys });
    // Out of order and repeated: the sequence number is the caller's, never the opener's own.
    for (const i of [2, 0, 1, 0]) {
      const opened = opener.open(3n + BigInt(i), records[i]);
      assert.ok(opened !== null, `record ${i} opens at ${3 + i}`);
      assert.equal(opened.type, i === 2 ? 21 : 23);
      assert.deepEqual(opened.plaintext, plaintexts[i]);
      assert.equal(opener.open(4n + BigInt(i), records[i]), null, `record ${i} at another seq`);
      const same = binding.openRecord({ version, cipherSuite: suite, ...keys, seq: 3n + BigInt(i),
        record: records[i] });
      assert.deepEqual(same, opened, 'openRecord agrees');
    }
    const tampered = Buffer.from(records[1]);
    tampered[tampered.length - 1] ^= 1;
    assert.equal(opener.open(4n, tampered), null, 'a flipped tag bit');
    assert.equal(opener.open(4n, records[1].subarray(0, 20)), null, 'a cut record');
    opener.wipe();
    assert.throws(() => opener.open(3n, records[0]), { code: 'ERR_TLS_SPLICE_INVALID_STATE' });
  });
}

test('bad parameters throw ERR_TLS_SPLICE_INVALID_ARG', () => {
  assert.throws(() => new binding.RecordOpener(), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => new binding.RecordOpener({ version: TLS13, cipherSuite: 0x1301,
    secret: Buffer.alloc(31) }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => new binding.RecordOpener({ version: TLS13, cipherSuite: 0xc02f,
    secret: Buffer.alloc(32) }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => new binding.RecordOpener({ version: TLS12, cipherSuite: 0xc02f,
    key: Buffer.alloc(16) }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  const opener = new binding.RecordOpener({ version: TLS13, cipherSuite: 0x1301,
    secret: Buffer.alloc(32) });
  assert.throws(() => opener.open(-1n, Buffer.alloc(30)), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => opener.open(0n, 'not a buffer'), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  opener.wipe();
});
