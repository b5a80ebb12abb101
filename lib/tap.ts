// The record tap: a plain JS Duplex between the TCP net.Socket and Node's TLS layer
// (DESIGN.md, "The one hard part"). Node wraps it in a JSStreamSocket, so every byte of ciphertext
// in both directions passes through here. The tap
//   - frames records (5-byte headers) in both directions and hands Node only whole records, so
//     that OpenSSL never holds a partial record;
//   - counts the records of each direction, and the ones Node has consumed (inbound: delivered to
//     Node; outbound: written by Node);
//   - reads the plaintext ClientHello/ServerHello (randoms, version, cipher suite, TLS 1.2
//     max_fragment_length) and detects TLS 1.2 renegotiation;
//   - for TLS 1.3, keeps the protected records since the handshake began until trial decryption
//     finds the first one under the application key, then drops them;
//   - keeps an 'error' listener on the raw socket at every moment and tracks in-flight writes;
//   - on capture, stops Node's reading of the raw socket, hands over what Node never got, and
//     closes Node's copy of the fd.
//
// A hostile peer can send anything: every length is bounded, a bad record header destroys the tap
// with ERR_TLS_SPLICE_BAD_RECORD (Node reports it as a TLS socket error), and a hello the tap
// cannot parse only makes the session unsplicable; OpenSSL still decides whether it is valid.
import { Duplex } from 'node:stream';
import * as net from 'node:net';
import type * as tls from 'node:tls';

import { RecordOpener, binding } from './binding';
import { SpliceError } from './errors';
import { spentSocketOption } from './spent-socket';
import {
  disableReading, forwardAddresses, freezeAddresses, keepWritableAfterEnd, newSessionPending,
  readStop, socketFd,
} from './internals';
import {
  ClientHelloInfo,
  HandshakeMessage,
  HandshakeReassembler,
  HandshakeType,
  ServerHelloInfo,
  handshakeTypesIn,
  kTls12,
  kTls13,
  parseClientHello,
  parseServerHello,
} from './hello';

import { ContentType, RecordFramer, kRecordHeaderLength } from './record-framer';

export { ContentType, RecordFramer, kMaxRecordBodyLength, kRecordHeaderLength } from './record-framer';

// Inbound records queued in the tap (not yet given to Node) before the raw socket is paused; keeps
// memory bounded when Node is not reading.
const kInboundHighWaterMark = 64 * 1024;

// Most bytes handed to Node in one chunk.
const kDeliverBatchBytes = 64 * 1024;

// TLS 1.3: protected records retained until the application-key boundary is known. A handshake
// flight is a handful of records (a large certificate chain: a few dozen); past this the session
// is declared unsplicable rather than buffering without limit.
const kMaxRetainedRecords = 64;
const kMaxRetainedBytes = 1024 * 1024;

// TLS 1.3: trial decryption is deferred to capture, so that connections never spliced do not pay
// for it; past these many retained records (or bytes) the boundary is searched at once, so that a
// long session before capture keeps only a bounded backlog.
const kLazyRetainedRecords = 16;
const kLazyRetainedBytes = 64 * 1024;

// TLS 1.3: short post-handshake records waiting to be probed for a KeyUpdate; probed at capture,
// or all at once when this many are waiting.
const kMaxProbeBacklog = 16;

// TLS 1.3: how many of the first protected server records are kept to read EncryptedExtensions
// (only when the client offered max_fragment_length: otherwise nothing there matters).
const kMaxEncryptedExtensionsRecords = 4;

// TLS 1.3: post-handshake records at most this long are trial-opened to spot a KeyUpdate (22 bytes
// of ciphertext unpadded). Bulk data records are larger and are never decrypted in JS.
const kKeyUpdateProbeMaxBody = 255;

// A record kept for trial decryption later: a copy of its bytes (a view would pin the whole
// chunk it arrived in), and the record itself, which gets the result.
interface DeferredRecord {
  record: TappedRecord;
  data: Buffer;
}

export interface TappedRecord {
  data: Buffer;             // the whole record, header included; or a run of plaintext handshake
                            // records, which the framer joins and the tap follows as one
  type: number;             // outer content type
  protectedIndex: number;   // position among this direction's protected records; -1 if plaintext
  consumed: boolean;        // given to Node (inbound) or written by Node (outbound)
  renegotiation: boolean;   // TLS 1.2: a handshake record after this direction's Finished
  keyUpdate: boolean;       // TLS 1.3: carries a KeyUpdate (known once the boundary is known)
  unopened: boolean;        // TLS 1.3: a probed record did not open under the generation-0 key
}

