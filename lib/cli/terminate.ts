// tls-splice terminate: a TLS terminator (stunnel's server mode, hitch, ghostunnel's server,
// HAProxy's `mode tcp` + `ssl crt`). Finishes the TLS handshake with Node, picks a plain backend
// by SNI, then by the negotiated ALPN protocol, then --to, and splices the session to it
// natively: an h2 client behind it talks h2c to a backend that knows nothing of TLS.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, createServer, proxyProtocolHeader } from '../index';
import type { SpliceEnd } from '../index';
import {
  Addr, ArgToken, Command, DEFAULT_DRAIN_TIMEOUT_MS, LIMIT_OPTIONS, Limits, Logger, ParsedValues, UsageError,
  announceListening, capConnections, dial, formatAddr, handleSignals, listen,
  onHandshakeFailure, parseAddr, parseLimits, parseLogFormat, parseMappings, parsePositiveInt,
  parseSeconds, readPem, requireFlags, spliceConnection, stringFlag, stringsFlag,
} from './common';
import {
  CertSet, CertSource, chooseCert, dirSources, entryOfLeaf, loadCertSet, pairsFromTokens,
} from './terminate/certificates';
import { Identity, dropPrivileges, resolveIdentity } from './terminate/privileges';
import {
  TicketKey, TicketKeyring, keyOfNodeBytes, newTicketKey, nodeBytesOfKey, readTicketKeys,
} from './terminate/tickets';

// node:cluster is `export default` in @types/node but module.exports at run time.
const cluster = require('node:cluster') as import('node:cluster').Cluster;

const USAGE = `Usage: tls-splice terminate --listen ADDR (--cert FILE --key FILE [--ocsp FILE] ...
                            | --cert-dir DIR) [--to ADDR]
                            [--alpn PROTO=ADDR ...] [--sni NAME=ADDR ...] [--client-ca FILE]
                            [--proxy-protocol v1|v2] [--workers N] [--metrics ADDR]
                            [--handshake-timeout S] [--max-connections N] [--idle-timeout S]
                            [--fin-timeout S] [--ticket-keys FILE] [--ticket-rotate S]
                            [--user NAME [--group NAME]]`;

