// A spent TLSSocket without its OpenSSL state (issue 11, "the cost of a connection"). Once capture
// has handed the session to the data plane, Node's SSL object (its record buffers, BIOs,
// handshake leftovers: 11-17 KiB of malloc per connection, measured) is of no further use, but the
// TLSSocket itself lives until the splice ends, and users may still ask it about the session.
//
// snapshotSession() answers every such question once, at capture's quiet point; once the session
// is taken, releaseTlsState() frees the SSL. From then on the TLSSocket answers from that snapshot (a fresh copy per call, as Node returns), the methods
// that need the live session (exportKeyingMaterial, renegotiate, setServername, ...) throw
// ERR_TLS_SPLICE_SPENT, and once the TLSSocket is destroyed (when the splice ends) every method
// answers as Node's own does for a destroyed socket. The TLSSocket is not destroyed here: its
// 'close' still comes when the splice ends.
//
// The answers live in one WeakMap entry per socket and the methods on one shared prototype (an
// object inserted between the socket and tls.TLSSocket.prototype), so a spent socket costs no
// closures. The own certificate, the same for every connection of a server, is snapshotted once
// per certificate (keyed by its fingerprint).
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';

import { SpliceError } from './errors';
import { certificateContextOf, freeTlsState, hasLiveHandle } from './internals';

interface Snapshot {
  protocol: string | null;
  cipher: tls.CipherNameAndProtocol;
  finished: Buffer | undefined;
  peerFinished: Buffer | undefined;
  session: Buffer | undefined;
  ticket: Buffer | undefined;
  sharedSigalgs: string[];
  ephemeralKeyInfo: tls.EphemeralKeyInfo | object | null;
  sessionReused: boolean;
  certificate: object;
  x509: unknown;
  peerCertificate: object;
  peerCertificateDetailed: object;
  // Cleartext counts at the quiet point (Node's bytesRead includes what it decrypted and the
  // user has not read yet; capture hands that on as plaintext).
  bytesRead: number;
  bytesWritten: number;
}

const snapshots = new WeakMap<tls.TLSSocket, Snapshot>();

// What the data plane did with a spent socket's session (set by the splice that took it): the
// cleartext it received from the peer and sent to it, beyond what Node counted before capture;
// and the TLS connection's socket options, which the native engine now owns.
export interface SpentSocketTraffic {
  received(): number;
  sent(): number;
  setNoDelay?(enable: boolean): void;
  setKeepAlive?(enable: boolean, initialDelaySeconds: number): void;
}

const traffic = new WeakMap<tls.TLSSocket, SpentSocketTraffic>();

// Called by the engine that took the session; again at its end with the final counts (and no
// socket options: the fd is gone).
export function setSpentSocketTraffic(socket: tls.TLSSocket, t: SpentSocketTraffic): void {
  traffic.set(socket, t);
}

// setNoDelay()/setKeepAlive() of a spent socket: forwarded to the engine that owns its TCP
// socket now; when none does, the call does nothing, as Node's does on a socket without a handle.
export function spentSocketOption(socket: tls.TLSSocket, option: 'noDelay' | 'keepAlive',
  enable: boolean, initialDelayMs = 0): void {
  const t = traffic.get(socket);
  if (option === 'noDelay') {
    t?.setNoDelay?.(enable);
  } else {
    // As net.Socket.setKeepAlive(): milliseconds in, whole seconds to the kernel.
    t?.setKeepAlive?.(enable, Math.floor(Math.max(0, Number(initialDelayMs) || 0) / 1000));
  }
}

// getCertificate() of a server's own certificate, by SHA-256 fingerprint: a few KiB of objects
// that every connection of the server would otherwise keep a copy of. Bounded: a process serves
// a handful of certificates; past this many the oldest goes.
const kMaxCachedCertificates = 64;
const certificates = new Map<string, object>();

// Node returns fresh objects on every call (callers may modify them): so does the snapshot.
function copy<T>(value: T): T {
  if (Buffer.isBuffer(value)) return Buffer.from(value) as T;
  if (Array.isArray(value)) return value.map(copy) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = Object.create(Object.getPrototypeOf(value));
  const seen = value as Record<string, unknown>;
  for (const key of Object.keys(seen)) {
    // A self-signed certificate's issuerCertificate is the object itself.
    out[key] = seen[key] === value ? out : copy(seen[key]);
  }
  return out as T;
}

// Answers most connections share (the cipher, the signature algorithms, the key exchange): one
// copy each, by value, bounded like the certificates.
const kMaxInterned = 256;
const interned = new Map<string, unknown>();

