// Session capture: takes an established TLS session away from Node at a quiet point and returns
// everything the native data plane needs to continue it (DESIGN.md, "The one hard part").
//
// Contract: captureSession() either resolves with a CapturedSession — the TLSSocket is then spent
// (it never reads or writes again; releaseSpentSocket() destroys it quietly when the splice ends)
// and the caller owns `fd` — or rejects with a SpliceError whose code says why, in which case
// nothing irreversible has happened and the TLSSocket is fully usable (the data plane can fall
// back to a JS pump over it).
//
// Capturing a TLS 1.3 client right after 'secureConnect' leaves the server's NewSessionTicket
// records to the native side (which skips them): Node then never emits 'session'. Wait for
// 'session' before capturing when resumption matters.
import type * as tls from 'node:tls';

import { RecordOpener, binding } from './binding';
import { debug } from './debug';
import { SpliceError } from './errors';
import {
  WritableImpl, keepWritableAfterEnd, readableEndReached, replaceWritable, socketFd, writableImpl,
} from './internals';
import {
  HandshakeReassembler,
  HandshakeType,
  handshakeTypesIn,
  kDefaultMaxFragmentLength,
  kTls12,
  kTls13,
  parseEncryptedExtensions,
} from './hello';
import { encodingHandoverRefusal, revertEncoding } from './readable-encoding';
import { releaseTlsState, snapshotSession } from './spent-socket';
import {
  ContentType, DirectionState, RecordTap, kRecordHeaderLength, spentError, tapOf,
} from './tap';

export interface CapturedSession {
  version: 'TLSv1.2' | 'TLSv1.3';
  versionId: 0x0303 | 0x0304;
  cipherSuite: number;            // IANA id
  cipherName: string;             // IANA name
  isServer: boolean;
  clientRandom: Buffer;
  serverRandom: Buffer;
  readSecret?: Buffer;            // TLS 1.3: current application traffic secret we read with
  writeSecret?: Buffer;           // TLS 1.3: ... we write with
  readKey?: Buffer;               // TLS 1.2 (from the key block)
  readIv?: Buffer;
  writeKey?: Buffer;
  writeIv?: Buffer;
  readMacKey?: Buffer;            // TLS 1.2 AES-CBC (from the key block)
  writeMacKey?: Buffer;
  encryptThenMac: boolean;        // TLS 1.2 AES-CBC: RFC 7366 was negotiated
  readSeq: bigint;                // sequence number of the next record we will read
  writeSeq: bigint;               // sequence number of the next record we will write
  // TLS 1.2 AES-GCM: the nonce_explicit of the next record we will write. OpenSSL starts it at a
  // random value and counts up, so it is the last one Node sent + 1 (mod 2^64), not writeSeq
  // (RFC 5288 3: a nonce must never repeat under one key). null for the other suites, whose
  // nonce is derived from the sequence number.
  writeExplicitNonce: bigint | null;
  maxFragmentLength: number;      // 16384 unless negotiated (512/1024/2048/4096)
  plaintext: Buffer;              // cleartext Node decrypted that the user has not read
  pendingCiphertext: Buffer;      // bytes from TCP Node never got: the native side's first input
  // How far Node got with the end of the peer's side before capture: 'none'; 'close_notify'
  // (OpenSSL read it, with or without the TCP FIN after it: `plaintext` is all the peer will
  // send, later records are to be ignored; the FIN is read again from the kernel); or 'eof' (Node
  // read the TCP FIN with no close_notify before it: a truncation).
  peerEnded: 'none' | 'close_notify' | 'eof';
  fd: number;                     // our dup() of the TCP socket (non-blocking)
  tlsSocket: tls.TLSSocket;       // now spent
}

export interface CaptureOptions {
  // How long to wait for Node's pending writes (the handshake's last flight, session tickets,
  // the user's own writes) to leave before giving up with ERR_TLS_SPLICE_CAPTURE_ABORTED.
  timeout?: number;
  // The end hold the splice took when start() was called (holdEnd()), so that Node's own end()
  // after a peer's 'end' cannot complete while the splice waits for its target. Capture uses it
  // instead of taking its own, and releases it if it refuses.
  endHold?: EndHold | null;
}

