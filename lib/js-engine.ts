// The JS engine: the same splice semantics as the native engine, implemented as a stream pump
// over the TLSSocket. Used when the native engine cannot take the session (a socket not created
// through the tap, a CBC suite, a KeyUpdate already seen, ...) or when asked for.
//
// Sockets and pipes are driven through net.Socket on a dup() of the fd. Character devices are
// read through PolledFdReader (non-blocking, when epoll says readable; fd-io.ts) and written with
// fs, one write() per chunk or packet (a TUN takes each write as a packet, so packets are never
// coalesced into one writev). Regular files and /dev/null, which epoll refuses, use fs streams.
//
// The engine contract both engines follow (fds, end flags, stop, truncation) is in
// docs/ENGINE-CONTRACT.md; test/engine-conformance.test.mjs runs it against both.
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type * as tls from 'node:tls';
import * as util from 'node:util';
import { binding, FdPoller } from './binding';
import { OwnedFd, PolledFdReader, WRITABLE, pollError, whenAcknowledged } from './fd-io';
import { Engine, EngineEndInfo, EngineEvents, SpliceStats, emptyStats, endInfo } from './engine';
import { IdleLimits, IdleWatch, hangupPending } from './idle-watch';
import {
  FramingOptions, PACKET_INFO_LENGTH, checkOutgoingPacket, cutPacket, packetInfoHeader,
} from './framing';
import {
  beforeTransportEof, keepWritableAfterEnd, readableEndReached, socketFd, writeCallbackProvesWrite,
} from './internals';
import { encodingHandoverRefusal, revertEncoding } from './readable-encoding';
import { tapOf } from './tap';
import type { ResolvedTarget, SpliceDirection } from './target';

const debug = util.debuglog('tls-splice');

export type TruncationPolicy = 'end' | 'reset';

export interface JsEngineOptions {
  direction: SpliceDirection;
  head: Buffer | null;
  framing: FramingOptions;
  // What the target gets when the peer's TCP ends without close_notify: 'end' (default) passes the
  // end on as after a close_notify; 'reset' does not end the target's write side and closes a TCP
  // target with a reset (RST), so that a plain backend can tell a cut stream from a whole one.
  onTruncation?: TruncationPolicy;
  // Inactivity limits in milliseconds, 0 (default) for none: see lib/idle-watch.ts.
  idleTimeout?: number;
  finTimeout?: number;
}

// An idle end: how long close_notify, the target's end and the peer's FIN may take before the
// splice closes anyway (as natively: src-native/splice_internal.h kIdleEndMaxMs).
const IDLE_END_MAX_MS = 3000;

// How the peer's side ended, as far as the engine can know (docs/ENGINE-CONTRACT.md).
type PeerClose = 'close_notify' | 'eof' | 'unknown';

// Bytes queued on an fd writer before the TLS side is paused.
const WRITER_HIGH_WATER_MARK = 256 * 1024;
// Packets read from the fd and waiting for the TLSSocket before the fd is no longer read.
const PACKET_QUEUE_LIMIT = 64;
// After a graceful stop, how long the peer may go on sending before we close anyway (as the
// native engine's kLingerMs).
const STOP_LINGER_MS = 2000;
// How long a failing splice keeps writing what it had already taken in to a slow target (the
// native engine's kDeliverBeforeFailingMaxMs).
const DELIVER_BEFORE_FAILING_MS = 5000;

interface Sink {
  write(chunk: Buffer, done: (err?: Error | null) => void): boolean;
  once(event: 'drain', listener: () => void): unknown;
  end(done: (err?: Error | null) => void): void;
  // Calls done once everything written so far has reached the fd (or failed).
  flushed(done: () => void): void;
  // Calls done once a socket's peer has acknowledged what reached the fd (bounded; at once for
  // anything but a socket): what a truncation reset waits for (fd-io.ts whenAcknowledged).
  acknowledged(done: () => void): void;
  destroy(): void;
  pending(): number;
}

// Writes each chunk with exactly one fs.write, in order, one at a time.
class FdWriter implements Sink {
  private readonly queue: { chunk: Buffer; done: (err?: Error | null) => void }[] = [];
  private queued = 0;
  private writing = false;
  private destroyed = false;
  private endCallback: ((err?: Error | null) => void) | null = null;
  private drainListeners: (() => void)[] = [];
  private flushWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  // Created on the first EAGAIN: the fd is non-blocking when a PolledFdReader shares it.
  private poller: FdPoller | null = null;

  constructor(private readonly fd: number, private readonly onError: (err: Error) => void,
    private readonly dropOnEio = false, private readonly onDrop: () => void = () => {}) {}

