// The JS engine's inactivity limits (SpliceOptions idleTimeout / finTimeout): one coarse timer
// per splice that samples a progress mark, instead of a timer reset per chunk. The native engine
// keeps the same limits on its I/O thread (src-native/splice_idle.cc); docs/ENGINE-CONTRACT.md
// says what counts as progress.
import { binding } from './binding';

export interface IdleLimits {
  idleTimeout: number;  // milliseconds, 0 for none
  finTimeout: number;   // milliseconds, 0 for none
}

export interface IdleProbe {
  // Grows whenever a byte was read from or taken by either side, or a side's end was read.
  progress(): number;
  // One side has ended: its end was read, or its FIN waits unread behind bytes not taken.
  sideEnded(): boolean;
  // A limit was reached.
  expired(): void;
}

// Samples per limit period: the splice ends between the limit and a quarter of it later.
const SAMPLES_PER_LIMIT = 4;
// No faster than this, whatever the limit: a sample is cheap, but a timer per splice is not free.
const MIN_SAMPLE_MS = 20;

export class IdleWatch {
  private timer: NodeJS.Timeout | null = null;
  private lastMark = 0;
  private lastProgress = 0;
  private readonly sampleMs: number;

  constructor(private readonly limits: IdleLimits, private readonly probe: IdleProbe) {
    const shortest = Math.min(...[limits.idleTimeout, limits.finTimeout].filter((ms) => ms > 0));
    this.sampleMs = Math.max(MIN_SAMPLE_MS, Math.ceil(shortest / SAMPLES_PER_LIMIT));
  }

  static wanted(limits: IdleLimits): boolean {
    return limits.idleTimeout > 0 || limits.finTimeout > 0;
  }

  start(): void {
    this.lastMark = this.probe.progress();
    this.lastProgress = performance.now();
    this.arm();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    // A splice keeps the process alive through its sockets, never through this timer.
    this.timer = setTimeout(() => this.sample(), this.sampleMs).unref();
  }

  private sample(): void {
    this.timer = null;
    const now = performance.now();
    const mark = this.probe.progress();
    if (mark !== this.lastMark) {
      this.lastMark = mark;
      this.lastProgress = now;
    }
    const quiet = now - this.lastProgress;
    const { idleTimeout, finTimeout } = this.limits;
    if ((idleTimeout > 0 && quiet >= idleTimeout) ||
      (finTimeout > 0 && quiet >= finTimeout && this.probe.sideEnded())) {
      this.probe.expired();
      return;
    }
    this.arm();
  }
}

// Whether the other end of `fd` shut its write side (a FIN, or a pipe's last writer gone) while
// bytes before it may still wait unread; false for -1 or an fd poll(2) says nothing about.
export function hangupPending(fd: number): boolean {
  return fd >= 0 && binding.hangupPending(fd);
}