const kDefaultQuietTimeout = 10_000;

// While writes are pending, how often the quiet point is re-checked besides write completions.
const kQuietPollInterval = 5;
const kQuietFastTurns = 100;

const spentSockets = new WeakSet<tls.TLSSocket>();

// True when captureSession() can be tried on this socket: created through connect() or
// createServer() and not yet captured. A server socket is known to its tap once Node logs its
// first secret, i.e. during the handshake, before 'secureConnection'.
export function isSpliceCapable(tlsSocket: tls.TLSSocket): boolean {
  const tap = tapOf(tlsSocket);
  return tap !== undefined && tap.state === 'open';
}

// Destroys a spent TLSSocket without anything reaching the wire: the tap drops whatever Node
// might still write, and TLSSocket.destroy() sends no close_notify.
export function releaseSpentSocket(tlsSocket: tls.TLSSocket): void {
  if (!spentSockets.has(tlsSocket)) {
    throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
      'releaseSpentSocket() takes a TLSSocket returned in a CapturedSession');
  }
  tlsSocket.on('error', () => {});
  tlsSocket.destroy();
}

function refuse(code: string, message: string): SpliceError {
  return new SpliceError(code, message);
}

function immediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A peer that already closed its side (close_notify, FIN) leaves a half-closed session that can
// still be spliced, whether or not Node emitted 'end' yet, as long as our side is intact: not
// ended, or ended while capture held the end back (`endHeld`: nothing reached the wire).
function established(tlsSocket: tls.TLSSocket, tap: RecordTap, endHeld: boolean): boolean {
  const done = tap.secureEstablished ||
    (tlsSocket.getFinished() !== undefined && tlsSocket.getPeerFinished() !== undefined);
  const ourSideOpen = endHeld || (tlsSocket.writable && !tlsSocket.writableEnded);
  return done && !tlsSocket.destroyed && !tap.destroyed && !tap.raw.destroyed && ourSideOpen;
}