  write(chunk: Buffer, done: (err?: Error | null) => void): boolean {
    this.queue.push({ chunk, done });
    this.queued += chunk.length;
    this.next();
    return this.queued < WRITER_HIGH_WATER_MARK;
  }

  once(_event: 'drain', listener: () => void): void {
    this.drainListeners.push(listener);
  }

  end(done: (err?: Error | null) => void): void {
    this.endCallback = done;
    if (!this.writing && this.queue.length === 0) done();
  }

  flushed(done: () => void): void {
    if (!this.writing && this.queue.length === 0) {
      process.nextTick(done);
      return;
    }
    this.flushWaiters.push(done);
  }

  acknowledged(done: () => void): void {
    whenAcknowledged(() => (this.destroyed ? -1 : this.fd), done);
  }

  destroy(): void {
    this.destroyed = true;
    this.poller?.close();
    this.poller = null;
  }

  pending(): number {
    return this.queued;
  }

  // Calls done once no write is in flight: only then may the fd be closed (a write still queued
  // in the thread pool would otherwise land on whatever reuses the number).
  idle(done: () => void): void {
    if (!this.writing) {
      done();
      return;
    }
    this.idleWaiters.push(done);
  }

  // Retries the head of the queue once the fd is writable.
  private waitWritable(): void {
    try {
      this.poller ??= new binding.FdPoller(this.fd, (status) => {
        this.poller?.stop();
        if (status < 0) return this.fail(pollError(status));
        this.next();
      });
      this.poller.start(WRITABLE);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private fail(err: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.queue[0]?.done(err);
    this.onError(err);
  }

  private next(): void {
    if (this.writing || this.destroyed) return;
    const item = this.queue[0];
    if (!item) return;
    this.writing = true;
    fs.write(this.fd, item.chunk, 0, item.chunk.length, null, (err, written) => {
      this.writing = false;
      if (this.idleWaiters.length) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const waiter of waiters) waiter();
      }
      if (this.destroyed) return;
      // A TUN device that is down refuses a packet with EIO: drop it and carry on, as the native
      // engine does (only with packet framing, where one write is one whole packet).
      const dropped = err !== null && this.dropOnEio && err.code === 'EIO';
      if (err && (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK')) {
        this.waitWritable();
        return;
      }
      if (err && !dropped) {
        this.fail(err);
        return;
      }
      if (dropped) {
        this.onDrop();
        written = item.chunk.length;
      }
      if (written < item.chunk.length) {
        item.chunk = item.chunk.subarray(written);
        this.queued -= written;
        this.next();
        return;
      }
      this.queue.shift();
      this.queued -= item.chunk.length;
      if (!dropped) item.done();
      if (this.queued < WRITER_HIGH_WATER_MARK && this.drainListeners.length) {
        const listeners = this.drainListeners;
        this.drainListeners = [];
        for (const listener of listeners) listener();
      }
      if (this.queue.length === 0) {
        const waiters = this.flushWaiters;
        this.flushWaiters = [];
        for (const waiter of waiters) waiter();
        if (this.endCallback) this.endCallback();
        return;
      }
      this.next();
    });
  }
}

class SocketSink implements Sink {
  constructor(readonly socket: net.Socket) {
    // The splice decides when the socket's write side ends (when the peer ends), not Node when
    // the socket's own readable side ends.
    keepWritableAfterEnd(socket);
  }
  write(chunk: Buffer, done: (err?: Error | null) => void): boolean {
    // A write called back after destroy() may have reached the fd in part or not at all: it is
    // not reported as written (stats.bytesIn stays a lower bound).
    return this.socket.write(chunk, (err) => {
      done(writeCallbackProvesWrite(this.socket, err) ? null : err ?? writeCancelled());
    });
  }
  once(_event: 'drain', listener: () => void): void {
    this.socket.once('drain', listener);
  }
  end(done: (err?: Error | null) => void): void {
    if (this.socket.writableFinished || this.socket.destroyed) {
      process.nextTick(done);
      return;
    }
    this.socket.end(done);
  }
  flushed(done: () => void): void {
    if (this.socket.writableLength === 0 || this.socket.destroyed) {
      process.nextTick(done);
      return;
    }
    this.socket.write(Buffer.alloc(0), () => done());
  }
  acknowledged(done: () => void): void {
    whenAcknowledged(() => socketFd(this.socket), done);
  }
  destroy(): void {
    this.socket.destroy();
  }
  // Closes with a TCP reset: SO_LINGER 0 is a socket option, so the reset goes out when the last
  // descriptor of the socket closes (ours now, the user's when the splice handle closes it).
  // Not a TCP socket (a Unix socket has no reset): a plain close.
  reset(): void {
    try {
      this.socket.resetAndDestroy();
    } catch {
      this.socket.destroy();
    }
  }
  pending(): number {
    return this.socket.writableLength;
  }
}

export class JsEngine implements Engine {
  readonly name = 'js' as const;
  private readonly counters: SpliceStats = emptyStats();
  private sink: Sink | null = null;
  private source: NodeJS.ReadableStream & { destroy(): void } | null = null;
  // Our duplicates of the user's fds (one object when readFd === writeFd); every socket, stream
  // and writer below works on a further duplicate of these, or on these themselves.
  private readOwned: OwnedFd | null = null;
  private writeOwned: OwnedFd | null = null;
  // writeOwned shares its open file description (and so O_NONBLOCK) with readOwned.
  private writeSharesRead = false;
  private ownedSockets: net.Socket[] = [];
  private ownedStreams: (NodeJS.ReadableStream & { destroy(): void })[] = [];
  private inDone = false;
  private outDone = false;
  private closed = false;
  private stopping = false;
  private framingFailure: Error | null = null;
  private pendingPackets = Buffer.alloc(0);
  private packetQueue: { unit: Buffer; length: number }[] = [];
  private packetInFlight = false;
  private packetQueueDrained: (() => void) | null = null;
  private afterPackets: (() => void) | null = null;
  private endingOut = false;
  // How the peer's side ended (see classifyPeerClose()).
  private peerEnded = false;
  private closeNotifyReceived = false;
  private peerEofWithoutCloseNotify = false;
  private watchingTransport = false;
  private transportEof: 'after-tls-end' | 'before-tls-end' | null = null;
  // Bytes of an incomplete record the peer's TCP ended inside (they never reached OpenSSL).
  private partialRecordAtEof = 0;
  private unwatchTransport: (() => void) | null = null;
  private readonly onTlsData = (chunk: Buffer) => this.deliverIn(chunk);
  // Inactivity limits: bytes read from each side (the counters count what each side took).
  private readIn = 0;
  private readOut = 0;
  private sourceEnded = false;
  private idleWatch: IdleWatch | null = null;
  private idleEnding = false;
  private idleEndTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly tlsSocket: tls.TLSSocket,
    private readonly target: ResolvedTarget,
    private readonly options: JsEngineOptions,
    private readonly events: EngineEvents,
  ) {}

