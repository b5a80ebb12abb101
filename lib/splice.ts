// spliceTo() and pipeToNative(): hand an established TLS session to an engine that moves its
// cleartext to and from a file descriptor.
//
// When `closed` settles (it always resolves, never rejects; an error is in `end.error`):
//  - duplex: once both directions are finished: the peer closed its side (close_notify, or a TCP
//    FIN) and all it sent reached the target, AND the target's side ended (EOF read) and our
//    close_notify went out. A half-close in either direction alone does not settle it.
//  - 'in': once the peer closed its side and everything reached the target (our close_notify
//    is sent right after).
//  - 'out': once the target's EOF was read, everything reached the peer with our close_notify,
//    and the peer closed its side too.
//  - on stop(): when the stop completed; on an error: at once.
//
// start() has two phases. The first is reversible: resolve and validate the target, dial a
// { host, port } / { path } target, wait for a target socket to connect and flush; stop(), the
// abort signal and the target's 'close' cancel it, and a failure rejects with the target's own
// code (ECONNREFUSED, ...) with the TLSSocket untouched. The second is not: capture the session,
// then start the engine at once.
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import * as util from 'node:util';
import { binding } from './binding';
import {
  CapturedSession, EndHold, captureSession, holdEnd, releaseSpentSocket,
} from './capture';
import { PendingTarget, dial, targetError, waitForTarget } from './dial';
import {
  Engine, EndReason, EngineEndInfo, EngineEvents, SpliceStats, emptyStats, endInfo,
} from './engine';
import { HINTS } from './error-hints';
import { SpliceError, invalidArg } from './errors';
import { Framing, FramingOptions, PacketInfoKind } from './framing';
import { JsEngine, JsEngineOptions } from './js-engine';
import { setSpentSocketTraffic } from './spent-socket';
import {
  ResolvedTarget, SpliceDirection, SpliceTarget, adoptUserFds, closeTarget, closeUserFds,
  closeWriteSideEarly, keepSocketHalfOpen, notRawReason, resetTargetSocket, resolveTarget,
  takeOverSocket,
} from './target';

const debug = util.debuglog('tls-splice');

export type { SpliceStats } from './engine';
export type { SpliceDirection, SpliceTarget } from './target';

export type SpliceEngineOption = 'auto' | 'native' | 'js';

/** What a target socket gets when the peer's TCP ends without close_notify (a truncation). */
export type TruncationMode = 'end' | 'reset';

export interface SpliceOptions {
  /** 'duplex' (default), 'in' (TLS -> fd only) or 'out' (fd -> TLS only). */
  direction?: SpliceDirection;
  /** Close the user's fd, or destroy the user's net.Socket, when the splice ends. */
  autoClose?: boolean;
  /** Bytes written to the target before any spliced byte (stream framing only). */
  head?: Buffer | Uint8Array;
  /** 'auto' (default): native, else the JS engine; 'native': native or fail; 'js'. */
  engine?: SpliceEngineOption;
  /** Aborting it is stop({ graceful: false }). */
  signal?: AbortSignal;
  /** 'stream' (default), 'ip' or 'u16be'. */
  framing?: Framing;
  /** A 4-byte packet-info header per packet on the fd side: true = this platform's. */
  packetInfo?: boolean | 'linux' | 'utun';
  /** The largest packet accepted with packet framing (default 65535). */
  maxPacketSize?: number;
  /**
   * TLS 1.3, native engine: send our own KeyUpdate after this many records under one key.
   * Default: the cipher's RFC 8446 5.5 limit. Lower it only to exercise KeyUpdate.
   */
  keyUpdateAfterRecords?: number;
  /**
   * The peer's TCP ended without close_notify: 'end' (default) passes the end on like a
   * close_notify; 'reset' resets a TCP target (RST), so a backend cannot mistake a cut upload for
   * a complete one.
   */
  onTruncation?: TruncationMode;
  /** TCP_NODELAY on a socket target (and on a dialled one). Default true. */
  noDelay?: boolean;
  /**
   * Milliseconds with no progress either way (no byte read from the peer or the target, none
   * taken by either) after which the splice ends with reason 'idle': close_notify to the peer, an
   * end (FIN) to the target, within a bounded time. Default: none.
   */
  idleTimeout?: number;
  /**
   * As idleTimeout, once one side has ended (the peer's close_notify or FIN, or the target's EOF,
   * also while it waits unread behind bytes the other side does not take). Default: none.
   */
  finTimeout?: number;
}

