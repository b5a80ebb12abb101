// tls-splice relay: the public end of a reverse tunnel (frp's frps, rathole's server, chisel's
// server in reverse mode). An origin behind NAT runs `tls-splice agent`, which dials out to
// --agents with mutual TLS and keeps idle links open; each public TCP client of --public takes
// one idle link, is announced on it, and the two are spliced natively. The messages on a link
// are in link.ts.
//
// The relay sends none of the client's bytes (nor its EOF) before the agent's answer, so nothing
// reaches the agent's TLSSocket between reading the announcement and its splice: a client that
// sends its request and half-closes at once cannot end the agent's session while it dials. An
// agent sends nothing on an idle link: bytes there are a protocol error.
//
// Public clients are untrusted: at most --max-connections of them at once (Node's
// server.maxConnections closes the next one at once), a client that finds no idle link waits in
// a queue of at most --max-queue for at most --queue-timeout, and a spliced one ends after
// --idle-timeout without a byte either way. TLS peers on --agents are untrusted until their
// certificate verifies; a handshake not done within --handshake-timeout is closed.
//
// A link that ends without close_notify (the agent was killed, its host vanished) reaches the
// public client as a TCP reset, never as a clean end: a cut download must not look complete.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, SpliceServer, createServer, spliceTo } from '../index';
import type { SpliceEnd, SpliceHandle } from '../index';
import {
  capConnections,
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_LIMITS, LIMIT_OPTIONS, Limits, Logger,
  ParsedValues, UsageError, announceListening, formatAddr, handleSignals, listen, loadTlsFiles,
  onHandshakeFailure, parseAddr, parseLimits, parseLogFormat, parsePositiveInt, parseSeconds,
  requireFlags, stringFlag,
} from './common';
import type { TlsMaterial } from './common';
import {
  LINK_PROTOCOL_ERROR, LinkProtocolError, encodeAnnouncement, encodeGreeting, readAnswer,
} from './link';
import type { Answer } from './link';

const USAGE = `Usage: tls-splice relay --agents ADDR --public ADDR --cert FILE --key FILE
                        --client-ca FILE [--queue-timeout SECONDS] [--max-queue N]
                        [--max-connections N] [--handshake-timeout SECONDS]
                        [--idle-timeout SECONDS] [--fin-timeout SECONDS]`;

const HELP = `The public end of a reverse tunnel: agents (tls-splice agent, behind NAT) dial in
to --agents with mutual TLS and keep idle links; each TCP client of --public is handed to an idle
link and spliced to it natively. Replaces frp's frps, rathole's server, chisel's server.

Flags:
  --agents ADDR          where agents connect (TLS; a client certificate from --client-ca is
                         required, links without one are refused in the handshake)
  --public ADDR          where public TCP clients connect
  --cert FILE --key FILE the relay's certificate chain and key (PEM) for the agent side;
                         SIGHUP reloads them and --client-ca
  --client-ca FILE       the CA whose certificates agents present
  --queue-timeout SECONDS  how long a public client waits for an idle link (default 10; then
                         it is reset, code=ERR_TLS_SPLICE_NO_AGENT)
  --max-queue N          public clients waiting at most (default 1024; more are reset at once)
  --max-connections N    public clients at once (default ${DEFAULT_LIMITS.maxConnections}), waiting or
                         spliced; one more is closed at once and logged with
                         code=ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS (at most a line a second)
  --handshake-timeout SECONDS  (default ${DEFAULT_LIMITS.handshakeTimeoutMs / 1000}) a TLS handshake on --agents not
                         done by then is closed (code=ERR_TLS_HANDSHAKE_TIMEOUT)
  --idle-timeout SECONDS (default ${DEFAULT_LIMITS.idleTimeoutMs / 1000}) a spliced client with no byte either
                         way for this long is ended (end=idle)
  --fin-timeout SECONDS  (default ${DEFAULT_LIMITS.finTimeoutMs / 1000}) once one direction of a splice has
                         ended, the other gets this long without a byte before it ends
Prints "agents ADDR", then "listening ADDR" (the public address) on stdout.
A link that ends without close_notify (agent killed) resets its public client. An agent bounds
its own links (agent --max-links): clients beyond them wait in the queue above.

Example:
  tls-splice relay --agents 0.0.0.0:7443 --public 0.0.0.0:8080 --cert relay.pem \\
    --key relay.key --client-ca agents-ca.pem`;