  start(): void {
    // Before anything is taken: a refusal leaves the TLSSocket as it was.
    const lossy = encodingHandoverRefusal(this.tlsSocket);
    if (lossy !== null) throw lossy;
    this.takeFds();
    try {
      this.startPumps();
    } catch (err) {
      // Nothing may stay behind a start that failed: our sockets, streams and duplicates go, and
      // the user's flags are put back (the TLSSocket is the handle's to report on).
      this.unwatchTransport?.();
      for (const socket of this.ownedSockets) {
        socket.on('error', noop);
        socket.destroy();
      }
      for (const stream of this.ownedStreams) stream.destroy();
      if (this.sink instanceof FdWriter) this.sink.destroy();
      for (const owned of new Set([this.readOwned, this.writeOwned])) owned?.restoreAndClose();
      throw err;
    }
  }

  private startPumps(): void {
    const { direction } = this.options;
    const tlsSocket = this.tlsSocket;
    this.watchTransport();
    // Half-close is part of the splice's contract: the peer ending must not end our side.
    keepWritableAfterEnd(tlsSocket);
    // What Node decrypted before a bad record is authentic: it reaches the target first.
    tlsSocket.on('error', (err) => this.failAfterFlush(err));
    tlsSocket.on('close', () => {
      if (!this.inDone || !this.outDone) this.fail(this.framingFailure ?? connectionClosed());
    });

    let shared: net.Socket | null = null;
    // The splice owns the socket's data from now on, as with the native engine: listeners the
    // user had would otherwise see every chunk a second time.
    tlsSocket.removeAllListeners('data');
    tlsSocket.removeAllListeners('readable');
    // After setEncoding(), 'data' would bring text: the peer's bytes are what the target gets.
    revertEncoding(tlsSocket);
    if (direction !== 'out') {
      this.sink = this.makeSink();
      if (this.options.head && this.options.head.length) {
        const head = this.options.head;
        // bytesIn counts everything written to the target, `head` included.
        this.sink.write(head, (err) => { if (!err) this.counters.bytesIn += head.length; });
      }
      tlsSocket.on('data', this.onTlsData);
    } else {
      this.inDone = true;
      // Nothing of the peer's can be delivered; its data ends the splice, as natively.
      tlsSocket.on('data', () => this.fail(unexpectedData()));
    }
    tlsSocket.on('end', () => this.onPeerEnd());
    // The peer's side ended before the splice began ('end' already emitted).
    if (tlsSocket.readableEnded) process.nextTick(() => this.onPeerEnd());
    if (direction !== 'in') {
      shared = this.ownedSockets.find((s) => s.readable) ?? null;
      this.source = shared ?? this.makeSource();
      this.source.on('data', (chunk: Buffer) => this.deliverOut(chunk));
      this.source.on('end', () => {
        this.sourceEnded = true;
        this.endOut();
      });
      this.source.on('error', (err: Error) => this.fail(err));
      this.source.resume();
    }
    tlsSocket.resume();
    this.watchIdle();
  }

