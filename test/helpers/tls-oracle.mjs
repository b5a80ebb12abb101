// An independent TLS record decryptor/encryptor for tests, built on node:crypto only. It shares no
// code with lib/ or the native addon, so when it opens the records a captured session's fd
// delivers, at the sequence numbers capture reported, the capture is proven right.
//
// API
//   suiteInfo(version, suiteId) -> { name, cipher, keyLength, ivLength, hash }
//   hkdfExpandLabel(hash, secret, label, context, length) -> Buffer      (RFC 8446 7.1)
//   tls13TrafficKeys(suiteId, secret) -> { key, iv }                     (RFC 8446 7.3)
//   nextTrafficSecret(suiteId, secret) -> Buffer                         (RFC 8446 7.2)
//   tls12KeyBlock(suiteId, masterSecret, clientRandom, serverRandom)
//       -> { clientKey, clientIv, serverKey, serverIv }                  (RFC 5246 6.3)
//   new RecordCipher({ version, suite, secret? | key+iv, seq })
//       .open(record) -> { type, plaintext } | null   (record = header + body; advances seq)
//       .seal(type, plaintext) -> Buffer              (one record; advances seq)
//   splitRecords(buffer) -> { records: Buffer[], rest: Buffer }
import crypto from 'node:crypto';

export const TLS12 = 0x0303;
export const TLS13 = 0x0304;

