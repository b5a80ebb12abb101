// What a splice moves cleartext to and from: an fd, a pair of fds, a net.Socket, or an address
// the splice dials itself ({ host, port } or { path }).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { binding } from './binding';
import { DialSpec } from './dial';
import { SpliceError, invalidArg } from './errors';
import { handleKind, keepWritableAfterEnd, readStop, socketFd } from './internals';

export type SpliceDirection = 'duplex' | 'in' | 'out';

export type SpliceTarget =
  | number
  | { fd: number }
  | { readFd?: number; writeFd?: number }
  | { host: string; port: number }
  | { path: string }
  | net.Socket;

export type FdKind = 'socket' | 'pipe' | 'character-device' | 'file' | 'other';

export interface ResolvedTarget {
  readFd: number;           // -1 when the direction does not read the target
  writeFd: number;          // -1 when the direction does not write the target
  readKind: FdKind | null;
  writeKind: FdKind | null;
  socket: net.Socket | null;  // the target socket: the user's, or the one the splice dialled
  dial: DialSpec | null;      // { host, port } / { path }: dialled at start()
  ownsSocket: boolean;        // the splice dialled `socket` and destroys it at the end
  ownsFds: boolean;           // readFd/writeFd are the splice's own duplicates (autoClose)
  userReadFd: number;         // the fds as the user gave them
  userWriteFd: number;
}

// Why a connected socket's fd must not be handed to the native engine, or null when it may: only a
// plain TCP or Pipe stream carries the target's own bytes on its fd. A TLSSocket's fd is the
// encrypted wire under it: writing cleartext there would send the peer's data in the clear.
export function notRawReason(socket: net.Socket): string | null {
  if (socket instanceof tls.TLSSocket) {
    return 'The target is a tls.TLSSocket: its fd carries the TLS records, not cleartext';
  }
  const kind = handleKind(socket);
  if (kind === 'TCP' || kind === 'Pipe') return null;
  return kind === 'none' ?
    'The target net.Socket has no handle (it is not connected, or is a JS stream)' :
    'The target net.Socket is not backed by a plain TCP or Pipe stream handle';
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
  let dial: DialSpec | null = null;

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
    const t = target as {
      fd?: unknown; readFd?: unknown; writeFd?: unknown; host?: unknown; port?: unknown;
      path?: unknown;
    };
    if (t.port !== undefined || t.host !== undefined) {
      if (t.fd !== undefined || t.readFd !== undefined || t.writeFd !== undefined ||
          t.path !== undefined) {
        throw invalidArg('target', '{ host, port } without fd, readFd, writeFd or path', target);
      }
      const port = t.port;
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw invalidArg('target.port', 'an integer from 1 to 65535', port);
      }
      const host = t.host ?? 'localhost';
      if (typeof host !== 'string' || host.length === 0) {
        throw invalidArg('target.host', 'a non-empty string', host);
      }
      dial = { host, port };
    } else if (t.path !== undefined) {
      if (t.fd !== undefined || t.readFd !== undefined || t.writeFd !== undefined) {
        throw invalidArg('target', '{ path } without fd, readFd or writeFd', target);
      }
      if (typeof t.path !== 'string' || t.path.length === 0) {
        throw invalidArg('target.path', 'a non-empty string (a Unix socket path)', t.path);
      }
      dial = { path: t.path };
    } else if (t.fd !== undefined) {
      readFd = writeFd = checkFd(t.fd, 'target.fd');
    } else {
      if (t.readFd !== undefined) readFd = checkFd(t.readFd, 'target.readFd');
      if (t.writeFd !== undefined) writeFd = checkFd(t.writeFd, 'target.writeFd');
    }
  } else {
    throw invalidArg('target',
      'an fd, { fd }, { readFd, writeFd }, { host, port }, { path } or a net.Socket', target);
  }

  if (socket === null && dial === null) {
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
    dial,
    ownsSocket: false,
    ownsFds: false,
    userReadFd: readFd,
    userWriteFd: writeFd,
  };
}

// Stops Node from ending a target socket on its own: with allowHalfOpen false (the default),
// Node ends the write side when the read side ends, which a drain of a socket whose client sent
// data and FIN before the takeover triggers; the splice then fails with EPIPE and the reply is
// lost. From here on the splice decides when the socket's write side ends.
export function keepSocketHalfOpen(socket: net.Socket): void {
  keepWritableAfterEnd(socket);
}