  private watchIdle(): void {
    const limits: IdleLimits = {
      idleTimeout: this.options.idleTimeout ?? 0, finTimeout: this.options.finTimeout ?? 0,
    };
    if (!IdleWatch.wanted(limits)) return;
    this.idleWatch = new IdleWatch(limits, {
      progress: () => this.readIn + this.readOut + this.counters.bytesIn + this.counters.bytesOut +
        (this.peerEnded ? 1 : 0) + (this.sourceEnded ? 1 : 0),
      sideEnded: () => this.peerEnded || this.sourceEnded || this.hangupPending(),
      expired: () => this.endIdle(),
    });
    this.idleWatch.start();
  }

  // A FIN waiting unread behind bytes the other side does not take: from the peer (on the TLS
  // connection's TCP socket) or from the target (its socket or pipe).
  private hangupPending(): boolean {
    const tap = tapOf(this.tlsSocket);
    const tlsHandle = (this.tlsSocket as unknown as { _handle?: { _parent?: { fd?: unknown } } })
      ._handle;
    const tcpFd = tap ? socketFd(tap.raw) : tlsHandle?._parent?.fd;
    if (typeof tcpFd === 'number' && hangupPending(tcpFd)) return true;
    if (this.options.direction === 'in') return false;
    const t = this.target;
    const readFd = t.socket ? socketFd(t.socket) : this.readOwned?.fd ?? -1;
    return hangupPending(readFd);
  }

  // A limit was reached: as a graceful stop (nothing more is read, what was read is delivered,
  // close_notify), and the target gets its end too; bounded by IDLE_END_MAX_MS, after which what
  // did not go out is counted undelivered.
  private endIdle(): void {
    if (this.closed || this.idleEnding) return;
    this.idleEnding = true;
    debug('js engine: idle limit reached, ending the splice');
    this.idleEndTimer = setTimeout(() => this.close(this.idleEndInfo()), IDLE_END_MAX_MS);
    this.idleEndTimer.unref();
    this.stopping = true;
    this.tlsSocket.pause();
    this.tlsSocket.removeListener('data', this.onTlsData);
    if (this.source) this.source.pause();
    if (this.sink && !this.inDone) {
      this.sink.end((err) => {
        if (err || this.closed) return;
        this.inDone = true;
        this.closeSeparateWriteSide();
        this.maybeClose();
      });
    } else {
      this.inDone = true;
    }
    if (!this.outDone && !this.endingOut) {
      this.endingOut = true;
      this.whenPacketsWritten(() => this.tlsSocket.end(() => {
        this.outDone = true;
        this.maybeClose();
      }));
    }
  }

  private idleEndInfo(): EngineEndInfo {
    return endInfo('idle', this.endFlags({
      undeliveredIn: this.sink ? this.sink.pending() + this.pendingPackets.length : 0,
      undeliveredOut: this.unsentOut(),
    }));
  }

  stats(): SpliceStats {
    return { ...this.counters };
  }

  ref(): void {
    this.tlsSocket.ref();
  }

  unref(): void {
    this.tlsSocket.unref();
  }

  stop(graceful: boolean): void {
    if (this.closed) return;
    if (!graceful) {
      this.close(endInfo('aborted', this.endFlags({
        undeliveredIn: this.sink ? this.sink.pending() + this.pendingPackets.length : 0,
        undeliveredOut: this.unsentOut(),
      })));
      return;
    }
    if (this.stopping) return;
    this.stopping = true;
    // Read nothing more from either side; deliver what was read; then close_notify. The target
    // is not ended: a stop hands it back to the user as it is (autoClose closes it after).
    this.tlsSocket.pause();
    this.tlsSocket.removeListener('data', this.onTlsData);
    if (this.source) this.source.pause();
    const finishOut = () => this.whenPacketsWritten(() => {
      this.tlsSocket.end(() => {
        this.outDone = true;
        this.maybeClose();
      });
    });
    if (this.sink && !this.inDone) {
      this.sink.flushed(() => {
        this.inDone = true;
        this.maybeClose();
      });
    } else {
      this.inDone = true;
    }
    finishOut();
  }

