// Every use of Node internals in tls-splice goes through this module: stream state fields,
// the handle under a net.Socket, the stream implementation methods replaced on a spent TLSSocket,
// and the name of tls.Server's connection listener. None of these is public API, so each is
// checked once at load (selfCheck()); a Node version that moved one fails loudly with
// ERR_TLS_SPLICE_UNSUPPORTED_NODE instead of corrupting a session later.
//
// Contract: the accessors never throw for a socket in an unexpected state (no handle, destroyed,
// a JS stream): they answer -1 / 'none' / false, and the caller refuses or falls back.
import * as net from 'node:net';
import { Duplex, Readable } from 'node:stream';
import * as tls from 'node:tls';

import { SpliceError } from './errors';

// What a net.Socket's _handle is, as far as tls-splice cares: a TCP or Pipe stream is a plain
// kernel socket whose fd carries exactly the socket's bytes; anything else (TLSWrap, a
// JSStreamSocket, a handle of a kind this Node does not name as expected) is not.
export type HandleKind = 'TCP' | 'Pipe' | 'other' | 'none';

interface StreamHandle {
  fd?: unknown;
  reading?: boolean;
  readStop?: () => number;
  constructor?: { name?: string };
}

interface ReadableStateFields {
  ended?: boolean;
  reading?: boolean;
}

type Callback = (error?: Error | null) => void;

// The stream implementation methods of a Writable that tls-splice replaces on one instance.
export interface WritableImpl {
  _write: (chunk: unknown, encoding: BufferEncoding, callback: Callback) => void;
  _writev: ((chunks: unknown[], callback: Callback) => void) | null | undefined;
  _final: ((callback: Callback) => void) | undefined;
}

// The listener tls.Server registers through net.Server(options, tlsConnectionListener).
const kTlsConnectionListenerName = 'tlsConnectionListener';

function handleOf(socket: net.Socket): StreamHandle | null {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  return handle !== undefined && handle !== null && typeof handle === 'object' ? handle : null;
}