const SUITES = new Map([
  // TLS 1.3 (RFC 8446 B.4)
  [0x1301, { version: TLS13, name: 'TLS_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0x1302, { version: TLS13, name: 'TLS_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0x1303, { version: TLS13, name: 'TLS_CHACHA20_POLY1305_SHA256', cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' }],
  // TLS 1.2 AEAD suites (RFC 5288, RFC 5289, RFC 5487, RFC 7905)
  [0x009c, { version: TLS12, name: 'TLS_RSA_WITH_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0x009d, { version: TLS12, name: 'TLS_RSA_WITH_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0x009e, { version: TLS12, name: 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0x009f, { version: TLS12, name: 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0x00a8, { version: TLS12, name: 'TLS_PSK_WITH_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0x00a9, { version: TLS12, name: 'TLS_PSK_WITH_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0xc02b, { version: TLS12, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0xc02c, { version: TLS12, name: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0xc02f, { version: TLS12, name: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' }],
  [0xc030, { version: TLS12, name: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' }],
  [0xcca8, { version: TLS12, name: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' }],
  [0xcca9, { version: TLS12, name: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' }],
  [0xccaa, { version: TLS12, name: 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256', cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' }],
  [0xccab, { version: TLS12, name: 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256', cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' }],
]);

const TAG_LENGTH = 16;
const NONCE_LENGTH = 12;

export function suiteInfo(version, suiteId) {
  const suite = SUITES.get(suiteId);
  if (!suite || suite.version !== version) {
    throw new Error(`oracle: suite 0x${suiteId.toString(16)} is not a known AEAD suite for 0x${version.toString(16)}`);
  }
  // TLS 1.2 GCM: 4-byte implicit salt (RFC 5288 3); ChaCha20 and TLS 1.3: 12-byte IV.
  const ivLength = version === TLS12 && suite.cipher !== 'chacha20-poly1305' ? 4 : NONCE_LENGTH;
  return { ...suite, ivLength };
}

function hashLength(hash) {
  return crypto.createHash(hash).digest().length;
}

// RFC 5869 2.3 HKDF-Expand.
function hkdfExpand(hash, prk, info, length) {
  const blocks = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    previous = crypto.createHmac(hash, prk).update(previous).update(info).update(Buffer.from([i])).digest();
    blocks.push(previous);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

// RFC 8446 7.1 HKDF-Expand-Label: HkdfLabel = uint16 length, opaque label<7..255> = "tls13 " + Label,
// opaque context<0..255>.
export function hkdfExpandLabel(hash, secret, label, context, length) {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.concat([
    Buffer.from([length >> 8, length & 0xff, fullLabel.length]), fullLabel,
    Buffer.from([context.length]), context,
  ]);
  return hkdfExpand(hash, secret, info, length);
}

export function tls13TrafficKeys(suiteId, secret) {
  const suite = suiteInfo(TLS13, suiteId);
  if (secret.length !== hashLength(suite.hash)) throw new Error('oracle: secret length does not match the suite hash');
  return {
    key: hkdfExpandLabel(suite.hash, secret, 'key', Buffer.alloc(0), suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, 'iv', Buffer.alloc(0), NONCE_LENGTH),
  };
}

export function nextTrafficSecret(suiteId, secret) {
  const suite = suiteInfo(TLS13, suiteId);
  return hkdfExpandLabel(suite.hash, secret, 'traffic upd', Buffer.alloc(0), hashLength(suite.hash));
}

// RFC 5246 5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
function prf(hash, secret, label, seed, length) {
  const labelSeed = Buffer.concat([Buffer.from(label, 'latin1'), seed]);
  const out = [];
  let a = labelSeed;
  let total = 0;
  while (total < length) {
    a = crypto.createHmac(hash, secret).update(a).digest();
    const block = crypto.createHmac(hash, secret).update(a).update(labelSeed).digest();
    out.push(block);
    total += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

// RFC 5246 6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random);
// AEAD suites have no MAC keys, so the block is client key, server key, client IV, server IV.
export function tls12KeyBlock(suiteId, masterSecret, clientRandom, serverRandom) {
  const suite = suiteInfo(TLS12, suiteId);
  const length = 2 * (suite.keyLength + suite.ivLength);
  const block = prf(suite.hash, masterSecret, 'key expansion', Buffer.concat([serverRandom, clientRandom]), length);
  let pos = 0;
  const take = (n) => block.subarray(pos, (pos += n));
  const clientKey = take(suite.keyLength);
  const serverKey = take(suite.keyLength);
  const clientIv = take(suite.ivLength);
  const serverIv = take(suite.ivLength);
  return { clientKey, clientIv, serverKey, serverIv };
}

function seqBytes(seq) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

// RFC 8446 5.3 / RFC 7905 2: the 64-bit sequence number, left-padded to the IV length, XORed
// with the IV.
function xorNonce(iv, seq) {
  const nonce = Buffer.from(iv);
  const s = seqBytes(seq);
  for (let i = 0; i < 8; i++) nonce[NONCE_LENGTH - 8 + i] ^= s[i];
  return nonce;
}

export class RecordCipher {
  constructor({ version, suite, secret, key, iv, seq = 0n }) {
    this.version = version;
    this.suite = suiteInfo(version, suite);
    this.suiteId = suite;
    if (version === TLS13) {
      ({ key, iv } = tls13TrafficKeys(suite, secret));
    }
    if (key.length !== this.suite.keyLength || iv.length !== this.suite.ivLength) {
      throw new Error('oracle: key or iv length does not match the suite');
    }
    this.key = key;
    this.iv = iv;
    this.seq = BigInt(seq);
  }

  #aead(decrypt, nonce) {
    const make = decrypt ? crypto.createDecipheriv : crypto.createCipheriv;
    return make(this.suite.cipher, this.key, nonce, { authTagLength: TAG_LENGTH });
  }

  // Returns { type, plaintext } or null when the record does not authenticate at this.seq.
  // Advances seq only on success.
  open(record) {
    const type = record[0];
    const length = record.readUInt16BE(3);
    if (record.length !== 5 + length) throw new Error('oracle: open() takes exactly one record');
    const body = record.subarray(5);
    const isGcm12 = this.version === TLS12 && this.suite.cipher !== 'chacha20-poly1305';
    let nonce;
    let ciphertext;
    let aad;
    if (this.version === TLS13) {
      if (type !== 23 || length < TAG_LENGTH + 1) return null;
      nonce = xorNonce(this.iv, this.seq);
      ciphertext = body.subarray(0, length - TAG_LENGTH);
      aad = record.subarray(0, 5);     // RFC 8446 5.2: additional_data = the record header
    } else {
      const explicit = isGcm12 ? 8 : 0;
      if (length < explicit + TAG_LENGTH) return null;
      // RFC 5288 3: GCMNonce = salt (4, implicit) || nonce_explicit (8, in the record).
      nonce = isGcm12 ? Buffer.concat([this.iv, body.subarray(0, 8)]) : xorNonce(this.iv, this.seq);
      ciphertext = body.subarray(explicit, length - TAG_LENGTH);
      // RFC 5246 6.2.3.3: seq_num + type + version + length (of the plaintext).
      aad = Buffer.concat([seqBytes(this.seq), Buffer.from([type, 3, 3, ciphertext.length >> 8, ciphertext.length & 0xff])]);
    }
    const tag = body.subarray(length - TAG_LENGTH);
    const decipher = this.#aead(true, nonce);
    decipher.setAAD(aad, { plaintextLength: ciphertext.length });
    decipher.setAuthTag(tag);
    let plain;
    try {
      plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch {
      return null;
    }
    this.seq++;
    if (this.version === TLS12) return { type, plaintext: plain };
    // RFC 8446 5.4: strip zero padding; the last non-zero byte is the real content type.
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    if (end === 0) throw new Error('oracle: TLS 1.3 record with no content type');
    return { type: plain[end - 1], plaintext: plain.subarray(0, end - 1) };
  }

  seal(type, plaintext) {
    const isGcm12 = this.version === TLS12 && this.suite.cipher !== 'chacha20-poly1305';
    let nonce;
    let inner;
    let header;
    let explicit = Buffer.alloc(0);
    if (this.version === TLS13) {
      inner = Buffer.concat([plaintext, Buffer.from([type])]);
      const length = inner.length + TAG_LENGTH;
      header = Buffer.from([23, 3, 3, length >> 8, length & 0xff]);
      nonce = xorNonce(this.iv, this.seq);
    } else {
      inner = plaintext;
      if (isGcm12) explicit = seqBytes(this.seq);
      const length = explicit.length + inner.length + TAG_LENGTH;
      header = Buffer.from([type, 3, 3, length >> 8, length & 0xff]);
      nonce = isGcm12 ? Buffer.concat([this.iv, explicit]) : xorNonce(this.iv, this.seq);
    }
    const aad = this.version === TLS13 ? header :
      Buffer.concat([seqBytes(this.seq), Buffer.from([type, 3, 3, inner.length >> 8, inner.length & 0xff])]);
    const cipher = this.#aead(false, nonce);
    cipher.setAAD(aad, { plaintextLength: inner.length });
    const ciphertext = Buffer.concat([cipher.update(inner), cipher.final()]);
    this.seq++;
    return Buffer.concat([header, explicit, ciphertext, cipher.getAuthTag()]);
  }
}

export function splitRecords(buffer) {
  const records = [];
  let pos = 0;
  while (buffer.length - pos >= 5) {
    const end = pos + 5 + buffer.readUInt16BE(pos + 3);
    if (end > buffer.length) break;
    records.push(buffer.subarray(pos, end));
    pos = end;
  }
  return { records, rest: buffer.subarray(pos) };
}