  // Duplicates of the user's fds, all taken (and their O_NONBLOCK recorded) before any of them
  // is made non-blocking.
  private takeFds(): void {
    const t = this.target;
    if (t.socket) return;
    if (t.readFd >= 0) this.readOwned = new OwnedFd(t.readFd);
    if (t.writeFd >= 0) {
      if (t.writeFd === t.readFd) {
        this.writeOwned = this.readOwned;
      } else {
        try {
          this.writeOwned = new OwnedFd(t.writeFd);
        } catch (err) {
          this.readOwned?.restoreAndClose(false);
          throw err;
        }
      }
    }
    if (this.readOwned && this.writeOwned) {
      this.writeSharesRead = this.writeOwned.sharesFlagsWith(this.readOwned);
    }
  }

  // A tapped TLSSocket (created by connect() or createServer()) lets the engine see whether the
  // TLS layer ended before the TCP FIN reached it: see classifyPeerClose().
  private watchTransport(): void {
    const tap = tapOf(this.tlsSocket);
    if (!tap || tap.readableEnded) return;
    this.watchingTransport = true;
    this.unwatchTransport = beforeTransportEof(tap, () => {
      this.transportEof = readableEndReached(this.tlsSocket) ? 'after-tls-end' : 'before-tls-end';
      this.partialRecordAtEof = tap.inPartialLength;
    });
  }

  // Node's TLSSocket emits 'end' both for a close_notify and for a bare TCP FIN. What tells them
  // apart: OpenSSL reads a close_notify while decrypting, and the TLSSocket pushes its end right
  // there, before the transport's EOF is handed to the TLS layer. So:
  //   - the TLSSocket ended and the transport's EOF has not reached the TLS layer: close_notify;
  //   - the EOF reached it after the TLSSocket had ended: close_notify (then a FIN);
  //   - the EOF reached it while the TLSSocket was still open: a FIN without close_notify;
  //   - the socket is not tapped, or its transport ended before the splice began: unknown.
  private classifyPeerClose(): PeerClose {
    if (!this.watchingTransport) return 'unknown';
    if (this.transportEof === 'before-tls-end') return 'eof';
    return 'close_notify';
  }

  private onPeerEnd(): void {
    if (this.peerEnded || this.closed) return;
    this.peerEnded = true;
    const how = this.classifyPeerClose();
    debug('js engine: the peer ended its side (%s)', how);
    if (how === 'eof' && this.partialRecordAtEof > 0) {
      // As natively: a TCP end inside a record is an error, not a truncation at a record
      // boundary (and sets neither end flag). What was opened before it reaches the target first.
      this.failAfterFlush(Object.assign(
        new Error("the peer's TCP stream ended inside a TLS record"),
        { code: 'ERR_TLS_SPLICE_TRUNCATED_RECORD' }), { unreadCiphertext: this.partialRecordAtEof });
      return;
    }
    // A clean end is never claimed without proof: unknown counts as a TCP end without
    // close_notify (docs/ENGINE-CONTRACT.md).
    if (how === 'close_notify') this.closeNotifyReceived = true;
    else this.peerEofWithoutCloseNotify = true;
    if (this.options.direction === 'out') {
      this.inDone = true;
      this.maybeClose();
      return;
    }
    if (how !== 'close_notify' && this.options.onTruncation === 'reset') {
      this.resetTarget();
      return;
    }
    this.endIn();
  }

  private makeSink(): Sink {
    const t = this.target;
    if (t.socket) return new SocketSink(t.socket);
    const owned = this.writeOwned!;
    if (t.writeKind === 'socket' || t.writeKind === 'pipe') {
      const sameFd = owned === this.readOwned && this.options.direction === 'duplex';
      const socket = this.ownSocket(owned, sameFd, true);
      if (sameFd) socket.pause();
      return new SocketSink(socket);
    }
    return new FdWriter(owned.fd, (err) => this.fail(err), this.options.framing.framing !== 'stream',
      () => { this.counters.packetsDropped++; });
  }

  private ownSocket(owned: OwnedFd, readable: boolean, writable: boolean): net.Socket {
    const socket = new net.Socket({
      fd: binding.dupFd(owned.fd), readable, writable, allowHalfOpen: true,
    });
    socket.on('error', (err) => this.fail(err));
    this.ownedSockets.push(socket);
    return socket;
  }