const HELP = `Terminates TLS and splices the cleartext to a plain TCP backend (replaces stunnel's
server mode, hitch, ghostunnel; HAProxy in mode tcp with ssl crt).

The backend of a connection is the first that applies of:
  --sni NAME=ADDR       the client's SNI host name is NAME (repeatable; *.example.com matches one
                        label). With no --alpn/--to fallback, other names fail the handshake.
  --alpn PROTO=ADDR     the negotiated ALPN protocol is PROTO (repeatable; advertised in the
                        order given, so the first is preferred: --alpn h2=... --alpn http/1.1=...)
  --to ADDR             every other connection (a client that offers ALPN must share a protocol
                        with the --alpn list, if there is one: Node refuses the handshake with
                        no_application_protocol otherwise)
Flags:
  --listen ADDR         where to accept TLS (HOST:PORT; port 0 picks one, see the listening line)
  --cert FILE --key FILE  a server certificate chain and its key (PEM); repeatable, in pairs.
                        A client's SNI picks the certificate whose subjectAltName DNS names
                        hold it (*.example.com: one label); the first pair serves clients
                        without SNI or with a name none holds. Independent of --sni routing
  --ocsp FILE           after a --cert/--key pair: a DER OCSP response to staple for that
                        certificate (fetching it from the responder is up to you, e.g. cron
                        with \`openssl ocsp -respout\`, then SIGHUP)
  --cert-dir DIR        every DIR/NAME.pem (a chain and its key, or with DIR/NAME.key beside
                        it; DIR/NAME.ocsp staples); the first in name order is the default
                        unless a --cert pair is given too
  SIGHUP reloads every certificate, key and OCSP file (and --cert-dir's new and removed files)
  without touching live connections; if one is unusable, the old set stays and the reason is
  logged (with --user, the files must stay readable by that user)
  --client-ca FILE      require a client certificate signed by this CA (mutual TLS); one that
                        does not verify is closed before any byte reaches a backend and logged
                        with OpenSSL's reason (code=CERT_HAS_EXPIRED, ...)
  --proxy-protocol v1|v2  send the client's address to the backend in a PROXY header first
                        (HAProxy: bind ... accept-proxy); v2 also carries ALPN and SNI
  --workers N           N processes sharing the port (node:cluster; default 1)
  --metrics ADDR        serve Prometheus text on http://ADDR/metrics
  --ticket-keys FILE    session ticket keys (TLS 1.2 tickets and TLS 1.3 PSK tickets): raw,
                        48 bytes a key (\`openssl rand 48\`), or HAProxy's tls-ticket-keys
                        text (base64 lines of 48 bytes; 80-byte keys are refused). The first
                        key encrypts, all decrypt; processes given the same file resume each
                        other's sessions. SIGHUP re-reads it (rotate by prepending a key)
  --ticket-rotate SECONDS  without --ticket-keys: keys are made at start, shared by every
                        worker, kept across SIGHUP and replaced this often, the previous key
                        still decrypting for one more period (default 3600)
  --user NAME [--group NAME]  bind the ports, then every process (the --workers primary too)
                        runs as NAME and GROUP (default NAME's group) before \`listening\`
  --dial-timeout SECONDS  give up on a backend that does not accept (default 10)
Limits (what an unauthenticated client can make it spend; see docs/SECURITY.md):
  --handshake-timeout SECONDS  close a connection whose TLS handshake is not done by then,
                        logged once with code=ERR_TLS_HANDSHAKE_TIMEOUT (default 10)
  --max-connections N   connections held at once, handshaking or spliced (default 10000); over
                        it a new one is closed at once, counted in
                        tls_splice_connections_refused_total and logged (at most one line a
                        second, with the count). With --workers the cap is per worker: N
                        workers hold up to N times as many
  --idle-timeout SECONDS  end a splice with no byte either way for this long, end=idle
                        (default 3600)
  --fin-timeout SECONDS once one direction has ended, end the splice after this long without a
                        byte the other way, end=idle (default 60)

Example:
  tls-splice terminate --listen 0.0.0.0:443 --cert site.pem --key site.key \\
    --alpn h2=127.0.0.1:8081 --alpn http/1.1=127.0.0.1:8080`;

interface Config {
  listen: Addr;
  /** --cert/--key/--ocsp pairs, in order; the first is the default certificate. */
  certPairs: CertSource[];
  certDir?: string;
  ticketKeysFile?: string;
  ticketRotateMs: number;
  identity?: Identity;
  clientCaFile?: string;
  to?: Addr;
  sni: [string, Addr][];
  alpn: [string, Addr][];
  proxyProtocol?: 1 | 2;
  workers: number;
  metrics?: Addr;
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
  dialTimeoutMs: number;
  limits: Limits;
}

