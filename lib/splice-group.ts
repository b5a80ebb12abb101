// SpliceGroup: a server-level view of live splices, with one graceful close-all for shutdown.
//
// A handle joins with add() and leaves by itself when its `closed` settles. closeAll() stops
// every member gracefully (deliver what was read, close_notify, wait for the peer's FIN), aborts
// those still running when its timeout expires, and resolves once every member has closed. A
// handle added while the group is closing is stopped at once under the same deadline, so a
// connection that was mid-handshake when shutdown began cannot outlive it.
import { EventEmitter } from 'node:events';

import { invalidArg } from './errors';
import type { SpliceEnd, SpliceHandle } from './splice';

export interface CloseAllOptions {
  /** true (default): graceful stops; false: abort every splice now. */
  graceful?: boolean;
  /** Milliseconds after which splices still stopping gracefully are aborted. Default: none. */
  timeout?: number;
}

export class SpliceGroup extends EventEmitter {
  #live = new Set<SpliceHandle>();
  #closing: Promise<SpliceEnd[]> | null = null;
  #graceful = true;
  #abortAll = false;

  /** The number of live splices. */
  get size(): number {
    return this.#live.size;
  }

  /** True once closeAll() was called. */
  get closing(): boolean {
    return this.#closing !== null;
  }

  /** Adds a handle (started or not); it leaves the group when its `closed` settles. */
  add(handle: SpliceHandle): SpliceHandle {
    if (handle === null || typeof handle !== 'object' || !(handle.closed instanceof Promise)) {
      throw invalidArg('handle', 'a SpliceHandle', handle);
    }
    if (this.#live.has(handle)) return handle;
    this.#live.add(handle);
    void handle.closed.then((end) => {
      this.#live.delete(handle);
      this.emit('close', handle, end);
      if (this.#live.size === 0) this.emit('empty');
    });
    if (this.#closing !== null) void handle.stop({ graceful: this.#graceful && !this.#abortAll });
    return handle;
  }

  has(handle: SpliceHandle): boolean {
    return this.#live.has(handle);
  }

  [Symbol.iterator](): IterableIterator<SpliceHandle> {
    return this.#live.values();
  }

  /**
   * Stops every live splice (and any added later); resolves with their ends once all closed.
   * Idempotent: a second call returns the first call's promise, except that `graceful: false`
   * aborts what is still stopping.
   */
  closeAll(options: CloseAllOptions = {}): Promise<SpliceEnd[]> {
    if (options === null || typeof options !== 'object') {
      throw invalidArg('options', 'an object', options);
    }
    const { timeout } = options;
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw invalidArg('options.timeout', 'a non-negative number of milliseconds', timeout);
    }
    const graceful = options.graceful !== false;
    if (this.#closing !== null) {
      if (!graceful) this.#abort();
      return this.#closing;
    }
    this.#graceful = graceful;
    const ends: SpliceEnd[] = [];
    const onClose = (_handle: SpliceHandle, end: SpliceEnd) => ends.push(end);
    this.on('close', onClose);
    let timer: NodeJS.Timeout | null = null;
    if (graceful && timeout !== undefined) {
      timer = setTimeout(() => this.#abort(), timeout);
      timer.unref();
    }
    this.#closing = new Promise((resolve) => {
      const done = () => {
        if (timer !== null) clearTimeout(timer);
        this.off('close', onClose);
        resolve(ends);
      };
      if (this.#live.size === 0) {
        done();
        return;
      }
      this.once('empty', done);
      for (const handle of [...this.#live]) void handle.stop({ graceful });
    });
    return this.#closing;
  }

  #abort(): void {
    this.#abortAll = true;
    for (const handle of [...this.#live]) void handle.stop({ graceful: false });
  }
}