// What the tap knows about one direction of the connection.
export class DirectionState {
  readonly fromServer: boolean;
  protectedCount = 0;
  changeCipherSpecSeen = false;       // TLS 1.2
  protectedHandshakeRecords = 0;      // TLS 1.2: the first is Finished
  reassembler: HandshakeReassembler | null = new HandshakeReassembler();
  helloCopiedBytes = 0;               // what the reassembler copied, once the hello was read
  retained: DeferredRecord[] = [];    // TLS 1.3, until the boundary is known
  retainedBytes = 0;
  trialNext = 0;
  probeBacklog: DeferredRecord[] = [];  // TLS 1.3: short records after the boundary, not probed
  boundary: number | undefined;       // TLS 1.3: protected index of the first application record
  boundaryLost = false;
  firstProtected: Buffer[] = [];      // TLS 1.3 server direction: holds EncryptedExtensions
  consumedProtected = 0;
  lastConsumed: TappedRecord | undefined;
  renegotiated = false;
  keyUpdateSeen = false;
  unopened = false;

  constructor(fromServer: boolean) {
    this.fromServer = fromServer;
  }
}

export interface RecordTapOptions {
  isServer: boolean;
  // Called once the ClientHello random is known (the server maps keylog lines with it).
  onClientHello?: (tap: RecordTap) => void;
  onClose?: (tap: RecordTap) => void;
}

type TapState = 'open' | 'capturing' | 'captured';

const tapsBySocket = new WeakMap<tls.TLSSocket, RecordTap>();

// The tap a TLSSocket was created over, if any.
export function tapOf(tlsSocket: tls.TLSSocket): RecordTap | undefined {
  return tapsBySocket.get(tlsSocket);
}

export function spentError(): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_SPENT',
    'This TLSSocket was handed to tls-splice and can no longer read or write; use the splice ' +
    '(or engine: \'js\' when the socket must stay usable)');
}

function noop(): void {}

// The longest secret a key log line carries: a SHA-384 traffic secret is 48 bytes, as is the
// TLS 1.2 master secret; anything longer is not a line Node writes.
const kMaxKeylogSecretLength = 64;
const kClientRandomHexLength = 64;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

function isHex(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (hexValue(buf[i]) < 0) return false;
  return true;
}

interface KeylogFields {
  line: Buffer;
  label: string;
  clientRandom: string;       // lower-case hex: not secret
  secretStart: number;
  secretEnd: number;
}

// Keylog line: "<LABEL> <64 hex client random> <hex secret>" (NSS key log format). Read from the
// bytes, so that the secret never becomes a JS string (strings cannot be wiped).
function splitKeylogLine(line: Buffer | string): KeylogFields | undefined {
  const buf = typeof line === 'string' ? Buffer.from(line, 'latin1') : line;
  let start = 0;
  let end = buf.length;
  while (end > start && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d || buf[end - 1] === 0x20)) {
    end--;
  }
  while (start < end && buf[start] === 0x20) start++;
  const first = buf.indexOf(0x20, start);
  if (first <= start || first >= end) return undefined;
  const second = buf.indexOf(0x20, first + 1);
  if (second < 0 || second >= end || buf.indexOf(0x20, second + 1) >= 0 &&
      buf.indexOf(0x20, second + 1) < end) {
    return undefined;
  }
  const secretLength = end - second - 1;
  if (second - first - 1 !== kClientRandomHexLength || !isHex(buf, first + 1, second) ||
      secretLength === 0 || secretLength % 2 !== 0 || secretLength > 2 * kMaxKeylogSecretLength ||
      !isHex(buf, second + 1, end)) {
    return undefined;
  }
  return {
    line: buf,
    label: buf.toString('latin1', start, first),
    clientRandom: buf.toString('latin1', first + 1, second).toLowerCase(),
    secretStart: second + 1,
    secretEnd: end,
  };
}

// The client random a key log line names (hex), or undefined; the secret is not decoded.
export function keylogClientRandom(line: Buffer | string): string | undefined {
  return splitKeylogLine(line)?.clientRandom;
}

// The secret of a split line, decoded from the hex bytes (never through a string).
function keylogSecret({ line: buf, secretStart, secretEnd }: KeylogFields): Buffer {
  const secret = Buffer.alloc((secretEnd - secretStart) / 2);
  for (let i = 0; i < secret.length; i++) {
    secret[i] = (hexValue(buf[secretStart + 2 * i]) << 4) | hexValue(buf[secretStart + 2 * i + 1]);
  }
  return secret;
}