function parseConfig(values: ParsedValues, tokens: ArgToken[] | undefined): Config {
  requireFlags(values, ['listen']);
  const certDir = stringFlag(values, 'cert-dir');
  const certPairs = certPairsOf(values, tokens);
  if (certPairs.length === 0 && certDir === undefined) {
    throw new UsageError('no certificate: give --cert FILE --key FILE or --cert-dir DIR');
  }
  const user = stringFlag(values, 'user');
  const group = stringFlag(values, 'group');
  if (group !== undefined && user === undefined) throw new UsageError('--group needs --user');
  const proxy = stringFlag(values, 'proxy-protocol');
  if (proxy !== undefined && proxy !== 'v1' && proxy !== 'v2') {
    throw new UsageError(`--proxy-protocol: "${proxy}" is not v1 or v2`);
  }
  const metrics = stringFlag(values, 'metrics');
  const to = stringFlag(values, 'to');
  const config: Config = {
    listen: parseAddr(stringFlag(values, 'listen')!, '--listen'),
    certPairs,
    certDir,
    ticketKeysFile: stringFlag(values, 'ticket-keys'),
    ticketRotateMs: parseSeconds(stringFlag(values, 'ticket-rotate'), '--ticket-rotate',
      3_600_000),
    identity: user === undefined ? undefined : { user, group },
    clientCaFile: stringFlag(values, 'client-ca'),
    to: to === undefined ? undefined : parseAddr(to, '--to'),
    sni: parseMappings(stringsFlag(values, 'sni'), '--sni'),
    alpn: parseMappings(stringsFlag(values, 'alpn'), '--alpn'),
    proxyProtocol: proxy === undefined ? undefined : proxy === 'v1' ? 1 : 2,
    workers: parsePositiveInt(stringFlag(values, 'workers'), '--workers', 1),
    metrics: metrics === undefined ? undefined : parseAddr(metrics, '--metrics'),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
    dialTimeoutMs: parseSeconds(stringFlag(values, 'dial-timeout'), '--dial-timeout', 10_000),
    limits: parseLimits(values),
  };
  if (config.to === undefined && config.sni.length === 0 && config.alpn.length === 0) {
    throw new UsageError('no backend: give --to, --sni or --alpn');
  }
  for (const [proto] of config.alpn) {
    if (Buffer.byteLength(proto) > 255) throw new UsageError(`--alpn: "${proto}" is too long`);
  }
  return config;
}

// The pairs in command-line order (main.ts hands over parseArgs' tokens); a caller without
// tokens gets them zipped from the values.
function certPairsOf(values: ParsedValues, tokens: ArgToken[] | undefined): CertSource[] {
  if (tokens !== undefined) return pairsFromTokens(tokens);
  const certs = stringsFlag(values, 'cert');
  const keys = stringsFlag(values, 'key');
  if (certs.length !== keys.length) throw new UsageError('give one --key after each --cert');
  return certs.map((cert, i) => ({ cert, key: keys[i] }));
}

/** SNI pattern match: exact, case-insensitive; `*.example.com` matches exactly one more label. */
export function sniMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const n = name.toLowerCase().replace(/\.$/, '');
  if (p.startsWith('*.')) {
    const dot = n.indexOf('.');
    return dot > 0 && n.slice(dot + 1) === p.slice(2);
  }
  return p === n;
}

interface Route {
  addr: Addr;
  /** How it was chosen, for the log line. */
  by: 'sni' | 'alpn' | 'to';
}

function routeOf(config: Config, servername: string | undefined,
  protocol: string | undefined): Route | undefined {
  if (servername) {
    const hit = config.sni.find(([pattern]) => sniMatches(pattern, servername));
    if (hit !== undefined) return { addr: hit[1], by: 'sni' };
  }
  if (protocol) {
    const hit = config.alpn.find(([proto]) => proto === protocol);
    if (hit !== undefined) return { addr: hit[1], by: 'alpn' };
  }
  return config.to === undefined ? undefined : { addr: config.to, by: 'to' };
}

// The same in every context and every terminate process: OpenSSL resumes a session only in a
// context with the session-id context it was made in (Node's default hashes the command line).
const SESSION_ID_CONTEXT = 'tls-splice terminate';

// Every certificate, read now: --cert pairs first, then --cert-dir's files as they are today.
function loadCertificates(config: Config): CertSet {
  const sources = [...config.certPairs,
    ...(config.certDir === undefined ? [] : dirSources(config.certDir))];
  const ca = config.clientCaFile === undefined ? undefined
    : readPem(config.clientCaFile, 'CA certificate');
  return loadCertSet(sources, { ca, sessionIdContext: SESSION_ID_CONTEXT });
}

async function run(values: ParsedValues, _positionals: string[],
  tokens?: ArgToken[]): Promise<void> {
  const config = parseConfig(values, tokens);
  const certs = loadCertificates(config);   // exit 1 naming the file, before any fork
  if (config.identity !== undefined) resolveIdentity(config.identity);
  const logger = new Logger(config.logFormat);
  if (config.workers > 1 && cluster.isPrimary) {
    await runPrimary(config, logger);
    return;
  }
  await runServer(config, logger, certs);
}

