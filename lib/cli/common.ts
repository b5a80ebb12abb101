// What every tls-splice command shares: the command contract, addresses, errors and exit codes,
// file loading, the per-connection log line, `listening ADDR`, dialing a backend, splicing a
// connection into a SpliceGroup, and signal handling (drain on SIGTERM/SIGINT, reload on SIGHUP).
//
// Built on the public API ('../index') and node: modules, like the commands themselves, plus
// lib/dial.ts (one way to dial) and, for tying a TLSSocket to its raw connection, the record tap
// and lib/internals.ts.
import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import type { ParseArgsConfig } from 'node:util';

import { dial as dialTarget } from '../dial';
import { SpliceGroup, spliceTo } from '../index';
import { tlsTransportOf } from '../internals';
import { RecordTap } from '../tap';
import { LogFormat, Logger } from './log';
import type { SpliceEnd, SpliceHandle, SpliceOptions } from '../index';

// ---------------------------------------------------------------------------------------------
// The command contract. main.ts parses argv with node:util parseArgs (strict) using `options`,
// answers --help with `help`, and calls run() with the parsed values. run() resolves once the
// command is serving (after `listening ADDR`); the process then lives until a signal.

export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
/** One flag as given on the command line, in order (parseArgs with tokens: true). */
export interface ArgToken { kind: string; name?: string; value?: string }
export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Command {
  /** One line for the global --help. */
  summary: string;
  /** The usage line(s), printed with bad flags and at the top of --help. */
  usage: string;
  /** The rest of --help: what it does, each flag, an example. */
  help: string;
  /** parseArgs options; the common ones (COMMON_OPTIONS) are merged in by main. */
  options: OptionsConfig;
  /** tokens: parseArgs' tokens, for flags whose order matters (terminate's --cert/--key/--ocsp). */
  run(values: ParsedValues, positionals: string[], tokens?: ArgToken[]): Promise<void>;
}

/** Flags every command accepts. */
export const COMMON_OPTIONS: OptionsConfig = {
  help: { type: 'boolean', short: 'h' },
  log: { type: 'string' },
  'drain-timeout': { type: 'string' },
};

export const COMMON_HELP = `Common flags:
  --log text|json          one line per connection end on stderr (default text)
  --drain-timeout SECONDS  on SIGTERM/SIGINT, time given to live connections to end gracefully
                           before they are aborted (default ${10})
  -h, --help               this help
Signals: SIGTERM/SIGINT stop accepting, drain live splices, exit 0; SIGHUP reloads certificates.`;

export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Limits: what an unauthenticated client can make a command spend (docs/SECURITY.md). Each
// command spreads the LIMIT_OPTIONS it applies into its own options and reads them with
// parseLimits(); a flag a command does not offer keeps its default there.

export interface Limits {
  /** --handshake-timeout: a TLS handshake not finished by then is closed (terminate, proxy, relay). */
  handshakeTimeoutMs: number;
  /** --max-connections: accepted connections at once; over it a new one is closed at once. */
  maxConnections: number;
  /** --idle-timeout: a spliced connection with no byte either way for this long ends (end=idle). */
  idleTimeoutMs: number;
  /** --fin-timeout: once one direction ended, the other gets this long without a byte. */
  finTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  handshakeTimeoutMs: 10_000,
  maxConnections: 10_000,
  idleTimeoutMs: 3600_000,
  finTimeoutMs: 60_000,
};

export const LIMIT_OPTIONS = {
  'handshake-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'fin-timeout': { type: 'string' },
} as const satisfies OptionsConfig;

export function parseLimits(values: ParsedValues): Limits {
  return {
    handshakeTimeoutMs: parsePositiveSeconds(stringFlag(values, 'handshake-timeout'),
      '--handshake-timeout', DEFAULT_LIMITS.handshakeTimeoutMs),
    maxConnections: parsePositiveInt(stringFlag(values, 'max-connections'), '--max-connections',
      DEFAULT_LIMITS.maxConnections),
    idleTimeoutMs: parsePositiveSeconds(stringFlag(values, 'idle-timeout'), '--idle-timeout',
      DEFAULT_LIMITS.idleTimeoutMs),
    finTimeoutMs: parsePositiveSeconds(stringFlag(values, 'fin-timeout'), '--fin-timeout',
      DEFAULT_LIMITS.finTimeoutMs),
  };
}

