// tls-splice terminate: a TLS terminator (stunnel's server mode, hitch, ghostunnel's server,
// HAProxy's `mode tcp` + `ssl crt`). Finishes the TLS handshake with Node, picks a plain backend
// by SNI, then by the negotiated ALPN protocol, then --to, and splices the session to it
// natively: an h2 client behind it talks h2c to a backend that knows nothing of TLS.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, createServer, proxyProtocolHeader } from '../index';
import type { SpliceEnd } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, Logger, ParsedValues, UsageError, announceListening,
  dial, formatAddr, handleSignals, listen, loadTlsFiles, parseAddr, parseLogFormat, parseMappings,
  parsePositiveInt, parseSeconds, requireFlags, spliceConnection, stringFlag, stringsFlag,
} from './common';

// node:cluster is `export default` in @types/node but module.exports at run time.
const cluster = require('node:cluster') as import('node:cluster').Cluster;

const USAGE = `Usage: tls-splice terminate --listen ADDR --cert FILE --key FILE [--to ADDR]
                            [--alpn PROTO=ADDR ...] [--sni NAME=ADDR ...] [--client-ca FILE]
                            [--proxy-protocol v1|v2] [--workers N] [--metrics ADDR]`;

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
  --cert FILE --key FILE  the server certificate chain and key (PEM); SIGHUP reloads them
  --client-ca FILE      require a client certificate signed by this CA (mutual TLS)
  --proxy-protocol v1|v2  send the client's address to the backend in a PROXY header first
                        (HAProxy: bind ... accept-proxy); v2 also carries ALPN and SNI
  --workers N           N processes sharing the port (node:cluster; default 1)
  --metrics ADDR        serve Prometheus text on http://ADDR/metrics
  --dial-timeout SECONDS  give up on a backend that does not accept (default 10)