// This process's ticket keys: the file, the primary's (a worker), or fresh ones.
function initialTicketKeys(config: Config): TicketKey[] {
  if (config.ticketKeysFile !== undefined) return readTicketKeys(config.ticketKeysFile);
  const handed = process.env[TICKET_KEYS_ENV];
  if (cluster.isWorker && handed !== undefined) {
    delete process.env[TICKET_KEYS_ENV];
    return keysOfHex(handed);
  }
  return [keyOfNodeBytes(newTicketKey())];
}

// The primary hands its keys to a worker it forks in the environment (read and removed before
// the worker serves), and later ones in a message.
const TICKET_KEYS_ENV = 'TLS_SPLICE_TICKET_KEYS';

function hexOfKeys(keys: readonly TicketKey[]): string {
  return keys.map((key) => nodeBytesOfKey(key).toString('hex')).join(',');
}

function keysOfHex(text: string): TicketKey[] {
  return text.split(',').map((hex) => keyOfNodeBytes(Buffer.from(hex, 'hex')));
}

// Without --ticket-keys: a new key every --ticket-rotate, the previous one still decrypting.
function rotateTicketKeys(config: Config, keyring: TicketKeyring,
  onRotate: (keys: readonly TicketKey[]) => void = () => {}): void {
  if (config.ticketKeysFile !== undefined) return;
  setInterval(() => {
    keyring.replace([keyOfNodeBytes(newTicketKey()), keyring.keys[0]]);
    onRotate(keyring.keys);
  }, config.ticketRotateMs).unref();
}

// What the functions serving connections share in one process (a worker with --workers).
interface Terminator {
  config: Config;
  logger: Logger;
  group: SpliceGroup;
  /** TLS connections whose backend is being dialed: destroyed at shutdown (handleSignals). */
  pending: Set<net.Socket>;
  /** The certificates served now (replaced whole on SIGHUP). */
  certs: CertSet;
  tickets: TicketKeyring;
  metrics?: import('./metrics').Metrics;
}

async function runServer(config: Config, logger: Logger, certs: CertSet): Promise<void> {
  const t: Terminator = { config, logger, group: new SpliceGroup(), pending: new Set(),
    metrics: metricsOf(config), certs, tickets: new TicketKeyring(initialTicketKeys(config)) };
  for (const entry of certs) t.tickets.attach(entry.context);
  const server = createServer(serverOptions(t));
  t.tickets.attach(sharedContext(server));
  if (cluster.isWorker) {
    process.on('message', (msg: { tlsSplice?: string; keys?: string }) => {
      if (msg?.tlsSplice !== 'ticket-keys' || !msg.keys) return;
      t.tickets.replace(keysOfHex(msg.keys));
      logger.info('ticket keys rotated', { worker: cluster.worker?.id });
    });
  } else {
    rotateTicketKeys(config, t.tickets, () => logger.info('ticket keys rotated'));
  }
  stapleOcsp(server, t);
  watchConnections(server, t);
  logHandshakeFailures(server, t);
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    void onSecureConnection(t, tlsSocket);
  });
  const bound = await listen(server, config.listen);
  const metricsServer = await serveOwnMetrics(t);
  handleSignals({
    logger, servers: [server], group: t.group, drainTimeoutMs: config.drainTimeoutMs,
    pending: t.pending,
    reload: () => reload(server, t),
    beforeExit: () => { metricsServer?.close(); },
  });
  if (config.identity !== undefined) dropPrivileges(config.identity);
  if (cluster.isWorker) {
    process.send!({ tlsSplice: 'listening', host: bound.host, port: bound.port });
  } else {
    announceListening(bound);
  }
}

// The server's own context: what a client without SNI gets, and where OpenSSL decrypts tickets.
function sharedContext(server: tls.Server): tls.SecureContext {
  return (server as unknown as { _sharedCreds: tls.SecureContext })._sharedCreds;
}