export interface StopOptions {
  /** true (default): deliver what was read, send close_notify, then close. false: close now. */
  graceful?: boolean;
  /** With graceful: abort if the stop has not completed after this many milliseconds. */
  timeout?: number;
}

export interface SpliceEnd {
  /** 'idle': idleTimeout or finTimeout ended it. */
  reason: EndReason;
  error?: SpliceError;
  engine: 'native' | 'js' | null;
  closeNotifyReceived: boolean;
  closeNotifySent: boolean;
  /** The peer closed TCP without close_notify (a truncation an attacker could also cause). */
  peerEofWithoutCloseNotify: boolean;
  /** Cleartext from the peer that had not reached the target when the splice ended. */
  undeliveredIn: number;
  /** Ciphertext received but not yet opened (a partial record) when the splice ended. */
  unreadCiphertext: number;
  /** Cleartext read from the target that had not reached the peer when the splice ended. */
  undeliveredOut: number;
  /**
   * Bytes already received behind the peer's close_notify when it was read: ignored, as RFC 8446
   * 6.1 requires. Anything arriving later is not read at all, so not counted.
   */
  ignoredAfterClose: number;
  stats: SpliceStats;
}

// Capture refusals the JS engine can take over from: the TLSSocket is still fully usable.
const FALLBACK_CODES = new Set([
  'ERR_TLS_SPLICE_NOT_TAPPED',
  'ERR_TLS_SPLICE_UNSUPPORTED_VERSION',
  'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER',
  'ERR_TLS_SPLICE_NO_SECRETS',
  'ERR_TLS_SPLICE_KEY_UPDATE_SEEN',
  'ERR_TLS_SPLICE_RENEGOTIATED',
  'ERR_TLS_SPLICE_SELF_CHECK_FAILED',
]);

const FRAMINGS: Record<Framing, number> = { stream: 0, ip: 1, u16be: 2 };
const PACKET_INFOS: Record<PacketInfoKind, number> = { none: 0, linux: 1, utun: 2 };

interface NativeSplice {
  start(): void;
  stop(graceful: boolean): void;
  stats(): SpliceStats;
  ref(): void;
  unref(): void;
  setNoDelay(enable: boolean): void;
  setKeepAlive(enable: boolean, initialDelaySeconds: number): void;
}

type NativeSpliceConstructor = new (params: object,
  onEvent: (type: 'end' | 'close', info: EngineEndInfo) => void) => NativeSplice;

interface ResolvedOptions {
  direction: SpliceDirection;
  autoClose: boolean;
  head: Buffer | null;
  engine: SpliceEngineOption;
  signal: AbortSignal | null;
  framing: FramingOptions;
  keyUpdateAfterRecords: number;
  onTruncation: TruncationMode;
  noDelay: boolean;
  // Whole milliseconds, 0 for none.
  idleTimeout: number;
  finTimeout: number;
}

// The longest timeout accepted: setTimeout's (about 24.8 days), which the JS engine uses.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

// A positive number of milliseconds, rounded up to a whole one; 0 when not given.
function timeoutOption(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 ||
    value > MAX_TIMEOUT_MS) {
    throw invalidArg(`options.${name}`, `a positive number of milliseconds up to ${MAX_TIMEOUT_MS}`,
      value);
  }
  return Math.ceil(value);
}