// A timeout of 0 would mean "close at once", never "no limit": refuse it.
function parsePositiveSeconds(text: string | undefined, flag: string, fallbackMs: number): number {
  const ms = parseSeconds(text, flag, fallbackMs);
  if (ms < 1) throw new UsageError(`${flag}: "${text}" must be more than 0 seconds`);
  return ms;
}

// ---------------------------------------------------------------------------------------------
// Errors and exit codes.

/** A bad command line: main prints the message and the usage line, exits 2. */
export class UsageError extends Error {
  readonly code = 'ERR_TLS_SPLICE_USAGE';

  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the user can fix (an unreadable file, an address in use): exit 1 with the message. */
export class CliError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.code = code;
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

// ---------------------------------------------------------------------------------------------
// Flags.

export interface Addr {
  host: string;
  port: number;
}

/** 'HOST:PORT' or '[IPv6]:PORT' (port 0 = any free port, for listening). */
export function parseAddr(text: string, flag = 'address'): Addr {
  if (typeof text !== 'string') throw new UsageError(`${flag} needs a value HOST:PORT`);
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (match === null) {
    throw new UsageError(`${flag}: "${text}" is not HOST:PORT (write IPv6 as [::1]:PORT)`);
  }
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port > 65535) {
    throw new UsageError(`${flag}: port ${match[2]} is not in 0..65535`);
  }
  return { host: match[1], port };
}

/** 'host:port', with brackets around an IPv6 address. */
export function formatAddr(host: string | undefined, port: number | undefined): string {
  const h = host ?? '?';
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? '?'}`;
}

/** A repeatable 'NAME=ADDR' flag (--sni, --alpn) as [name, addr] pairs, in the order given. */
export function parseMappings(values: string[] | undefined, flag: string): [string, Addr][] {
  return (values ?? []).map((text) => {
    const eq = text.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag}: "${text}" is not NAME=HOST:PORT`);
    return [text.slice(0, eq), parseAddr(text.slice(eq + 1), flag)];
  });
}

/** A positive integer flag. */
export function parsePositiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`${flag}: "${text}" is not a positive integer`);
  }
  return n;
}

/** Seconds (decimals allowed) as milliseconds. */
export function parseSeconds(text: string | undefined, flag: string, fallbackMs: number): number {
  if (text === undefined) return fallbackMs;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`${flag}: "${text}" is not a number of seconds`);
  }
  return Math.round(n * 1000);
}

/** Throws a UsageError naming each required flag that is missing. */
export function requireFlags(values: ParsedValues, names: string[]): void {
  const missing = names.filter((name) => values[name] === undefined);
  if (missing.length > 0) {
    throw new UsageError(`missing ${missing.map((n) => `--${n}`).join(', ')}`);
  }
}

export function stringFlag(values: ParsedValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function stringsFlag(values: ParsedValues, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string');
}

// ---------------------------------------------------------------------------------------------
// Files.

/** Reads a PEM file; an unreadable one is a CliError (code = errno name) naming the file. */
export function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new CliError(code, `cannot read ${what} file ${file}: ${code} ` +
      `(${(err as Error).message.replace(/^[A-Z]+: /, '')}); check the path and its permissions`,
    { cause: err });
  }
}

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

export interface TlsMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/**
 * Reads cert/key/CA files and checks that they parse and match (a wrong key is caught here, at
 * startup or at reload, not at the first client). Errors name the files.
 */
export function loadTlsFiles(files: TlsFiles, createSecureContext: (o: tls.SecureContextOptions)
  => unknown): TlsMaterial {
  const material: TlsMaterial = {};
  if (files.cert !== undefined) material.cert = readPem(files.cert, 'certificate');
  if (files.key !== undefined) material.key = readPem(files.key, 'key');
  if (files.ca !== undefined) material.ca = readPem(files.ca, 'CA certificate');
  try {
    createSecureContext({ cert: material.cert, key: material.key, ca: material.ca });
  } catch (err) {
    const named = [files.cert, files.key, files.ca].filter((f) => f !== undefined).join(', ');
    const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_BAD_CERTIFICATE';
    throw new CliError(code, `cannot use ${named}: ${(err as Error).message} ` +
      '(is each file PEM, and does the key belong to the certificate?)', { cause: err });
  }
  return material;
}