// The checks that need no waiting; run before and again after the quiet point.
function checkCapturable(tlsSocket: tls.TLSSocket, tap: RecordTap, endHeld = false): void {
  // The trial decryption the tap deferred (it tells whether Node processed a KeyUpdate).
  tap.examine();
  if (!established(tlsSocket, tap, endHeld)) {
    throw refuse('ERR_TLS_SPLICE_NOT_ESTABLISHED',
      'The TLS handshake has not completed, or our side of the socket has ended (end() was ' +
      "called, or Node ended it after 'end' because allowHalfOpen is false) or it was " +
      "destroyed: splice after 'secureConnect' (client) or 'secureConnection' (server), before " +
      "ending the socket; to splice after the peer's end, set allowHalfOpen: true");
  }
  const hello = tap.serverHello;
  const version = tap.version;
  if (hello === undefined || tap.clientHello === undefined || version === undefined) {
    throw tap.failure ?? refuse('ERR_TLS_SPLICE_SELF_CHECK_FAILED',
      "The record tap saw no ClientHello/ServerHello for this session; use engine: 'js'");
  }
  if (version !== kTls12 && version !== kTls13) {
    throw refuse('ERR_TLS_SPLICE_UNSUPPORTED_VERSION',
      `The session negotiated ${tlsSocket.getProtocol() ?? `version 0x${version.toString(16)}`}; ` +
      "the native engine needs TLS 1.2 or 1.3: set minVersion: 'TLSv1.2' or use engine: 'js'");
  }
  const protocol = tlsSocket.getProtocol();
  const expected = version === kTls13 ? 'TLSv1.3' : 'TLSv1.2';
  if (protocol !== expected) {
    throw refuse('ERR_TLS_SPLICE_SELF_CHECK_FAILED',
      `The ServerHello the tap read says ${expected} but Node reports ${protocol}; ` +
      "use engine: 'js'");
  }
  if (!binding.isNativeSuite(version, hello.cipherSuite)) {
    const name = tlsSocket.getCipher()?.standardName ?? `0x${hello.cipherSuite.toString(16)}`;
    throw refuse('ERR_TLS_SPLICE_UNSUPPORTED_CIPHER',
      `The session uses ${name}; the native engine supports AES-GCM and ChaCha20-Poly1305 ` +
      'suites, and AES-CBC with ECDHE or PSK key exchange: restrict ciphers to those or use ' +
      "engine: 'js'");
  }
  const cbcRefusal = binding.cbcRefusal(version, hello.cipherSuite, hello.encryptThenMac);
  if (cbcRefusal !== null) {
    const name = tlsSocket.getCipher()?.standardName ?? `0x${hello.cipherSuite.toString(16)}`;
    throw refuse('ERR_TLS_SPLICE_UNSUPPORTED_CIPHER',
      `The session uses ${name} and ${cbcRefusal}: negotiate encrypt_then_mac or an AEAD suite, ` +
      "or use engine: 'js'");
  }
  if (tap.failure) throw tap.failure;
  const standardName = tlsSocket.getCipher()?.standardName;
  const name = binding.cipherSuiteName(version, hello.cipherSuite);
  if (standardName !== undefined && name !== undefined && standardName !== name) {
    throw refuse('ERR_TLS_SPLICE_SELF_CHECK_FAILED',
      `The ServerHello the tap read names ${name} but Node reports ${standardName}; ` +
      "use engine: 'js'");
  }
  if (tap.in.renegotiated || tap.out.renegotiated) {
    throw refuse('ERR_TLS_SPLICE_RENEGOTIATED',
      'This TLS 1.2 session was renegotiated (or a renegotiation was requested); its keys are ' +
      "no longer the logged ones: splice before renegotiating, or use engine: 'js'");
  }
  if (tap.in.keyUpdateSeen || tap.out.keyUpdateSeen) {
    throw refuse('ERR_TLS_SPLICE_KEY_UPDATE_SEEN',
      'A TLS 1.3 KeyUpdate was processed while Node owned the session and OpenSSL does not log ' +
      "the updated secret: splice before any KeyUpdate, or use engine: 'js'");
  }
  const missing = requiredSecrets(version).filter((label) => tap.secret(label) === undefined);
  if (missing.length > 0) {
    throw refuse('ERR_TLS_SPLICE_NO_SECRETS',
      `Node did not log ${missing.join(', ')} for this session (a 'keylog' listener must stay ` +
      "attached from before the handshake); use engine: 'js'");
  }
  if (version === kTls12 && tap.secret('CLIENT_RANDOM')!.length !== 48) {
    throw refuse('ERR_TLS_SPLICE_NO_SECRETS',
      "The logged TLS 1.2 master secret is not 48 bytes; use engine: 'js'");
  }
  // setEncoding() was called: the text it holds unread must turn back into the peer's bytes
  // (readable-encoding.ts), which it cannot after a lossy decode.
  const lossy = encodingHandoverRefusal(tlsSocket);
  if (lossy !== null) throw lossy;
  if (socketFd(tap.raw) < 0) {
    throw refuse('ERR_TLS_SPLICE_NO_FD',
      'The socket under this TLS session has no file descriptor (it is not a TCP or IPC ' +
      "net.Socket); use engine: 'js'");
  }
}

function requiredSecrets(version: number): string[] {
  return version === kTls13 ? ['CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0'] :
    ['CLIENT_RANDOM'];
}

// Nothing of Node's can reach the wire any more: its writable buffer is empty (the user's writes
// not yet encrypted or not yet handed to the tap), and TLSWrap has no output pending or in flight
// (RecordTap.nodeOutputPending says why that is exact).
function isQuiet(tlsSocket: tls.TLSSocket, tap: RecordTap): boolean {
  return tlsSocket.writableLength === 0 && !tap.nodeOutputPending;
}