// SIGHUP: every file again (a failure throws and leaves everything as it was), then the swap.
// Live connections keep the context they were made with.
function reload(server: tls.Server, t: Terminator): void {
  const certs = loadCertificates(t.config);
  if (t.config.ticketKeysFile !== undefined) {
    t.tickets.replace(readTicketKeys(t.config.ticketKeysFile));
  }
  for (const entry of certs) t.tickets.attach(entry.context);
  server.setSecureContext(defaultContextOptions(t.config, certs));
  t.tickets.attach(sharedContext(server));
  t.certs = certs;
  t.logger.info('certificates', { count: certs.length,
    default: certs[0].source.cert });
}

function defaultContextOptions(config: Config, certs: CertSet): tls.SecureContextOptions {
  return { cert: certs[0].pem.cert, key: certs[0].pem.key,
    ca: config.clientCaFile === undefined ? undefined : readPem(config.clientCaFile,
      'CA certificate'),
    sessionIdContext: SESSION_ID_CONTEXT } as tls.SecureContextOptions;
}

// --ocsp / NAME.ocsp: staple the response of the certificate the handshake picked.
function stapleOcsp(server: tls.Server, t: Terminator): void {
  server.on('OCSPRequest', (certificate: Buffer, _issuer: Buffer,
    callback: (err: Error | null, response: Buffer | null) => void) => {
    callback(null, entryOfLeaf(t.certs, certificate)?.ocsp ?? null);
  });
}

// This process's metrics: with --metrics, and in every worker (the primary sums them).
function metricsOf(config: Config): import('./metrics').Metrics | undefined {
  if (config.metrics === undefined) return undefined;
  const { Metrics } = require('./metrics') as typeof import('./metrics');
  return new Metrics('terminate');
}

// Without --workers the process serves its own registry; a worker's is read by the primary.
async function serveOwnMetrics(t: Terminator): Promise<import('node:http').Server | undefined> {
  if (t.metrics === undefined || cluster.isWorker) return undefined;
  const { serveMetrics, registrySource } = require('./metrics') as typeof import('./metrics');
  const served = await serveMetrics(t.config.metrics!, t.logger, registrySource(t.metrics));
  announceListening(served.addr, 'metrics');
  return served.server;
}

function serverOptions(t: Terminator): tls.TlsOptions {
  const config = t.config;
  const alpnProtocols = [...new Set(config.alpn.map(([proto]) => proto))];
  const strictSni = config.sni.length > 0 && config.alpn.length === 0 && config.to === undefined;
  const withCa = config.clientCaFile !== undefined;
  return {
    ...defaultContextOptions(config, t.certs),
    // With --client-ca, OpenSSL refuses a client without a certificate during the handshake
    // (certificate_required alert); Node refuses one that does not verify right after it
    // (logged with its reason by onHandshakeFailure; see docs/SECURITY.md).
    requestCert: withCa,
    rejectUnauthorized: withCa,
    handshakeTimeout: config.limits.handshakeTimeoutMs,
    ALPNProtocols: alpnProtocols.length > 0 ? alpnProtocols : undefined,
    // The certificate the name asks for; without a fallback backend, a name no --sni matches
    // fails the handshake (the certificate choice and the --sni routes are independent).
    SNICallback: (servername, callback) => {
      if (strictSni && !config.sni.some(([pattern]) => sniMatches(pattern, servername))) {
        callback(Object.assign(new Error(`no --sni route for "${servername}"`),
          { code: 'ERR_TLS_SPLICE_NO_ROUTE' }), undefined);
        return;
      }
      callback(null, chooseCert(t.certs, servername).context);
    },
  };
}

// Nagle off (an h2 terminator with Nagle stalls 40 ms on delayed ACKs), the connection gauges,
// and --max-connections.
function watchConnections(server: net.Server, t: Terminator): void {
  capConnections(server, t.config.limits.maxConnections, t.logger,
    () => t.metrics?.connectionRefused());
  server.on('connection', (socket: net.Socket) => {
    socket.setNoDelay(true);
    t.metrics?.connectionOpened();
    socket.once('close', () => t.metrics?.connectionClosed());
  });
}

