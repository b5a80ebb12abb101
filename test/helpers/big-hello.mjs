// A hostile but well-formed TLS 1.3 ClientHello of any size up to what OpenSSL accepts (131,396
// bytes), and its fragmentation into tiny handshake records (issue 17: a hello announced at 131 KB
// and sent one byte per record). Built by hand, deterministic: the padding is a padding extension
// (RFC 7685) and extra cipher suites nobody implements, so OpenSSL reads every byte, ignores the
// filler and answers with a real ServerHello (X25519 key share, RSA-PSS signatures).
//
// API
//   bigClientHello(size)                -> Buffer: the handshake message (4-byte header + body),
//                                          exactly `size` bytes long (size >= 512)
//   fragmentHandshake(message, n = 1)   -> Buffer: handshake records carrying n bytes each
import crypto from 'node:crypto';

const u8 = (n) => Buffer.from([n]);
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u24 = (n) => { const b = Buffer.alloc(3); b.writeUIntBE(n, 0, 3); return b; };
const vec16 = (...parts) => { const body = Buffer.concat(parts); return Buffer.concat([u16(body.length), body]); };
const extension = (type, ...parts) => Buffer.concat([u16(type), vec16(...parts)]);

// The largest ClientHello OpenSSL 3.0 reads (CLIENT_HELLO_MAX_LENGTH, ssl/statem/statem_local.h).
export const OPENSSL_MAX_CLIENT_HELLO = 131396;
const kMaxVector16 = 0xffff;

export function bigClientHello(size) {
  const random = crypto.createHash('sha256').update(`big-hello ${size}`).digest();
  const keyShare = crypto.createHash('sha256').update(`key ${size}`).digest();
  const real = [0x1301, 0x1302, 0x1303];
  const fixedExtensions = Buffer.concat([
    extension(10, vec16(u16(0x001d))),                                // supported_groups: x25519
    extension(13, vec16(u16(0x0804), u16(0x0805), u16(0x0403))),     // signature_algorithms
    extension(43, u8(2), u16(0x0304)),                                // supported_versions: 1.3
    extension(51, vec16(u16(0x001d), u16(32), keyShare)),             // key_share
  ]);
  const header = 4;
  const fixed = 2 + 32 + 1 + 2 + 2 * real.length + 2 + 2 + fixedExtensions.length;
  let filler = size - header - fixed;
  if (filler < 4) throw new Error(`bigClientHello: ${size} bytes is too small`);
  // Split the filler between extra cipher suites (even) and a padding extension (4-byte header).
  let suiteFiller = Math.min(kMaxVector16 - 1 - 2 * real.length, Math.floor(filler / 2) & ~1);
  let padding = filler - suiteFiller - 4;
  if (padding < 0) { suiteFiller = (filler - 4) & ~1; padding = filler - suiteFiller - 4; }
  if (padding + fixedExtensions.length + 4 > kMaxVector16) {
    throw new Error(`bigClientHello: ${size} bytes do not fit in a ClientHello`);
  }
  const suites = [...real.map(u16)];
  // Unassigned code points (0xff00-0xffff is private use): OpenSSL skips unknown suites.
  for (let i = 0; i < suiteFiller / 2; i++) suites.push(u16(0xff00 | (i & 0xff)));
  const body = Buffer.concat([
    u16(0x0303), random, u8(0),
    vec16(...suites),
    u8(1), u8(0),
    vec16(extension(21, Buffer.alloc(padding)), fixedExtensions),
  ]);
  const message = Buffer.concat([u8(1), u24(body.length), body]);
  if (message.length !== size) throw new Error(`bigClientHello: built ${message.length}, wanted ${size}`);
  return message;
}

export function fragmentHandshake(message, n = 1) {
  const records = [];
  for (let pos = 0; pos < message.length; pos += n) {
    const fragment = message.subarray(pos, Math.min(message.length, pos + n));
    records.push(Buffer.from([22, 3, 1, 0, 0]));
    records[records.length - 1].writeUInt16BE(fragment.length, 3);
    records.push(fragment);
  }
  return Buffer.concat(records);
}