// The kernel fd under a net.Socket, or -1 (not connected yet, destroyed, a JS stream).
export function socketFd(socket: net.Socket): number {
  const fd = handleOf(socket)?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

// The kind of a net.Socket's handle. A tls.TLSSocket is 'other' (its handle is a TLSWrap, whose
// fd is the ciphertext TCP socket underneath: never a place for cleartext).
export function handleKind(socket: net.Socket): HandleKind {
  const handle = handleOf(socket);
  if (handle === null) return 'none';
  const name = handle.constructor?.name;
  return name === 'TCP' || name === 'Pipe' ? name : 'other';
}

// Stops Node reading the socket's fd now. Both `reading` flags are cleared (the handle's, and
// the Readable's, which says a _read() is outstanding): otherwise a later resume() or read() by
// the owner would wait for that _read() forever instead of starting to read again.
export function readStop(socket: net.Socket): void {
  const handle = handleOf(socket);
  if (handle === null || typeof handle.readStop !== 'function') return;
  handle.reading = false;
  handle.readStop();
  const state = readableState(socket);
  if (state !== undefined) state.reading = false;
}

function readableState(stream: Readable | net.Socket): ReadableStateFields | undefined {
  return (stream as unknown as { _readableState?: ReadableStateFields })._readableState;
}

// Makes a socket that is about to be destroyed never read again: read() calls _read(), which
// would restart reading on the handle.
export function disableReading(socket: net.Socket): void {
  (socket as unknown as { _read: () => void })._read = noop;
}

// True once the readable side has seen its end (EOF pushed), even if 'end' was not emitted yet
// because buffered data is unread (`readableEnded` is only true after 'end').
export function readableEndReached(stream: Readable): boolean {
  return readableState(stream)?.ended === true;
}

// Node ends a Duplex's writable side on its own after 'end' when allowHalfOpen is false
// (Readable's endReadableNT reads the property at that moment; net.Socket also swaps write() for
// writeAfterFIN). Setting it keeps the writable side for whoever takes the socket over.
export function keepWritableAfterEnd(socket: net.Socket): void {
  socket.allowHalfOpen = true;
}

// The Writable implementation methods of one instance, to restore them after replaceWritable().
export function writableImpl(stream: net.Socket): WritableImpl {
  const s = stream as unknown as WritableImpl;
  return { _write: s._write, _writev: s._writev, _final: s._final };
}

// Replaces the Writable implementation methods of one instance (Writable calls `stream._write`,
// `stream._writev` and `stream._final` at the moment it needs them).
export function replaceWritable(stream: net.Socket, impl: Partial<WritableImpl>): void {
  const s = stream as unknown as Record<string, unknown>;
  for (const key of ['_write', '_writev', '_final'] as const) {
    if (key in impl) s[key] = impl[key];
  }
}

// Makes `socket` report `source`'s addresses: net.Socket's remoteAddress/remotePort/remoteFamily,
// localAddress/localPort/localFamily and address() all read `_getpeername()` / `_getsockname()`
// (a TLSSocket over a JS stream has no kernel socket of its own). Two own methods, rather than
// six property definitions that would turn every TLSSocket into a slow object.
export function forwardAddresses(socket: net.Socket, source: net.Socket): void {
  const s = socket as unknown as Record<string, unknown>;
  const from = source as unknown as { _getpeername: () => object; _getsockname: () => object };
  s._getpeername = () => from._getpeername();
  s._getsockname = () => from._getsockname();
}

// As forwardAddresses(), with `source`'s addresses as they are now: for a source about to be
// destroyed (net.Socket forgets its local address then).
export function freezeAddresses(socket: net.Socket, source: net.Socket): void {
  const from = source as unknown as { _getpeername: () => object; _getsockname: () => object };
  const peer = { ...from._getpeername() };
  const local = { ...from._getsockname() };
  forwardAddresses(socket, { _getpeername: () => peer, _getsockname: () => local } as
    unknown as net.Socket);
}

// A server TLSSocket whose 'newSession' listener has not called back yet: TLSWrap holds its
// output (the session tickets) until it does. False when Node does not say (the field is set by
// _tls_wrap.js's onnewsession only while a server has 'newSession' listeners).
export function newSessionPending(tlsSocket: tls.TLSSocket): boolean {
  return (tlsSocket as unknown as { _newSessionPending?: unknown })._newSessionPending === true;
}

// tls.Server's own connection listener on a freshly constructed server, or undefined.
export function tlsConnectionListener(server: tls.Server):
    ((this: tls.Server, socket: net.Socket) => void) | undefined {
  return server.listeners('connection').find((fn) => fn.name === kTlsConnectionListenerName) as
    ((this: tls.Server, socket: net.Socket) => void) | undefined;
}

// The stream a TLSSocket runs over (a net.Socket, or the Duplex a JSStreamSocket wraps, such as
// the record tap), or undefined once the TLSSocket was destroyed. _tls_wrap.js keeps it as
// `_handle._parentWrap` (TLSWrap -> net.Socket or JSStreamSocket) and JSStreamSocket keeps the
// Duplex as `.stream`. The commands use it to tell which raw connection a 'tlsClientError' is
// about: the TLSSocket Node hands over does not know its peer's address.
export function tlsTransportOf(tlsSocket: tls.TLSSocket): Duplex | undefined {
  const handle = (tlsSocket as unknown as { _handle?: { _parentWrap?: unknown } | null })._handle;
  const wrap = handle?._parentWrap;
  if (!(wrap instanceof Duplex)) return undefined;
  const wrapped = (wrap as unknown as { stream?: unknown }).stream;
  if (wrap.constructor.name === 'JSStreamSocket' && wrapped instanceof Duplex) return wrapped;
  return wrap;
}

// A TLSSocket over a JS Duplex (the record tap) is fed by Node's JSStreamSocket, which hands each
// 'data' chunk of the Duplex to the TLS layer synchronously (TLSWrap decrypts it at once, and a
// close_notify in it makes the TLSSocket push its end right there), and hands the transport's EOF
// to the TLS layer from its own 'end' listener on the Duplex. A listener put in front of that one
// runs when every record before the TCP FIN has been through OpenSSL and the FIN itself has not.
// Returns a function that removes the listener.
export function beforeTransportEof(transport: Duplex, listener: () => void): () => void {
  transport.prependOnceListener('end', listener);
  return () => transport.removeListener('end', listener);
}

// Node calls a stream write back without an error when the stream was destroyed meanwhile, also
// for a write the close cancelled (stream_base_commons onWriteComplete), so such a callback proves
// nothing about what reached the fd.
export function writeCallbackProvesWrite(stream: { destroyed: boolean },
  err: Error | null | undefined): boolean {
  return !err && !stream.destroyed;
}

// Frees Node's OpenSSL state of a TLSSocket (the SSL object, its BIOs and buffers) without
// destroying the socket: TLSSocket._destroySSL(), which Node itself calls when a TLSSocket is
// destroyed (again then: it returns at once when the SSL is gone). Node's TLSWrap handle stays
// (it closes when the socket is destroyed); its methods must not be called any more, because
// they read the freed SSL (spent-socket.ts answers them instead).
export function freeTlsState(socket: tls.TLSSocket): void {
  (socket as unknown as { _destroySSL: () => void })._destroySSL();
  // TLSWrap's SSL methods do not check for a freed SSL: called now, they crash the process
  // (seen: getProtocol, getCipher, getSession... segfault). Node calls them only during the
  // handshake, but a TLSSocket method reached another way (tls.TLSSocket.prototype.getProtocol
  // .call(socket), or the handle itself) must fail with an error instead.
  const handle = handleOf(socket);
  if (handle === null) return;
  Object.setPrototypeOf(handle, spentHandlePrototypeOf(handle));
}

// One prototype per TLSWrap prototype, inserted above the handle, whose SSL methods throw: no
// per-socket properties or closures.
const spentHandlePrototypes = new WeakMap<object, object>();

function spentHandlePrototypeOf(handle: object): object {
  const parent = Object.getPrototypeOf(handle) as object;
  let spent = spentHandlePrototypes.get(parent);
  if (spent !== undefined) return spent;
  spent = Object.create(parent) as object;
  for (const name of tlsWrapMethodsNeedingSsl(parent)) {
    Object.defineProperty(spent, name, {
      value: () => {
        throw new SpliceError('ERR_TLS_SPLICE_SPENT', `${name}() needs the TLS session, which ` +
          'this TLSSocket handed to tls-splice (its OpenSSL state is freed): ask the TLSSocket ' +
          'itself, or ask before start()');
      },
      configurable: true, writable: true, enumerable: false,
    });
  }
  spentHandlePrototypes.set(parent, spent);
  return spent;
}

// The TLSWrap methods that are safe on a handle whose SSL is freed, because they never read it:
// Node itself calls them on a TLSSocket's handle after _destroySSL() (destroy(), setNoDelay(),
// reads and writes of the socket). Every other function of the running Node's TLSWrap prototype
// is refused on a spent handle, so that a method a later Node adds (Node 24 added
// clientHelloDone and hasPeerCertificate) cannot reach a freed SSL.
const kTlsWrapMethodsSafeWhenSpent = new Set([
  // _tls_wrap.js's proxiedMethods: JS functions that forward to the TCP/Pipe handle underneath.
  'ref', 'unref', 'open', 'bind', 'listen', 'connect', 'bind6', 'connect6', 'getsockname',
  'getpeername', 'setNoDelay', 'setKeepAlive', 'setSimultaneousAccepts', 'setBlocking',
  'setPendingInstances',
  // destroy(): _tls_wrap.js's close() calls destroySSL(), which returns at once without an SSL.
  'close', 'destroySSL',
  // StreamBase: TLSWrap forwards readStart/readStop to the stream underneath; its writes and
  // shutdown check for a freed SSL ("Write after DestroySSL", UV_EPROTO).
  'readStart', 'readStop', 'shutdown', 'useUserBuffer', 'writev', 'writeBuffer',
  'writeAsciiString', 'writeLatin1String', 'writeUcs2String', 'writeUtf8String',
  // Node 20 has a function-valued `onread` on the prototype: the read callback the native side
  // calls (net.js sets each handle's own), not an SSL method.
  'onread',
]);

// The function-valued own properties of a TLSWrap prototype that are not known to be safe
// without the SSL. Accessors (fd, bytesRead, ...) are left alone: they read the stream, not the
// SSL.
export function tlsWrapMethodsNeedingSsl(prototype: object): string[] {
  return Object.getOwnPropertyNames(prototype).filter((name) => {
    if (name === 'constructor' || kTlsWrapMethodsSafeWhenSpent.has(name)) return false;
    return typeof Object.getOwnPropertyDescriptor(prototype, name)?.value === 'function';
  });
}

// The prototype of the handle (TLSWrap) under a TLSSocket of this Node: one over a Duplex needs
// no connection.
export function tlsWrapPrototype(): object | null {
  const transport = new Duplex({ read() {}, write(_chunk, _encoding, callback) { callback(); } });
  const socket = new tls.TLSSocket(transport, { isServer: true });
  const handle = handleOf(socket);
  const prototype = handle === null ? null : Object.getPrototypeOf(handle) as object;
  socket.destroy();
  transport.destroy();
  return prototype;
}

// What decides a TLSSocket's own certificate: the SecureContext an SNICallback chose for this
// connection (the handle's sni_context), else the one the socket was created with (the handle's
// _secureContext; Node 20 _tls_wrap.js sets both). Every socket with the same one answers
// getCertificate() and getX509Certificate() alike, so spent-socket.ts reads them once per
// context: each is a parse of the certificate, dear per connection. undefined when neither is
// there (then each socket is read on its own).
export function certificateContextOf(socket: tls.TLSSocket): object | undefined {
  const handle = handleOf(socket) as unknown as { sni_context?: unknown; _secureContext?: unknown } | null;
  const context = handle?.sni_context ?? handle?._secureContext;
  return typeof context === 'object' && context !== null ? context : undefined;
}

// True while the socket has its handle (Node's TLSSocket methods answer null once it is gone).
export function hasLiveHandle(socket: net.Socket): boolean {
  return handleOf(socket) !== null;
}

function unsupported(what: string): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_UNSUPPORTED_NODE',
    `tls-splice does not support Node ${process.version}: ${what}. Run it on a Node line it is ` +
    'tested with (20, 22, 24, 26), or use plain node:tls without tls-splice on this version');
}