export function parseKeylogLine(line: Buffer | string):
    { label: string; clientRandom: string; secret: Buffer } | undefined {
  const fields = splitKeylogLine(line);
  if (fields === undefined) return undefined;
  return { label: fields.label, clientRandom: fields.clientRandom, secret: keylogSecret(fields) };
}

export class RecordTap extends Duplex {
  readonly raw: net.Socket;
  readonly isServer: boolean;
  readonly in: DirectionState;
  readonly out: DirectionState;
  clientHello: ClientHelloInfo | undefined;
  serverHello: ServerHelloInfo | undefined;
  helloRetryRequest = false;
  tlsSocket: tls.TLSSocket | undefined;
  secureEstablished = false;
  // Why this session cannot be captured, when the tap lost track of it (never a tap error).
  failure: SpliceError | undefined;

  #options: RecordTapOptions;
  #version: number | undefined;
  #secrets = new Map<string, Buffer>();
  #secretsWiped = false;
  // TLS 1.3: the keys of each direction's application secret, derived once at the first trial
  // decryption (not once per record opened); wiped with the secrets.
  #openers = new Map<DirectionState, RecordOpener>();
  // The ClientHello random in hex, as key log lines name it (computed once, not per line).
  #clientRandomHex: string | undefined;
  #inFramer = new RecordFramer('data received from the peer', { joinHandshakeRecords: true });
  #outFramer = new RecordFramer('data Node wrote', { joinHandshakeRecords: true });
  #state: TapState = 'open';

  // Inbound records not yet pushed to the Readable side, oldest first.
  #queue: TappedRecord[] = [];
  #queueHead = 0;
  #queueBytes = 0;
  // Records pushed to the Readable side whose bytes Node has not yet received through 'data'.
  #pushed: { record: TappedRecord; end: number }[] = [];
  #pushedHead = 0;
  #pushedBytes = 0;
  #emittedBytes = 0;

  #readWanted = false;
  #readGeneration = 0;
  #delivering = false;
  #held = false;
  #eofQueued = false;
  #eofDelivered = false;
  #rawClosed = false;
  #rawFlowing = false;
  #inflightWrites = 0;
  #writeWaiters: (() => void)[] = [];
  // Writes the raw socket completed whose report to TLSWrap may not have happened yet: Node's
  // JSStreamSocket tells TLSWrap a write is done one setImmediate after our callback, and only then
  // does TLSWrap hand over the output it queued meanwhile (see nodeOutputPending).
  #writeReportsPending = 0;