// Waits until Node has nothing left to send (isQuiet()). On a quiet socket it takes no turn of the
// event loop; the caller checks isQuiet() again in the same synchronous run as the capture.
async function waitForQuiet(tlsSocket: tls.TLSSocket, tap: RecordTap, deadline: number,
                            timeout: number): Promise<void> {
  for (let turn = 0; ; turn++) {
    if (tlsSocket.destroyed || tap.destroyed) {
      throw refuse('ERR_TLS_SPLICE_CAPTURE_ABORTED',
        'The TLS socket was destroyed while capture waited for its pending writes');
    }
    if (isQuiet(tlsSocket, tap)) return;
    if (tap.inflightWrites > 0) {
      await Promise.race([tap.writeSettled(), delay(kQuietPollInterval)]);
    } else {
      // The report of a finished write to TLSWrap (one setImmediate), or writes Node buffered
      // that reach the tap on a coming turn of the event loop (or never, if the user corked the
      // socket; hence the slower polling later).
      await (turn < kQuietFastTurns ? immediate() : delay(kQuietPollInterval));
    }
    if (Date.now() > deadline) {
      throw refuse('ERR_TLS_SPLICE_CAPTURE_ABORTED',
        `Node's pending writes did not leave within ${timeout} ms (is the peer reading?); ` +
        'retry later or raise options.timeout');
    }
  }
}

interface DirectionKeys {
  secret?: Buffer;
  key?: Buffer;
  iv?: Buffer;
  macKey?: Buffer;            // TLS 1.2 AES-CBC
  encryptThenMac?: boolean;
  // The keys derived once for every record opened with them (made at the first open).
  opener?: RecordOpener;
}

function openAt(version: number, suite: number, keys: DirectionKeys, seq: bigint, record: Buffer) {
  keys.opener ??= new binding.RecordOpener({
    version, cipherSuite: suite, secret: keys.secret, key: keys.key, iv: keys.iv,
    macKey: keys.macKey, encryptThenMac: keys.encryptThenMac,
  });
  return keys.opener.open(seq, record);
}

function selfCheckFailed(what: string): SpliceError {
  return refuse('ERR_TLS_SPLICE_SELF_CHECK_FAILED',
    `Self-check before capture failed: ${what}. The session cannot be taken over safely; ` +
    "use engine: 'js'");
}

interface DirectionSequence {
  seq: bigint;
  // The last record Node consumed under the application keys, opened (null if none).
  last: { type: number; plaintext: Buffer } | null;
}

// RFC 8446 6 / RFC 5246 7.2: an alert record of two bytes, level and description.
const kAlertCloseNotify = 0;

function isCloseNotify(record: DirectionSequence['last']): boolean {
  return record !== null && record.type === ContentType.alert && record.plaintext.length === 2 &&
    record.plaintext[1] === kAlertCloseNotify;
}

// Computes the next sequence number of one direction and proves it: the last record Node consumed
// must open at seq - 1 under the logged keys (RFC 8446 5.3 / RFC 5246 6.2.3.3 nonces depend on it).
function sequenceOf(tap: RecordTap, dir: DirectionState, version: number, suite: number,
                    keys: DirectionKeys, name: string): DirectionSequence {
  const last = dir.lastConsumed;
  if (version === kTls12) {
    const seq = BigInt(dir.consumedProtected);
    if (seq === 0n || last === undefined) {
      throw selfCheckFailed(`no protected ${name} record was seen (the Finished is missing)`);
    }
    const opened = openAt(version, suite, keys, seq - 1n, last.data);
    if (opened === null) {
      throw selfCheckFailed(`the last ${name} record does not open at sequence ${seq - 1n}`);
    }
    return { seq, last: opened };
  }
  if (dir.boundaryLost) {
    throw selfCheckFailed(`the ${name} handshake was too long to follow`);
  }
  let boundary = dir.boundary;
  if (boundary === undefined) {
    // No record opened under the application secret: all protected records so far belong to the
    // handshake, and Node must have consumed every one of them.
    if (dir.consumedProtected !== dir.protectedCount) {
      throw selfCheckFailed(`${name} records Node has not consumed do not open under the ` +
        'application secret');
    }
    boundary = dir.protectedCount;
  }
  const seq = BigInt(dir.consumedProtected - boundary);
  if (seq < 0n) {
    throw selfCheckFailed(`Node has not consumed the whole ${name} handshake`);
  }
  if (last === undefined) return { seq, last: null };
  if (seq > 0n) {
    const opened = openAt(version, suite, keys, seq - 1n, last.data);
    if (opened === null) {
      throw selfCheckFailed(`the last ${name} record does not open at sequence ${seq - 1n}` +
        (dir.unopened ? ' (a short record earlier did not open either: probably a KeyUpdate)' : ''));
    }
    if (opened.type === ContentType.handshake &&
        handshakeTypesIn(opened.plaintext).includes(HandshakeType.keyUpdate)) {
      throw refuse('ERR_TLS_SPLICE_KEY_UPDATE_SEEN',
        `The last ${name} record Node processed was a TLS 1.3 KeyUpdate and OpenSSL does not log ` +
        "the updated secret: splice before any KeyUpdate, or use engine: 'js'");
    }
    return { seq, last: opened };
  } else {
    // Only handshake records so far: the last must open under the handshake secret.
    const hsSecret = tap.handshakeSecret(dir);
    if (hsSecret !== undefined && binding.openRecord({
      version, cipherSuite: suite, secret: hsSecret, seq: BigInt(last.protectedIndex),
      record: last.data,
    }) === null) {
      throw selfCheckFailed(`the last ${name} handshake record does not open under the ` +
        'handshake secret');
    }
  }
  return { seq, last: null };
}

