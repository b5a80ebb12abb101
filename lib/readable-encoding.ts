// Handing over a TLSSocket on which setEncoding() was called (to read a text preamble): the
// splice must deliver the peer's bytes, not text. What the socket holds at the splice point is
// text decoded from the peer's bytes (strings in the readable buffer, e.g. what the user
// unshift()ed back after a line) and, in its StringDecoder, the first bytes of a character that
// has not arrived whole (a multibyte UTF-8 character split across records). revertEncoding()
// turns that back into the bytes, in order, and makes the socket deliver Buffers from then on.
//
// Re-encoding is exact only where decoding lost nothing: UTF-8 text decoded from valid UTF-8
// (the decoder turns every invalid sequence into U+FFFD, so text holding U+FFFD may stand for
// other bytes), and latin1, hex, base64, base64url and UTF-16LE, which decode every byte
// string one-to-one. 'ascii' drops the top bit. When buffered text cannot be re-encoded
// exactly, encodingHandoverRefusal() says so with ERR_TLS_SPLICE_ENCODING_LOSSY, for every
// engine: none can recover bytes the decoder did not keep.
import type { Readable } from 'node:stream';

import { SpliceError } from './errors';
import { clearReadableDecoding, readableDecoding } from './internals';

// Encodings whose StringDecoder output re-encodes to the very bytes it was decoded from (checked
// per chunk by a round trip; UTF-8 also by the absence of U+FFFD).
const kReversibleEncodings = new Set(['utf8', 'utf16le', 'latin1', 'hex', 'base64', 'base64url']);

const kReplacementCharacter = '\ufffd';

function reversible(text: string, encoding: string): boolean {
  if (!kReversibleEncodings.has(encoding)) return text.length === 0;
  if (encoding === 'utf8' && text.includes(kReplacementCharacter)) return false;
  return Buffer.from(text, encoding as BufferEncoding).toString(encoding as BufferEncoding) === text;
}

// Why the setEncoding() state of `stream` cannot be handed over exactly, or null (also when
// setEncoding() was not called). No side effects.
export function encodingHandoverRefusal(stream: Readable): SpliceError | null {
  const decoding = readableDecoding(stream);
  if (decoding === null) return null;
  const { encoding } = decoding;
  const lossy = decoding.chunks.find((chunk) => typeof chunk === 'string' &&
    !reversible(chunk, encoding));
  if (lossy === undefined) return null;
  const why = encoding === 'utf8' ?
    'bytes that are not valid UTF-8 were decoded to U+FFFD' :
    `'${encoding}' does not decode every byte one-to-one`;
  return new SpliceError('ERR_TLS_SPLICE_ENCODING_LOSSY',
    `setEncoding('${encoding}') was called on this TLSSocket and the text it holds unread cannot ` +
    `be turned back into the bytes the peer sent (${why}). Read Buffers up to the splice point ` +
    "(no setEncoding(); readPreamble() reads a line or an HTTP head as bytes), or read that " +
    'text off the socket yourself before splicing');
}

// Turns the decoded text the stream holds, and the decoder's partial character, back into bytes
// at the front of its buffer, and undoes setEncoding(). Call encodingHandoverRefusal() first:
// text it refuses would be re-encoded inexactly. 'data' listeners are set aside meanwhile, so
// no one sees the text go. A no-op when setEncoding() was not called.
export function revertEncoding(stream: Readable): void {
  const decoding = readableDecoding(stream);
  if (decoding === null) return;
  const encoding = decoding.encoding as BufferEncoding;
  const parts = decoding.chunks.map((chunk) =>
    typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
  parts.push(decoding.pending);
  const bytes = Buffer.concat(parts);
  const listeners = stream.rawListeners('data');
  stream.removeAllListeners('data');
  try {
    // read(n) of at most what is buffered: it never schedules 'end' (a read() that empties the
    // buffer of a stream whose end was pushed would), so the bytes can go back in front; and at
    // most the high-water mark, which a larger read(n) would raise for good.
    while (stream.readableLength > 0 && stream.read(Math.min(stream.readableLength,
      stream.readableHighWaterMark)) !== null) { /* dropped: `bytes` holds them */ }
    clearReadableDecoding(stream);
    if (bytes.length > 0) stream.unshift(bytes);
  } finally {
    for (const listener of listeners) stream.on('data', listener as (...args: any[]) => void);
  }
}