  constructor(raw: net.Socket, options: RecordTapOptions) {
    super({ allowHalfOpen: true, decodeStrings: true });
    if (raw.readableEncoding !== null || raw.readableObjectMode) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        'The socket to tap must deliver Buffers: do not call setEncoding() on it');
    }
    this.raw = raw;
    this.isServer = options.isServer;
    this.#options = options;
    this.in = new DirectionState(!options.isServer);
    this.out = new DirectionState(options.isServer);
    // TLSSocket copies allowHalfOpen from the stream it wraps, so the tap shows the raw socket's
    // policy until the TLSSocket exists (tlsSocketCreated()). The raw socket itself must never end
    // on its own when the peer's FIN arrives: Node may still write close_notify, and a write after
    // that automatic end() would fail with EPIPE. Its writable side ends when the TLSSocket ends.
    this.allowHalfOpen = raw.allowHalfOpen;
    keepWritableAfterEnd(raw);

    // Read only when Node asks (pauseOnConnect keeps working, and nothing is read ahead of need).
    raw.pause();
    raw.on('error', this.#onRawError);
    raw.on('data', this.#onRawData);
    raw.on('end', this.#onRawEnd);
    raw.on('close', this.#onRawClose);
    if (raw.readableEnded) this.#onRawEnd();
    this.once('end', () => {
      if (this.#rawClosed) this.destroy();
    });
  }

  get version(): number | undefined {
    return this.#version;
  }

  get state(): TapState {
    return this.#state;
  }

  get inflightWrites(): number {
    return this.#inflightWrites;
  }

  get outPartialLength(): number {
    return this.#outFramer.partialLength;
  }

  // Whether Node's TLS layer may still write ciphertext it has produced, without anything on the
  // JS side showing it. TLSWrap (src/crypto/crypto_tls.cc) hands its encrypted output to the tap
  // from EncOut(), which every entry point that produces output (a delivered record, a write, a
  // shutdown, newSessionDone, the completion of a write) calls synchronously before returning to
  // JS; EncOut() holds the output back only while a write of its own is unfinished (write_size_,
  // until JSStreamSocket's finishWrite, one setImmediate after the raw write completes: counted
  // here), or while a server's 'newSession' listener has not called back (_newSessionPending).
  // So when this is false and no write is in flight, Node has nothing more to send.
  get nodeOutputPending(): boolean {
    return this.#inflightWrites > 0 || this.#writeReportsPending > 0 ||
      this.#outFramer.partialLength > 0 || this.writableLength > 0 ||
      (this.tlsSocket !== undefined && newSessionPending(this.tlsSocket));
  }

  get eofDelivered(): boolean {
    return this.#eofDelivered;
  }

  // Bytes of an incomplete record received from the peer (the JS engine: a TCP end inside one).
  get inPartialLength(): number {
    return this.#inFramer.partialLength;
  }

  // Called right after the TLSSocket was constructed over this tap. From now on the TLSSocket
  // decides when the write side ends (TLSWrap shutdown -> end()), never the Duplex machinery.
  tlsSocketCreated(): void {
    this.allowHalfOpen = true;
  }

  secret(label: string): Buffer | undefined {
    return this.#secrets.get(label);
  }

  // Links the TLSSocket created over this tap. Also makes the TLSSocket report the raw socket's
  // addresses and socket options: a JSStreamSocket-backed TLSSocket has none of its own.
  attachTLSSocket(tlsSocket: tls.TLSSocket): void {
    this.tlsSocket = tlsSocket;
    tapsBySocket.set(tlsSocket, this);
    tlsSocket.once('secure', () => {
      this.secureEstablished = true;
    });
    // A TLSSocket destroyed without its tap (a TLSSocket over a JS stream does not always destroy
    // the stream) must not leave the secrets behind.
    tlsSocket.once('close', () => this.wipeSecrets());
    const raw = this.raw;
    forwardAddresses(tlsSocket, raw);
    const proxy = tlsSocket as unknown as Record<string, unknown>;
    // Once captured, the TCP socket belongs to the engine that took the session (spent-socket.ts).
    proxy.setNoDelay = (noDelay?: boolean) => {
      if (!raw.destroyed) raw.setNoDelay(noDelay);
      else spentSocketOption(tlsSocket, 'noDelay', noDelay === undefined ? true : Boolean(noDelay));
      return tlsSocket;
    };
    proxy.setKeepAlive = (enable?: boolean, initialDelay?: number) => {
      if (!raw.destroyed) raw.setKeepAlive(enable, initialDelay);
      else spentSocketOption(tlsSocket, 'keepAlive', Boolean(enable), initialDelay);
      return tlsSocket;
    };
  }

  // Takes one NSS key-log line from Node. Lines for another client random (another connection, or
  // a renegotiation) are ignored, and so is everything once the secrets were wiped. Returns
  // whether the line was kept.
  addKeylogLine(line: Buffer | string): boolean {
    if (this.#secretsWiped || this.clientHello === undefined) return false;
    const fields = splitKeylogLine(line);
    this.#clientRandomHex ??= this.clientHello.random.toString('hex');
    if (fields === undefined || fields.clientRandom !== this.#clientRandomHex ||
        this.#secrets.has(fields.label)) {
      return false;
    }
    this.#secrets.set(fields.label, keylogSecret(fields));
    return true;
  }

  // Zeroes every secret the tap holds and forgets them (after capture copied what it needs, or
  // when the connection is destroyed): they must not outlive their use in the JS heap.
  wipeSecrets(): void {
    this.#secretsWiped = true;
    for (const opener of this.#openers.values()) opener.wipe();
    this.#openers.clear();
    for (const secret of this.#secrets.values()) secret.fill(0);
    this.#secrets.clear();
  }

  get secretsWiped(): boolean {
    return this.#secretsWiped;
  }

  // ---- inbound: raw socket -> Node -------------------------------------------------------------

  #onRawData = (chunk: Buffer): void => {
    if (this.#state === 'captured') return;
    let records: Buffer[];
    try {
      records = this.#inFramer.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const data of records) this.#trackEach(this.in, data, this.#enqueue);
    this.#deliver();
  };

  #enqueue = (record: TappedRecord): void => {
    this.#queue.push(record);
    this.#queueBytes += record.data.length;
  };

  #onRawEnd = (): void => {
    this.#eofQueued = true;
    this.#deliver();
  };

  #onRawError = (err: Error): void => {
    if (this.#state === 'captured') return;
    this.destroy(err);
  };

  #onRawClose = (): void => {
    this.#rawClosed = true;
    if (this.#state === 'captured') return;
    if (!this.#eofQueued) this.#onRawEnd();
    if (this.readableEnded) this.destroy();
  };

  override _read(): void {
    this.#readWanted = true;
    this.#readGeneration++;
    this.#deliver();
  }

  // Hands queued whole records to Node while it wants them.
  #deliver(): void {
    if (this.#delivering || this.destroyed) return;
    this.#delivering = true;
    try {
      while (this.#readWanted && !this.#held && this.#state === 'open' &&
             this.#queueHead < this.#queue.length) {
        // One push per run of records that lie next to each other in one chunk: a view of the
        // chunk, never a copy.
        const first = this.#queue[this.#queueHead].data;
        let bytes = 0;
        while (this.#queueHead < this.#queue.length && bytes < kDeliverBatchBytes) {
          const record = this.#queue[this.#queueHead];
          if (bytes > 0 && (record.data.buffer !== first.buffer ||
                            record.data.byteOffset !== first.byteOffset + bytes)) {
            break;
          }
          this.#queueHead++;
          bytes += record.data.length;
          this.#pushedBytes += record.data.length;
          this.#pushed.push({ record, end: this.#pushedBytes });
        }
        this.#queueBytes -= bytes;
        this.#compactQueue();
        const generation = this.#readGeneration;
        const run = bytes === first.length ? first :
          Buffer.from(first.buffer, first.byteOffset, bytes);
        const more = this.push(run);
        if (!more && generation === this.#readGeneration) this.#readWanted = false;
      }
      if (this.#eofQueued && !this.#eofDelivered && !this.#held && this.#state === 'open' &&
          this.#queueHead === this.#queue.length) {
        this.#eofDelivered = true;
        this.push(null);
      }
    } finally {
      this.#delivering = false;
    }
    this.#updateRawFlow();
  }

  #compactQueue(): void {
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  // The raw socket is read only while Node wants records and the queue is short.
  #updateRawFlow(): void {
    if (this.#state === 'captured' || this.raw.destroyed) return;
    const flow = this.#readWanted && !this.#held && this.#state === 'open' &&
      this.#queueBytes < kInboundHighWaterMark;
    if (flow && !this.#rawFlowing) {
      this.#rawFlowing = true;
      this.raw.resume();
    } else if (!flow && this.#rawFlowing) {
      this.#rawFlowing = false;
      this.raw.pause();
    }
  }

  // Every chunk Node receives passes through here: JSStreamSocket feeds it to OpenSSL
  // synchronously from its 'data' listener, so a record counts as consumed once emitted.
  // After capture nothing may reach OpenSSL again, so late 'data' is swallowed.
  override emit(event: string | symbol, ...args: any[]): boolean {
    if (event === 'data') {
      if (this.#state === 'captured') return false;
      this.#onDelivered((args[0] as Buffer).length);
    }
    return super.emit(event, ...args);
  }

  #onDelivered(length: number): void {
    this.#emittedBytes += length;
    while (this.#pushedHead < this.#pushed.length &&
           this.#pushed[this.#pushedHead].end <= this.#emittedBytes) {
      this.#consume(this.in, this.#pushed[this.#pushedHead++].record);
    }
    if (this.#pushedHead === this.#pushed.length) {
      this.#pushed = [];
      this.#pushedHead = 0;
    } else {
      const head = this.#pushed[this.#pushedHead];
      if (head.end - head.record.data.length < this.#emittedBytes) {
        this.#fail('Node received part of a record; the record boundary is lost');
      }
      if (this.#pushedHead > 1024) {
        this.#pushed = this.#pushed.slice(this.#pushedHead);
        this.#pushedHead = 0;
      }
    }
  }

  // ---- outbound: Node -> raw socket ------------------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding,
                  callback: (error?: Error | null) => void): void {
    if (this.#state === 'captured') {
      // Nothing Node writes after capture may reach the wire: its sequence numbers are stale.
      callback(spentError());
      return;
    }
    let records: Buffer[];
    try {
      records = this.#outFramer.push(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    for (const data of records) this.#trackEach(this.out, data, this.#consumeOut);
    this.#inflightWrites++;
    this.raw.write(chunk, (err?: Error | null) => {
      this.#inflightWrites--;
      const waiters = this.#writeWaiters;
      this.#writeWaiters = [];
      for (const wake of waiters) wake();
      // JSStreamSocket's write callback (reached through this one) queues its finishWrite with
      // setImmediate; ours is queued after it, so when ours runs TLSWrap has been told.
      this.#writeReportsPending++;
      callback(err);
      setImmediate(this.#onWriteReported);
    });
  }

  #consumeOut = (record: TappedRecord): void => {
    this.#consume(this.out, record);
  };

  #onWriteReported = (): void => {
    this.#writeReportsPending--;
  };

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#state !== 'captured' && !this.raw.destroyed && !this.raw.writableEnded) {
      this.raw.end();
    }
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.wipeSecrets();
    if (this.#state !== 'captured') this.raw.destroy();
    this.#options.onClose?.(this);
    callback(err);
  }

  // Resolves when an in-flight write completes (or at once when none is in flight).
  writeSettled(): Promise<void> {
    if (this.#inflightWrites === 0) return Promise.resolve();
    return new Promise((resolve) => this.#writeWaiters.push(resolve));
  }

  // ---- record bookkeeping ----------------------------------------------------------------------

  // Tracks what the framer returned: one record, or a run of handshake records. A run is followed
  // as one while its records are plaintext; in TLS 1.2 after this direction's ChangeCipherSpec each
  // handshake record is protected and takes a sequence number, so each is tracked alone.
  #trackEach(dir: DirectionState, data: Buffer, take: (record: TappedRecord) => void): void {
    if (data[0] === ContentType.handshake && this.#version === kTls12 && dir.changeCipherSpecSeen &&
        data.length > kRecordHeaderLength + data.readUInt16BE(3)) {
      for (let pos = 0; pos < data.length;) {
        const end = pos + kRecordHeaderLength + data.readUInt16BE(pos + 3);
        take(this.#track(dir, data.subarray(pos, end)));
        pos = end;
      }
      return;
    }
    take(this.#track(dir, data));
  }

  #track(dir: DirectionState, data: Buffer): TappedRecord {
    const record: TappedRecord = {
      data,
      type: data[0],
      protectedIndex: -1,
      consumed: false,
      renegotiation: false,
      keyUpdate: false,
      unopened: false,
    };
    const version = this.#version;
    switch (record.type) {
      case ContentType.changeCipherSpec:
        // RFC 8446 5: in TLS 1.3 a change_cipher_spec record is only middlebox compatibility; it
        // is never protected and takes no sequence number.
        if (version === kTls13) break;
        if (dir.changeCipherSpecSeen) record.renegotiation = true;
        dir.changeCipherSpecSeen = true;
        break;
      case ContentType.handshake:
        if (version === kTls12 && dir.changeCipherSpecSeen) {
          record.protectedIndex = dir.protectedCount++;
          // The first protected handshake record is Finished; any later one starts a
          // renegotiation (HelloRequest or ClientHello), which changes the keys.
          if (++dir.protectedHandshakeRecords > 1) record.renegotiation = true;
        } else {
          this.#readHandshakeRun(dir, data);
        }
        break;
      case ContentType.alert:
        if (version === kTls12 && dir.changeCipherSpecSeen) {
          record.protectedIndex = dir.protectedCount++;
        }
        break;
      case ContentType.applicationData:
        if (version === kTls13) {
          record.protectedIndex = dir.protectedCount++;
          this.#trackTls13(dir, record);
        } else if (version === kTls12 && dir.changeCipherSpecSeen) {
          record.protectedIndex = dir.protectedCount++;
        } else if (version === undefined) {
          this.#fail('application data arrived before the handshake protected it ' +
            '(0-RTT early data is not supported)');
        }
        break;
    }
    return record;
  }

  #consume(dir: DirectionState, record: TappedRecord): void {
    record.consumed = true;
    if (record.protectedIndex >= 0) {
      dir.consumedProtected = record.protectedIndex + 1;
      dir.lastConsumed = record;
    }
    if (record.renegotiation) dir.renegotiated = true;
    if (record.keyUpdate) dir.keyUpdateSeen = true;
    if (record.unopened) dir.unopened = true;
  }

  // Feeds the fragments of a run of plaintext handshake records to the reassembler, without a
  // view per record (a hostile hello may come one byte per record), until the hello is read.
  #readHandshakeRun(dir: DirectionState, run: Buffer): void {
    const reassembler = dir.reassembler;
    if (reassembler === null) return;
    try {
      for (let pos = 0; pos < run.length;) {
        const end = pos + kRecordHeaderLength + ((run[pos + 3] << 8) | run[pos + 4]);
        const messages = reassembler.push(run, pos + kRecordHeaderLength, end);
        pos = end;
        if (messages.length > 0 && this.#readHellos(dir, messages)) return;
      }
    } catch (err) {
      this.#helloRead(dir);
      this.#fail(`the ${dir.fromServer ? 'ServerHello' : 'ClientHello'} could not be read: ` +
        (err as Error).message, err);
    }
  }

  // Reads this direction's hello among whole handshake messages; returns whether it was found.
  #readHellos(dir: DirectionState, messages: readonly HandshakeMessage[]): boolean {
    for (const message of messages) {
      if (!dir.fromServer && message.type === HandshakeType.clientHello) {
        // A second ClientHello (after HelloRetryRequest) keeps the same random (RFC 8446 4.1.2).
        this.clientHello = parseClientHello(message.body);
        this.#helloRead(dir);
        this.#options.onClientHello?.(this);
        return true;
      }
      if (dir.fromServer && message.type === HandshakeType.serverHello) {
        const hello = parseServerHello(message.body);
        this.#version = hello.version;
        // The rest of a run after this record would be taken as plaintext: valid only because a
        // ChangeCipherSpec before the ServerHello is not (RFC 5246 7.1).
        if (hello.version === kTls12 && dir.changeCipherSpecSeen) {
          this.#fail('a ChangeCipherSpec came before the ServerHello');
        }
        if (hello.isHelloRetryRequest) {
          this.helloRetryRequest = true;
          continue;
        }
        this.serverHello = hello;
        this.#helloRead(dir);
        return true;
      }
    }
    return false;
  }

  // The hello of this direction is read (or unreadable): nothing more to reassemble.
  #helloRead(dir: DirectionState): void {
    dir.helloCopiedBytes = dir.reassembler?.copiedBytes ?? 0;
    dir.reassembler = null;
  }

  #trackTls13(dir: DirectionState, record: TappedRecord): void {
    if (dir.fromServer && dir.firstProtected.length < kMaxEncryptedExtensionsRecords &&
        this.clientHello?.offeredMaxFragmentLength !== undefined) {
      dir.firstProtected.push(Buffer.from(record.data));
    }
    if (dir.boundary !== undefined) {
      this.#deferProbe(dir, record);
      return;
    }
    if (dir.boundaryLost) return;
    dir.retained.push({ record, data: Buffer.from(record.data) });
    dir.retainedBytes += record.data.length;
    if (dir.retained.length > kMaxRetainedRecords || dir.retainedBytes > kMaxRetainedBytes) {
      dir.boundaryLost = true;
      dir.retained = [];
      dir.retainedBytes = 0;
      return;
    }
    if (dir.retained.length > kLazyRetainedRecords || dir.retainedBytes > kLazyRetainedBytes) {
      this.searchBoundary(dir);
    }
  }

  #deferProbe(dir: DirectionState, record: TappedRecord): void {
    if (record.data.length - kRecordHeaderLength > kKeyUpdateProbeMaxBody) return;
    dir.probeBacklog.push({ record, data: Buffer.from(record.data) });
    if (dir.probeBacklog.length >= kMaxProbeBacklog) this.#runProbes(dir);
  }

  #runProbes(dir: DirectionState): void {
    const backlog = dir.probeBacklog;
    dir.probeBacklog = [];
    for (const deferred of backlog) this.#probe(dir, deferred);
  }

  // Does the trial decryption deferred so far (capture calls it before its checks): finds the
  // application-key boundary of each direction and probes the short records after it.
  examine(): void {
    for (const dir of [this.in, this.out]) {
      this.searchBoundary(dir);
      this.#runProbes(dir);
    }
  }

  // The secret that protects this direction's application records (TLS 1.3).
  applicationSecret(dir: DirectionState): Buffer | undefined {
    return this.#secrets.get(dir.fromServer ? 'SERVER_TRAFFIC_SECRET_0' : 'CLIENT_TRAFFIC_SECRET_0');
  }

  // TLS 1.3: opens this direction's records under its application secret (keys derived once);
  // undefined until the secret is logged, for a suite the native side lacks, or once wiped.
  applicationOpener(dir: DirectionState): RecordOpener | undefined {
    let opener = this.#openers.get(dir);
    if (opener !== undefined) return opener;
    const suite = this.serverHello?.cipherSuite;
    const secret = this.applicationSecret(dir);
    if (this.#version !== kTls13 || suite === undefined || secret === undefined ||
        !binding.isNativeSuite(kTls13, suite)) {
      return undefined;
    }
    opener = new binding.RecordOpener({ version: kTls13, cipherSuite: suite, secret });
    this.#openers.set(dir, opener);
    return opener;
  }

  handshakeSecret(dir: DirectionState): Buffer | undefined {
    return this.#secrets.get(dir.fromServer ? 'SERVER_HANDSHAKE_TRAFFIC_SECRET' :
      'CLIENT_HANDSHAKE_TRAFFIC_SECRET');
  }

  // TLS 1.3: handshake and application records share outer type 23; the first one that opens
  // under the application secret at sequence 0 is the boundary. Each retained record is tried
  // once; the retained records are dropped as soon as the boundary is found.
  searchBoundary(dir: DirectionState): void {
    if (this.#version !== kTls13 || dir.boundary !== undefined || dir.boundaryLost ||
        dir.trialNext >= dir.retained.length) {
      return;
    }
    const opener = this.applicationOpener(dir);
    if (opener === undefined) return;
    while (dir.trialNext < dir.retained.length) {
      const index = dir.trialNext++;
      const { record, data } = dir.retained[index];
      if (opener.open(0n, data) !== null) {
        dir.boundary = record.protectedIndex;
        const after = dir.retained.slice(index);
        dir.retained = [];
        dir.retainedBytes = 0;
        for (const deferred of after) {
          if (deferred.data.length - kRecordHeaderLength <= kKeyUpdateProbeMaxBody) {
            dir.probeBacklog.push(deferred);
          }
        }
        return;
      }
    }
  }

  // TLS 1.3: opens short post-handshake records to notice a KeyUpdate, which OpenSSL follows
  // without logging the new secret.
  #probe(dir: DirectionState, { record, data }: DeferredRecord): void {
    const opener = dir.boundary === undefined ? undefined : this.applicationOpener(dir);
    if (opener === undefined) return;
    const opened = opener.open(BigInt(record.protectedIndex - dir.boundary!), data);
    if (opened === null) {
      record.unopened = true;
    } else if (opened.type === ContentType.handshake &&
               handshakeTypesIn(opened.plaintext).includes(HandshakeType.keyUpdate)) {
      record.keyUpdate = true;
    }
    // A record Node already consumed before it was probed.
    if (record.consumed) {
      if (record.keyUpdate) dir.keyUpdateSeen = true;
      if (record.unopened) dir.unopened = true;
    }
  }

  #fail(message: string, cause?: unknown): void {
    this.failure ??= new SpliceError('ERR_TLS_SPLICE_SELF_CHECK_FAILED',
      `The record tap lost track of this session: ${message}; use engine: 'js'`, { cause });
  }

  // ---- capture -----------------------------------------------------------------------------------

  // Stops handing records to Node (reversible with releaseHold()).
  hold(): void {
    if (this.#state !== 'open') return;
    this.#state = 'capturing';
    this.#held = true;
    this.#updateRawFlow();
  }

  releaseHold(): void {
    if (this.#state !== 'capturing') return;
    this.#state = 'open';
    this.#held = false;
    this.#deliver();
  }

  // The irreversible step of capture. Stops Node reading the raw socket, collects every byte of
  // ciphertext Node never got (records pushed but not emitted, queued records, the partial tail,
  // and what the raw socket had buffered), then destroys the raw socket, which closes Node's copy
  // of the fd without FIN or RST while the caller's duplicate keeps the connection open.
  detach(): Buffer {
    this.#state = 'captured';
    this.#held = true;
    const parts: Buffer[] = [];
    for (let i = this.#pushedHead; i < this.#pushed.length; i++) {
      parts.push(this.#pushed[i].record.data);
    }
    for (let i = this.#queueHead; i < this.#queue.length; i++) parts.push(this.#queue[i].data);
    this.#pushed = [];
    this.#queue = [];
    this.#pushedHead = this.#queueHead = this.#queueBytes = 0;
    parts.push(this.#inFramer.takePartial());

    const raw = this.raw;
    raw.removeListener('data', this.#onRawData);
    raw.removeListener('end', this.#onRawEnd);
    raw.removeListener('close', this.#onRawClose);
    raw.removeListener('error', this.#onRawError);
    // Keep an 'error' listener for good: an error with no listener crashes the process.
    raw.on('error', noop);
    raw.pause();
    readStop(raw);
    // read() below would call _read(), which restarts reading on the handle; the socket is about
    // to be destroyed, so reading is switched off for good on this instance.
    disableReading(raw);
    for (let chunk = raw.read(); chunk !== null; chunk = raw.read()) parts.push(chunk as Buffer);
    // Keep the addresses readable after the handle is gone.
    if (this.tlsSocket !== undefined) freezeAddresses(this.tlsSocket, raw);
    raw.destroy();
    this.#options.onClose?.(this);
    // The spent TLSSocket (and so this tap) lives until the splice ends: keep nothing of the
    // session's records meanwhile.
    for (const dir of [this.in, this.out]) {
      dir.retained = [];
      dir.retainedBytes = 0;
      dir.probeBacklog = [];
      dir.firstProtected = [];
      dir.lastConsumed = undefined;
      dir.reassembler = null;
    }
    this.#outFramer.takePartial();
    return Buffer.concat(parts);
  }
}