  private makeSource(): NodeJS.ReadableStream & { destroy(): void } {
    const t = this.target;
    if (t.socket) return t.socket;
    const owned = this.readOwned!;
    if (t.readKind === 'socket' || t.readKind === 'pipe') {
      return this.ownSocket(owned, true, false);
    }
    const framing = this.options.framing;
    const highWaterMark = framing.framing === 'stream'
      ? 64 * 1024 : framing.maxPacketSize + PACKET_INFO_LENGTH + 1;
    if (t.readKind === 'character-device') {
      try {
        const reader = new PolledFdReader(owned.fd, highWaterMark) as unknown as
          NodeJS.ReadableStream & { destroy(): void };
        this.ownedStreams.push(reader);
        return reader;
      } catch (err) {
        // EPERM: epoll cannot watch it (/dev/null, /dev/zero): it never blocks, fs is fine.
        if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      }
    }
    // A further duplicate: destroying an fs.ReadStream closes its fd whatever autoClose says.
    const stream = fs.createReadStream('', { fd: binding.dupFd(owned.fd), autoClose: true,
      highWaterMark });
    this.ownedStreams.push(stream);
    return stream;
  }

  private deliverIn(chunk: Buffer): void {
    const sink = this.sink;
    if (!sink) return;
    this.readIn += chunk.length;
    const framing = this.options.framing;
    let ok = true;
    if (framing.framing === 'stream') {
      ok = sink.write(chunk, (err) => {
        if (!err) this.counters.bytesIn += chunk.length;
      });
    } else {
      let data = this.pendingPackets.length ? Buffer.concat([this.pendingPackets, chunk]) : chunk;
      for (;;) {
        const cut = cutPacket(framing, data);
        if (cut.status === 'need-more') break;
        if (cut.status === 'malformed') {
          this.pendingPackets = Buffer.from(data);
          this.failAfterFlush(framingError(cut.problem));
          return;
        }
        const packet = Buffer.from(data.subarray(cut.prefixLength, cut.prefixLength + cut.packetLength));
        data = data.subarray(cut.prefixLength + cut.packetLength);
        let unit = packet;
        if (framing.packetInfo !== 'none') {
          const header = packetInfoHeader(framing.packetInfo, packet);
          if (!header) {
            this.fail(framingError('packet info needs an IPv4 or IPv6 packet'));
            return;
          }
          unit = Buffer.concat([header, packet]);
        }
        ok = sink.write(unit, (err) => {
          if (err) return;
          this.counters.bytesIn += packet.length;
          this.counters.packetsIn++;
        }) && ok;
      }
      this.pendingPackets = Buffer.from(data);
    }
    if (!ok) {
      this.tlsSocket.pause();
      sink.once('drain', () => {
        if (!this.stopping) this.tlsSocket.resume();
      });
    }
  }

  private endIn(): void {
    if (this.inDone || this.stopping || this.framingFailure) return;
    if (this.pendingPackets.length) {
      this.failAfterFlush(framingError("the peer's stream ended inside a packet"));
      return;
    }
    this.sink!.end((err) => {
      if (err) return this.fail(err);
      if (this.closed) return;
      this.inDone = true;
      this.closeSeparateWriteSide();
      this.events.onEnd();
      if (this.options.direction === 'in') {
        // Nothing of ours to send: close our side as soon as the peer has closed its.
        this.endOut();
        return;
      }
      this.maybeClose();
    });
  }

  // As the native engine does when the peer's end reached the target: a separate write fd that
  // is not a socket (a pipe) is closed, so that its reader sees EOF once the user's copy is
  // closed too (autoClose does that). A socket got shutdown(SHUT_WR) from the sink's end().
  private closeSeparateWriteSide(): void {
    const owned = this.writeOwned;
    if (!owned || owned === this.readOwned || this.target.writeKind === 'socket') return;
    // On one open file description with the read side, O_NONBLOCK stays until the read side is
    // done; the read side's restore puts it back for both.
    const restore = !this.writeSharesRead;
    const sink = this.sink;
    if (sink instanceof SocketSink) {
      sink.socket.once('close', () => owned.restoreAndClose(restore));
      sink.destroy();
    } else if (sink instanceof FdWriter) {
      sink.destroy();
      sink.idle(() => owned.restoreAndClose(restore));
    }
  }

  // onTruncation 'reset': the peer's TCP ended without close_notify. What it sent before is
  // authentic and goes to the target first; then the target is not ended but reset, and the
  // splice ends without our close_notify (our direction did not end: nothing claims it did).
  private resetTarget(): void {
    if (this.inDone || this.stopping || this.framingFailure) return;
    if (this.pendingPackets.length) {
      this.failAfterFlush(framingError("the peer's stream ended inside a packet"));
      return;
    }
    this.tlsSocket.removeListener('data', this.onTlsData);
    debug('js engine: truncation, resetting the target');
    const sink = this.sink!;
    sink.flushed(() => sink.acknowledged(() => {
      if (this.closed) return;
      this.close(endInfo('end', this.endFlags({ undeliveredOut: this.unsentOut() })), true);
    }));
  }

