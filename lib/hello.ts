// Parsing of the few handshake messages the record tap reads: ClientHello and ServerHello (from
// plaintext records) and EncryptedExtensions (after the tap opened it with the server handshake
// traffic secret). Only what session capture needs is extracted; OpenSSL remains the judge of
// whether a handshake is valid. Every length is checked against the bytes actually present, so a
// hostile peer gets a HelloParseError, never an out-of-bounds read or a crash.
//
// Contract: the parse functions take one complete handshake message body (without its 4-byte
// header) and either return the fields below or throw a SpliceError with code
// ERR_TLS_SPLICE_BAD_HANDSHAKE. HandshakeReassembler turns record payloads into whole messages.
import { SpliceError } from './errors';

export const kHandshakeHeaderLength = 4;
export const kRandomLength = 32;

export const HandshakeType = {
  clientHello: 1,
  serverHello: 2,
  newSessionTicket: 4,
  encryptedExtensions: 8,
  finished: 20,
  keyUpdate: 24,
} as const;

export const ExtensionType = {
  maxFragmentLength: 1,
  encryptThenMac: 22,
  supportedVersions: 43,
} as const;

export const kTls12 = 0x0303;
export const kTls13 = 0x0304;

// The largest handshake message the tap reassembles. A ClientHello carries at most 2^16-2 bytes of
// cipher suites and 2^16-1 bytes of extensions (RFC 8446 4.1.2), so 2^17 plus the fixed fields
// covers every valid hello; anything longer is refused without buffering it.
export const kMaxHelloLength = 2 ** 17 + 512;

// RFC 8446 4.1.3: "For reasons of backward compatibility with middleboxes (see Appendix D.4), the
// HelloRetryRequest message uses the same structure as the ServerHello, but with Random set to the
// special value of the SHA-256 of "HelloRetryRequest"".
const kHelloRetryRequestRandom = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

// RFC 6066 4: max_fragment_length codes 1..4 mean 2^9, 2^10, 2^11, 2^12.
export const kDefaultMaxFragmentLength = 2 ** 14;

function maxFragmentLengthFromCode(code: number, what: string): number {
  if (code < 1 || code > 4) {
    throw badHandshake(`${what}: max_fragment_length code ${code} is not 1..4 (RFC 6066 4)`);
  }
  return 2 ** (8 + code);
}

function badHandshake(message: string): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_BAD_HANDSHAKE', message);
}

// A bounds-checked cursor over one message body.
class Reader {
  #buf: Buffer;
  #pos = 0;
  #what: string;

  constructor(buf: Buffer, what: string) {
    this.#buf = buf;
    this.#what = what;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number): void {
    if (n > this.remaining) {
      throw badHandshake(`${this.#what} is truncated (needs ${n} more bytes, has ${this.remaining})`);
    }
  }

  u8(): number {
    this.#need(1);
    return this.#buf[this.#pos++];
  }

  u16(): number {
    this.#need(2);
    const v = this.#buf.readUInt16BE(this.#pos);
    this.#pos += 2;
    return v;
  }