Example:
  tls-splice terminate --listen 0.0.0.0:443 --cert site.pem --key site.key \\
    --alpn h2=127.0.0.1:8081 --alpn http/1.1=127.0.0.1:8080`;

// Handshake errors waiting for their connection's close (see the 'connection' listener).
const MAX_QUEUED_HANDSHAKE_ERRORS = 1024;

interface Config {
  listen: Addr;
  certFile: string;
  keyFile: string;
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
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['listen', 'cert', 'key']);
  const proxy = stringFlag(values, 'proxy-protocol');
  if (proxy !== undefined && proxy !== 'v1' && proxy !== 'v2') {
    throw new UsageError(`--proxy-protocol: "${proxy}" is not v1 or v2`);
  }
  const metrics = stringFlag(values, 'metrics');
  const to = stringFlag(values, 'to');
  const config: Config = {
    listen: parseAddr(stringFlag(values, 'listen')!, '--listen'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
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
  };
  if (config.to === undefined && config.sni.length === 0 && config.alpn.length === 0) {
    throw new UsageError('no backend: give --to, --sni or --alpn');
  }
  for (const [proto] of config.alpn) {
    if (Buffer.byteLength(proto) > 255) throw new UsageError(`--alpn: "${proto}" is too long`);
  }
  return config;
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

function tlsFiles(config: Config) {
  return loadTlsFiles({ cert: config.certFile, key: config.keyFile, ca: config.clientCaFile },
    tls.createSecureContext);
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const material = tlsFiles(config);   // exit 1 naming the file, before any fork
  const logger = new Logger(config.logFormat);
  if (config.workers > 1 && cluster.isPrimary) {
    await runPrimary(config, logger);
    return;
  }
  await runServer(config, logger, material);
}

async function runServer(config: Config, logger: Logger,
  material: ReturnType<typeof tlsFiles>): Promise<void> {
  const group = new SpliceGroup();
  const pending = new Set<net.Socket>();
  const alpnProtocols = [...new Set(config.alpn.map(([proto]) => proto))];
  const strictSni = config.sni.length > 0 && config.alpn.length === 0 && config.to === undefined;
  const { Metrics } = config.metrics !== undefined || cluster.isWorker
    ? require('./metrics') as typeof import('./metrics') : { Metrics: undefined };
  const metrics = Metrics !== undefined && config.metrics !== undefined ? new Metrics('terminate')
    : undefined;

  const server = createServer({
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    requestCert: material.ca !== undefined,
    rejectUnauthorized: material.ca !== undefined,
    ALPNProtocols: alpnProtocols.length > 0 ? alpnProtocols : undefined,
    // Without a fallback backend, a name no --sni matches fails the handshake.
    SNICallback: strictSni ? (servername, callback) => {
      if (config.sni.some(([pattern]) => sniMatches(pattern, servername))) {
        callback(null, undefined);
      } else {
        callback(Object.assign(new Error(`no --sni route for "${servername}"`),
          { code: 'ERR_TLS_SPLICE_NO_ROUTE' }), undefined);
      }
    } : undefined,
  });
  // Nagle off: an h2 terminator with Nagle stalls 40 ms on delayed ACKs.
  //
  // A failed handshake is logged when its TCP connection closes: 'tlsClientError' hands over a
  // TLSSocket that is already destroyed and no longer knows its peer's address, so the raw
  // socket's address is kept here, and the errors queue up in the order Node reported them (it
  // emits the error, then destroys the connection).
  const accepted = new Map<string, { secured: boolean }>();
  const handshakeErrors: NodeJS.ErrnoException[] = [];
  server.on('connection', (socket: net.Socket) => {
    socket.setNoDelay(true);
    metrics?.connectionOpened();
    const startedAt = Date.now();
    const client = formatAddr(socket.remoteAddress, socket.remotePort);
    const entry = { secured: false };
    accepted.set(client, entry);
    socket.once('close', () => {
      metrics?.connectionClosed();
      if (accepted.get(client) === entry) accepted.delete(client);
      if (entry.secured) return;
      const err = handshakeErrors.shift();
      logger.connection({
        command: 'terminate', client, bytesFromClient: 0, bytesToClient: 0,
        durationMs: Date.now() - startedAt, engine: null, reason: 'handshake',
        code: err?.code ?? 'ECONNRESET',
        error: err?.message ?? 'the client left before the TLS handshake was done',
      });
    });
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    metrics?.handshakeFailed(err.code);
    handshakeErrors.push(err);
    // Bounded: errors whose connection never closes (cannot happen in Node today) are dropped.
    if (handshakeErrors.length > MAX_QUEUED_HANDSHAKE_ERRORS) handshakeErrors.shift();
  });
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    void onSecureConnection(tlsSocket);
  });

  async function onSecureConnection(tlsSocket: tls.TLSSocket): Promise<void> {
    const startedAt = Date.now();
    const client = formatAddr(tlsSocket.remoteAddress, tlsSocket.remotePort);
    const entry = accepted.get(client);
    if (entry !== undefined) entry.secured = true;
    const servername = typeof tlsSocket.servername === 'string' ? tlsSocket.servername
      : undefined;
    const protocol = typeof tlsSocket.alpnProtocol === 'string' ? tlsSocket.alpnProtocol
      : undefined;
    const extra = { sni: servername, alpn: protocol, worker: cluster.worker?.id };
    let clientError: NodeJS.ErrnoException | undefined;
    const onError = (err: NodeJS.ErrnoException) => { clientError ??= err; };
    tlsSocket.on('error', onError);
    const refuse = (reason: string, code: string, detail: Record<string, unknown>) => {
      logger.connection({ command: 'terminate', client, backend: detail.backend as string,
        bytesFromClient: 0, bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null,
        reason, code, ...extra, ...detail });
      tlsSocket.destroy();
    };
    const route = routeOf(config, servername, protocol);
    if (route === undefined) {
      refuse('refused', 'ERR_TLS_SPLICE_NO_ROUTE', {});
      return;
    }
    const backendName = formatAddr(route.addr.host, route.addr.port);
    pending.add(tlsSocket);
    let backend: net.Socket;
    try {
      backend = await dial(route.addr, config.dialTimeoutMs);
    } catch (err) {
      refuse('failed', (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_DIAL',
        { backend: backendName, error: (err as Error).message });
      return;
    } finally {
      pending.delete(tlsSocket);
    }
    if (tlsSocket.destroyed || group.closing) {
      backend.destroy();
      refuse(group.closing ? 'stopped' : 'error', clientError?.code ?? 'ECONNRESET',
        { backend: backendName });
      return;
    }
    let head: Buffer | undefined;
    if (config.proxyProtocol !== undefined) {
      head = proxyProtocolHeader(config.proxyProtocol, {
        source: { address: tlsSocket.remoteAddress ?? '', port: tlsSocket.remotePort ?? 0 },
        destination: { address: tlsSocket.localAddress ?? '', port: tlsSocket.localPort ?? 0 },
        alpn: protocol, authority: servername,
      });
    }
    try {
      const handle = await spliceConnection(tlsSocket, backend, {
        command: 'terminate', group, logger, client, backend: backendName, startedAt, head,
        extra: { ...extra, route: route.by },
        onEnd: (end: SpliceEnd) => metrics?.spliceEnded(end),
      });
      metrics?.spliceStarted(handle.engine);
    } catch {
      // Logged by spliceConnection from the handle's end.
    }
  }

  const bound = await listen(server, config.listen);
  let metricsServer: import('node:http').Server | undefined;
  if (metrics !== undefined && !cluster.isWorker) {
    const { serveMetrics, registrySource } = require('./metrics') as typeof import('./metrics');
    const served = await serveMetrics(config.metrics!, logger, registrySource(metrics));
    metricsServer = served.server;
    announceListening(served.addr, 'metrics');
  }
  handleSignals({
    logger, servers: [server], group, drainTimeoutMs: config.drainTimeoutMs, pending,
    reload: () => {
      const fresh = tlsFiles(config);
      server.setSecureContext({ cert: fresh.cert, key: fresh.key, ca: fresh.ca });
    },
    beforeExit: () => { metricsServer?.close(); },
  });
  if (cluster.isWorker) {
    process.send!({ tlsSplice: 'listening', host: bound.host, port: bound.port });
  } else {
    announceListening(bound);
  }
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
  const ready = new Promise<Addr>((resolve, reject) => {
    const fork = () => {
      const worker = c.fork();
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
  announceListening(bound);
}

export const command: Command = {
  summary: 'TLS in, plain TCP out: route by SNI / ALPN (stunnel server, hitch, ghostunnel)',
  usage: USAGE,
  help: HELP,
  options: {
    listen: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    to: { type: 'string' },
    alpn: { type: 'string', multiple: true },
    sni: { type: 'string', multiple: true },
    'client-ca': { type: 'string' },
    'proxy-protocol': { type: 'string' },
    workers: { type: 'string' },
    metrics: { type: 'string' },
    'dial-timeout': { type: 'string' },
  },
  run,
};
