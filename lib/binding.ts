// The native addon, loaded once. node-gyp-build picks a prebuilt binary from prebuilds/ when one
// matches this platform, else the local build in build/Release.
import * as path from 'node:path';

export interface DerivedTls13Keys {
  key: Buffer;
  iv: Buffer;
}

export interface DerivedTls12KeyBlock {
  clientMacKey: Buffer;   // AES-CBC suites; empty for AEAD suites
  serverMacKey: Buffer;
  clientKey: Buffer;
  clientIv: Buffer;
  serverKey: Buffer;
  serverIv: Buffer;
}

export interface OpenRecordParams {
  version: number;        // 0x0303 or 0x0304
  cipherSuite: number;    // IANA id
  secret?: Buffer;        // TLS 1.3 traffic secret
  key?: Buffer;           // TLS 1.2 write key
  iv?: Buffer;            // TLS 1.2 fixed IV (AEAD suites)
  macKey?: Buffer;        // TLS 1.2 AES-CBC MAC key
  encryptThenMac?: boolean; // TLS 1.2 AES-CBC: the session negotiated RFC 7366
  seq: bigint;
  record: Buffer;         // one whole record, header included
}

export interface OpenedRecord {
  type: number;           // content type (TLS 1.3: the inner type)
  plaintext: Buffer;
}

// The keys of one direction, derived once, for trial decryption of many records; open() is
// openRecord() without the key derivation. wipe() erases the keys (open() then throws).
export interface RecordOpener {
  open(seq: bigint, record: Buffer): OpenedRecord | null;
  wipe(): void;
}

export type RecordOpenerParams = Omit<OpenRecordParams, 'seq' | 'record'>;

export interface FdPoller {
  start(events: number): void;
  stop(): void;
  close(): void;
}

export interface NativeBinding {
  isNativeSuite(version: number, cipherSuite: number): boolean;
  cipherSuiteName(version: number, cipherSuite: number): string | undefined;
  // Why a session of this (native) suite cannot be spliced natively on this machine (an AES-CBC
  // suite with MAC-then-encrypt and no constant-time cipher), or null when it can.
  cbcRefusal(version: number, cipherSuite: number, encryptThenMac: boolean): string | null;
  deriveTls13Keys(cipherSuite: number, secret: Buffer): DerivedTls13Keys;
  deriveTls12KeyBlock(cipherSuite: number, masterSecret: Buffer, clientRandom: Buffer,
    serverRandom: Buffer): DerivedTls12KeyBlock;
  // Opens one record; null when it does not authenticate under these keys at this sequence.
  openRecord(params: OpenRecordParams): OpenedRecord | null;
  RecordOpener: new (params: RecordOpenerParams) => RecordOpener;
  // dup() with close-on-exec; throws an Error with a libuv-style `code` on failure.
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  // SIOCOUTQ: bytes sent but not acknowledged by the peer; -1 for an fd that is not a socket.
  socketSendQueue(fd: number): number;
  // poll(2) POLLRDHUP/POLLHUP: the other end shut its write side, even with bytes unread.
  hangupPending(fd: number): boolean;
  // Readiness of an fd on Node's loop (JS engine: character devices). Throws EPERM when epoll
  // cannot watch the fd (a regular file, /dev/null). Events: 1 readable, 2 writable.
  FdPoller: new (fd: number, callback: (status: number, events: number) => void) => FdPoller;
  // Sets or clears O_NONBLOCK; returns whether it was set before.
  setNonBlocking(fd: number, on: boolean): boolean;
  // Internal, for tests and benchmarks: [readFd, writeFd] / two connected Unix stream sockets.
  pipe(): [number, number];
  socketPair(): [number, number];
  [key: string]: unknown;
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const binding: NativeBinding = require('node-gyp-build')(path.join(__dirname, '..'));
