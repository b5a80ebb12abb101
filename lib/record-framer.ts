// TLS record framing (RFC 8446 5.1, RFC 5246 6.2): cuts a byte stream into whole records and
// checks every header. Used by the record tap in both directions.
import { SpliceError } from './errors';

export const kRecordHeaderLength = 5;

// RFC 5246 6.2.3: "The length (in bytes) of the following TLSCiphertext.fragment. The length MUST
// NOT exceed 2^14 + 2048." TLS 1.3 is stricter (2^14 + 256, RFC 8446 5.2); OpenSSL enforces that.
export const kMaxRecordBodyLength = 2 ** 14 + 2048;

export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
} as const;

// Incremental record framing: returns whole records, holds a partial tail, and throws
// ERR_TLS_SPLICE_BAD_RECORD on a header that cannot start a TLS record. Records are views of the
// chunks they arrived in; only a record split across chunks is copied (once, itself alone).
//
// With joinHandshakeRecords, a run of whole handshake records lying next to each other in one
// chunk comes out as one buffer (a view of the chunk, every header checked): the tap then pays per
// run, not per record, when a hostile peer fragments a hello into 1-byte records (issue 17).
// Records of other types always come out one by one.
export interface RecordFramerOptions {
  joinHandshakeRecords?: boolean;
}

export class RecordFramer {
  // Bytes not yet returned, oldest first: views of the chunks pushed.
  #held: Buffer[] = [];
  #length = 0;
  readonly #what: string;
  readonly #joinHandshakeRecords: boolean;

  constructor(what: string, options: RecordFramerOptions = {}) {
    this.#what = what;
    this.#joinHandshakeRecords = options.joinHandshakeRecords === true;
  }

  get partialLength(): number {
    return this.#length;
  }

  takePartial(): Buffer {
    const out = this.#held.length === 1 ? this.#held[0] : Buffer.concat(this.#held, this.#length);
    this.#held = [];
    this.#length = 0;
    return out;
  }

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    this.#held.push(chunk);
    this.#length += chunk.length;
    while (this.#length >= kRecordHeaderLength) {
      const head = this.#held[0];
      const header = head.length >= kRecordHeaderLength ? head : this.#peek(kRecordHeaderLength);
      const size = this.#recordSize(header, 0);
      if (size > this.#length) break;
      let end = size;
      if (this.#joinHandshakeRecords && header[0] === ContentType.handshake && head.length >= size) {
        end = this.#handshakeRunEnd(head, size);
      }
      out.push(this.#take(end));
    }
    return out;
  }

  // Where the run of whole handshake records at the start of `head` ends; the first ends at `end`.
  #handshakeRunEnd(head: Buffer, end: number): number {
    while (head.length - end >= kRecordHeaderLength && head[end] === ContentType.handshake) {
      const size = this.#recordSize(head, end);
      if (head.length - end < size) break;
      end += size;
    }
    return end;
  }

  // The size of the record whose header starts at buf[at], header included; throws on a header
  // that cannot start a TLS record.
  #recordSize(buf: Buffer, at: number): number {
    const type = buf[at];
    const major = buf[at + 1];
    const length = (buf[at + 3] << 8) | buf[at + 4];
    if (type < ContentType.changeCipherSpec || type > ContentType.applicationData) {
      throw this.#bad(`content type ${type}`);
    }
    // RFC 8446 5.1 / RFC 5246 6.2.1: legacy_record_version is 0x03xx in every TLS record.
    if (major !== 3) {
      throw this.#bad(`record version 0x${buf.readUInt16BE(at + 1).toString(16).padStart(4, '0')}`);
    }
    if (length > kMaxRecordBodyLength) {
      throw this.#bad(`record length ${length} (the limit is ${kMaxRecordBodyLength})`);
    }
    return kRecordHeaderLength + length;
  }

  // The first n held bytes, copied (n is small: a header split across chunks).
  #peek(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = 0; filled < n; i++) {
      filled += this.#held[i].copy(out, filled, 0, Math.min(this.#held[i].length, n - filled));
    }
    return out;
  }

  // Removes and returns the first n held bytes: a view when one chunk holds them all.
  #take(n: number): Buffer {
    this.#length -= n;
    const head = this.#held[0];
    if (head.length >= n) {
      if (head.length === n) this.#held.shift();
      else this.#held[0] = head.subarray(n);
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const first = this.#held[0];
      const used = Math.min(first.length, n - filled);
      first.copy(out, filled, 0, used);
      filled += used;
      if (used === first.length) this.#held.shift();
      else this.#held[0] = first.subarray(used);
    }
    return out;
  }

  #bad(what: string): SpliceError {
    this.#held = [];
    this.#length = 0;
    return new SpliceError('ERR_TLS_SPLICE_BAD_RECORD',
      `The ${this.#what} is not a TLS record stream: ${what}`);
  }
}