// ---------------------------------------------------------------------------------------------
// Logging (log.ts): stderr, one line per connection end; `--log json` for JSON lines.

export { ConnectionRecord, LogFormat, Logger, errorText, logValue } from './log';

export function parseLogFormat(text: string | undefined): LogFormat {
  if (text === undefined || text === 'text') return 'text';
  if (text === 'json') return 'json';
  throw new UsageError(`--log: "${text}" is not text or json`);
}

// ---------------------------------------------------------------------------------------------
// Listening.

/** Listens and resolves with the bound address; EADDRINUSE and friends become a CliError. */
export function listen(server: net.Server, addr: Addr, what = '--listen'): Promise<Addr> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new CliError(err.code ?? 'ERR_TLS_SPLICE_LISTEN',
        `cannot listen on ${formatAddr(addr.host, addr.port)} (${what}): ${err.message}`,
        { cause: err }));
    };
    server.once('error', onError);
    server.listen(addr.port, addr.host, () => {
      server.off('error', onError);
      const bound = server.address() as net.AddressInfo;
      resolve({ host: bound.address, port: bound.port });
    });
  });
}

/** The readiness line on stdout that scripts and tests wait for. */
export function announceListening(addr: Addr, word = 'listening'): void {
  process.stdout.write(`${word} ${formatAddr(addr.host, addr.port)}\n`);
}

// ---------------------------------------------------------------------------------------------
// --max-connections.

// One log line a second at most about refusals: a flood over the cap must not flood the log too.
const kRefusalLogIntervalMs = 1000;

/**
 * Caps the connections the server holds at once (Node's server.maxConnections: counted per
 * process, so per worker with --workers). Over the cap Node closes a new connection at once and
 * emits 'drop'; each one calls onRefused (the metric). The first refusal is logged at once; later
 * ones are summed into one line a second (`refused=N`, the last client) while they go on.
 */
export function capConnections(server: net.Server, max: number, logger: Logger,
  onRefused?: () => void): void {
  server.maxConnections = max;
  let pending: { refused: number; client: string } | null = null;
  let quiet = true;
  const flush = () => {
    if (pending === null) {
      quiet = true;
      return;
    }
    logRefused(pending.refused, pending.client);
    pending = null;
    setTimeout(flush, kRefusalLogIntervalMs).unref();
  };
  const logRefused = (refused: number, client: string) => {
    logger.info('refused connections over --max-connections', {
      code: 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS', max, refused, client,
    });
  };
  server.on('drop', (data?: net.DropArgument) => {
    onRefused?.();
    const client = formatAddr(data?.remoteAddress, data?.remotePort);
    if (quiet) {
      quiet = false;
      logRefused(1, client);
      setTimeout(flush, kRefusalLogIntervalMs).unref();
      return;
    }
    pending = { refused: (pending?.refused ?? 0) + 1, client };
  });
}

// ---------------------------------------------------------------------------------------------
// Dialing and splicing.

/**
 * Connects to addr; resolves once connected (noDelay on, a no-op 'error' listener attached),
 * rejects with the libuv code (ECONNREFUSED, ETIMEDOUT...). The socket is the library's dialled
 * target socket (lib/dial.ts: half open, so the splice decides when its write side ends).
 */
