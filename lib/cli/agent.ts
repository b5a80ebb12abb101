// tls-splice agent: the private end of a reverse tunnel (frp's frpc, rathole's client, chisel's
// client). Runs next to an origin that cannot accept connections from outside (behind NAT),
// dials out to a `tls-splice relay` with mutual TLS and keeps --pool idle links open. When the
// relay announces a public client on a link (one JSON line), the agent dials --to, answers
// `{"ok":true}` (one JSON line; `{"ok":false,"code":...}` if the dial failed) and splices the
// link to the backend natively; a fresh link replaces the used one at once. (The relay holds
// the client's bytes until the answer: see relay.ts.)
//
// When the relay goes away (restart, network loss) the links' closes count as failures: the
// agent reconnects with exponential backoff (with jitter), one probe at a time, and refills the
// pool once a link is up again. A link that ends without close_notify while spliced (the relay
// was killed) resets the backend connection rather than ending it cleanly.
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { createSecureContext } from 'node:tls';

import { SpliceGroup, connect, proxyProtocolHeader, readPreamble } from '../index';
import type { LinePreamble, ProxyProtocolAddress } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, Logger, ParsedValues, UsageError, announceListening,
  dial,
  formatAddr, handleSignals, loadTlsFiles, parseAddr, parseLogFormat, parsePositiveInt,
  parseSeconds, requireFlags, spliceConnection, stringFlag,
} from './common';

const USAGE = `Usage: tls-splice agent --relay ADDR --to ADDR --cert FILE --key FILE --ca FILE
                        [--servername NAME] [--pool N] [--proxy-protocol v1|v2]`;

const HELP = `The private end of a reverse tunnel: dials out to a tls-splice relay with mutual
TLS, keeps idle links open, and splices each public client the relay announces to --to.
Replaces frp's frpc, rathole's client, chisel's client.

Flags:
  --relay ADDR           the relay's --agents address
  --to ADDR              the service public clients reach (a plain TCP backend)
  --cert FILE --key FILE this agent's client certificate and key (PEM), from the relay's
                         --client-ca; SIGHUP reloads them (and --ca) for new links
  --ca FILE              the CA that signed the relay's certificate (replaces the system roots)
  --servername NAME      the name to verify in the relay's certificate (default: the --relay host)
  --pool N               idle links kept open (default 4)
  --proxy-protocol v1|v2 send --to a PROXY header with the public client's address (and the
                         relay's public address it connected to) before its bytes
  --dial-timeout SECONDS give up on --to after this long (default 10; the client is reset)
  --max-backoff SECONDS  the longest wait between reconnection attempts (default 5)
Prints "connected ADDR" on stdout once the first link is up.

Example:
  tls-splice agent --relay relay.example:7443 --to 127.0.0.1:8080 --cert agent.pem \\
    --key agent.key --ca relay-ca.pem`;

// The relay's announcement is one short JSON line.
const MAX_ANNOUNCE_LENGTH = 4096;
const FIRST_BACKOFF_MS = 100;
// A relay that accepted the handshake greets at once; one that rejected our certificate closes.
const GREETING_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BACKOFF_MS = 5_000;
const DEFAULT_POOL = 4;

interface Config {
  relay: Addr;
  to: Addr;
  certFile: string;
  keyFile: string;
  caFile: string;
  servername?: string;
  pool: number;
  proxyProtocol?: 1 | 2;
  dialTimeoutMs: number;
  maxBackoffMs: number;
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['relay', 'to', 'cert', 'key', 'ca']);
  const proxy = stringFlag(values, 'proxy-protocol');
  if (proxy !== undefined && proxy !== 'v1' && proxy !== 'v2') {
    throw new UsageError(`--proxy-protocol: "${proxy}" is not v1 or v2`);
  }
  return {
    relay: parseAddr(stringFlag(values, 'relay')!, '--relay'),
    to: parseAddr(stringFlag(values, 'to')!, '--to'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    caFile: stringFlag(values, 'ca')!,
    servername: stringFlag(values, 'servername'),
    pool: parsePositiveInt(stringFlag(values, 'pool'), '--pool', DEFAULT_POOL),
    proxyProtocol: proxy === undefined ? undefined : proxy === 'v1' ? 1 : 2,
    dialTimeoutMs: parseSeconds(stringFlag(values, 'dial-timeout'), '--dial-timeout', 10_000),
    maxBackoffMs: Math.max(FIRST_BACKOFF_MS, parseSeconds(stringFlag(values, 'max-backoff'),
      '--max-backoff', DEFAULT_MAX_BACKOFF_MS)),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
  };
}