const kTls12GcmExplicitNonceLength = 8;

// TLS 1.2 AES-GCM (RFC 5288 3): the record fragment starts with the 8-byte nonce_explicit. The
// last protected record Node wrote (sequenceOf() proved it opens at writeSeq - 1; there is always
// one, the Finished) carries the last nonce OpenSSL used under this key.
function explicitNonceAfter(dir: DirectionState, version: number, suite: number): bigint | null {
  if (version !== kTls12 || !binding.cipherSuiteName(version, suite)?.includes('_GCM_')) return null;
  const last = dir.lastConsumed!;
  if (last.data.length < kRecordHeaderLength + kTls12GcmExplicitNonceLength) {
    throw selfCheckFailed('the last sent record is too short to carry an explicit nonce');
  }
  return (last.data.readBigUInt64BE(kRecordHeaderLength) + 1n) & 0xffffffffffffffffn;
}

// max_fragment_length (RFC 6066 4): TLS 1.2 in the ServerHello; TLS 1.3 in EncryptedExtensions,
// read here with the server handshake traffic secret. A server only sends it when the client
// offered it ("Servers that receive an extended ClientHello containing a max_fragment_length
// extension MAY accept the requested maximum fragment length"), so without an offer it is 2^14.
function maxFragmentLengthOf(tap: RecordTap, version: number, suite: number): number {
  if (version === kTls12) return tap.serverHello!.maxFragmentLength ?? kDefaultMaxFragmentLength;
  if (tap.clientHello!.offeredMaxFragmentLength === undefined) return kDefaultMaxFragmentLength;
  const serverDir = tap.isServer ? tap.out : tap.in;
  const secret = tap.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET');
  if (secret === undefined) {
    throw selfCheckFailed('the client offered max_fragment_length but ' +
      'SERVER_HANDSHAKE_TRAFFIC_SECRET was not logged, so EncryptedExtensions cannot be read');
  }
  const reassembler = new HandshakeReassembler();
  const keys: DirectionKeys = { secret };
  try {
    for (let i = 0; i < serverDir.firstProtected.length; i++) {
      const opened = openAt(version, suite, keys, BigInt(i), serverDir.firstProtected[i]);
      if (opened === null || opened.type !== ContentType.handshake) break;
      const [first] = reassembler.push(opened.plaintext);
      if (first !== undefined) {
        if (first.type !== HandshakeType.encryptedExtensions) break;
        try {
          return parseEncryptedExtensions(first.body).maxFragmentLength ??
            kDefaultMaxFragmentLength;
        } catch (err) {
          throw selfCheckFailed(`EncryptedExtensions could not be read (${(err as Error).message})`);
        }
      }
    }
  } finally {
    keys.opener?.wipe();
  }
  throw selfCheckFailed('EncryptedExtensions was not found in the first server records');
}

