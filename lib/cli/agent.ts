// tls-splice agent: the private end of a reverse tunnel (frp's frpc, rathole's client, chisel's
// client). Runs next to an origin that cannot accept connections from outside (behind NAT),
// dials out to a `tls-splice relay` with mutual TLS and keeps --pool idle links open. When the
// relay announces a public client on a link, the agent dials --to, answers, and splices the link
// to the backend natively; a fresh link replaces the used one at once, as long as the agent holds
// fewer than --max-links links (idle and busy): public clients beyond that wait at the relay
// (--queue-timeout there), so a flood of them cannot make the agent open unbounded links and
// backend connections. The messages on a link are in link.ts.
//
// When the relay goes away (restart, network loss) the links' closes count as failures: the
// agent reconnects with exponential backoff (with jitter), one probe at a time, and refills the
// pool once a link is up again. A link that ends without close_notify while spliced (the relay
// was killed) resets the backend connection rather than ending it cleanly.
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { createSecureContext } from 'node:tls';

import { SpliceGroup, connect, proxyProtocolHeader } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_LIMITS, LIMIT_OPTIONS, Limits, Logger,
  ParsedValues, UsageError, announceListening, dial, formatAddr, handleSignals, loadTlsFiles,
  parseAddr, parseLimits, parseLogFormat, parsePositiveInt, parseSeconds, requireFlags,
  spliceConnection, stringFlag,
} from './common';
import type { TlsMaterial } from './common';
import { LINK_PROTOCOL_ERROR, encodeAnswer, readAnnouncement, readGreeting } from './link';
import type { Announcement } from './link';

const FIRST_BACKOFF_MS = 100;
const DEFAULT_MAX_BACKOFF_MS = 5_000;
const DEFAULT_DIAL_TIMEOUT_MS = 10_000;
const DEFAULT_POOL = 4;
// Each link may become a backend connection: the bound on what public clients make us hold.
const DEFAULT_MAX_LINKS = 64;
// After a refusal the relay has our answer; it closes the link, else we do after this long.
const REFUSED_LINK_LINGER_MS = 5_000;
// Notices a relay whose host vanished while a link sat idle.
const LINK_KEEPALIVE_MS = 30_000;

const USAGE = `Usage: tls-splice agent --relay ADDR --to ADDR --cert FILE --key FILE --ca FILE
                        [--servername NAME] [--pool N] [--max-links N] [--proxy-protocol v1|v2]
                        [--idle-timeout SECONDS] [--fin-timeout SECONDS]`;

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
  --pool N               idle links kept open (default ${DEFAULT_POOL}; at most --max-links)
  --max-links N          links to the relay at most (default ${DEFAULT_MAX_LINKS}), idle and busy: so
                         also the most connections to --to at once. Public clients beyond
                         them wait at the relay (its --queue-timeout), then are reset there
  --proxy-protocol v1|v2 send --to a PROXY header with the public client's address (and the
                         relay's public address it connected to) before its bytes
  --dial-timeout SECONDS give up on --to after this long (default 10; the client is reset)
  --max-backoff SECONDS  the longest wait between reconnection attempts (default 5)
  --idle-timeout SECONDS (default ${DEFAULT_LIMITS.idleTimeoutMs / 1000}) a spliced client with no byte either
                         way for this long is ended (end=idle)
  --fin-timeout SECONDS  (default ${DEFAULT_LIMITS.finTimeoutMs / 1000}) once one direction of a splice has
                         ended, the other gets this long without a byte before it ends
Prints "connected ADDR" on stdout once the first link is up.