  private deliverOut(chunk: Buffer): void {
    this.readOut += chunk.length;
    const framing = this.options.framing;
    let ok: boolean;
    if (framing.framing === 'stream') {
      ok = this.tlsSocket.write(chunk, (err) => {
        if (writeCallbackProvesWrite(this.tlsSocket, err)) this.counters.bytesOut += chunk.length;
      });
    } else {
      const infoLength = framing.packetInfo === 'none' ? 0 : PACKET_INFO_LENGTH;
      if (chunk.length < infoLength) {
        this.fail(framingError('packet read from the fd is shorter than its packet-info header'));
        return;
      }
      const packet = chunk.subarray(infoLength);
      const problem = checkOutgoingPacket(framing, packet);
      if (problem) {
        this.fail(framingError(problem));
        return;
      }
      let unit: Buffer = Buffer.from(packet);
      if (framing.framing === 'u16be') {
        unit = Buffer.allocUnsafe(packet.length + 2);
        unit.writeUInt16BE(packet.length, 0);
        packet.copy(unit, 2);
      }
      this.packetQueue.push({ unit, length: packet.length });
      this.writeNextPacket();
      ok = this.packetQueue.length < PACKET_QUEUE_LIMIT;
    }
    if (!ok && this.source) {
      this.source.pause();
      const resume = () => {
        if (!this.stopping) this.source?.resume();
      };
      if (framing.framing === 'stream') this.tlsSocket.once('drain', resume);
      else this.packetQueueDrained = resume;
    }
  }

  // One packet at a time to the TLSSocket: writes made while another is in flight are handed to
  // TLS together (writev) and sealed into one record, and each packet must be a record of its own.
  private writeNextPacket(): void {
    if (this.packetInFlight || this.closed) return;
    const next = this.packetQueue.shift();
    if (!next) {
      const then = this.afterPackets;
      this.afterPackets = null;
      then?.();
      return;
    }
    this.packetInFlight = true;
    this.tlsSocket.write(next.unit, (err) => {
      this.packetInFlight = false;
      if (!writeCallbackProvesWrite(this.tlsSocket, err)) return;
      this.counters.bytesOut += next.length;
      this.counters.packetsOut++;
      if (this.packetQueue.length < PACKET_QUEUE_LIMIT / 2 && this.packetQueueDrained) {
        const resume = this.packetQueueDrained;
        this.packetQueueDrained = null;
        resume();
      }
      this.writeNextPacket();
    });
  }

  private endOut(): void {
    if (this.outDone || this.stopping || this.endingOut) return;
    this.endingOut = true;
    // Packets read before the fd's EOF go first; then close_notify and a FIN, once everything
    // written before has gone out.
    this.whenPacketsWritten(() => this.tlsSocket.end(() => {
      this.outDone = true;
      this.maybeClose();
    }));
  }

  private whenPacketsWritten(then: () => void): void {
    if (!this.packetInFlight && this.packetQueue.length === 0) then();
    else this.afterPackets = then;
  }

  // Cleartext read from the fd that the TLSSocket has not sent yet.
  private unsentOut(): number {
    return this.tlsSocket.writableLength + this.packetQueue.reduce((n, p) => n + p.length, 0);
  }

  // The end flags as they stand: outDone is set only once our close_notify was written.
  private endFlags(extra: Partial<EngineEndInfo> = {}): Partial<EngineEndInfo> {
    return {
      closeNotifyReceived: this.closeNotifyReceived,
      closeNotifySent: this.outDone,
      peerEofWithoutCloseNotify: this.peerEofWithoutCloseNotify,
      ...extra,
    };
  }

  private maybeClose(): void {
    if (this.inDone && this.outDone) {
      this.close(endInfo(this.idleEnding ? 'idle' : this.stopping ? 'stopped' : 'end',
        this.endFlags()));
    }
  }

  // As in the native engine, the whole packets cut before bad bytes still reach the fd; then the
  // splice fails. Nothing more is read from the peer meanwhile.
  // A target that never reads gets DELIVER_BEFORE_FAILING_MS, as natively; what it did not take
  // is reported as undeliveredIn.
  private failAfterFlush(err: Error, extra: Partial<EngineEndInfo> = {}): void {
    if (this.closed || this.framingFailure) return;
    this.framingFailure = err;
    this.tlsSocket.pause();
    this.tlsSocket.removeListener('data', this.onTlsData);
    if (!this.sink) {
      this.fail(err, extra);
      return;
    }
    const timer = setTimeout(() => this.fail(err, extra), DELIVER_BEFORE_FAILING_MS);
    timer.unref();
    this.sink.flushed(() => {
      clearTimeout(timer);
      this.fail(err, extra);
    });
  }