type DerivedSession = Omit<CapturedSession, 'plaintext' | 'pendingCiphertext' | 'peerEnded' | 'fd'>;

// Everything except the fd and the buffers, and whether the last record Node read from the peer
// was its close_notify; throws a refusal without side effects.
function deriveSession(tlsSocket: tls.TLSSocket, tap: RecordTap):
    { session: DerivedSession; closeNotifyRead: boolean } {
  const hello = tap.serverHello!;
  const version = tap.version as 0x0303 | 0x0304;
  const suite = hello.cipherSuite;
  const clientRandom = tap.clientHello!.random;
  const serverRandom = hello.random;
  const readDir = tap.in;
  const writeDir = tap.out;
  let readKeys: DirectionKeys;
  let writeKeys: DirectionKeys;
  if (version === kTls13) {
    // The tap's openers: keys it derived already for trial decryption (wiped with its secrets).
    readKeys = { secret: tap.applicationSecret(readDir), opener: tap.applicationOpener(readDir) };
    writeKeys = { secret: tap.applicationSecret(writeDir), opener: tap.applicationOpener(writeDir) };
  } else {
    const block = binding.deriveTls12KeyBlock(suite, tap.secret('CLIENT_RANDOM')!, clientRandom,
      serverRandom);
    const cbc = block.clientMacKey.length > 0;
    const etm = cbc ? hello.encryptThenMac : undefined;
    const clientKeys = { key: block.clientKey, iv: block.clientIv,
      macKey: cbc ? block.clientMacKey : undefined, encryptThenMac: etm };
    const serverKeys = { key: block.serverKey, iv: block.serverIv,
      macKey: cbc ? block.serverMacKey : undefined, encryptThenMac: etm };
    readKeys = tap.isServer ? clientKeys : serverKeys;
    writeKeys = tap.isServer ? serverKeys : clientKeys;
  }
  let read: DirectionSequence;
  let writeSeq: bigint;
  try {
    read = sequenceOf(tap, readDir, version, suite, readKeys, 'received');
    writeSeq = sequenceOf(tap, writeDir, version, suite, writeKeys, 'sent').seq;
  } finally {
    // TLS 1.2: openers of keys made here; the session carries its own copies of the keys.
    if (version === kTls12) {
      readKeys.opener?.wipe();
      writeKeys.opener?.wipe();
    }
  }
  const readSeq = read.seq;
  const writeExplicitNonce = explicitNonceAfter(writeDir, version, suite);
  const maxFragmentLength = maxFragmentLengthOf(tap, version, suite);
  const session: DerivedSession = {
    version: version === kTls13 ? 'TLSv1.3' : 'TLSv1.2',
    versionId: version,
    cipherSuite: suite,
    cipherName: binding.cipherSuiteName(version, suite)!,
    isServer: tap.isServer,
    clientRandom: Buffer.from(clientRandom),
    serverRandom: Buffer.from(serverRandom),
    readSeq,
    writeSeq,
    writeExplicitNonce,
    maxFragmentLength,
    encryptThenMac: hello.encryptThenMac,
    tlsSocket,
  };
  if (version === kTls13) {
    session.readSecret = Buffer.from(readKeys.secret!);
    session.writeSecret = Buffer.from(writeKeys.secret!);
  } else {
    session.readKey = readKeys.key;
    session.readIv = readKeys.iv;
    session.writeKey = writeKeys.key;
    session.writeIv = writeKeys.iv;
    session.readMacKey = readKeys.macKey;
    session.writeMacKey = writeKeys.macKey;
  }
  return { session, closeNotifyRead: isCloseNotify(read.last) };
}