Example:
  tls-splice agent --relay relay.example:7443 --to 127.0.0.1:8080 --cert agent.pem \\
    --key agent.key --ca relay-ca.pem`;

interface Config {
  relay: Addr;
  to: Addr;
  certFile: string;
  keyFile: string;
  caFile: string;
  servername?: string;
  pool: number;
  maxLinks: number;
  proxyProtocol?: 1 | 2;
  dialTimeoutMs: number;
  maxBackoffMs: number;
  limits: Limits;
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['relay', 'to', 'cert', 'key', 'ca']);
  const proxy = stringFlag(values, 'proxy-protocol');
  if (proxy !== undefined && proxy !== 'v1' && proxy !== 'v2') {
    throw new UsageError(`--proxy-protocol: "${proxy}" is not v1 or v2`);
  }
  const maxLinks = parsePositiveInt(stringFlag(values, 'max-links'), '--max-links',
    DEFAULT_MAX_LINKS);
  return {
    relay: parseAddr(stringFlag(values, 'relay')!, '--relay'),
    to: parseAddr(stringFlag(values, 'to')!, '--to'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    caFile: stringFlag(values, 'ca')!,
    servername: stringFlag(values, 'servername'),
    // More idle links than links at all cannot be: --max-links wins.
    pool: Math.min(maxLinks, parsePositiveInt(stringFlag(values, 'pool'), '--pool', DEFAULT_POOL)),
    maxLinks,
    proxyProtocol: proxy === undefined ? undefined : proxy === 'v1' ? 1 : 2,
    dialTimeoutMs: parseSeconds(stringFlag(values, 'dial-timeout'), '--dial-timeout',
      DEFAULT_DIAL_TIMEOUT_MS),
    maxBackoffMs: Math.max(FIRST_BACKOFF_MS, parseSeconds(stringFlag(values, 'max-backoff'),
      '--max-backoff', DEFAULT_MAX_BACKOFF_MS)),
    limits: parseLimits(values),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
  };
}

class Agent {
  readonly logger: Logger;
  readonly group = new SpliceGroup();
  /** Links waiting for an announcement: destroyed at shutdown. */
  readonly idle = new Set<net.Socket>();
  material: TlsMaterial;
  stopping = false;
  #connecting = 0;
  /** Links announced a client: from the announcement until the link is done with it. */
  #busy = 0;
  #failures = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #connected = false;
  #lastError = '';
  readonly #relayName: string;
  readonly #toName: string;
  readonly #servername: string | undefined;

  constructor(readonly config: Config, material: TlsMaterial) {
    this.material = material;
    this.logger = new Logger(config.logFormat);
    this.#relayName = formatAddr(config.relay.host, config.relay.port);
    this.#toName = formatAddr(config.to.host, config.to.port);
    // Verify the relay's name; for an IP address, its IP SAN (no SNI is sent for an IP).
    this.#servername = config.servername ?? (net.isIP(config.relay.host) ? undefined
      : config.relay.host);
  }

  stop(): void {
    this.stopping = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
  }

  // -------------------------------------------------------------------------------------------
  // The pool: --pool idle links, never more than --max-links in all.

  #links(): number {
    return this.idle.size + this.#connecting + this.#busy;
  }

  #wantsLink(): boolean {
    return this.idle.size + this.#connecting < this.config.pool &&
      this.#links() < this.config.maxLinks;
  }

  // Opens links until the pool is full. After a failure: one probe at a time, after a backoff.
  fill(): void {
    if (this.stopping) return;
    if (this.#failures === 0) {
      while (this.#wantsLink()) this.#openLink();
      return;
    }
    if (this.#connecting > 0 || this.#retryTimer !== null) return;
    const delay = Math.min(this.config.maxBackoffMs,
      FIRST_BACKOFF_MS * 2 ** (this.#failures - 1));
    // Jitter: agents that lost the same relay do not all come back in the same millisecond.
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.stopping && this.#connecting === 0 && this.#wantsLink()) this.#openLink();
    }, Math.round(delay * (0.5 + Math.random() / 2)));
  }

  #failed(why: string): void {
    this.#failures += 1;
    // One line per outage, not one per attempt.
    if (this.#failures === 1 || why !== this.#lastError) {
      this.logger.error(`agent: no link to the relay ${this.#relayName} (${why}); ` +
        'reconnecting with backoff');
    }
    this.#lastError = why;
    this.fill();
  }

  #openLink(): void {
    this.#connecting += 1;
    let up = false;
    let error: NodeJS.ErrnoException | undefined;
    const { relay } = this.config;
    const link = connect({
      host: relay.host, port: relay.port, servername: this.#servername,
      cert: this.material.cert, key: this.material.key, ca: this.material.ca,
    });
    link.on('error', (err: NodeJS.ErrnoException) => { error ??= err; });
    link.once('secureConnect', () => {
      link.setNoDelay(true);
      link.setKeepAlive(true, LINK_KEEPALIVE_MS);
      readGreeting(link).then(() => {
        if (link.destroyed) return;   // 'close' counts the failure (once)
        this.#connecting -= 1;
        up = true;
        this.#linkUp();
        void this.#serveLink(link);
      }, () => link.destroy());
    });
    link.once('close', () => {
      if (up) return;
      this.#connecting -= 1;
      this.#failed(error?.code ?? 'the relay closed the link before greeting it (is this ' +
        'agent\'s certificate from the relay\'s --client-ca?)');
    });
  }

  #linkUp(): void {
    this.#failures = 0;
    this.#lastError = '';
    if (!this.#connected) {
      this.#connected = true;
      announceListening(this.config.relay, 'connected');
    }
  }

  // -------------------------------------------------------------------------------------------
  // One link: idle until an announcement, busy until its client is done.

  async #serveLink(link: tls.TLSSocket): Promise<void> {
    this.idle.add(link);
    this.fill();
    let announcement: Announcement;
    let rest: Buffer;
    try {
      ({ message: announcement, rest } = await readAnnouncement(link));
    } catch (err) {
      this.idle.delete(link);
      link.destroy();
      const code = (err as { code?: unknown }).code;
      if (code === LINK_PROTOCOL_ERROR) {
        this.logger.error('agent: the relay sent a line that is not an announcement; ' +
          'closing the link', err);
        this.fill();
      } else if (!this.stopping) {
        // The relay closed an idle link: it is going away (or restarting).
        this.#failed(typeof code === 'string' ? code : 'link closed');
      }
      return;
    }
    this.idle.delete(link);
    this.#busy += 1;
    this.fill();   // replace the link now in use, within --max-links
    try {
      await this.#serveClient(link, announcement, rest);
    } finally {
      this.#busy -= 1;
      this.fill();
    }
  }

  // Dials --to, answers, splices; resolves once the link is done with this client.
  async #serveClient(link: tls.TLSSocket, announcement: Announcement, rest: Buffer):
  Promise<void> {
    const startedAt = Date.now();
    const refused = (reason: string, code: string, error: string) => {
      this.logger.connection({ command: 'agent', client: announcement.client,
        backend: this.#toName, bytesFromClient: 0, bytesToClient: 0,
        durationMs: Date.now() - startedAt, engine: null, reason, code, error });
    };
    let backend: net.Socket;
    try {
      backend = await dial(this.config.to, this.config.dialTimeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_DIAL';
      refused('failed', code, (err as Error).message);
      await this.#answerRefusal(link, code);
      return;
    }
    if (link.destroyed || this.stopping) {
      backend.destroy();
      link.destroy();
      refused(this.stopping ? 'stopped' : 'error',
        this.stopping ? 'ERR_TLS_SPLICE_STOPPING' : 'ECONNRESET',
        'the link closed while the backend was dialled');
      return;
    }
    // The answer, then the splice at once: capture holds the link before any new record.
    link.write(encodeAnswer({ ok: true }));
    await this.#splice(link, backend, announcement, rest, startedAt);
  }

  // The relay resets the public client and closes the link; the link counts against
  // --max-links until it is closed.
  async #answerRefusal(link: tls.TLSSocket, code: string): Promise<void> {
    link.end(encodeAnswer({ ok: false, code }));
    const linger = setTimeout(() => link.destroy(), REFUSED_LINK_LINGER_MS);
    if (!link.destroyed) await new Promise((resolve) => link.once('close', resolve));
    clearTimeout(linger);
  }

  async #splice(link: tls.TLSSocket, backend: net.Socket, announcement: Announcement,
    rest: Buffer, startedAt: number): Promise<void> {
    // A relay that did not send addresses gets the header's "unknown" form.
    const { proxyProtocol, limits } = this.config;
    const head = proxyProtocol === undefined ? rest : Buffer.concat([
      proxyProtocolHeader(proxyProtocol, { source: announcement.source,
        destination: announcement.destination }), rest]);
    try {
      const handle = await spliceConnection(link, backend, {
        command: 'agent', group: this.group, logger: this.logger, client: announcement.client,
        backend: this.#toName, startedAt, head,
        // A truncated link must not end the backend cleanly (spliceConnection's default too).
        splice: { onTruncation: 'reset', idleTimeout: limits.idleTimeoutMs,
          finTimeout: limits.finTimeoutMs },
      });
      await handle.closed;
    } catch {
      // Logged by spliceConnection from the handle's end. A splice refused before it had a
      // handle leaves both sockets to us.
      link.destroy();
      backend.destroy();
    }
  }
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile,
    ca: config.caFile }, createSecureContext);
  const agent = new Agent(config, tlsFiles());
  process.on('SIGTERM', () => agent.stop());
  process.on('SIGINT', () => agent.stop());
  handleSignals({
    logger: agent.logger, servers: [], group: agent.group, drainTimeoutMs: config.drainTimeoutMs,
    pending: agent.idle,
    // New links use the new certificate; live ones keep theirs.
    reload: () => { agent.material = tlsFiles(); },
  });
  agent.fill();
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
    'max-links': { type: 'string' },
    'proxy-protocol': { type: 'string' },
    'dial-timeout': { type: 'string' },
    'max-backoff': { type: 'string' },
    'idle-timeout': LIMIT_OPTIONS['idle-timeout'],
    'fin-timeout': LIMIT_OPTIONS['fin-timeout'],
  },
  run,
};