// Irreversible: the native engine takes the socket's fd. The socket is connected and has nothing
// queued (waitForTarget()); Node stops reading it, and the bytes it had already read are returned
// (they go to TLS first). The socket stays open (its fd is the user's, or the dialled one's).
export async function takeOverSocket(resolved: ResolvedTarget, direction: SpliceDirection):
    Promise<Buffer> {
  const socket = resolved.socket;
  if (socket === null) return Buffer.alloc(0);
  keepSocketHalfOpen(socket);
  // Only if the user wrote to it after start() was called: their bytes go first.
  if (socket.writableLength > 0 && !socket.writableEnded) {
    await new Promise((resolve) => socket.write(Buffer.alloc(0), resolve));
  }
  const fd = socketFd(socket);
  if (fd < 0) {
    throw new SpliceError('ERR_TLS_SPLICE_TARGET_CLOSED',
      'The target net.Socket has no file descriptor any more (it was closed while the splice ' +
      'started).');
  }
  socket.pause();
  const buffered: Buffer[] = [];
  let chunk: Buffer | null;
  while ((chunk = socket.read() as Buffer | null) !== null) buffered.push(chunk);
  // Same tick: Node reads nothing more from the fd.
  readStop(socket);
  resolved.readFd = direction === 'in' ? -1 : fd;
  resolved.writeFd = direction === 'out' ? -1 : fd;
  resolved.readKind = resolved.readFd >= 0 ? 'socket' : null;
  resolved.writeKind = resolved.writeFd >= 0 ? 'socket' : null;
  return Buffer.concat(buffered);
}

// autoClose with fd targets: the splice owns the user's fds from start() on. Called once the
// engine holds its own duplicates: the user's numbers are closed at once, so nothing is ever
// closed by number later (when the number may already belong to someone else). The fields become
// -1: closeWriteSideEarly() and closeTarget() then leave them alone.
export function closeUserFds(resolved: ResolvedTarget): void {
  if (resolved.socket !== null) return;
  closeFds(resolved, false);
}

// For an engine that uses the target's fds by number (the JS engine): duplicates the splice owns
// stand in for the user's fds, which are then closed (closeUserFds()); closeTarget() closes the
// duplicates at the end.
export function adoptUserFds(resolved: ResolvedTarget): void {
  if (resolved.socket !== null) return;
  const dups = new Map<number, number>();
  try {
    for (const fd of [resolved.readFd, resolved.writeFd]) {
      if (fd >= 0 && !dups.has(fd)) dups.set(fd, binding.dupFd(fd));
    }
  } catch (err) {
    for (const dup of dups.values()) fs.closeSync(dup);
    throw err;
  }
  closeUserFds(resolved);
  for (const [fd, dup] of dups) {
    if (resolved.userReadFd === fd) resolved.readFd = dup;
    if (resolved.userWriteFd === fd) resolved.writeFd = dup;
  }
  resolved.ownsFds = true;
}

function closeFds(resolved: ResolvedTarget, ownedOnly: boolean): void {
  if (ownedOnly && !resolved.ownsFds) return;
  const closed = new Set<number>();
  for (const fd of [resolved.readFd, resolved.writeFd]) {
    if (fd < 0 || closed.has(fd)) continue;
    closed.add(fd);
    try {
      fs.closeSync(fd);
    } catch {
      // Already closed by the user (only before ownership was taken).
    }
  }
  resolved.readFd = resolved.readFd >= 0 ? -1 : resolved.readFd;
  resolved.writeFd = resolved.writeFd >= 0 ? -1 : resolved.writeFd;
}

// When the splice ends (or its start fails): destroy a socket the splice dialled, and the user's
// socket when destroyUserSocket (autoClose after a start); close the duplicates the splice owns.
// Never closes an fd by a number the user still owns.
export function closeTarget(resolved: ResolvedTarget, destroyUserSocket: boolean): void {
  if (resolved.socket !== null) {
    if (destroyUserSocket || resolved.ownsSocket) resolved.socket.destroy();
    return;
  }
  closeFds(resolved, true);
}

// Truncation with onTruncation 'reset': the target socket is reset (RST), so a plain backend sees
// ECONNRESET rather than a clean end. Only a TCP handle can be reset; anything else is destroyed.
export function resetTargetSocket(resolved: ResolvedTarget): void {
  const socket = resolved.socket;
  if (socket === null || socket.destroyed) return;
  if (handleKind(socket) === 'TCP') {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // Falls through to a plain destroy.
    }
  }
  socket.destroy();
}

// The separate write fd of a pipe-like target, once owned by the splice, closed early so its
// reader sees EOF when the peer ends (a socket is shut down by the engine instead; a shared
// read/write fd stays open).
export function closeWriteSideEarly(resolved: ResolvedTarget): void {
  if (!resolved.ownsFds || resolved.socket !== null || resolved.writeFd < 0) return;
  if (resolved.writeFd === resolved.readFd || resolved.writeKind === 'socket') return;
  try {
    fs.closeSync(resolved.writeFd);
  } catch {
    // Not expected: the fd is the splice's own duplicate.
  }
  resolved.writeFd = -1;
}