// Takes every byte of cleartext Node decrypted that the user has not read (as Buffers: capture
// undid setEncoding() first). 'data' listeners are set aside meanwhile: read() emits 'data', and
// those bytes must not reach the user twice.
function drainPlaintext(tlsSocket: tls.TLSSocket): Buffer {
  const listeners = tlsSocket.rawListeners('data');
  tlsSocket.removeAllListeners('data');
  const parts: Buffer[] = [];
  try {
    for (let chunk = tlsSocket.read(); chunk !== null; chunk = tlsSocket.read()) {
      parts.push(chunk as Buffer);
    }
  } finally {
    for (const listener of listeners) tlsSocket.on('data', listener as (...args: any[]) => void);
  }
  return Buffer.concat(parts);
}

type Callback = (error?: Error | null) => void;

// Once per spent socket, a write is reported as a process warning: a write's callback gets
// ERR_TLS_SPLICE_SPENT, but a write without one would otherwise vanish unnoticed.
function warnSpent(tlsSocket: tls.TLSSocket): void {
  if (spentWarned.has(tlsSocket)) return;
  spentWarned.add(tlsSocket);
  const err = spentError();
  process.emitWarning(`A write to a spent TLSSocket was dropped: ${err.message}`,
    { code: err.code });
}

const spentWarned = new WeakSet<tls.TLSSocket>();

// From now on nothing reaches OpenSSL, and nothing about being spent is an 'error' event (no one
// may be listening: Node itself ends the socket after a drained peer end when allowHalfOpen is
// false, and an 'error' nobody listens to kills the process). write() hands ERR_TLS_SPLICE_SPENT
// to its callback and emits a warning; end() is accepted, but our side's end belongs to the
// splice, so _final never completes: no 'finish', no automatic destroy while the splice runs
// (releaseSpentSocket() destroys the socket when it ends).
function makeSpent(tlsSocket: tls.TLSSocket): void {
  const dropped = (callback?: Callback) => {
    warnSpent(tlsSocket);
    if (typeof callback === 'function') process.nextTick(callback, spentError());
    return false;
  };
  (tlsSocket as unknown as { write: unknown }).write =
    (_chunk: unknown, encoding?: unknown, callback?: Callback) =>
      dropped(typeof encoding === 'function' ? encoding as Callback : callback);
  replaceWritable(tlsSocket, {
    // Reached only through end(chunk): the chunk is dropped, end() itself is accepted.
    _write: (_chunk: unknown, _encoding: BufferEncoding, _callback: Callback) => {
      dropped();
    },
    _writev: (_chunks: unknown[], _callback: Callback) => {
      dropped();
    },
    _final: (_callback: Callback) => {},
  });
  // Nor does Node end it (or swap write() for writeAfterFIN) at a later 'end'.
  keepWritableAfterEnd(tlsSocket);
  spentSockets.add(tlsSocket);
}