  private fail(err: Error, extra: Partial<EngineEndInfo> = {}): void {
    if (this.closed) return;
    // Ending idle, a side that is gone (EPIPE, ECONNRESET, a closed TLS connection) only means
    // what it did not take stays undelivered.
    if (this.idleEnding) {
      debug('js engine: idle end: %s', (err as NodeJS.ErrnoException).code ?? err.message);
      this.close(this.idleEndInfo());
      return;
    }
    const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_INTERNAL';
    // A TCP end inside a record is a truncation: under 'reset' the target is reset, not closed
    // with a FIN (as natively, and as for a truncation at a record boundary).
    const reset = code === 'ERR_TLS_SPLICE_TRUNCATED_RECORD' &&
      this.options.onTruncation === 'reset' && this.options.direction !== 'out';
    const info = endInfo('error', this.endFlags({
      code, detail: err.message, cause: err,
      undeliveredIn: this.sink ? this.sink.pending() + this.pendingPackets.length : 0,
      undeliveredOut: this.unsentOut(),
      ...extra,
    }));
    if (reset && this.sink) this.sink.acknowledged(() => this.close(info, true));
    else this.close(info, reset);
  }

  // Closes everything the engine owns, then restores the user's fd flags, then reports: onClose
  // comes only once no socket, stream or write of ours can touch the user's open file
  // descriptions any more (engine.ts).
  private close(info: EngineEndInfo, resetTarget = false): void {
    if (this.closed) return;
    this.closed = true;
    this.idleWatch?.stop();
    if (this.idleEndTimer !== null) clearTimeout(this.idleEndTimer);
    this.unwatchTransport?.();
    this.tlsSocket.removeListener('data', this.onTlsData);
    this.tlsSocket.on('error', noop);
    // A graceful stop and an idle end sent close_notify: read and drop the peer's bytes until its
    // end (bounded), so that closing with them unread does not reset the close_notify away.
    if (!resetTarget && (info.reason === 'stopped' || (info.reason === 'idle' && this.outDone))) {
      discardUntilPeerEnd(this.tlsSocket);
    } else if (!resetTarget && info.reason === 'end') {
      this.tlsSocket.destroySoon();
    } else {
      this.tlsSocket.destroy();
    }
    const closing: Promise<unknown>[] = [];
    const sink = this.sink;
    if (sink instanceof FdWriter) {
      sink.destroy();
      closing.push(new Promise<void>((resolve) => sink.idle(resolve)));
    }
    const resetSocket = resetTarget && sink instanceof SocketSink ? sink.socket : null;
    // The user's own net.Socket target is the user's, except for the reset that truncation asks for.
    if (resetSocket && resetSocket === this.target.socket) (sink as SocketSink).reset();
    for (const socket of this.ownedSockets) {
      socket.on('error', noop);
      if (!socket.closed) {
        closing.push(new Promise((resolve) => socket.once('close', () => resolve(undefined))));
      }
      if (socket === resetSocket) (sink as SocketSink).reset(); else socket.destroy();
    }
    for (const stream of this.ownedStreams) {
      if (stream instanceof fs.ReadStream && !stream.closed) {
        closing.push(new Promise((resolve) => stream.once('close', () => resolve(undefined))));
      }
      stream.destroy();
    }
    void Promise.all(closing).then(() => process.nextTick(() => {
      for (const owned of new Set([this.readOwned, this.writeOwned])) owned?.restoreAndClose();
      this.events.onClose(info, this.stats());
    }));
  }
}

// After our close_notify on a graceful stop, the peer may still be sending (it has not read our
// close_notify yet). Closing a TCP socket with unread bytes in its receive queue makes the kernel
// send a reset, which can reach the peer before it reads our close_notify and discard it there
// (the peer sees ECONNRESET). So read and drop until the peer's end (its close_notify or FIN),
// for at most STOP_LINGER_MS, then close, as the native engine does (docs/ENGINE-CONTRACT.md 8).
function discardUntilPeerEnd(socket: tls.TLSSocket): void {
  const timer = setTimeout(() => socket.destroy(), STOP_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroySoon());
  socket.on('data', noop);
  socket.resume();
}

function framingError(problem: string): Error {
  return Object.assign(new Error(problem), { code: 'ERR_TLS_SPLICE_FRAMING' });
}

function unexpectedData(): Error {
  return Object.assign(new Error("the peer sent application data, but direction is 'out'"),
    { code: 'ERR_TLS_SPLICE_UNEXPECTED_DATA' });
}

function connectionClosed(): Error {
  return Object.assign(new Error('the TLS connection closed before both directions ended'),
    { code: 'ECONNRESET' });
}

function writeCancelled(): Error {
  return Object.assign(new Error('the write was cancelled when the splice closed'),
    { code: 'ECANCELED' });
}

function noop(): void {}
