// The reversible first phase of a splice's start, for a socket target: dial a { host, port } or
// { path } target, and wait until a target socket is connected and has written what was queued on
// it. Nothing here touches the TLSSocket; every wait can be cancelled (stop(), the abort signal)
// and ends when the target closes or fails, with the target's own error code (ECONNREFUSED, ...).
import * as net from 'node:net';
import * as util from 'node:util';
import { SpliceError } from './errors';

const debug = util.debuglog('tls-splice');

export type DialSpec = { host: string; port: number } | { path: string };

// Opens the connection a { host, port } / { path } target names. The socket is the splice's: half
// open (the splice decides when its write side ends) and, for TCP, without Nagle when noDelay.
export function dial(spec: DialSpec, noDelay: boolean): net.Socket {
  if ('path' in spec) {
    debug('target: dialling %s', spec.path);
    return net.connect({ path: spec.path, allowHalfOpen: true });
  }
  debug('target: dialling %s:%d', spec.host, spec.port);
  return net.connect({ host: spec.host, port: spec.port, allowHalfOpen: true, noDelay });
}

// A target's failure before the splice took anything over, as a coded error that says the
// TLSSocket is still the caller's.
export function targetError(err: unknown): SpliceError {
  if (err instanceof SpliceError) return err;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_TLS_SPLICE_TARGET_CLOSED';
  const error = new SpliceError(code, `The target failed before the splice started ` +
    `(${e?.message ?? String(err)}). Nothing was taken over: the TLSSocket is untouched, so ` +
    'answer the peer over it (e.g. an HTTP 502) or close it.', { cause: err });
  const extra = error as SpliceError & Record<string, unknown>;
  for (const key of ['errno', 'syscall', 'address', 'port'] as const) {
    if (e?.[key] !== undefined) extra[key] = e[key];
  }
  return error;
}

export function targetClosedError(): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_TARGET_CLOSED',
    'The target socket closed before the splice started. Nothing was taken over: the TLSSocket ' +
    'is untouched, so answer the peer over it or close it.');
}

export interface PendingTarget {
  // Resolves once the socket is connected and its queued writes have left; rejects with a coded
  // error when it fails or closes first, or with the error given to cancel().
  readonly ready: Promise<void>;
  // Rejects `ready` with reason; false when it had already settled (the target was ready).
  cancel(reason: SpliceError): boolean;
}

// earlyError: what the socket emitted before the wait began (spliceTo() listens from the call).
export function waitForTarget(socket: net.Socket, earlyError: () => Error | null): PendingTarget {
  let cancel: (reason: SpliceError) => boolean = () => false;
  const ready = new Promise<void>((resolve, reject) => {
    let flushing = false;
    let settled = false;
    const cleanup = () => {
      settled = true;
      socket.removeListener('connect', onConnect);
      socket.removeListener('finish', onFinish);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    };
    const fail = (err: SpliceError) => {
      if (settled) return;
      cleanup();
      reject(err);
    };
    const onError = (err: Error) => fail(targetError(err));
    const onClose = () => fail(targetError(earlyError() ?? targetClosedError()));
    const onFinish = () => check();
    const onConnect = () => check();
    const check = () => {
      if (settled) return;
      const early = earlyError();
      if (early !== null) return fail(targetError(early));
      if (socket.destroyed) return fail(targetClosedError());
      if (socket.connecting) return;
      if (socket.pending) {
        return fail(new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
          'The target net.Socket is not connected and not connecting. Pass a connected or ' +
          'connecting socket, or { host, port } / { path } for the splice to dial.'));
      }
      // What the user wrote to the socket goes before anything spliced. 'drain' fires only after
      // a write that filled the buffer, so an empty write (called back after the ones before it)
      // tells when the queue is empty; an ended socket says so with 'finish'.
      if (socket.writableLength > 0) {
        if (!socket.writableEnded && !flushing) {
          flushing = true;
          socket.write(Buffer.alloc(0), () => {
            flushing = false;
            check();
          });
        }
        return;
      }
      cleanup();
      debug('target: connected (%s)', socket.remoteAddress ?? 'local');
      resolve();
    };
    cancel = (reason) => {
      if (settled) return false;
      fail(reason);
      return true;
    };
    socket.on('connect', onConnect);
    socket.on('finish', onFinish);
    socket.on('error', onError);
    socket.on('close', onClose);
    check();
  });
  return { ready, cancel: (reason) => cancel(reason) };
}