function resolveOptions(options: SpliceOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') {
    throw invalidArg('options', 'an object', options);
  }
  const direction = options.direction ?? 'duplex';
  if (direction !== 'duplex' && direction !== 'in' && direction !== 'out') {
    throw invalidArg('options.direction', "'duplex', 'in' or 'out'", direction);
  }
  const engine = options.engine ?? 'auto';
  if (engine !== 'auto' && engine !== 'native' && engine !== 'js') {
    throw invalidArg('options.engine', "'auto', 'native' or 'js'", engine);
  }
  const framing = options.framing ?? 'stream';
  if (!(framing in FRAMINGS)) {
    throw invalidArg('options.framing', "'stream', 'ip' or 'u16be'", framing);
  }
  let packetInfo: PacketInfoKind = 'none';
  if (options.packetInfo === true) {
    packetInfo = process.platform === 'darwin' ? 'utun' : 'linux';
  } else if (options.packetInfo === 'linux' || options.packetInfo === 'utun') {
    packetInfo = options.packetInfo;
  } else if (options.packetInfo !== undefined && options.packetInfo !== false) {
    throw invalidArg('options.packetInfo', "a boolean, 'linux' or 'utun'", options.packetInfo);
  }
  if (packetInfo !== 'none' && framing === 'stream') {
    throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
      "options.packetInfo needs packet framing: set framing to 'ip' or 'u16be'.");
  }
  const maxPacketSize = options.maxPacketSize ?? 65535;
  if (!Number.isInteger(maxPacketSize) || maxPacketSize < 20 || maxPacketSize > 65535) {
    throw invalidArg('options.maxPacketSize', 'an integer from 20 to 65535', maxPacketSize);
  }
  let head: Buffer | null = null;
  if (options.head !== undefined && options.head !== null) {
    if (!(options.head instanceof Uint8Array)) {
      throw invalidArg('options.head', 'a Buffer or Uint8Array', options.head);
    }
    if (direction === 'out') {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        "options.head is written to the target, but direction 'out' never writes to it.");
    }
    if (framing !== 'stream' && options.head.length > 0) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        'options.head is raw bytes and would corrupt packet framing; send it as packets.');
    }
    head = Buffer.from(options.head.buffer, options.head.byteOffset, options.head.byteLength);
  }
  const signal = options.signal ?? null;
  if (signal !== null && !(signal instanceof AbortSignal)) {
    throw invalidArg('options.signal', 'an AbortSignal', signal);
  }
  const keyUpdateAfterRecords = options.keyUpdateAfterRecords ?? 0;
  if (!Number.isSafeInteger(keyUpdateAfterRecords) || keyUpdateAfterRecords < 0) {
    throw invalidArg('options.keyUpdateAfterRecords', 'a non-negative integer',
      keyUpdateAfterRecords);
  }
  const onTruncation = options.onTruncation ?? 'end';
  if (onTruncation !== 'end' && onTruncation !== 'reset') {
    throw invalidArg('options.onTruncation', "'end' or 'reset'", onTruncation);
  }
  const noDelay = options.noDelay ?? true;
  if (typeof noDelay !== 'boolean') throw invalidArg('options.noDelay', 'a boolean', noDelay);
  const idleTimeout = timeoutOption('idleTimeout', options.idleTimeout);
  const finTimeout = timeoutOption('finTimeout', options.finTimeout);
  return {
    direction, autoClose: options.autoClose === true, head, engine, signal,
    framing: { framing, packetInfo, maxPacketSize }, keyUpdateAfterRecords, onTruncation, noDelay,
    idleTimeout, finTimeout,
  };
}

export function endError(info: EngineEndInfo): SpliceError | undefined {
  if (info.reason !== 'error') return undefined;
  const code = info.code ?? 'ERR_TLS_SPLICE_INTERNAL';
  let message: string;
  if (code.startsWith('ERR_TLS_ALERT_') && info.alertReceived) {
    message = `The peer sent a fatal ${info.alertReceived} alert and ended the TLS session.`;
  } else {
    message = HINTS[code] ?? 'The splice failed.';
  }
  if (info.detail) message += ` (${info.detail})`;
  if (info.alertSent) message += ` Alert sent to the peer: ${info.alertSent}.`;
  const error = new SpliceError(code, message, info.cause ? { cause: info.cause } : undefined);
  const extra = error as SpliceError & Record<string, unknown>;
  if (info.errno !== undefined) extra.errno = info.errno;
  if (info.alertSent) extra.alertSent = info.alertSent;
  if (info.alertReceived) extra.alert = info.alertReceived;
  return error;
}

export class SpliceHandle extends EventEmitter {
  /** 'native' or 'js' once started; null before. */
  engine: 'native' | 'js' | null = null;
  /** Why the 'auto' engine fell back to 'js' (the capture refusal), if it did. */
  fallbackReason: SpliceError | null = null;
  readonly closed: Promise<SpliceEnd>;