const DEFAULT_QUEUE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_QUEUE = 1024;
/** Over --max-connections: the public client is closed at once. */
/** No idle link, and the queue is full or the client waited --queue-timeout. */
const NO_AGENT = 'ERR_TLS_SPLICE_NO_AGENT';
// Notices an agent whose host vanished while its link sat idle.
const LINK_KEEPALIVE_MS = 30_000;

interface Config {
  agents: Addr;
  public: Addr;
  certFile: string;
  keyFile: string;
  clientCaFile: string;
  queueTimeoutMs: number;
  maxQueue: number;
  limits: Limits;
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['agents', 'public', 'cert', 'key', 'client-ca']);
  const config: Config = {
    agents: parseAddr(stringFlag(values, 'agents')!, '--agents'),
    public: parseAddr(stringFlag(values, 'public')!, '--public'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    clientCaFile: stringFlag(values, 'client-ca')!,
    queueTimeoutMs: parseSeconds(stringFlag(values, 'queue-timeout'), '--queue-timeout',
      DEFAULT_QUEUE_TIMEOUT_MS),
    maxQueue: parsePositiveInt(stringFlag(values, 'max-queue'), '--max-queue', DEFAULT_MAX_QUEUE),
    limits: parseLimits(values),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
  };
  if (config.agents.host === config.public.host && config.agents.port === config.public.port &&
      config.agents.port !== 0) {
    throw new UsageError('--agents and --public must be different addresses');
  }
  return config;
}

// OpenSSL's error text can end in a newline (or hold several lines): one log line each.
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

interface PublicClient {
  socket: net.Socket;
  name: string;
  startedAt: number;
  timer: NodeJS.Timeout | null;
}

interface IdleLink {
  link: tls.TLSSocket;
  name: string;
  /** Stops watching the idle link (the caller now owns it). */
  detach: () => void;
}

class Relay {
  readonly logger: Logger;
  readonly group = new SpliceGroup();
  /** Idle links and waiting clients: destroyed at shutdown. */
  readonly pending = new Set<net.Socket>();
  readonly agentServer: SpliceServer;
  readonly publicServer: net.Server;
  readonly #idle: IdleLink[] = [];
  readonly #queue: PublicClient[] = [];

  constructor(readonly config: Config, material: TlsMaterial) {
    this.logger = new Logger(config.logFormat);
    this.agentServer = this.#createAgentServer(material);
    this.publicServer = this.#createPublicServer();
  }

  // -------------------------------------------------------------------------------------------
  // The agent side: handshakes, then idle links.