// Checks the internals above where they can be checked without a connection; throws
// ERR_TLS_SPLICE_UNSUPPORTED_NODE naming the first one that moved.
export function selfCheck(): void {
  const socket = new net.Socket();
  const state = readableState(socket);
  if (state === undefined || typeof state.ended !== 'boolean' ||
      typeof state.reading !== 'boolean') {
    throw unsupported('a net.Socket has no _readableState.ended or .reading');
  }
  if (!('_handle' in socket) || handleOf(socket) !== null) {
    throw unsupported('an unconnected net.Socket has no null _handle');
  }
  const impl = writableImpl(socket);
  if (typeof impl._write !== 'function' || typeof impl._writev !== 'function' ||
      typeof impl._final !== 'function') {
    throw unsupported('net.Socket has no _write/_writev/_final');
  }
  if (typeof (socket as unknown as { _read?: unknown })._read !== 'function') {
    throw unsupported('net.Socket has no _read');
  }
  const names = socket as unknown as { _getpeername?: unknown; _getsockname?: unknown };
  if (typeof names._getpeername !== 'function' || typeof names._getsockname !== 'function') {
    throw unsupported('net.Socket has no _getpeername/_getsockname');
  }
  // The address getters must read them (checked on an unconnected socket, which has no handle).
  let asked = 0;
  const probe = new net.Socket();
  forwardAddresses(probe, { _getpeername: () => { asked++; return { address: 'x' }; },
    _getsockname: () => { asked++; return { port: 1 }; } } as unknown as net.Socket);
  if (probe.remoteAddress !== 'x' || probe.localPort !== 1 || asked !== 2) {
    throw unsupported('net.Socket addresses do not come from _getpeername/_getsockname');
  }
  probe.destroy();
  if (socket.allowHalfOpen !== false) {
    throw unsupported('a net.Socket does not default to allowHalfOpen: false');
  }
  // freeTlsState() replaces the SSL methods of the handle's prototype: it must be a TLSWrap's
  // own, and its SSL getters must be among them.
  const wrap = tlsWrapPrototype();
  const needingSsl = wrap === null ? [] : tlsWrapMethodsNeedingSsl(wrap);
  if ((wrap?.constructor as { name?: string } | undefined)?.name !== 'TLSWrap' ||
      !['getSession', 'getProtocol', 'getCipher'].every((m) => needingSsl.includes(m))) {
    throw unsupported("a TLSSocket's handle is not a TLSWrap with getSession, getProtocol and " +
      'getCipher');
  }
  socket.destroy();
  const tlsProto = tls.TLSSocket.prototype as unknown as { _destroySSL?: unknown };
  if (typeof tlsProto._destroySSL !== 'function') {
    throw unsupported('tls.TLSSocket has no _destroySSL');
  }
  const transport = new Duplex({ read() {}, write(_chunk, _encoding, callback) { callback(); } });
  const overStream = new tls.TLSSocket(transport, { isServer: true });
  const found = tlsTransportOf(overStream);
  overStream.destroy();
  transport.destroy();
  if (found !== transport) {
    throw unsupported('a TLSSocket over a Duplex does not keep it as _handle._parentWrap.stream');
  }
  if (tlsConnectionListener(new tls.Server()) === undefined) {
    throw unsupported(`tls.Server registers no '${kTlsConnectionListenerName}' connection listener`);
  }
}

