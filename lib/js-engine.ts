// The JS engine: the same splice semantics as the native engine, implemented as a stream pump
// over the TLSSocket. Used when the native engine cannot take the session (a socket not created
// through the tap, a CBC suite, a KeyUpdate already seen, ...) or when asked for.
//
// Sockets and pipes are driven through net.Socket on a dup() of the fd. Character devices are
// read through PolledFdReader (non-blocking, when epoll says readable; fd-io.ts) and written with
// fs, one write() per chunk or packet (a TUN takes each write as a packet, so packets are never
// coalesced into one writev). Regular files and /dev/null, which epoll refuses, use fs streams.
import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { binding, FdPoller } from './binding';
import { PolledFdReader, WRITABLE, pollError } from './fd-io';
import { Engine, EngineEndInfo, EngineEvents, SpliceStats, emptyStats, endInfo } from './engine';
import {
  FramingOptions, PACKET_INFO_LENGTH, checkOutgoingPacket, cutPacket, packetInfoHeader,
} from './framing';
import type { ResolvedTarget, SpliceDirection } from './target';

export interface JsEngineOptions {
  direction: SpliceDirection;
  head: Buffer | null;
  framing: FramingOptions;
}

// Bytes queued on an fd writer before the TLS side is paused.
const WRITER_HIGH_WATER_MARK = 256 * 1024;
// Packets read from the fd and waiting for the TLSSocket before the fd is no longer read.
const PACKET_QUEUE_LIMIT = 64;

interface Sink {
  write(chunk: Buffer, done: (err?: Error | null) => void): boolean;
  once(event: 'drain', listener: () => void): unknown;
  end(done: (err?: Error | null) => void): void;
  // Calls done once everything written so far has reached the fd (or failed).
  flushed(done: () => void): void;
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

  destroy(): void {
    this.destroyed = true;
    this.poller?.close();
    this.poller = null;
  }