function intern<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  const key = JSON.stringify(value);
  const known = interned.get(key);
  if (known !== undefined) return known as T;
  if (interned.size >= kMaxInterned) interned.delete(interned.keys().next().value as string);
  interned.set(key, value);
  return value;
}

interface OwnCertificate {
  certificate: object;
  x509: unknown;
}

// The own certificate by the SecureContext that decides it (internals.certificateContextOf): read
// once per context, not per connection (each read parses the certificate: it was most of a
// snapshot's cost in a profile of a terminator). Goes with the context.
const ownCertificates = new WeakMap<object, OwnCertificate>();

function readOwnCertificate(socket: tls.TLSSocket): OwnCertificate {
  const x509 = socket.getX509Certificate();
  const fingerprint = (x509 as { fingerprint256?: string } | undefined)?.fingerprint256;
  if (fingerprint === undefined) return { certificate: socket.getCertificate() ?? {}, x509 };
  let certificate = certificates.get(fingerprint);
  if (certificate === undefined) {
    certificate = socket.getCertificate() ?? {};
    if (certificates.size >= kMaxCachedCertificates) {
      certificates.delete(certificates.keys().next().value as string);
    }
    certificates.set(fingerprint, certificate);
  }
  return { certificate, x509 };
}

function ownCertificate(socket: tls.TLSSocket): OwnCertificate {
  const context = certificateContextOf(socket);
  if (context === undefined) return readOwnCertificate(socket);
  let own = ownCertificates.get(context);
  if (own === undefined) {
    own = readOwnCertificate(socket);
    ownCertificates.set(context, own);
  }
  return own;
}

function takeSnapshot(socket: tls.TLSSocket): Snapshot {
  const own = ownCertificate(socket);
  // Node 20 answers getPeerX509Certificate() once on a client (later calls return undefined), so
  // whether there is a peer certificate is read from getPeerCertificate(): {} when there is none
  // (a server without requestCert), and then the detailed form is the same.
  const peerCertificate = socket.getPeerCertificate(false);
  const hasPeerCertificate = Object.keys(peerCertificate).length > 0;
  return {
    protocol: socket.getProtocol(),
    cipher: intern(socket.getCipher()),
    finished: socket.getFinished(),
    peerFinished: socket.getPeerFinished(),
    session: socket.getSession(),
    ticket: socket.getTLSTicket(),
    sharedSigalgs: intern(socket.getSharedSigalgs()),
    ephemeralKeyInfo: intern(socket.getEphemeralKeyInfo()),
    sessionReused: socket.isSessionReused(),
    certificate: own.certificate,
    x509: own.x509,
    peerCertificate,
    peerCertificateDetailed: hasPeerCertificate ? socket.getPeerCertificate(true) :
      peerCertificate,
    bytesRead: socket.bytesRead,
    bytesWritten: socket.bytesWritten,
  };
}

function spentMethodError(method: string): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_SPENT',
    `${method}() needs the live TLS session, which this TLSSocket handed to tls-splice: call it ` +
    "before start() (or captureSession()), or use engine: 'js' when the socket must stay usable");
}

type Method = (...args: any[]) => unknown;

// The method the socket had before it was spent: its class's own (the spent prototype sits
// right above the socket's original prototype).
function original(socket: tls.TLSSocket, name: string): Method {
  const spent = Object.getPrototypeOf(socket) as object;
  return (Object.getPrototypeOf(spent) as Record<string, Method>)[name];
}

// A method that answers from the snapshot while the socket's handle lives, and as Node's own
// method (null for a destroyed socket) after.
function answer(name: string, from: (s: Snapshot, args: unknown[]) => unknown) {
  return function (this: tls.TLSSocket, ...args: unknown[]): unknown {
    const snapshot = snapshots.get(this);
    if (snapshot === undefined || !hasLiveHandle(this)) {
      return original(this, name).apply(this, args);
    }
    return from(snapshot, args);
  };
}

function refused(name: string) {
  return function (this: tls.TLSSocket, ...args: unknown[]): unknown {
    if (!snapshots.has(this) || !hasLiveHandle(this)) return original(this, name).apply(this, args);
    throw spentMethodError(name);
  };
}