// setEncoding() on a Readable (Node 20 readable.js, string_decoder.js): `_readableState.decoder`
// is the StringDecoder every pushed Buffer goes through, `_readableState.encoding` its encoding,
// and `_readableState.buffer` then holds the decoded strings (an array read from `bufferIndex`
// on, or a BufferList in older Node 20 releases). The decoder keeps the first bytes of a
// character that has not arrived whole: `lastChar` holds them, `lastTotal - lastNeed` says how
// many (decoder.end() would turn them into U+FFFD instead).
export interface ReadableDecoding {
  encoding: string;
  // What the readable buffer holds, oldest first: strings (a Buffer only if pushed as one).
  chunks: (string | Buffer)[];
  // The bytes of an incomplete character the decoder holds, to come after `chunks`.
  pending: Buffer;
}

interface DecodingStateFields {
  decoder?: { lastChar?: unknown; lastNeed?: unknown; lastTotal?: unknown } | null;
  encoding?: string | null;
  buffer?: unknown;
  bufferIndex?: unknown;
}

function decodingState(stream: Readable): DecodingStateFields | undefined {
  return (stream as unknown as { _readableState?: DecodingStateFields })._readableState;
}

function bufferedChunks(state: DecodingStateFields): (string | Buffer)[] {
  const buffer = state.buffer;
  if (Array.isArray(buffer)) {
    const from = typeof state.bufferIndex === 'number' ? state.bufferIndex : 0;
    return buffer.slice(from) as (string | Buffer)[];
  }
  return Array.from(buffer as Iterable<string | Buffer>);
}

