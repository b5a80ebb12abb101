// Reading a character device (a TUN) in the JS engine without blocking a libuv pool thread:
// fs.read on such an fd waits in a pool thread until data comes, so a few spliced TUNs would
// starve every fs call of the process, and a stopped splice would keep the process alive until
// the next packet. PolledFdReader reads a non-blocking duplicate only when epoll says it is
// readable, on the main thread.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as util from 'node:util';
import { binding, FdPoller } from './binding';

const READABLE = 1;
export const WRITABLE = 2;
// Reads per readiness event before yielding to the rest of the loop.
const MAX_READS_PER_EVENT = 64;

export function pollError(status: number): NodeJS.ErrnoException {
  const code = util.getSystemErrorName(status);
  return Object.assign(new Error(`poll failed: ${code}`), { code, errno: status });
}

// How long a truncation reset waits for the target to acknowledge what it was sent, at most: the
// native engine's bound (kResetDrainMaxMs in splice_internal.h).
export const kResetDrainMaxMs = 2000;
const kResetDrainPollMs = 5;

// Calls done once the socket behind fd() has had everything it sent acknowledged by its peer
// (its send queue, SIOCOUTQ, is empty), after kResetDrainMaxMs at most, or at once when fd() is
// -1 or not a socket. An RST discards what is still queued: a reset sent before this would cut
// the tail of what a busy target was sent.
export function whenAcknowledged(fd: () => number, done: () => void): void {
  const deadline = Date.now() + kResetDrainMaxMs;
  const check = () => {
    const n = fd();
    if (n < 0 || binding.socketSendQueue(n) <= 0 || Date.now() >= deadline) {
      done();
      return;
    }
    setTimeout(check, kResetDrainPollMs);
  };
  check();
}

// The JS engine's own duplicate of one of the user's fds. The engine reads and writes only through
// duplicates (a number the user closes and the kernel hands out again is never written), and puts
// the O_NONBLOCK flag of the open file description back as it found it: Node's net.Socket and
// PolledFdReader set it on their duplicates, and a duplicate shares it with the user's fd.
//
// Save before modify: every OwnedFd of a splice is taken before anything is made non-blocking, so
// readFd and writeFd on one open file description (fds 0 and 1 of a terminal) both record the
// original flag, and restoring twice restores the same value.
export class OwnedFd {
  readonly fd: number;
  readonly wasNonBlocking: boolean;
  #closed = false;

  constructor(userFd: number) {
    this.fd = binding.dupFd(userFd);
    try {
      // setNonBlocking() answers with the flag as it was; put it straight back.
      this.wasNonBlocking = binding.setNonBlocking(this.fd, true);
      if (!this.wasNonBlocking) binding.setNonBlocking(this.fd, false);
    } catch (err) {
      binding.closeFd(this.fd);
      throw err;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  // Whether this fd and `other` share one open file description, as far as O_NONBLOCK goes (the
  // only flag the engine changes). Only meaningful before either was modified.
  sharesFlagsWith(other: OwnedFd): boolean {
    if (other === this) return true;
    if (this.wasNonBlocking || other.wasNonBlocking) return this.wasNonBlocking === other.wasNonBlocking;
    binding.setNonBlocking(this.fd, true);
    const seen = binding.setNonBlocking(other.fd, false);
    binding.setNonBlocking(this.fd, false);
    return seen;
  }

  // Puts O_NONBLOCK back as it was when the duplicate was taken, then closes the duplicate.
  // Call it only once nothing (a net.Socket, a poller) uses the open file description any more.
  restoreAndClose(restore = true): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (restore) binding.setNonBlocking(this.fd, this.wasNonBlocking);
    } catch {
      // The description is gone with an error of its own (EBADF cannot happen: the fd is ours).
    }
    binding.closeFd(this.fd);
  }
}

// Emits 'data' (one Buffer per read(): one packet on a TUN), 'end' and 'error', like a Readable
// in flowing mode; starts paused. Throws EPERM when epoll cannot watch the fd (a regular file,
// /dev/null): read those with fs streams, they never block for long.
export class PolledFdReader extends EventEmitter {
  readonly #fd: number;
  readonly #poller: FdPoller;
  readonly #scratch: Buffer;
  readonly #restoreBlocking: boolean;
  #paused = true;
  #closed = false;

  constructor(fd: number, chunkSize: number) {
    super();
    // A duplicate: the user's fd must outlive the splice. O_NONBLOCK is shared with the user's fd
    // (one open file description), so it is put back as it was when the reader is destroyed.
    const dup = binding.dupFd(fd);
    let wasNonBlocking = true;
    try {
      wasNonBlocking = binding.setNonBlocking(dup, true);
      this.#poller = new binding.FdPoller(dup, (status) => this.#onReady(status));
    } catch (err) {
      if (!wasNonBlocking) binding.setNonBlocking(dup, false);
      fs.closeSync(dup);
      throw err;
    }
    this.#fd = dup;
    this.#restoreBlocking = !wasNonBlocking;
    this.#scratch = Buffer.allocUnsafe(chunkSize);
  }

  resume(): this {
    if (!this.#closed && this.#paused) {
      this.#paused = false;
      this.#poller.start(READABLE);
    }
    return this;
  }

  pause(): this {
    if (!this.#closed && !this.#paused) {
      this.#paused = true;
      this.#poller.stop();
    }
    return this;
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poller.close();
    if (this.#restoreBlocking) binding.setNonBlocking(this.#fd, false);
    fs.closeSync(this.#fd);
  }

  #onReady(status: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.emit('error', pollError(status));
      return;
    }
    for (let i = 0; i < MAX_READS_PER_EVENT && !this.#paused && !this.#closed; i++) {
      let n: number;
      try {
        n = fs.readSync(this.#fd, this.#scratch, 0, this.#scratch.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') this.emit('error', err);
        return;
      }
      if (n === 0) {
        this.pause();
        this.emit('end');
        return;
      }
      this.emit('data', Buffer.from(this.#scratch.subarray(0, n)));
    }
  }
}