  private readonly options: ResolvedOptions;
  private readonly target: ResolvedTarget;
  private state: 'idle' | 'starting' | 'running' | 'closed' = 'idle';
  private startPromise: Promise<void> | null = null;
  private active: Engine | null = null;
  private pendingStop: StopOptions | null = null;
  private pendingTarget: PendingTarget | null = null;
  // Node's own end() after the peer's 'end' must wait while the target is prepared (capture.ts).
  private endHold: EndHold | null = null;
  private targetFailure: Error | null = null;
  private forceJs = false;
  private refed = true;
  private stopTimer: NodeJS.Timeout | null = null;
  private finalStats: SpliceStats | null = null;
  // Of the native engine's bytesIn, what the peer did not send after capture (spent-socket.ts).
  private notFromPeer = 0;
  private resolveClosed!: (end: SpliceEnd) => void;
  private readonly onAbort = () => void this.stop({ graceful: false });
  // On a target socket from spliceTo() on: an error with no listener would crash the process
  // (a refused backend before start() is called), and the first one is start()'s answer.
  private readonly onTargetError = (err: Error) => {
    this.targetFailure ??= err;
    debug('target error: %s', (err as NodeJS.ErrnoException).code ?? err.message);
  };

  constructor(readonly tlsSocket: tls.TLSSocket, target: SpliceTarget, options: SpliceOptions) {
    super();
    this.options = resolveOptions(options);
    this.target = resolveTarget(target, this.options.direction);
    this.target.socket?.on('error', this.onTargetError);
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
  }

  /** Resolves once an engine owns the session. Idempotent. */
  start(): Promise<void> {
    if (this.startPromise === null) this.startPromise = this.startEngine();
    return this.startPromise;
  }

  /**
   * Idempotent; resolves when the splice has closed. While start() still waits for the target (a
   * connecting or dialled socket) it cancels the start (which rejects with ERR_TLS_SPLICE_STOPPED,
   * or ABORT_ERR for the signal) and leaves the TLSSocket untouched; once the target is ready,
   * start() resolves and the engine is stopped as soon as it runs.
   */
  stop(options: StopOptions = {}): Promise<SpliceEnd> {
    const graceful = options.graceful !== false;
    if (this.state === 'idle') {
      this.finish(endInfo('stopped'), emptyStats());
    } else if (this.state === 'starting') {
      const aborted = this.options.signal?.aborted === true;
      const cancelled = this.pendingTarget?.cancel(aborted ?
        new SpliceError('ABORT_ERR', 'The splice was aborted before it started; the TLSSocket ' +
          'is untouched.') :
        new SpliceError('ERR_TLS_SPLICE_STOPPED', HINTS.ERR_TLS_SPLICE_STOPPED)) === true;
      // The target was ready already: the engine is stopped as soon as it runs.
      if (!cancelled && (this.pendingStop === null || !graceful)) {
        this.pendingStop = { ...options, graceful };
      }
    } else if (this.state === 'running' && this.active !== null) {
      this.active.stop(graceful);
      if (graceful && options.timeout !== undefined && this.stopTimer === null) {
        this.stopTimer = setTimeout(() => this.active?.stop(false), options.timeout);
        this.stopTimer.unref();
      }
    }
    return this.closed;
  }

  stats(): SpliceStats {
    if (this.finalStats) return { ...this.finalStats };
    return this.active ? this.active.stats() : emptyStats();
  }

  /** A running splice keeps the process alive, like a socket; unref() lets it exit. */
  ref(): this {
    this.refed = true;
    this.active?.ref();
    if (this.target.ownsSocket) this.target.socket?.ref();
    return this;
  }

  /** Also before start() resolves: remembered, and applied to the engine when it starts. */
  unref(): this {
    this.refed = false;
    this.active?.unref();
    if (this.target.ownsSocket) this.target.socket?.unref();
    return this;
  }

