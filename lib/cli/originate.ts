// tls-splice originate: plain TCP in, TLS out (stunnel's client mode, ghostunnel's client).
// Each plain connection gets its own TLS connection to the upstream, verified against the
// default roots or --ca; once the handshake is done the two are spliced natively. A connection
// whose upstream fails verification is closed without a byte sent either way, and the log says
// why.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, connect } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, LIMIT_OPTIONS, Limits, Logger, ParsedValues, UsageError,
  announceListening, capConnections, formatAddr, handleSignals, listen, loadTlsFiles, parseAddr,
  parseLimits, parseLogFormat, parseSeconds, requireFlags, spliceConnection, stringFlag,
  stringsFlag,
} from './common';

const USAGE = `Usage: tls-splice originate --listen ADDR --connect ADDR [--servername NAME]
                            [--ca FILE] [--insecure] [--cert FILE --key FILE] [--alpn PROTO]
                            [--max-connections N] [--idle-timeout S] [--fin-timeout S]`;

const HELP = `Accepts plain TCP and carries each connection over its own TLS connection to an
upstream (replaces stunnel's client mode, ghostunnel client, socat TCP-LISTEN -> OPENSSL).

Flags:
  --listen ADDR         where to accept plain TCP (HOST:PORT; keep it on loopback or a trusted net)
  --connect ADDR        the TLS upstream
  --servername NAME     SNI and the name the certificate must carry (default: the --connect host,
                        when it is a name)
  --ca FILE             trust only these CA certificates (default: Node's roots, i.e. Mozilla's,
                        plus NODE_EXTRA_CA_CERTS; run node with --use-openssl-ca for the system's)
  --insecure            do not verify the upstream's certificate (never the default)
  --cert FILE --key FILE  a client certificate for upstreams that require one; SIGHUP reloads it
  --alpn PROTO          offer these ALPN protocols (repeatable, in order)
  --connect-timeout SECONDS  give up on an upstream that does not answer (default 10)
  --max-connections N   plain connections held at once (default 10000); over it a new one is
                        closed at once (logged at most once a second with the count)
  --idle-timeout SECONDS  end a splice with no byte either way for this long, end=idle
                        (default 3600)
  --fin-timeout SECONDS once one direction has ended, end the splice after this long without a
                        byte the other way, end=idle (default 60)

A failed verification closes the plain connection with no byte sent (a TCP reset) and logs the
reason (e.g. code=UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID).

Example:
  tls-splice originate --listen 127.0.0.1:6380 --connect redis.example:6380 --ca ca.pem`;

interface Config {
  listen: Addr;
  connect: Addr;
  servername?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  insecure: boolean;
  alpn: string[];
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
  connectTimeoutMs: number;
  limits: Limits;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['listen', 'connect']);
  const config: Config = {
    listen: parseAddr(stringFlag(values, 'listen')!, '--listen'),
    connect: parseAddr(stringFlag(values, 'connect')!, '--connect'),
    servername: stringFlag(values, 'servername'),
    caFile: stringFlag(values, 'ca'),
    certFile: stringFlag(values, 'cert'),
    keyFile: stringFlag(values, 'key'),
    insecure: values.insecure === true,
    alpn: stringsFlag(values, 'alpn'),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
    connectTimeoutMs: parseSeconds(stringFlag(values, 'connect-timeout'), '--connect-timeout',
      10_000),
    limits: parseLimits(values),
  };
  if ((config.certFile === undefined) !== (config.keyFile === undefined)) {
    throw new UsageError('--cert and --key go together');
  }
  if (config.insecure && config.caFile !== undefined) {
    throw new UsageError('--insecure and --ca contradict each other: pick one');
  }
  if (config.servername === undefined && net.isIP(config.connect.host) === 0) {
    config.servername = config.connect.host;
  }
  return config;
}