// While capture runs, an end() of our side (the user's, or Node's own after 'end' when
// allowHalfOpen is false) must not send close_notify under Node's sequence numbers: its _final is
// held back. If capture is refused, the end goes ahead as Node would have done it.
export class EndHold {
  #socket: tls.TLSSocket;
  #original: WritableImpl['_final'];
  #held: Callback | undefined;
  #released = false;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    this.#original = writableImpl(socket)._final;
    replaceWritable(socket, { _final: (callback: Callback) => { this.#held = callback; } });
  }

  get held(): boolean {
    return this.#held !== undefined;
  }

  // Idempotent: the end (if one was held) goes ahead as Node would have done it.
  release(): void {
    if (this.#released) return;
    this.#released = true;
    replaceWritable(this.#socket, { _final: this.#original });
    const callback = this.#held;
    this.#held = undefined;
    if (callback !== undefined) {
      if (this.#original !== undefined) this.#original.call(this.#socket, callback);
      else callback();
    }
  }
}

// Holds back the end of our side of a tapped TLSSocket from now until capture (which takes the
// hold over) or release(); null when the socket is not one capture could take.
export function holdEnd(tlsSocket: tls.TLSSocket): EndHold | null {
  const tap = tapOf(tlsSocket);
  if (tap === undefined || tap.state !== 'open' || tlsSocket.destroyed) return null;
  if (!tlsSocket.writable || tlsSocket.writableEnded) return null;
  return new EndHold(tlsSocket);
}

export async function captureSession(tlsSocket: tls.TLSSocket, options: CaptureOptions = {}):
    Promise<CapturedSession> {
  try {
    const session = await capture(tlsSocket, options);
    debug('capture: %s %s %s, readSeq %s writeSeq %s, plaintext %d bytes, pending ciphertext ' +
      '%d bytes, peerEnded %s, maxFragmentLength %d', session.isServer ? 'server' : 'client',
    session.version, session.cipherName, String(session.readSeq), String(session.writeSeq),
    session.plaintext.length, session.pendingCiphertext.length, session.peerEnded,
    session.maxFragmentLength);
    return session;
  } catch (err) {
    debug('capture refused: %s (%s)', (err as SpliceError).code, (err as Error).message);
    throw err;
  }
}

async function capture(tlsSocket: tls.TLSSocket, options: CaptureOptions):
    Promise<CapturedSession> {
  const tap = tapOf(tlsSocket);
  if (tap === undefined) {
    throw refuse('ERR_TLS_SPLICE_NOT_TAPPED',
      'This TLSSocket was not created by tls-splice connect() or createServer(), so its ' +
      "sequence numbers are unknowable; create it with tls-splice, or use engine: 'js'");
  }
  if (tap.state !== 'open') {
    throw refuse('ERR_TLS_SPLICE_ALREADY_CAPTURED',
      'This TLSSocket is already captured (or being captured) by tls-splice');
  }
  const timeout = options.timeout ?? kDefaultQuietTimeout;
  if (typeof timeout !== 'number' || !(timeout >= 0)) {
    throw refuse('ERR_TLS_SPLICE_INVALID_ARG', 'options.timeout must be a non-negative number');
  }
  checkCapturable(tlsSocket, tap, options.endHold?.held === true);

  // From the call on, Node gets no more records and the user no more 'data'; both are undone if
  // capture is refused.
  tap.hold();
  const endHold = options.endHold ?? new EndHold(tlsSocket);
  const wasFlowing = tlsSocket.readableFlowing === true;
  if (wasFlowing) tlsSocket.pause();
  let fd = -1;
  try {
    const deadline = Date.now() + timeout;
    do {
      // Always at least one await, even when Node is quiet already: captureSession() may be
      // called from inside Node's TLS processing ('secure', 'secureConnection' run within
      // OpenSSL's handshake call, before TLSWrap's EncOut() hands the session tickets over), and
      // a promise continuation runs only once that JS -> C++ -> JS stack has unwound.
      await waitForQuiet(tlsSocket, tap, deadline, timeout);
      // Ticks run on the way out of waitForQuiet() may have made Node write: the quiet point is
      // the one seen in the same synchronous run as everything below.
    } while (!isQuiet(tlsSocket, tap));
    checkCapturable(tlsSocket, tap, endHold.held);
    const { session, closeNotifyRead } = deriveSession(tlsSocket, tap);
    const answers = snapshotSession(tlsSocket);
    fd = binding.dupFd(socketFd(tap.raw));
    // Irreversible from here on, and synchronous: nothing can run in between. Draining may end
    // the readable side ('end' follows on a later tick; Node's end() then reaches the spent
    // _final).
    revertEncoding(tlsSocket);
    const plaintext = drainPlaintext(tlsSocket);
    const peerEnded = !readableEndReached(tlsSocket) ? 'none' :
      closeNotifyRead || !tap.eofDelivered ? 'close_notify' : 'eof';
    const pendingCiphertext = tap.detach();
    // The session holds copies of what the native side needs; the splice wipes those.
    tap.wipeSecrets();
    makeSpent(tlsSocket);
    // Node's OpenSSL state is of no further use: the TLSSocket answers from a snapshot.
    releaseTlsState(tlsSocket, answers);
    return { ...session, plaintext, pendingCiphertext, peerEnded, fd };
  } catch (err) {
    if (fd >= 0) binding.closeFd(fd);
    tap.releaseHold();
    endHold.release();
    if (wasFlowing && !tlsSocket.destroyed) tlsSocket.resume();
    throw err;
  }
}