const spentMethods: Record<string, Method> = {
  getProtocol: answer('getProtocol', (s) => s.protocol),
  getCipher: answer('getCipher', (s) => copy(s.cipher)),
  getFinished: answer('getFinished', (s) => copy(s.finished)),
  getPeerFinished: answer('getPeerFinished', (s) => copy(s.peerFinished)),
  getSession: answer('getSession', (s) => copy(s.session)),
  getTLSTicket: answer('getTLSTicket', (s) => copy(s.ticket)),
  getSharedSigalgs: answer('getSharedSigalgs', (s) => copy(s.sharedSigalgs)),
  getEphemeralKeyInfo: answer('getEphemeralKeyInfo', (s) => copy(s.ephemeralKeyInfo)),
  isSessionReused: answer('isSessionReused', (s) => s.sessionReused),
  getCertificate: answer('getCertificate', (s) => copy(s.certificate)),
  // A fresh object per call, as Node returns (the snapshot's is shared by a SecureContext's sockets).
  getX509Certificate: answer('getX509Certificate',
    (s) => (s.x509 === undefined ? undefined : new X509Certificate((s.x509 as X509Certificate).raw))),
  getPeerCertificate: answer('getPeerCertificate',
    (s, [detailed]) => copy(detailed ? s.peerCertificateDetailed : s.peerCertificate)),
  getPeerX509Certificate: answer('getPeerX509Certificate', (s) => {
    const raw = (s.peerCertificate as { raw?: Buffer }).raw;
    return raw === undefined ? undefined : new X509Certificate(raw);
  }),
  exportKeyingMaterial: refused('exportKeyingMaterial'),
  renegotiate: function (this: tls.TLSSocket, options: unknown, callback?: unknown) {
    if (!snapshots.has(this) || !hasLiveHandle(this)) {
      return original(this, 'renegotiate').call(this, options, callback);
    }
    if (typeof callback === 'function') {
      process.nextTick(callback as (err: Error) => void, spentMethodError('renegotiate'));
    }
    return false;
  },
  setMaxSendFragment: refused('setMaxSendFragment'),
  setServername: refused('setServername'),
  setSession: refused('setSession'),
  setKeyCert: refused('setKeyCert'),
  enableTrace: refused('enableTrace'),
};

// The cleartext counts of a spent socket: Node's at capture plus the data plane's since. Node's
// own getters would answer from the freed TLSWrap (frozen at capture), and after destroy from
// what that handle last said: neither counts what the splice moved.
// (An object that only inherits from a spent socket answers as Node's getters do.)
const spentGetters: Record<string, (this: tls.TLSSocket) => number> = {
  bytesRead(this: tls.TLSSocket): number {
    const s = snapshots.get(this);
    if (s === undefined) return Reflect.get(tls.TLSSocket.prototype, 'bytesRead', this) as number;
    return s.bytesRead + (traffic.get(this)?.received() ?? 0);
  },
  bytesWritten(this: tls.TLSSocket): number {
    const s = snapshots.get(this);
    if (s === undefined) {
      return Reflect.get(tls.TLSSocket.prototype, 'bytesWritten', this) as number;
    }
    return s.bytesWritten + (traffic.get(this)?.sent() ?? 0);
  },
};

// One spent prototype per original prototype (tls.TLSSocket.prototype, or a subclass's).
const spentPrototypes = new WeakMap<object, object>();

function spentPrototypeOf(socket: tls.TLSSocket): object {
  const parent = Object.getPrototypeOf(socket) as object;
  let spent = spentPrototypes.get(parent);
  if (spent === undefined) {
    spent = Object.create(parent) as object;
    for (const [name, fn] of Object.entries(spentMethods)) {
      Object.defineProperty(spent, name,
        { value: fn, writable: true, configurable: true, enumerable: false });
    }
    for (const [name, get] of Object.entries(spentGetters)) {
      Object.defineProperty(spent, name, { get, configurable: true, enumerable: false });
    }
    spentPrototypes.set(parent, spent);
  }
  return spent;
}

export type SessionSnapshot = Snapshot;

// At the quiet point of capture (nothing reaches OpenSSL any more): what users may ask about the
// session. undefined when Node could not answer (then the SSL is kept, and the socket answers
// from it as before).
export function snapshotSession(socket: tls.TLSSocket): SessionSnapshot | undefined {
  try {
    return takeSnapshot(socket);
  } catch {
    return undefined;
  }
}

// Once the session was taken (the socket is spent): the socket answers from `snapshot` from now
// on, and Node's SSL is freed. The TLSSocket stays undestroyed.
export function releaseTlsState(socket: tls.TLSSocket, snapshot: SessionSnapshot | undefined):
    void {
  if (snapshot === undefined || snapshots.has(socket)) return;
  snapshots.set(socket, snapshot);
  Object.setPrototypeOf(socket, spentPrototypeOf(socket));
  freeTlsState(socket);
}