// { address, port } from the relay's announcement, if it is one.
function addressOf(value: unknown): ProxyProtocolAddress | undefined {
  const v = value as { address?: unknown; port?: unknown } | null | undefined;
  if (typeof v?.address !== 'string' || !net.isIP(v.address)) return undefined;
  if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 0 || v.port > 65535) {
    return undefined;
  }
  return { address: v.address, port: v.port };
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile,
    ca: config.caFile }, createSecureContext);
  let material = tlsFiles();
  const logger = new Logger(config.logFormat);
  const group = new SpliceGroup();
  const idle = new Set<net.Socket>();      // links waiting for an announcement
  const relayName = formatAddr(config.relay.host, config.relay.port);
  const toName = formatAddr(config.to.host, config.to.port);
  // Verify the relay's name; for an IP address, its IP SAN (no SNI is sent for an IP).
  const servername = config.servername ?? (net.isIP(config.relay.host) ? undefined
    : config.relay.host);

  let connecting = 0;
  let failures = 0;
  let retryTimer: NodeJS.Timeout | null = null;
  let stopping = false;
  let connected = false;
  let lastError = '';

  // Opens links until the pool is full. After a failure: one probe at a time, after a backoff.
  function fill(): void {
    if (stopping) return;
    if (failures > 0) {
      if (connecting > 0 || retryTimer !== null) return;
      const delay = Math.min(config.maxBackoffMs, FIRST_BACKOFF_MS * 2 ** (failures - 1));
      // Jitter: agents that lost the same relay do not all come back in the same millisecond.
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (!stopping && connecting === 0 && idle.size < config.pool) openLink();
      }, Math.round(delay * (0.5 + Math.random() / 2)));
      return;
    }
    while (idle.size + connecting < config.pool) openLink();
  }

  function failed(why: string): void {
    failures += 1;
    // One line per outage, not one per attempt.
    if (failures === 1 || why !== lastError) {
      logger.error(`agent: no link to the relay ${relayName} (${why}); reconnecting with backoff`);
    }
    lastError = why;
    fill();
  }

  function openLink(): void {
    connecting += 1;
    let up = false;
    let error: NodeJS.ErrnoException | undefined;
    const link = connect({
      host: config.relay.host, port: config.relay.port, servername,
      cert: material.cert, key: material.key, ca: material.ca,
    });
    link.on('error', (err: NodeJS.ErrnoException) => { error ??= err; });
    link.once('secureConnect', () => {
      link.setNoDelay(true);
      link.setKeepAlive(true, 30_000);
      void greeted(link).then((ok) => {
        if (!ok || link.destroyed) {
          link.destroy();
          return;   // 'close' counts the failure (once)
        }
        connecting -= 1;
        up = true;
        failures = 0;
        lastError = '';
        if (!connected) {
          connected = true;
          announceListening(config.relay, 'connected');
        }
        void waitForClient(link);
        fill();
      });
    });
    link.once('close', () => {
      if (up) return;
      connecting -= 1;
      failed(error?.code ?? 'the relay closed the link before greeting it (is this agent\'s ' +
        'certificate from the relay\'s --client-ca?)');
    });
  }

  // The relay's greeting line: the link is accepted (see relay.ts). Bytes after it (an
  // announcement already on its way) go back to the socket for waitForClient().
  async function greeted(link: tls.TLSSocket): Promise<boolean> {
    try {
      const greeting = await readPreamble(link, { maxLength: MAX_ANNOUNCE_LENGTH,
        timeout: GREETING_TIMEOUT_MS });
      if ((JSON.parse(greeting.line) as { relay?: unknown }).relay !== 'tls-splice') return false;
      if (greeting.rest.length > 0) link.unshift(greeting.rest);
      return true;
    } catch {
      return false;
    }
  }

  async function waitForClient(link: tls.TLSSocket): Promise<void> {
    idle.add(link);
    let announcement: LinePreamble;
    try {
      announcement = await readPreamble(link, { maxLength: MAX_ANNOUNCE_LENGTH });
    } catch (err) {
      idle.delete(link);
      link.destroy();
      // The relay closed an idle link: it is going away (or restarting).
      if (!stopping) failed((err as { code?: string }).code ?? 'link closed');
      return;
    } finally {
      idle.delete(link);
    }
    fill();   // replace the link now in use
    const startedAt = Date.now();
    let client = '?';
    let source: ProxyProtocolAddress | undefined;
    let destination: ProxyProtocolAddress | undefined;
    try {
      const parsed = JSON.parse(announcement.line) as { client?: unknown; source?: unknown;
        destination?: unknown };
      if (typeof parsed.client === 'string') client = parsed.client;
      source = addressOf(parsed.source);
      destination = addressOf(parsed.destination);
    } catch {
      logger.error(`agent: the relay sent a line that is not JSON; closing the link`,
        { code: 'ERR_TLS_SPLICE_LINK_PROTOCOL' });
      link.destroy();
      return;
    }
    let backend: net.Socket;
    try {
      backend = await dial(config.to, config.dialTimeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_DIAL';
      // The relay resets the public client.
      link.end(`${JSON.stringify({ ok: false, code })}\n`);
      setTimeout(() => link.destroy(), 5_000).unref();
      logger.connection({ command: 'agent', client, backend: toName, bytesFromClient: 0,
        bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null, reason: 'failed',
        code, error: (err as Error).message });
      return;
    }
    if (link.destroyed || stopping) {
      backend.destroy();
      link.destroy();
      logger.connection({ command: 'agent', client, backend: toName, bytesFromClient: 0,
        bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null,
        reason: stopping ? 'stopped' : 'error', code: stopping ? 'ERR_TLS_SPLICE_STOPPING'
          : 'ECONNRESET', error: 'the link closed while the backend was dialled' });
      return;
    }
    // A relay that did not send addresses gets the header's "unknown" form.
    const head = config.proxyProtocol === undefined ? announcement.rest : Buffer.concat([
      proxyProtocolHeader(config.proxyProtocol, { source, destination }), announcement.rest]);
    // The answer, then the splice at once: capture holds the link before any new record.
    link.write(`${JSON.stringify({ ok: true })}\n`);
    try {
      await spliceConnection(link, backend, {
        command: 'agent', group, logger, client, backend: toName, startedAt, head,
        // A truncated link must not end the backend cleanly (spliceConnection's default too).
        splice: { onTruncation: 'reset' },
      });
    } catch {
      // Logged by spliceConnection from the handle's end.
    }
  }

  const stop = () => {
    stopping = true;
    if (retryTimer !== null) clearTimeout(retryTimer);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  handleSignals({
    logger, servers: [], group, drainTimeoutMs: config.drainTimeoutMs, pending: idle,
    // New links use the new certificate; live ones keep theirs.
    reload: () => { material = tlsFiles(); },
  });
  fill();
}

export const command: Command = {
  summary: 'reverse tunnel, private end: dial out to a relay, serve --to (frpc, rathole)',
  usage: USAGE,
  help: HELP,
  options: {
    relay: { type: 'string' },
    to: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    servername: { type: 'string' },
    pool: { type: 'string' },
    'proxy-protocol': { type: 'string' },
    'dial-timeout': { type: 'string' },
    'max-backoff': { type: 'string' },
  },
  run,
};