// The setEncoding() state of `stream`, or null when setEncoding() was not called.
export function readableDecoding(stream: Readable): ReadableDecoding | null {
  const state = decodingState(stream);
  const decoder = state?.decoder;
  if (state === undefined || decoder === undefined || decoder === null) return null;
  const lastChar = decoder.lastChar as Buffer;
  const held = (decoder.lastTotal as number) - (decoder.lastNeed as number);
  return {
    encoding: state.encoding ?? 'utf8',
    chunks: bufferedChunks(state),
    pending: Buffer.from(lastChar.subarray(0, Math.max(0, held))),
  };
}

// Undoes setEncoding(): chunks pushed from now on stay Buffers. The caller has emptied the
// buffer of the strings decoded so far.
export function clearReadableDecoding(stream: Readable): void {
  const state = decodingState(stream);
  if (state === undefined) return;
  state.decoder = null;
  state.encoding = null;
}

// Checks readableDecoding() and clearReadableDecoding() on a Readable of this Node: a character
// split across pushes, a partial read, and Buffers again after the clear.
function selfCheckReadableDecoding(): void {
  const probe = new Readable({ read() {} });
  probe.setEncoding('utf8');
  probe.push(Buffer.from('abc\u00e9'));
  probe.push(Buffer.from('de\u20ac').subarray(0, 4));   // 'de' and two of the euro sign's three bytes
  probe.read(1);
  const seen = readableDecoding(probe);
  const text = seen?.chunks.join('');
  if (seen === null || seen.encoding !== 'utf8' || text !== 'bc\u00e9de' ||
      !seen.pending.equals(Buffer.from([0xe2, 0x82]))) {
    throw unsupported('a Readable\'s setEncoding() state (_readableState.decoder, .encoding, ' +
      '.buffer, StringDecoder lastChar/lastNeed/lastTotal) is not where tls-splice reads it');
  }
  probe.read(probe.readableLength);
  clearReadableDecoding(probe);
  probe.push(Buffer.from([0xac]));
  if (probe.readableEncoding !== null || !Buffer.isBuffer(probe.read())) {
    throw unsupported('clearing _readableState.decoder and .encoding does not undo setEncoding()');
  }
  probe.destroy();
}

// OpenSSL's session-ticket key callback on a SecureContext (the native context behind
// tls.createSecureContext(): enableTicketKeyCallback() and the onticketkeycallback it calls with
// the ticket's key name, its IV and whether to encrypt, answering [result, hmacKey, aesKey, name,
// iv]). Node's public API holds one ticket key per context; terminate's keyring needs several.
export type TicketKeyCallback = (name: Buffer, iv: Buffer, encrypt: boolean) => unknown[];

interface TicketKeyContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: TicketKeyCallback;
}

function ticketKeyContext(context: tls.SecureContext): TicketKeyContext | undefined {
  return (context as unknown as { context?: TicketKeyContext }).context;
}

export function setTicketKeyCallback(context: tls.SecureContext, callback: TicketKeyCallback):
  void {
  const native = ticketKeyContext(context)!;
  native.enableTicketKeyCallback!();
  native.onticketkeycallback = callback;
}

function selfCheckTicketKeyCallback(): void {
  const native = ticketKeyContext(tls.createSecureContext());
  if (typeof native?.enableTicketKeyCallback !== 'function') {
    throw unsupported('a SecureContext has no context.enableTicketKeyCallback() (the session ' +
      'ticket key callback terminate uses for shared ticket keys)');
  }
}

function noop(): void {}

selfCheck();
selfCheckReadableDecoding();
selfCheckTicketKeyCallback();