  #createAgentServer(material: TlsMaterial): SpliceServer {
    const server = createServer({
      cert: material.cert, key: material.key, ca: material.ca,
      requestCert: true, rejectUnauthorized: true,
      handshakeTimeout: this.config.limits.handshakeTimeoutMs,
    });
    server.on('connection', (socket: net.Socket) => {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, LINK_KEEPALIVE_MS);
    });
    onHandshakeFailure(server, (client, durationMs, err) => {
      this.logger.connection({
        command: 'relay', client, bytesFromClient: 0, bytesToClient: 0, durationMs, engine: null,
        reason: 'handshake', code: err?.code ?? 'ECONNRESET',
        error: err === undefined ? 'the agent left before the TLS handshake was done'
          : oneLine(err.message),
        side: 'agents',
      });
    });
    server.on('secureConnection', (link: tls.TLSSocket) => this.#acceptLink(link));
    return server;
  }

  #acceptLink(link: tls.TLSSocket): void {
    link.on('error', () => {});
    link.write(encodeGreeting());
    this.#offerLink(this.#watchIdle(link));
  }

  // While a link is idle, any byte from the agent or its end drops it.
  #watchIdle(link: tls.TLSSocket): IdleLink {
    const name = formatAddr(link.remoteAddress, link.remotePort);
    const drop = () => {
      const at = this.#idle.findIndex((entry) => entry.link === link);
      if (at >= 0) this.#idle.splice(at, 1);
      this.pending.delete(link);
      link.destroy();
    };
    const onData = () => {
      this.logger.error(`relay: agent ${name} sent bytes on an idle link; closing it`,
        new LinkProtocolError('an agent sends nothing before a client is announced'));
      drop();
    };
    link.on('data', onData);
    link.on('end', drop);
    link.on('close', drop);
    this.pending.add(link);
    return {
      link, name,
      detach: () => {
        link.off('data', onData);
        link.off('end', drop);
        link.off('close', drop);
        link.pause();
        this.pending.delete(link);
      },
    };
  }

  // The oldest waiting client gets a new link; else the link waits for one.
  #offerLink(entry: IdleLink): void {
    for (let client = this.#queue.shift(); client !== undefined; client = this.#queue.shift()) {
      if (client.timer !== null) clearTimeout(client.timer);
      this.pending.delete(client.socket);
      if (client.socket.destroyed) continue;
      void this.#pair(entry, client);
      return;
    }
    this.#idle.push(entry);
  }

  #takeIdle(): IdleLink | undefined {
    for (let entry = this.#idle.shift(); entry !== undefined; entry = this.#idle.shift()) {
      if (!entry.link.destroyed && entry.link.writable) return entry;
      entry.detach();
      entry.link.destroy();
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // The public side: at most --max-connections, then an idle link or the queue.

  #createPublicServer(): net.Server {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    capConnections(server, this.config.limits.maxConnections, this.logger);
    server.on('connection', (socket: net.Socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => {});
      this.#assign({ socket, name: formatAddr(socket.remoteAddress, socket.remotePort),
        startedAt: Date.now(), timer: null });
    });
    return server;
  }

  // An idle link now, or a place in the queue for a bounded time.
  #assign(client: PublicClient): void {
    const entry = this.#takeIdle();
    if (entry !== undefined) {
      void this.#pair(entry, client);
    } else if (this.#queue.length >= this.config.maxQueue) {
      this.#refuse(client, NO_AGENT, `no idle agent link and ${this.#queue.length} clients ` +
        'already waiting (--max-queue)');
    } else {
      this.#enqueue(client);
    }
  }

  #enqueue(client: PublicClient): void {
    const leave = () => {
      const at = this.#queue.indexOf(client);
      if (at >= 0) this.#queue.splice(at, 1);
      if (client.timer !== null) clearTimeout(client.timer);
      this.pending.delete(client.socket);
      return at >= 0;
    };
    client.timer = setTimeout(() => {
      leave();
      this.#refuse(client, NO_AGENT,
        `no idle agent link within ${this.config.queueTimeoutMs} ms (--queue-timeout)`);
    }, this.config.queueTimeoutMs);
    this.#queue.push(client);
    this.pending.add(client.socket);
    client.socket.once('close', leave);
  }

  #refuse(client: PublicClient, code: string, why: string, link?: string): void {
    this.logger.connection({ command: 'relay', client: client.name, backend: link,
      bytesFromClient: 0, bytesToClient: 0, durationMs: Date.now() - client.startedAt,
      engine: null, reason: 'refused', code, error: why });
    client.socket.resetAndDestroy();
  }

  // -------------------------------------------------------------------------------------------
  // A link and a client: announce, wait for the answer, splice.

  async #pair(entry: IdleLink, client: PublicClient): Promise<void> {
    const { link } = entry;
    entry.detach();
    if (!await this.#announce(link, client)) {
      link.destroy();
      if (!client.socket.destroyed) this.#assign(client);   // another link, or the queue
      return;
    }
    const answer = await this.#awaitAnswer(link);
    if (!answer.ok) {
      link.destroy();
      this.#refuse(client, answer.code, answer.why, entry.name);
      return;
    }
    await this.#splice(entry, client, answer.rest);
  }

  #announce(link: tls.TLSSocket, client: PublicClient): Promise<boolean> {
    const { socket } = client;
    return new Promise<boolean>((resolve) => {
      link.write(encodeAnnouncement({
        client: client.name,
        // For the agent's --proxy-protocol: the client's address and the one it reached.
        source: { address: socket.remoteAddress!, port: socket.remotePort! },
        destination: { address: socket.localAddress!, port: socket.localPort! },
      }), (err) => resolve(!err && !link.destroyed));
    });
  }

  // The agent's answer, or why there is none. Its code is untrusted (link.ts checks its shape).
  async #awaitAnswer(link: tls.TLSSocket): Promise<{ ok: true; rest: Buffer } |
  { ok: false; code: string; why: string }> {
    let answer: Answer;
    let rest: Buffer;
    try {
      ({ message: answer, rest } = await readAnswer(link));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return { ok: false, code: typeof code === 'string' ? code : LINK_PROTOCOL_ERROR,
        why: `no answer from the agent: ${oneLine((err as Error).message)}` };
    }
    if (!answer.ok) {
      return { ok: false, code: answer.code, why: 'the agent could not serve this client' };
    }
    return { ok: true, rest };
  }

  async #splice(entry: IdleLink, client: PublicClient, head: Buffer): Promise<void> {
    const { link } = entry;
    const { limits } = this.config;
    let handle: SpliceHandle;
    try {
      // A truncated link must not end the client cleanly.
      handle = spliceTo(link, client.socket, { head, onTruncation: 'reset',
        idleTimeout: limits.idleTimeoutMs, finTimeout: limits.finTimeoutMs });
    } catch (err) {
      // The client left while the agent answered (its socket is destroyed).
      link.destroy();
      const code = (err as { code?: unknown }).code;
      this.#refuse(client, typeof code === 'string' ? code : 'ERR_TLS_SPLICE_INVALID_ARG',
        oneLine((err as Error).message), entry.name);
      return;
    }
    this.group.add(handle);
    void handle.closed.then((end) => this.#spliceEnded(entry, client, end));
    try {
      await handle.start();
    } catch {
      // The end (with its code) is logged from `closed`; the client was reset there.
      link.destroy();
    }
  }

  #spliceEnded(entry: IdleLink, client: PublicClient, end: SpliceEnd): void {
    // A link that ended without close_notify, or failed, resets the public client.
    if ((end.peerEofWithoutCloseNotify || end.error !== undefined) && !client.socket.destroyed) {
      client.socket.resetAndDestroy();
    } else {
      client.socket.destroy();
    }
    const { stats } = end;
    this.logger.connection({
      command: 'relay', client: client.name, backend: entry.name,
      bytesFromClient: stats.bytesOut, bytesToClient: stats.bytesIn,
      durationMs: Date.now() - client.startedAt, engine: end.engine, reason: end.reason,
      code: end.error?.code, ...(end.peerEofWithoutCloseNotify ? { truncated: true } : {}),
    });
  }
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile,
    ca: config.clientCaFile }, tls.createSecureContext);
  const relay = new Relay(config, tlsFiles());
  const agentsBound = await listen(relay.agentServer, config.agents, '--agents');
  const publicBound = await listen(relay.publicServer, config.public, '--public');
  handleSignals({
    logger: relay.logger, servers: [relay.publicServer, relay.agentServer], group: relay.group,
    drainTimeoutMs: config.drainTimeoutMs, pending: relay.pending,
    reload: () => {
      const fresh = tlsFiles();
      relay.agentServer.setSecureContext({ cert: fresh.cert, key: fresh.key, ca: fresh.ca });
    },
  });
  announceListening(agentsBound, 'agents');
  announceListening(publicBound);
}

export const command: Command = {
  summary: 'reverse tunnel, public end: agents dial in with mTLS (frps, rathole, chisel)',
  usage: USAGE,
  help: HELP,
  options: {
    agents: { type: 'string' },
    public: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'client-ca': { type: 'string' },
    'queue-timeout': { type: 'string' },
    'max-queue': { type: 'string' },
    ...LIMIT_OPTIONS,
  },
  run,
};