function tlsFiles(config: Config) {
  return loadTlsFiles({ cert: config.certFile, key: config.keyFile, ca: config.caFile },
    tls.createSecureContext);
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  let material = tlsFiles(config);
  const logger = new Logger(config.logFormat);
  const group = new SpliceGroup();
  const pending = new Set<net.Socket>();
  const upstreamName = formatAddr(config.connect.host, config.connect.port);

  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (plain) => {
    void onConnection(plain);
  });
  capConnections(server, config.limits.maxConnections, logger);

  async function onConnection(plain: net.Socket): Promise<void> {
    const startedAt = Date.now();
    const client = formatAddr(plain.remoteAddress, plain.remotePort);
    plain.setNoDelay(true);
    pending.add(plain);
    let plainError: NodeJS.ErrnoException | undefined;
    plain.on('error', (err) => { plainError ??= err; });
    let upstream: tls.TLSSocket;
    try {
      upstream = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const socket = connect({
          host: config.connect.host,
          port: config.connect.port,
          servername: config.servername,
          ca: material.ca,
          cert: material.cert,
          key: material.key,
          rejectUnauthorized: !config.insecure,
          ALPNProtocols: config.alpn.length > 0 ? config.alpn : undefined,
          noDelay: true,
        } as tls.ConnectionOptions);
        const timer = setTimeout(() => {
          socket.destroy(Object.assign(new Error(`no TLS session with ${upstreamName} after ` +
            `${config.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
        }, config.connectTimeoutMs);
        // A plain client that leaves before the handshake is done cancels it.
        const onPlainClose = () => socket.destroy(Object.assign(new Error('the client left'),
          { code: plainError?.code ?? 'ECONNRESET' }));
        plain.once('close', onPlainClose);
        socket.once('secureConnect', () => {
          clearTimeout(timer);
          // Errors after the handshake (a reset before the splice owns the session) end up in
          // the splice's end; this listener only keeps them from crashing the process.
          socket.on('error', () => {});
          plain.off('close', onPlainClose);
          resolve(socket);
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          plain.off('close', onPlainClose);
          reject(err);
        });
      });
    } catch (err) {
      pending.delete(plain);
      // Nothing was sent to the client: a reset tells it the connection failed rather than
      // ended, and nothing it sent went anywhere.
      if (!plain.destroyed) plain.resetAndDestroy();
      const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_UPSTREAM';
      logger.connection({
        command: 'originate', client, backend: upstreamName, bytesFromClient: 0,
        bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null,
        reason: 'failed', code, error: (err as Error).message,
      });
      return;
    }
    pending.delete(plain);
    if (plain.destroyed || group.closing) {
      upstream.destroy();
      if (!plain.destroyed) plain.destroy();
      logger.connection({ command: 'originate', client, backend: upstreamName, bytesFromClient: 0,
        bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null,
        reason: group.closing ? 'stopped' : 'error', code: plainError?.code });
      return;
    }
    // spliceConnection's "from client" is the TLS side; here the client is the plain socket,
    // so the log's directions are swapped back below.
    try {
      await spliceConnection(upstream, plain, {
        command: 'originate', group, logger: swappedLogger(logger), client, backend: upstreamName,
        startedAt, extra: { alpn: upstream.alpnProtocol || undefined,
          verified: !config.insecure },
        splice: { idleTimeout: config.limits.idleTimeoutMs,
          finTimeout: config.limits.finTimeoutMs },
      });
    } catch {
      // Logged from the handle's end.
    }
  }

  const bound = await listen(server, config.listen);
  handleSignals({
    logger, servers: [server], group, drainTimeoutMs: config.drainTimeoutMs, pending,
    reload: () => { material = tlsFiles(config); },
  });
  announceListening(bound);
}

// The splice runs from the upstream's TLS socket to the plain client: its "in" is what the
// upstream sent, i.e. what the client receives.
function swappedLogger(logger: Logger): Logger {
  const swapped = Object.create(logger) as Logger;
  swapped.connection = (record) => logger.connection({ ...record,
    bytesFromClient: record.bytesToClient, bytesToClient: record.bytesFromClient });
  return swapped;
}

export const command: Command = {
  summary: 'plain TCP in, verified TLS out (stunnel client mode)',
  usage: USAGE,
  help: HELP,
  options: {
    listen: { type: 'string' },
    connect: { type: 'string' },
    servername: { type: 'string' },
    ca: { type: 'string' },
    insecure: { type: 'boolean' },
    cert: { type: 'string' },
    key: { type: 'string' },
    alpn: { type: 'string', multiple: true },
    'connect-timeout': { type: 'string' },
    // The upstream handshake is bounded by --connect-timeout: no --handshake-timeout here.
    'max-connections': LIMIT_OPTIONS['max-connections'],
    'idle-timeout': LIMIT_OPTIONS['idle-timeout'],
    'fin-timeout': LIMIT_OPTIONS['fin-timeout'],
  },
  run,
};