  bytes(n: number): Buffer {
    this.#need(n);
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  vector8(): Buffer {
    return this.bytes(this.u8());
  }

  vector16(): Buffer {
    return this.bytes(this.u16());
  }

  expectEnd(): void {
    if (this.remaining !== 0) {
      throw badHandshake(`${this.#what} has ${this.remaining} trailing bytes`);
    }
  }
}

// Parses an extensions block into type -> data. RFC 8446 4.2: "There MUST NOT be more than one
// extension of the same type in a given extension block."
function parseExtensions(block: Buffer, what: string): Map<number, Buffer> {
  const reader = new Reader(block, `${what} extensions`);
  const out = new Map<number, Buffer>();
  while (reader.remaining > 0) {
    const type = reader.u16();
    const data = reader.vector16();
    if (out.has(type)) throw badHandshake(`${what} repeats extension ${type}`);
    out.set(type, data);
  }
  return out;
}

// A copy of the random in memory of its own. Buffer.from() of a small view takes a slice of
// Node's shared 8 KiB pool, and a tap keeps its randoms for the life of its connection (until the
// splice ends): one pooled random pins a whole slab (2.3 KiB per idle splice, measured with
// bench/idle-rss.mjs and a heap snapshot).
function randomOf(reader: Reader): Buffer {
  const random = Buffer.alloc(kRandomLength);
  reader.bytes(kRandomLength).copy(random);
  return random;
}

export interface ClientHelloInfo {
  random: Buffer;
  // The max_fragment_length the client asked for, if any (the server decides).
  offeredMaxFragmentLength: number | undefined;
}

export function parseClientHello(body: Buffer): ClientHelloInfo {
  const what = 'ClientHello';
  const reader = new Reader(body, what);
  reader.u16();                           // legacy_version
  const random = randomOf(reader);
  const sessionId = reader.vector8();
  if (sessionId.length > 32) throw badHandshake(`${what}: legacy_session_id longer than 32`);
  const suites = reader.vector16();
  if (suites.length < 2 || suites.length % 2 !== 0) {
    throw badHandshake(`${what}: cipher_suites length ${suites.length} is not a positive even number`);
  }
  const compression = reader.vector8();
  if (compression.length < 1) throw badHandshake(`${what}: empty compression_methods`);
  let offeredMaxFragmentLength: number | undefined;
  // RFC 5246 7.4.1.2: extensions may be absent altogether in a TLS 1.2 ClientHello.
  if (reader.remaining > 0) {
    const extensions = parseExtensions(reader.vector16(), what);
    reader.expectEnd();
    const mfl = extensions.get(ExtensionType.maxFragmentLength);
    if (mfl !== undefined) {
      if (mfl.length !== 1) throw badHandshake(`${what}: max_fragment_length is not one byte`);
      offeredMaxFragmentLength = maxFragmentLengthFromCode(mfl[0], what);
    }
  }
  return { random, offeredMaxFragmentLength };
}

export interface ServerHelloInfo {
  random: Buffer;
  isHelloRetryRequest: boolean;
  // The negotiated version: supported_versions when present, else legacy_version.
  version: number;
  cipherSuite: number;
  // TLS 1.2 only: max_fragment_length echoed by the server (TLS 1.3 carries it in
  // EncryptedExtensions).
  maxFragmentLength: number | undefined;
  // TLS 1.2: the server agreed to encrypt_then_mac (RFC 7366), which changes CBC records.
  encryptThenMac: boolean;
}

export function parseServerHello(body: Buffer): ServerHelloInfo {
  const reader = new Reader(body, 'ServerHello');
  const legacyVersion = reader.u16();
  const random = randomOf(reader);
  const isHelloRetryRequest = random.equals(kHelloRetryRequestRandom);
  const what = isHelloRetryRequest ? 'HelloRetryRequest' : 'ServerHello';
  const sessionId = reader.vector8();
  if (sessionId.length > 32) throw badHandshake(`${what}: legacy_session_id longer than 32`);
  const cipherSuite = reader.u16();
  reader.u8();                            // legacy_compression_method
  let version = legacyVersion;
  let maxFragmentLength: number | undefined;
  let encryptThenMac = false;
  if (reader.remaining > 0) {
    const extensions = parseExtensions(reader.vector16(), what);
    reader.expectEnd();
    const supported = extensions.get(ExtensionType.supportedVersions);
    if (supported !== undefined) {
      // RFC 8446 4.2.1: in a ServerHello, supported_versions holds one selected_version.
      if (supported.length !== 2) throw badHandshake(`${what}: supported_versions is not 2 bytes`);
      version = supported.readUInt16BE(0);
    }
    const mfl = extensions.get(ExtensionType.maxFragmentLength);
    if (mfl !== undefined) {
      if (mfl.length !== 1) throw badHandshake(`${what}: max_fragment_length is not one byte`);
      maxFragmentLength = maxFragmentLengthFromCode(mfl[0], what);
    }
    const etm = extensions.get(ExtensionType.encryptThenMac);
    if (etm !== undefined) {
      // RFC 7366 2: the extension_data field is empty.
      if (etm.length !== 0) throw badHandshake(`${what}: encrypt_then_mac is not empty`);
      encryptThenMac = true;
    }
  }
  return { random, isHelloRetryRequest, version, cipherSuite, maxFragmentLength, encryptThenMac };
}

export interface EncryptedExtensionsInfo {
  maxFragmentLength: number | undefined;
}

export function parseEncryptedExtensions(body: Buffer): EncryptedExtensionsInfo {
  const what = 'EncryptedExtensions';
  const reader = new Reader(body, what);
  const extensions = parseExtensions(reader.vector16(), what);
  reader.expectEnd();
  const mfl = extensions.get(ExtensionType.maxFragmentLength);
  let maxFragmentLength: number | undefined;
  if (mfl !== undefined) {
    if (mfl.length !== 1) throw badHandshake(`${what}: max_fragment_length is not one byte`);
    maxFragmentLength = maxFragmentLengthFromCode(mfl[0], what);
  }
  return { maxFragmentLength };
}

export interface HandshakeMessage {
  type: number;
  body: Buffer;
}

// Joins handshake record payloads into whole messages. RFC 8446 5.1: "Handshake messages MAY be
// coalesced into a single TLSPlaintext record or fragmented across several such records".
//
// The work is linear in the bytes pushed, however they are fragmented (a hostile peer may send a
// 131 KB hello one byte per record): a fragment is parsed in place when nothing is held, and
// otherwise copied once into a held buffer that grows by doubling. A message returned is a view
// that stays valid: the held buffer is never written again once a message was taken from it.
const kNoMessages: readonly HandshakeMessage[] = Object.freeze([]);

// Fragments up to this long are appended byte by byte: Buffer.copy() costs an allocation and a
// call into C++, far more than a few bytes of loop.
const kByteLoopMax = 32;

export class HandshakeReassembler {
  #held: Buffer | null = null;    // capacity; bytes [0, #length) are an incomplete message
  #length = 0;
  // Where the held message ends (header included) once its header is held; 0 before.
  #messageEnd = 0;
  #copied = 0;
  #maxLength: number;