  private async startEngine(): Promise<void> {
    if (this.state !== 'idle') {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_STATE', 'This splice was already stopped.');
    }
    this.state = 'starting';
    const { signal } = this.options;
    if (signal?.aborted) {
      this.finish(endInfo('aborted'), emptyStats());
      throw new SpliceError('ABORT_ERR', 'The splice was aborted before it started.');
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    // Phase 1, reversible: nothing of the TLSSocket is touched, except that an end of our side
    // (Node ends it on its own after the peer's 'end' when allowHalfOpen is false) is held back
    // until capture, and goes ahead if the splice does not start.
    if (this.options.engine !== 'js') this.endHold = holdEnd(this.tlsSocket);
    try {
      await this.prepareTarget();
    } catch (err) {
      this.endHold?.release();
      const error = targetError(err);
      debug('start: target phase failed: %s', error.code);
      const reason = error.code === 'ABORT_ERR' ? 'aborted' :
        error.code === 'ERR_TLS_SPLICE_STOPPED' ? 'stopped' : 'error';
      this.finish(endInfo(reason, reason === 'error' ? { code: error.code } : {}), emptyStats(),
        reason === 'error' ? error : undefined);
      throw error;
    }
    // Phase 2, irreversible once the capture succeeds: capture, then the engine at once.
    try {
      this.active = await this.createEngine();
    } catch (err) {
      const error = err instanceof SpliceError ? err : new SpliceError(
        (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_INTERNAL',
        (err as Error).message, { cause: err });
      this.finish(endInfo('error', { code: error.code }), emptyStats(), error);
      throw error;
    }
    if (!this.refed) this.active.unref();
    // An engine that already ended (its 'close' came first) leaves the handle closed.
    if (this.state !== 'starting') return;
    this.state = 'running';
    const stop = this.pendingStop;
    if (stop !== null) void this.stop(stop);
  }

  // Dials a { host, port } / { path } target, waits until a target socket is connected and has
  // flushed, and decides whether its fd may go to the native engine. Cancellable (stop(), the
  // signal); fails with the target's own error.
  private async prepareTarget(): Promise<void> {
    const target = this.target;
    if (target.dial !== null) {
      target.socket = dial(target.dial, this.options.noDelay);
      target.ownsSocket = true;
      target.socket.on('error', this.onTargetError);
      if (!this.refed) target.socket.unref();
    }
    const socket = target.socket;
    if (socket === null) return;
    this.pendingTarget = waitForTarget(socket, () => this.targetFailure);
    try {
      await this.pendingTarget.ready;
    } finally {
      this.pendingTarget = null;
    }
    const why = notRawReason(socket);
    if (why === null) return;
    const refusal = new SpliceError('ERR_TLS_SPLICE_TARGET_NOT_RAW', `${why}, so the native ` +
      "engine must not have it: its cleartext would go out unencrypted. Use engine: 'auto' or " +
      "'js' (the JS engine writes through the socket), or pass a plain net.Socket.");
    if (this.options.engine === 'native') throw refusal;
    debug('start: %s', why);
    if (this.options.engine === 'auto') {
      this.fallbackReason = refusal;
      this.forceJs = true;
    }
  }

  private async createEngine(): Promise<Engine> {
    const { engine } = this.options;
    const events: EngineEvents = {
      onEnd: () => this.onEngineEnd(),
      onClose: (info, stats) => this.onEngineClose(info, stats),
    };
    if (engine === 'js' || this.forceJs) {
      // No capture: an end of our side held since start() goes ahead now.
      this.endHold?.release();
      return this.startJs(events);
    }
    let session: CapturedSession;
    try {
      session = await captureSession(this.tlsSocket, { endHold: this.endHold });
    } catch (err) {
      // Refused: the end of our side, if one was held, goes ahead (capture released it, unless it
      // refused before taking it over).
      this.endHold?.release();
      const code = (err as SpliceError).code;
      if (engine === 'auto' && FALLBACK_CODES.has(code)) {
        debug('start: falling back to the JS engine: %s', code);
        this.fallbackReason = err as SpliceError;
        return this.startJs(events);
      }
      throw err;
    }
    return this.startNative(session, events);
  }

  private startJs(events: EngineEvents): Engine {
    const { options, target } = this;
    if (target.socket !== null) {
      keepSocketHalfOpen(target.socket);
      if (options.noDelay) setNoDelay(target.socket);
    }
    // The JS engine uses the target's fds by number: with autoClose it gets duplicates the splice
    // owns and the user's fds are closed now.
    if (options.autoClose) adoptUserFds(target);
    const jsOptions: JsEngineOptions & { onTruncation: TruncationMode } = {
      direction: options.direction, head: options.head, framing: options.framing,
      onTruncation: options.onTruncation, idleTimeout: options.idleTimeout,
      finTimeout: options.finTimeout,
    };
    const js = new JsEngine(this.tlsSocket, target, jsOptions, events);
    this.engine = 'js';
    debug('start: JS engine');
    js.start();
    return js;
  }

  private async startNative(session: CapturedSession, events: EngineEvents): Promise<Engine> {
    const { options, target } = this;
    let splice: NativeSplice;
    try {
      const initialCleartext = await takeOverSocket(target, options.direction);
      if (target.socket !== null && options.noDelay) setNoDelay(target.socket);
      const Splice = binding.Splice as NativeSpliceConstructor;
      splice = new Splice({
        tcpFd: session.fd,
        readFd: target.readFd,
        writeFd: target.writeFd,
        deliverIn: options.direction !== 'out',
        deliverOut: options.direction !== 'in',
        framing: FRAMINGS[options.framing.framing],
        packetInfo: PACKET_INFOS[options.framing.packetInfo],
        maxPacketSize: options.framing.maxPacketSize,
        isServer: session.isServer,
        version: session.versionId,
        cipherSuite: session.cipherSuite,
        // All keys in one Buffer, which native wipes in place (layout: splice_binding.cc).
        keys: Buffer.concat((session.versionId === 0x0304
          ? [session.readSecret, session.writeSecret]
          : [session.readKey, session.readIv, session.readMacKey ?? Buffer.alloc(0),
            session.writeKey, session.writeIv, session.writeMacKey ?? Buffer.alloc(0)]) as Buffer[]),
        encryptThenMac: session.encryptThenMac,
        readSeq: session.readSeq,
        writeSeq: session.writeSeq,
        writeExplicitNonce: session.writeExplicitNonce,
        maxFragmentLength: session.maxFragmentLength,
        keyUpdateAfterRecords: options.keyUpdateAfterRecords,
        head: options.head ?? undefined,
        initialPlaintext: session.plaintext,
        initialCiphertext: session.pendingCiphertext,
        initialCleartext,
        peerEnded: session.peerEnded !== 'none',
        peerCloseNotify: session.peerEnded === 'close_notify',
        onTruncation: options.onTruncation === 'reset' ? 1 : 0,
        noDelay: options.noDelay,
        idleTimeout: options.idleTimeout,
        finTimeout: options.finTimeout,
      }, (type, info) => {
        if (type === 'end') events.onEnd();
        else events.onClose(info, splice.stats());
      });
      splice.start();
      // The spent TLSSocket counts what the splice moves, and its socket options reach the TCP
      // socket the splice now owns. bytesIn also counts what was not received from the peer here
      // (head) or was counted by Node already (the plaintext it had decrypted).
      this.notFromPeer = (options.head?.length ?? 0) + session.plaintext.length;
      setSpentSocketTraffic(this.tlsSocket, {
        received: () => Math.max(0, splice.stats().bytesIn - this.notFromPeer),
        sent: () => splice.stats().bytesOut,
        setNoDelay: (enable) => splice.setNoDelay(enable),
        setKeepAlive: (enable, delay) => splice.setKeepAlive(enable, delay),
      });
      // The native side holds its own duplicates: with autoClose the user's fds go now, so
      // nothing is closed by number later.
      if (options.autoClose) closeUserFds(target);
    } catch (err) {
      // Captured but not taken: the TLSSocket is spent either way.
      releaseSpentSocket(this.tlsSocket);
      throw err;
    } finally {
      // The native side holds its own duplicate of every fd and its own copy of the keys.
      binding.closeFd(session.fd);
      for (const secret of [session.readSecret, session.writeSecret, session.readKey,
        session.readIv, session.writeKey, session.writeIv, session.readMacKey,
        session.writeMacKey]) {
        secret?.fill(0);
      }
    }
    this.engine = 'native';
    return {
      name: 'native',
      stop: (graceful) => splice.stop(graceful),
      stats: () => splice.stats(),
      ref: () => splice.ref(),
      unref: () => splice.unref(),
    };
  }

  private onEngineEnd(): void {
    closeWriteSideEarly(this.target);
    this.emit('end');
  }

  private onEngineClose(info: EngineEndInfo, stats: SpliceStats): void {
    if (this.engine === 'native') {
      // The final counts, before the TLSSocket's 'close' (where users read them).
      const received = Math.max(0, stats.bytesIn - this.notFromPeer);
      const sent = stats.bytesOut;
      setSpentSocketTraffic(this.tlsSocket, { received: () => received, sent: () => sent });
      releaseSpentSocket(this.tlsSocket);
    }
    this.finish(info, stats);
  }

  private finish(info: EngineEndInfo, stats: SpliceStats, error?: SpliceError): void {
    if (this.state === 'closed') return;
    const wasRunning = this.state === 'running' || this.active !== null;
    this.state = 'closed';
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    // A TCP end inside a TLS record is a truncation too (an error, with neither end flag).
    const truncated = info.peerEofWithoutCloseNotify ||
      (info.reason === 'error' && info.code === 'ERR_TLS_SPLICE_TRUNCATED_RECORD');
    if (wasRunning && truncated && this.options.onTruncation === 'reset') {
      // A cut upload must not look complete to the target: a socket is reset here (the native
      // engine set SO_LINGER {1, 0} on its fd and left its write side open); an fd target gets
      // the reset when its last descriptor closes.
      debug('end: truncation (peer EOF without close_notify): resetting the target');
      resetTargetSocket(this.target);
    }
    closeTarget(this.target, this.options.autoClose && wasRunning);
    // The listener holds this handle: a socket that outlives the splice must not keep it alive.
    // One the engine had stays guarded (a late error of a taken-over socket must not crash).
    const socket = this.target.socket;
    if (socket !== null) {
      socket.removeListener('error', this.onTargetError);
      if (wasRunning) socket.on('error', noop);
    }
    this.finalStats = stats;
    const end: SpliceEnd = {
      reason: info.reason,
      error: error ?? endError(info),
      engine: this.engine,
      closeNotifyReceived: info.closeNotifyReceived,
      closeNotifySent: info.closeNotifySent,
      peerEofWithoutCloseNotify: info.peerEofWithoutCloseNotify,
      undeliveredIn: info.undeliveredIn,
      unreadCiphertext: info.unreadCiphertext,
      undeliveredOut: info.undeliveredOut,
      ignoredAfterClose: info.ignoredAfterClose,
      stats: { ...stats },
    };
    debug('end: %s%s engine=%s bytesIn=%d bytesOut=%d truncated=%s', end.reason,
      end.error ? ` (${end.error.code})` : '', end.engine, stats.bytesIn, stats.bytesOut,
      end.peerEofWithoutCloseNotify);
    // 'error' is emitted only to listeners: an unobserved splice error must not crash the
    // process; it is always in `closed`.
    if (end.error && this.listenerCount('error') > 0) this.emit('error', end.error);
    this.emit('close', end);
    this.resolveClosed(end);
  }
}

function noop(): void {}

// TCP_NODELAY on a target socket (a no-op on a Pipe). The native engine sets it on its own
// duplicate too; this covers the JS engine and the socket's life after the splice.
function setNoDelay(socket: net.Socket): void {
  if (!socket.destroyed) socket.setNoDelay(true);
}

/** Creates a splice of tlsSocket's cleartext to and from `target`. Call start() to begin. */
export function spliceTo(tlsSocket: tls.TLSSocket, target: SpliceTarget,
  options: SpliceOptions = {}): SpliceHandle {
  return new SpliceHandle(tlsSocket, target, options);
}

/** start() and `closed` in one: resolves with how the splice ended, rejects on an error. */
export async function pipeToNative(tlsSocket: tls.TLSSocket, target: SpliceTarget,
  options: SpliceOptions = {}): Promise<SpliceEnd> {
  const handle = spliceTo(tlsSocket, target, options);
  await handle.start();
  const end = await handle.closed;
  if (end.error) throw end.error;
  return end;
}