function logHandshakeFailures(server: tls.Server, t: Terminator): void {
  onHandshakeFailure(server, (client, durationMs, err) => {
    const code = err?.code ?? 'ECONNRESET';
    t.metrics?.handshakeFailed(code);
    t.logger.connection({
      command: 'terminate', client, bytesFromClient: 0, bytesToClient: 0, durationMs,
      engine: null, reason: 'handshake', code,
      error: err?.message ?? 'the client left before the TLS handshake was done',
      worker: cluster.worker?.id,
    });
  });
}

// One established TLS connection: pick its backend, dial it, splice.
async function onSecureConnection(t: Terminator, tlsSocket: tls.TLSSocket): Promise<void> {
  const startedAt = Date.now();
  const client = formatAddr(tlsSocket.remoteAddress, tlsSocket.remotePort);
  const servername = typeof tlsSocket.servername === 'string' ? tlsSocket.servername : undefined;
  const protocol = typeof tlsSocket.alpnProtocol === 'string' ? tlsSocket.alpnProtocol
    : undefined;
  const extra = { sni: servername, alpn: protocol, worker: cluster.worker?.id };
  t.metrics?.handshakeDone(tlsSocket.isSessionReused());
  let clientError: NodeJS.ErrnoException | undefined;
  tlsSocket.on('error', (err: NodeJS.ErrnoException) => { clientError ??= err; });
  const refuse = (reason: string, code: string, detail: Record<string, unknown> = {}) => {
    t.logger.connection({ command: 'terminate', client, backend: detail.backend as string,
      bytesFromClient: 0, bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null,
      reason, code, ...extra, ...detail });
    tlsSocket.destroy();
  };
  const route = routeOf(t.config, servername, protocol);
  if (route === undefined) {
    refuse('refused', 'ERR_TLS_SPLICE_NO_ROUTE');
    return;
  }
  const backendName = formatAddr(route.addr.host, route.addr.port);
  t.pending.add(tlsSocket);
  let backend: net.Socket;
  try {
    backend = await dial(route.addr, t.config.dialTimeoutMs);
  } catch (err) {
    refuse('failed', (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_DIAL',
      { backend: backendName, error: (err as Error).message });
    return;
  } finally {
    t.pending.delete(tlsSocket);
  }
  if (tlsSocket.destroyed || t.group.closing) {
    backend.destroy();
    refuse(t.group.closing ? 'stopped' : 'error', clientError?.code ?? 'ECONNRESET',
      { backend: backendName });
    return;
  }
  try {
    const handle = await spliceConnection(tlsSocket, backend, {
      command: 'terminate', group: t.group, logger: t.logger, client, backend: backendName,
      startedAt, head: proxyHead(t.config, tlsSocket), extra: { ...extra, route: route.by },
      onEnd: (end: SpliceEnd) => t.metrics?.spliceEnded(end),
      splice: { idleTimeout: t.config.limits.idleTimeoutMs,
        finTimeout: t.config.limits.finTimeoutMs },
    });
    t.metrics?.spliceStarted(handle.engine);
  } catch {
    // Logged by spliceConnection from the handle's end.
  }
}

// --proxy-protocol: the client's address (and ALPN, SNI for v2) ahead of the spliced bytes.
function proxyHead(config: Config, tlsSocket: tls.TLSSocket): Buffer | undefined {
  if (config.proxyProtocol === undefined) return undefined;
  return proxyProtocolHeader(config.proxyProtocol, {
    source: { address: tlsSocket.remoteAddress ?? '', port: tlsSocket.remotePort ?? 0 },
    destination: { address: tlsSocket.localAddress ?? '', port: tlsSocket.localPort ?? 0 },
    alpn: typeof tlsSocket.alpnProtocol === 'string' ? tlsSocket.alpnProtocol : undefined,
    authority: typeof tlsSocket.servername === 'string' ? tlsSocket.servername : undefined,
  });
}

// --workers N: the primary forks N workers running the same command line; node:cluster shares
// the listening socket among them. It prints `listening` once all of them listen, forwards
// SIGHUP, and on SIGTERM/SIGINT lets every worker drain and exits 0 when they have.
async function runPrimary(config: Config, logger: Logger): Promise<void> {
  const c = cluster;
  let metricsSource: (() => Promise<{ text: string; contentType: string }>) | undefined;
  if (config.metrics !== undefined) {
    metricsSource = (require('./metrics') as typeof import('./metrics')).clusterSource();
  }
  let stopping = false;
  let listening = 0;
  let announced = false;
  const workers = new Set<import('node:cluster').Worker>();
  // One set of ticket keys for every worker, so that any of them resumes any session.
  const tickets = new TicketKeyring(initialTicketKeys(config));
  rotateTicketKeys(config, tickets, (keys) => {
    for (const worker of workers) worker.send({ tlsSplice: 'ticket-keys', keys: hexOfKeys(keys) });
  });
  const ready = new Promise<Addr>((resolve, reject) => {
    const fork = () => {
      const worker = c.fork(config.ticketKeysFile === undefined
        ? { [TICKET_KEYS_ENV]: hexOfKeys(tickets.keys) } : {});
      workers.add(worker);
      worker.on('message', (msg: { tlsSplice?: string; host: string; port: number }) => {
        if (msg?.tlsSplice !== 'listening') return;
        listening += 1;
        if (listening === config.workers) resolve({ host: msg.host, port: msg.port });
      });
      worker.on('exit', (code, signal) => {
        workers.delete(worker);
        if (stopping) {
          if (workers.size === 0) process.stderr.write('', () => process.exit(0));
          return;
        }
        if (!announced) {
          reject(Object.assign(new Error(`a worker exited with ${signal ?? code} before ` +
            'listening'), { code: 'ERR_TLS_SPLICE_WORKER' }));
          return;
        }
        logger.error(`worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
        setTimeout(fork, 1000).unref();
      });
    };
    for (let i = 0; i < config.workers; i++) fork();
  });
  let bound: Addr;
  try {
    bound = await ready;
  } catch (err) {
    stopping = true;
    for (const worker of workers) worker.process.kill('SIGKILL');
    throw err;
  }
  announced = true;
  let metricsServer: import('node:http').Server | undefined;
  if (metricsSource !== undefined) {
    const { serveMetrics } = require('./metrics') as typeof import('./metrics');
    const served = await serveMetrics(config.metrics!, logger, metricsSource);
    metricsServer = served.server;
    announceListening(served.addr, 'metrics');
  }
  const stop = (signal: NodeJS.Signals) => {
    if (!stopping) logger.info('draining workers', { workers: workers.size });
    stopping = true;
    metricsServer?.close();
    for (const worker of workers) worker.process.kill(signal);
    if (workers.size === 0) process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    for (const worker of workers) worker.process.kill('SIGHUP');
  });
  if (config.identity !== undefined) dropPrivileges(config.identity);
  announceListening(bound);
}

export const command: Command = {
  summary: 'TLS in, plain TCP out: route by SNI / ALPN (stunnel server, hitch, ghostunnel)',
  usage: USAGE,
  help: HELP,
  options: {
    listen: { type: 'string' },
    cert: { type: 'string', multiple: true },
    key: { type: 'string', multiple: true },
    ocsp: { type: 'string', multiple: true },
    'cert-dir': { type: 'string' },
    'ticket-keys': { type: 'string' },
    'ticket-rotate': { type: 'string' },
    user: { type: 'string' },
    group: { type: 'string' },
    to: { type: 'string' },
    alpn: { type: 'string', multiple: true },
    sni: { type: 'string', multiple: true },
    'client-ca': { type: 'string' },
    'proxy-protocol': { type: 'string' },
    workers: { type: 'string' },
    metrics: { type: 'string' },
    'dial-timeout': { type: 'string' },
    ...LIMIT_OPTIONS,
  },
  run,
};