  pending(): number {
    return this.queued;
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
  constructor(private readonly socket: net.Socket) {
    // The splice decides when the socket's write side ends (when the peer ends), not Node when
    // the socket's own readable side ends.
    socket.allowHalfOpen = true;
  }
  write(chunk: Buffer, done: (err?: Error | null) => void): boolean {
    return this.socket.write(chunk, done);
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
  destroy(): void {
    this.socket.destroy();
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
  private ownedSockets: net.Socket[] = [];
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
  private readonly onTlsData = (chunk: Buffer) => this.deliverIn(chunk);

  constructor(
    private readonly tlsSocket: tls.TLSSocket,
    private readonly target: ResolvedTarget,
    private readonly options: JsEngineOptions,
    private readonly events: EngineEvents,
  ) {}

  start(): void {
    const { direction } = this.options;
    const tlsSocket = this.tlsSocket;
    // Half-close is part of the splice's contract: the peer ending must not end our side.
    tlsSocket.allowHalfOpen = true;
    tlsSocket.on('error', (err) => this.fail(err));
    tlsSocket.on('close', () => {
      if (!this.inDone || !this.outDone) this.fail(this.framingFailure ?? connectionClosed());
    });

    let shared: net.Socket | null = null;
    // The splice owns the socket's data from now on, as with the native engine: listeners the
    // user had would otherwise see every chunk a second time.
    tlsSocket.removeAllListeners('data');
    tlsSocket.removeAllListeners('readable');
    if (direction !== 'out') {
      this.sink = this.makeSink();
      if (this.options.head && this.options.head.length) {
        const head = this.options.head;
        // bytesIn counts everything written to the target, `head` included.
        this.sink.write(head, (err) => { if (!err) this.counters.bytesIn += head.length; });
      }
      tlsSocket.on('data', this.onTlsData);
      tlsSocket.on('end', () => this.endIn());
    } else {
      this.inDone = true;
      // Nothing of the peer's can be delivered; its data ends the splice, as natively.
      tlsSocket.on('data', () => this.fail(unexpectedData()));
      tlsSocket.on('end', () => {
        this.inDone = true;
        this.maybeClose();
      });
    }
    if (direction !== 'in') {
      shared = this.ownedSockets.find((s) => s.readable) ?? null;
      this.source = shared ?? this.makeSource();
      this.source.on('data', (chunk: Buffer) => this.deliverOut(chunk));
      this.source.on('end', () => this.endOut());
      this.source.on('error', (err: Error) => this.fail(err));
      this.source.resume();
    }
    tlsSocket.resume();
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
      this.close(endInfo('aborted', {
        undeliveredIn: this.sink ? this.sink.pending() + this.pendingPackets.length : 0,
        undeliveredOut: this.unsentOut(),
      }));
      return;
    }
    if (this.stopping) return;
    this.stopping = true;
    // Read nothing more from either side; deliver what was read; then close_notify.
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
      this.sink.end(() => {
        this.inDone = true;
        this.maybeClose();
      });
    } else {
      this.inDone = true;
    }
    finishOut();
  }

  private makeSink(): Sink {
    const t = this.target;
    if (t.socket) return new SocketSink(t.socket);
    if (t.writeKind === 'socket' || t.writeKind === 'pipe') {
      const sameFd = t.writeFd === t.readFd && this.options.direction === 'duplex';
      const socket = new net.Socket({
        fd: binding.dupFd(t.writeFd), readable: sameFd, writable: true, allowHalfOpen: true,
      });
      socket.on('error', (err) => this.fail(err));
      if (sameFd) socket.pause();
      this.ownedSockets.push(socket);
      return new SocketSink(socket);
    }
    return new FdWriter(t.writeFd, (err) => this.fail(err), this.options.framing.framing !== 'stream',
      () => { this.counters.packetsDropped++; });
  }

  private makeSource(): NodeJS.ReadableStream & { destroy(): void } {
    const t = this.target;
    if (t.socket) return t.socket;
    if (t.readKind === 'socket' || t.readKind === 'pipe') {
      const socket = new net.Socket({
        fd: binding.dupFd(t.readFd), readable: true, writable: false, allowHalfOpen: true,
      });
      this.ownedSockets.push(socket);
      return socket;
    }
    const framing = this.options.framing;
    const highWaterMark = framing.framing === 'stream'
      ? 64 * 1024 : framing.maxPacketSize + PACKET_INFO_LENGTH + 1;
    if (t.readKind === 'character-device') {
      try {
        return new PolledFdReader(t.readFd, highWaterMark) as unknown as
          NodeJS.ReadableStream & { destroy(): void };
      } catch (err) {
        // EPERM: epoll cannot watch it (/dev/null, /dev/zero): it never blocks, fs is fine.
        if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      }
    }
    // A duplicate, like the sockets above: destroying an fs.ReadStream closes its fd whatever
    // autoClose says, and the user's fd must outlive the splice unless they asked otherwise.
    return fs.createReadStream('', { fd: binding.dupFd(t.readFd), autoClose: true, highWaterMark });
  }

  private deliverIn(chunk: Buffer): void {
    const sink = this.sink;
    if (!sink) return;
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
      this.inDone = true;
      this.events.onEnd();
      if (this.options.direction === 'in') {
        // Nothing of ours to send: close our side as soon as the peer has closed its.
        this.endOut();
        return;
      }
      this.maybeClose();
    });
  }

  private deliverOut(chunk: Buffer): void {
    const framing = this.options.framing;
    let ok: boolean;
    if (framing.framing === 'stream') {
      ok = this.tlsSocket.write(chunk, (err) => {
        if (!err) this.counters.bytesOut += chunk.length;
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
      if (err) return;
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

  private maybeClose(): void {
    if (this.inDone && this.outDone) {
      this.close(endInfo(this.stopping ? 'stopped' : 'end', {
        closeNotifySent: true, closeNotifyReceived: this.options.direction !== 'out',
      }));
    }
  }

  // As in the native engine, the whole packets cut before bad bytes still reach the fd; then the
  // splice fails. Nothing more is read from the peer meanwhile.
  private failAfterFlush(err: Error): void {
    if (this.closed || this.framingFailure) return;
    this.framingFailure = err;
    this.tlsSocket.pause();
    this.tlsSocket.removeListener('data', this.onTlsData);
    if (this.sink) this.sink.flushed(() => this.fail(err)); else this.fail(err);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_INTERNAL';
    this.close(endInfo('error', {
      code, detail: err.message, cause: err,
      undeliveredIn: this.sink ? this.sink.pending() + this.pendingPackets.length : 0,
      undeliveredOut: this.unsentOut(),
    }));
  }

  private close(info: EngineEndInfo): void {
    if (this.closed) return;
    this.closed = true;
    this.tlsSocket.removeListener('data', this.onTlsData);
    this.tlsSocket.on('error', noop);
    if (info.reason === 'end' || info.reason === 'stopped') {
      this.tlsSocket.destroySoon();
    } else {
      this.tlsSocket.destroy();
    }
    if (this.sink instanceof FdWriter) this.sink.destroy();
    for (const socket of this.ownedSockets) {
      socket.on('error', noop);
      if (info.reason === 'end' || info.reason === 'stopped') socket.end(); else socket.destroy();
    }
    if (this.source && !(this.source instanceof net.Socket)) this.source.destroy();
    this.events.onClose(info, this.stats());
  }
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

function noop(): void {}
