// What a splice moves cleartext to and from: an fd, a pair of fds, or a connected net.Socket.
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { SpliceError, invalidArg } from './errors';

export type SpliceDirection = 'duplex' | 'in' | 'out';

export type SpliceTarget =
  | number
  | { fd: number }
  | { readFd?: number; writeFd?: number }
  | net.Socket;

export type FdKind = 'socket' | 'pipe' | 'character-device' | 'file' | 'other';

export interface ResolvedTarget {
  readFd: number;           // -1 when the direction does not read the target
  writeFd: number;          // -1 when the direction does not write the target
  readKind: FdKind | null;
  writeKind: FdKind | null;
  socket: net.Socket | null;  // the user's socket, when the target was one
}

interface SocketHandle {
  fd?: number;
  reading?: boolean;
  readStop?: () => number;
}

function fdKind(fd: number, role: string): FdKind {
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EBADF';
    throw new SpliceError(code, `The ${role} fd ${fd} is not open (${code}). ` +
      'Pass an open file descriptor, or a connected net.Socket.', { cause: err });
  }
  if (stat.isSocket()) return 'socket';
  if (stat.isFIFO()) return 'pipe';
  if (stat.isCharacterDevice()) return 'character-device';
  if (stat.isFile()) return 'file';
  return 'other';
}

function checkFd(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw invalidArg(name, 'a file descriptor (a non-negative integer)', value);
  }
  return value;
}

// Checks the target's shape against the direction. Does not touch the target.
export function resolveTarget(target: SpliceTarget, direction: SpliceDirection): ResolvedTarget {
  const wantRead = direction !== 'in';
  const wantWrite = direction !== 'out';
  let readFd = -1;
  let writeFd = -1;
  let socket: net.Socket | null = null;

  if (target instanceof net.Socket) {
    socket = target;
    if (socket.destroyed) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        'The target net.Socket is destroyed. Pass a connected socket.');
    }
    // Resolved at start(): a connecting socket gets its fd only once connected.
  } else if (typeof target === 'number') {
    readFd = writeFd = checkFd(target, 'target');
  } else if (target !== null && typeof target === 'object') {
    const t = target as { fd?: unknown; readFd?: unknown; writeFd?: unknown };
    if (t.fd !== undefined) {
      readFd = writeFd = checkFd(t.fd, 'target.fd');
    } else {
      if (t.readFd !== undefined) readFd = checkFd(t.readFd, 'target.readFd');
      if (t.writeFd !== undefined) writeFd = checkFd(t.writeFd, 'target.writeFd');
    }
  } else {
    throw invalidArg('target', 'an fd, { fd }, { readFd, writeFd } or a net.Socket', target);
  }

  if (socket === null) {
    if (wantRead && readFd < 0) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        `direction '${direction}' reads cleartext from the target, but no readFd was given. ` +
        "Pass { readFd, writeFd }, or use direction 'in'.");
    }
    if (wantWrite && writeFd < 0) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        `direction '${direction}' writes cleartext to the target, but no writeFd was given. ` +
        "Pass { readFd, writeFd }, or use direction 'out'.");
    }
    if (!wantRead) readFd = -1;
    if (!wantWrite) writeFd = -1;
  }
  return {
    readFd,
    writeFd,
    readKind: readFd >= 0 ? fdKind(readFd, 'read') : null,
    writeKind: writeFd >= 0 ? fdKind(writeFd, 'write') : null,
    socket,
  };
}

// Waits until the user's socket is connected and has written everything queued on it, then
// stops Node reading it and returns the bytes Node had already read (they go to TLS first).
// The socket stays open (its fd is the user's); an 'error' listener stays on it while spliced.
export async function takeOverSocket(resolved: ResolvedTarget, direction: SpliceDirection):
    Promise<Buffer> {
  const socket = resolved.socket;
  if (socket === null) return Buffer.alloc(0);
  if (socket.connecting) await once(socket, 'connect');
  if (socket.writableLength > 0) await once(socket, 'drain');
  const handle = (socket as unknown as { _handle?: SocketHandle })._handle;
  if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) {
    throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
      'The target net.Socket has no file descriptor (it is not connected, or is a JS stream). ' +
      "Pass a connected TCP or Unix socket, or use engine: 'js'.");
  }
  socket.on('error', noop);
  socket.pause();
  const buffered: Buffer[] = [];
  let chunk: Buffer | null;
  while ((chunk = socket.read() as Buffer | null) !== null) buffered.push(chunk);
  // read() calls _read(), which restarts reading on the handle when the buffer runs low, so
  // reading is stopped after draining, in the same tick: Node reads nothing more from the fd.
  // `reading = false` lets a later resume() by the user start it again.
  if (typeof handle.readStop === 'function') {
    handle.readStop();
    handle.reading = false;
  }
  const fd = handle.fd;
  resolved.readFd = direction === 'in' ? -1 : fd;
  resolved.writeFd = direction === 'out' ? -1 : fd;
  resolved.readKind = resolved.readFd >= 0 ? 'socket' : null;
  resolved.writeKind = resolved.writeFd >= 0 ? 'socket' : null;
  return Buffer.concat(buffered);
}

// After the splice: close what autoClose covers. Errors closing are not the user's problem.
export function closeTarget(resolved: ResolvedTarget): void {
  if (resolved.socket !== null) {
    resolved.socket.destroy();
    return;
  }
  const closed = new Set<number>();
  for (const fd of [resolved.readFd, resolved.writeFd]) {
    if (fd < 0 || closed.has(fd)) continue;
    closed.add(fd);
    try {
      fs.closeSync(fd);
    } catch {
      // Already closed by the user.
    }
  }
}

// The separate write fd of a pipe-like target, closed early so its reader sees EOF when the
// peer ends (a socket is shut down natively instead; a shared read/write fd stays open).
export function closeWriteSideEarly(resolved: ResolvedTarget): void {
  if (resolved.socket !== null || resolved.writeFd < 0) return;
  if (resolved.writeFd === resolved.readFd || resolved.writeKind === 'socket') return;
  try {
    fs.closeSync(resolved.writeFd);
  } catch {
    // Already closed by the user.
  }
  resolved.writeFd = -1;
}

function noop(): void {}