  constructor(maxLength: number = kMaxHelloLength) {
    this.#maxLength = maxLength;
  }

  // Bytes copied so far (appended or moved when the held buffer grew): for tests, which check
  // that the work stays linear in the message size.
  get copiedBytes(): number {
    return this.#copied;
  }

  // Bytes held of a message not yet complete.
  get heldLength(): number {
    return this.#length;
  }

  // The size of the held buffer: never more than twice the bytes received, nor (once the header
  // is in) more than the message announced plus the last fragment.
  get heldCapacity(): number {
    return this.#held?.length ?? 0;
  }

  // Returns the messages completed by the fragment source[start, end) (a view of it is made only
  // when it starts a message, never per fragment); throws ERR_TLS_SPLICE_BAD_HANDSHAKE when a message announces more than maxLength bytes.
  push(source: Buffer, start = 0, end = source.length): readonly HandshakeMessage[] {
    if (this.#length === 0) {
      const out: HandshakeMessage[] = [];
      const fragment = start === 0 && end === source.length ? source : source.subarray(start, end);
      const used = this.#split(fragment, out);
      if (used < fragment.length) this.#append(fragment, used, fragment.length);
      return out;
    }
    this.#append(source, start, end);
    if (this.#messageEnd === 0 && this.#length >= kHandshakeHeaderLength) {
      this.#messageEnd = kHandshakeHeaderLength + this.#checkedLength(this.#held!, 0);
    }
    if (this.#messageEnd === 0 || this.#length < this.#messageEnd) return kNoMessages;
    const held = this.#held!.subarray(0, this.#length);
    const out: HandshakeMessage[] = [];
    const used = this.#split(held, out);
    if (out.length > 0) {
      // The returned views keep this buffer; the tail (a part of this fragment, since what was
      // held before held no whole message) starts a new one.
      this.#held = null;
      this.#length = 0;
      this.#messageEnd = 0;
      if (used < held.length) this.#append(held, used, held.length);
    }
    return out;
  }

  // Appends the whole messages at the start of `bytes` to `out`; returns the bytes they span.
  #split(bytes: Buffer, out: HandshakeMessage[]): number {
    let pos = 0;
    while (bytes.length - pos >= kHandshakeHeaderLength) {
      const length = this.#checkedLength(bytes, pos);
      if (bytes.length - pos - kHandshakeHeaderLength < length) break;
      const start = pos + kHandshakeHeaderLength;
      out.push({ type: bytes[pos], body: bytes.subarray(start, start + length) });
      pos = start + length;
    }
    return pos;
  }

  // The body length announced by the message header at bytes[pos].
  #checkedLength(bytes: Buffer, pos: number): number {
    const length = (bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3];
    if (length > this.#maxLength) {
      this.#held = null;
      this.#length = 0;
      this.#messageEnd = 0;
      throw badHandshake(`handshake message of ${length} bytes exceeds the ${this.#maxLength}-byte bound`);
    }
    return length;
  }

  #append(source: Buffer, start: number, end: number): void {
    const count = end - start;
    const needed = this.#length + count;
    if (this.#held === null || needed > this.#held.length) {
      // Doubling keeps the copies linear; the announced length caps it, so that a peer that
      // announces 128 KiB and sends less does not make the tap hold twice what it sent.
      const doubled = Math.max(2 * (this.#held?.length ?? 0), 64);
      const grown = Buffer.allocUnsafe(Math.max(needed,
        this.#messageEnd > 0 ? Math.min(doubled, this.#messageEnd) : doubled));
      if (this.#length > 0) this.#held!.copy(grown, 0, 0, this.#length);
      this.#copied += this.#length;
      this.#held = grown;
    }
    const held = this.#held;
    if (count <= kByteLoopMax) {
      for (let i = 0; i < count; i++) held[this.#length + i] = source[start + i];
    } else {
      source.copy(held, this.#length, start, end);
    }
    this.#length = needed;
    this.#copied += count;
  }
}

// Returns the handshake message types in one decrypted TLS 1.3 handshake record, stopping at a
// truncated tail (a message continued in the next record).
export function handshakeTypesIn(plaintext: Buffer): number[] {
  const types: number[] = [];
  let pos = 0;
  while (plaintext.length - pos >= kHandshakeHeaderLength) {
    types.push(plaintext[pos]);
    pos += kHandshakeHeaderLength + plaintext.readUIntBE(pos + 1, 3);
  }
  return types;
}