export function dial(addr: Addr, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dialTarget({ host: addr.host, port: addr.port }, true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connecting to ${formatAddr(addr.host, addr.port)} ` +
        `timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // A reset before the caller takes over must not crash the process: the splice (or the
      // caller's own listener) sees the failure when it uses the socket.
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export interface SpliceConnectionOptions {
  command: string;
  group: SpliceGroup;
  logger: Logger;
  /** For the log line. */
  client: string;
  backend: string;
  /** When the connection was accepted (Date.now()), for the duration. */
  startedAt: number;
  /** Written to the backend before any spliced byte. */
  head?: Buffer;
  /** More fields for the log line. */
  extra?: Record<string, unknown>;
  /** Called with the end (for metrics) after the log line. */
  onEnd?: (end: SpliceEnd) => void;
  splice?: SpliceOptions;
}

/**
 * Splices a TLS socket to a connected backend socket, adds it to the group, and logs the end
 * (`truncated=true` when the peer's TCP stream ended without close_notify). A truncation resets
 * the backend (`onTruncation: 'reset'`): a plain backend must not take a cut stream for a whole one.
 * Resolves with the handle once started; a refused start is logged, both sockets destroyed, and
 * rethrown.
 */
export async function spliceConnection(tlsSocket: tls.TLSSocket, backend: net.Socket,
  options: SpliceConnectionOptions): Promise<SpliceHandle> {
  backend.setNoDelay(true);
  const handle = spliceTo(tlsSocket, backend, {
    onTruncation: 'reset', ...options.splice, head: options.head,
  });
  options.group.add(handle);
  void handle.closed.then((end) => {
    if (end.peerEofWithoutCloseNotify && !backend.destroyed) backend.resetAndDestroy();
    else backend.destroy();
    const stats = end.stats;
    options.logger.connection({
      command: options.command, client: options.client, backend: options.backend,
      bytesFromClient: stats.bytesIn, bytesToClient: stats.bytesOut,
      durationMs: Date.now() - options.startedAt, engine: end.engine, reason: end.reason,
      code: end.error?.code, ...options.extra,
      ...(end.peerEofWithoutCloseNotify ? { truncated: true } : {}),
    });
    options.onEnd?.(end);
  });
  try {
    await handle.start();
  } catch (err) {
    tlsSocket.destroy();
    backend.destroy();
    throw err;
  }
  return handle;
}

// ---------------------------------------------------------------------------------------------
// Signals.

export interface LifecycleOptions {
  logger: Logger;
  /** Servers that stop accepting on SIGTERM/SIGINT. */
  servers: net.Server[];
  group: SpliceGroup;
  drainTimeoutMs: number;
  /** Sockets not yet spliced (handshaking, dialing): destroyed at shutdown. */
  pending?: Set<net.Socket>;
  /** SIGHUP: reload certificates; a throw is logged and the old ones stay. */
  reload?: () => void;
  /** Called after draining, before exit (e.g. close a metrics server). */
  beforeExit?: () => Promise<void> | void;
}

/**
 * SIGTERM/SIGINT: stop accepting, end pending handshakes, stop live splices gracefully within
 * the drain timeout (then abort them), exit 0. A second signal aborts at once. SIGHUP: reload().
 */
export function handleSignals(options: LifecycleOptions): { shutdown(): Promise<void> } {
  let shuttingDown: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    if (shuttingDown !== null) {
      void options.group.closeAll({ graceful: false });
      return shuttingDown;
    }
    shuttingDown = (async () => {
      options.logger.info('draining', { live: options.group.size,
        timeout_ms: options.drainTimeoutMs });
      for (const server of options.servers) server.close();
      for (const socket of options.pending ?? []) socket.destroy();
      await options.group.closeAll({ timeout: options.drainTimeoutMs });
      await options.beforeExit?.();
      options.logger.info('stopped');
      // Exit once stderr/stdout have flushed; a handle left behind must not keep us alive.
      process.stderr.write('', () => process.exit(EXIT_OK));
    })();
    return shuttingDown;
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  process.on('SIGHUP', () => {
    if (options.reload === undefined) {
      options.logger.info('SIGHUP: nothing to reload');
      return;
    }
    try {
      options.reload();
      options.logger.info('reloaded certificates');
    } catch (err) {
      options.logger.error('reload failed, keeping the previous certificates', err);
    }
  });
  return { shutdown };
}

// ---------------------------------------------------------------------------------------------
// Handshake failures, each with its own connection (terminate, proxy, relay).
//
// 'tlsClientError' hands over a TLSSocket that does not know its peer's address (it runs over the
// record tap, a JS stream). Each TLSSocket is tied to its raw connection while its transport is
// still there: at the error itself for a handshake that fails or times out (Node emits the error
// before destroying anything), and at the first 'keylog' line otherwise (a SpliceServer always
// enables keylog), so a later failure (the client's certificate refused after the handshake) is
// still reported against the right client. A failed connection is destroyed at once: Node only
// destroys a timed-out one when nobody listens to 'tlsClientError'.

export type HandshakeFailureReport = (client: string, durationMs: number,
  err: NodeJS.ErrnoException | undefined) => void;

interface Handshaking {
  client: string;
  startedAt: number;
  raw: net.Socket;
  tlsSocket?: tls.TLSSocket;
  /** 'secured' once a 'secureConnection' took it; 'reported' once its failure was reported. */
  state: 'handshaking' | 'secured' | 'reported';
}

// The raw TCP connection under a server TLSSocket: through the record tap (createServer) or
// directly (a plain tls.Server).
function rawConnectionOf(tlsSocket: tls.TLSSocket): net.Socket | undefined {
  const transport = tlsTransportOf(tlsSocket);
  if (transport instanceof RecordTap) return transport.raw;
  return transport instanceof net.Socket ? transport : undefined;
}

/**
 * Calls report once for each accepted connection that never became a 'secureConnection': with
 * its own address and its own error (undefined when the client left with no error reported), and
 * destroys it. A client certificate Node refused after the handshake (requestCert with
 * rejectUnauthorized) is reported with OpenSSL's reason as the code (CERT_HAS_EXPIRED, ...).
 */
export function onHandshakeFailure(server: tls.Server, report: HandshakeFailureReport): void {
  const byRaw = new WeakMap<net.Socket, Handshaking>();
  const byTls = new WeakMap<tls.TLSSocket, Handshaking>();
  const find = (tlsSocket: tls.TLSSocket): Handshaking | undefined => {
    const known = byTls.get(tlsSocket);
    if (known !== undefined) return known;
    const raw = rawConnectionOf(tlsSocket);
    const entry = raw === undefined ? undefined : byRaw.get(raw);
    if (entry !== undefined) {
      entry.tlsSocket = tlsSocket;
      byTls.set(tlsSocket, entry);
    }
    return entry;
  };
  const fail = (entry: Handshaking, err: NodeJS.ErrnoException | undefined) => {
    if (entry.state !== 'handshaking') return;
    entry.state = 'reported';
    report(entry.client, Date.now() - entry.startedAt, err);
    entry.tlsSocket?.destroy();
    entry.raw.destroy();
  };
  server.on('connection', (raw: net.Socket) => {
    const entry: Handshaking = { client: formatAddr(raw.remoteAddress, raw.remotePort),
      startedAt: Date.now(), raw, state: 'handshaking' };
    byRaw.set(raw, entry);
    raw.once('close', () => fail(entry, refusedCertificateError(entry.tlsSocket)));
  });
  server.on('keylog', (_line: Buffer, tlsSocket: tls.TLSSocket) => { find(tlsSocket); });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, tlsSocket: tls.TLSSocket) => {
    // A TLSSocket already destroyed and never tied to its connection is one whose client left
    // early ('socket hang up'): its raw connection's 'close' reports it.
    // A refused client certificate shows up here as that 'socket hang up'; its reason is better.
    const entry = find(tlsSocket);
    if (entry !== undefined) fail(entry, refusedCertificateError(tlsSocket) ?? err);
  });
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    const entry = find(tlsSocket);
    if (entry !== undefined && entry.state === 'handshaking') entry.state = 'secured';
  });
}

// Node checks a client certificate only once OpenSSL finished the handshake (its verify callback
// accepts every chain), then destroys the socket without an error event: the reason is left in
// authorizationError.
function refusedCertificateError(tlsSocket: tls.TLSSocket | undefined):
  NodeJS.ErrnoException | undefined {
  const reason = tlsSocket?.authorizationError as unknown;
  if (reason === null || reason === undefined) return undefined;
  const code = typeof reason === 'string' ? reason : String((reason as { code?: unknown }).code);
  return Object.assign(new Error(`the client certificate was refused: ${code} (it must be ` +
    'signed by the --client-ca certificate and valid now)'), { code });
}
