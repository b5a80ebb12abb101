// Deterministic test data: a seeded PRNG byte stream (AES-128-CTR keystream of SHA-256(seed)),
// so both ends of a transfer can generate and hash the same bytes without sharing files, and any
// lost, doubled or reordered byte shows in the digest.
//
// API
//   new PrngStream(seed)       .next(n) -> Buffer (the next n bytes), .position (bytes produced)
//   prngBytes(seed, n, offset = 0) -> Buffer   (bytes [offset, offset+n) of the stream)
//   sha256(...buffers) -> hex digest of their concatenation
//   base64Lines(buffer, lineLength = 76) -> Buffer of base64 lines, each ending in '\n'
import crypto from 'node:crypto';

export class PrngStream {
  #cipher;
  position = 0;

  constructor(seed) {
    const key = crypto.createHash('sha256').update(String(seed)).digest().subarray(0, 16);
    this.#cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  }

  next(n) {
    this.position += n;
    return this.#cipher.update(Buffer.alloc(n));
  }
}

export function prngBytes(seed, n, offset = 0) {
  const stream = new PrngStream(seed);
  if (offset > 0) stream.next(offset);
  return stream.next(n);
}

export function sha256(...buffers) {
  const hash = crypto.createHash('sha256');
  for (const b of buffers) hash.update(b);
  return hash.digest('hex');
}

export function base64Lines(buffer, lineLength = 76) {
  const text = buffer.toString('base64');
  const lines = [];
  for (let i = 0; i < text.length; i += lineLength) lines.push(text.slice(i, i + lineLength));
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
}
