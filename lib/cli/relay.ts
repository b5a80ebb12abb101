// tls-splice relay: the public end of a reverse tunnel (frp's frps, rathole's server, chisel's
// server in reverse mode). An origin behind NAT runs `tls-splice agent`, which dials out to
// --agents with mutual TLS and keeps idle links open; each public TCP client of --public takes
// one idle link, is announced on it with one JSON line, and the two are spliced natively.
//
// Link protocol: once it has verified the agent's certificate, the relay greets a new link with
// `{"relay":"tls-splice"}\n` (under TLS 1.3 the client finishes its handshake before the
// server has checked its certificate, so the greeting is the agent's sign that the link is
// accepted). To hand it a client, the relay writes `{"client":"HOST:PORT","source":{...},
// "destination":{...}}\n` (source and destination: { address, port } of the public
// connection, for a PROXY header); the agent dials
// its backend and answers `{"ok":true}\n` (or `{"ok":false,"code":"ECONNREFUSED"}\n` and closes);
// from the next byte on, the link carries the public client's stream both ways. The relay sends
// none of the client's bytes (nor its EOF) before the answer, so nothing reaches the agent's
// TLSSocket between reading the announcement and its splice: a client that sends its request
// and half-closes at once cannot end the agent's session while it dials. An agent sends nothing
// on an idle link: bytes there are a protocol error.
//
// A link that ends without close_notify (the agent was killed, its host vanished) reaches the
// public client as a TCP reset, never as a clean end: a cut download must not look complete.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, createServer, readPreamble, spliceTo } from '../index';
import type { LinePreamble, SpliceHandle } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, Logger, ParsedValues, UsageError, announceListening,
  formatAddr, handleSignals, listen, loadTlsFiles, onHandshakeFailure, parseAddr, parseLogFormat,
  parsePositiveInt,
  parseSeconds, requireFlags, stringFlag,
} from './common';

const USAGE = `Usage: tls-splice relay --agents ADDR --public ADDR --cert FILE --key FILE
                        --client-ca FILE [--queue-timeout SECONDS] [--max-queue N]`;

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
                         it is reset)
  --max-queue N          public clients waiting at most (default 1024; more are reset at once)
Prints "agents ADDR", then "listening ADDR" (the public address) on stdout.
A link that ends without close_notify (agent killed) resets its public client.

Example:
  tls-splice relay --agents 0.0.0.0:7443 --public 0.0.0.0:8080 --cert relay.pem \\
    --key relay.key --client-ca agents-ca.pem`;

const DEFAULT_QUEUE_TIMEOUT_MS = 10_000;
// How long the agent has to dial its backend and answer an announcement (its own dial timeout
// is 10 s by default).
const ANSWER_TIMEOUT_MS = 30_000;
const MAX_ANSWER_LENGTH = 4096;
const DEFAULT_MAX_QUEUE = 1024;

interface Config {
  agents: Addr;
  public: Addr;
  certFile: string;
  keyFile: string;
  clientCaFile: string;
  queueTimeoutMs: number;
  maxQueue: number;
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['agents', 'public', 'cert', 'key', 'client-ca']);
  return {
    agents: parseAddr(stringFlag(values, 'agents')!, '--agents'),
    public: parseAddr(stringFlag(values, 'public')!, '--public'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    clientCaFile: stringFlag(values, 'client-ca')!,
    queueTimeoutMs: parseSeconds(stringFlag(values, 'queue-timeout'), '--queue-timeout',
      DEFAULT_QUEUE_TIMEOUT_MS),
    maxQueue: parsePositiveInt(stringFlag(values, 'max-queue'), '--max-queue', DEFAULT_MAX_QUEUE),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
  };
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
  detach: () => void;
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  if (config.agents.host === config.public.host && config.agents.port === config.public.port &&
      config.agents.port !== 0) {
    throw new UsageError('--agents and --public must be different addresses');
  }
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile,
    ca: config.clientCaFile }, tls.createSecureContext);
  const material = tlsFiles();
  const logger = new Logger(config.logFormat);
  const group = new SpliceGroup();
  const pending = new Set<net.Socket>();   // idle links and queued clients: destroyed at shutdown
  const idle: IdleLink[] = [];
  const queue: PublicClient[] = [];

  const agentServer = createServer({
    cert: material.cert, key: material.key, ca: material.ca,
    requestCert: true, rejectUnauthorized: true,
  });
  agentServer.on('connection', (socket: net.Socket) => {
    socket.setNoDelay(true);
    // Notices an agent whose host vanished while its link sat idle.
    socket.setKeepAlive(true, 30_000);
  });
  onHandshakeFailure(agentServer, (client, durationMs, err) => {
    logger.connection({
      command: 'relay', client, bytesFromClient: 0, bytesToClient: 0, durationMs, engine: null,
      reason: 'handshake', code: err?.code ?? 'ECONNRESET',
      error: err?.message ?? 'the agent left before the TLS handshake was done', side: 'agents',
    });
  });
  agentServer.on('secureConnection', (link: tls.TLSSocket) => {
    const name = formatAddr(link.remoteAddress, link.remotePort);
    link.on('error', () => {});
    link.write(`${JSON.stringify({ relay: 'tls-splice' })}\n`);
    const drop = () => {
      const at = idle.findIndex((entry) => entry.link === link);
      if (at >= 0) idle.splice(at, 1);
      pending.delete(link);
      link.destroy();
    };
    const onData = () => {
      logger.error(`relay: agent ${name} sent bytes on an idle link; closing it`,
        { code: 'ERR_TLS_SPLICE_LINK_PROTOCOL' });
      drop();
    };
    link.on('data', onData);
    link.on('end', drop);
    link.on('close', drop);
    pending.add(link);
    const entry: IdleLink = {
      link, name,
      detach: () => {
        link.off('data', onData);
        link.off('end', drop);
        link.off('close', drop);
        link.pause();
        pending.delete(link);
      },
    };
    // The oldest waiting client gets the new link; else it waits for one.
    for (let client = queue.shift(); client !== undefined; client = queue.shift()) {
      if (client.timer !== null) clearTimeout(client.timer);
      pending.delete(client.socket);
      if (client.socket.destroyed) continue;
      void pair(entry, client);
      return;
    }
    idle.push(entry);
  });

  const publicServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  publicServer.on('connection', (socket: net.Socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    const client: PublicClient = {
      socket, name: formatAddr(socket.remoteAddress, socket.remotePort), startedAt: Date.now(),
      timer: null,
    };
    assign(client);
  });

  const takeIdle = (): IdleLink | undefined => {
    for (let entry = idle.shift(); entry !== undefined; entry = idle.shift()) {
      if (!entry.link.destroyed && entry.link.writable) return entry;
      entry.detach();
      entry.link.destroy();
    }
    return undefined;
  };

  const refuse = (client: PublicClient, code: string, why: string) => {
    logger.connection({ command: 'relay', client: client.name, bytesFromClient: 0,
      bytesToClient: 0, durationMs: Date.now() - client.startedAt, engine: null,
      reason: 'refused', code, error: why });
    client.socket.resetAndDestroy();
  };

  // An idle link now, or a place in the queue for a bounded time.
  function assign(client: PublicClient): void {
    const entry = takeIdle();
    if (entry !== undefined) {
      void pair(entry, client);
      return;
    }
    if (queue.length >= config.maxQueue) {
      refuse(client, 'ERR_TLS_SPLICE_NO_AGENT', `no idle agent link and ${queue.length} ` +
        'clients already waiting');
      return;
    }
    client.timer = setTimeout(() => {
      const at = queue.indexOf(client);
      if (at >= 0) queue.splice(at, 1);
      pending.delete(client.socket);
      refuse(client, 'ERR_TLS_SPLICE_NO_AGENT',
        `no idle agent link within ${config.queueTimeoutMs} ms`);
    }, config.queueTimeoutMs);
    queue.push(client);
    pending.add(client.socket);
    client.socket.once('close', () => {
      const at = queue.indexOf(client);
      if (at < 0) return;
      queue.splice(at, 1);
      if (client.timer !== null) clearTimeout(client.timer);
      pending.delete(client.socket);
    });
  }

  // Announces the client on the link, waits for the agent's answer, then splices them.
  async function pair(entry: IdleLink, client: PublicClient): Promise<void> {
    const { link } = entry;
    entry.detach();
    const announced = await new Promise<boolean>((resolve) => {
      const { socket } = client;
      link.write(`${JSON.stringify({
        client: client.name,
        // For the agent's --proxy-protocol: the client's address and the one it reached.
        source: { address: socket.remoteAddress, port: socket.remotePort },
        destination: { address: socket.localAddress, port: socket.localPort },
      })}\n`, (err) => resolve(!err));
    });
    if (!announced || link.destroyed) {
      link.destroy();
      if (!client.socket.destroyed) assign(client);   // another link, or the queue
      return;
    }
    let answer: LinePreamble;
    let ok = false;
    let code = 'ERR_TLS_SPLICE_LINK_PROTOCOL';
    try {
      answer = await readPreamble(link, { maxLength: MAX_ANSWER_LENGTH,
        timeout: ANSWER_TIMEOUT_MS });
      const parsed = JSON.parse(answer.line) as { ok?: unknown; code?: unknown };
      ok = parsed.ok === true;
      if (!ok && typeof parsed.code === 'string') code = parsed.code;
    } catch (err) {
      code = (err as { code?: string }).code ?? code;
      answer = { kind: 'line', line: '', preamble: Buffer.alloc(0), rest: Buffer.alloc(0) };
    }
    if (!ok) {
      link.destroy();
      refuse(client, code, 'the agent could not serve this client');
      return;
    }
    let handle: SpliceHandle;
    try {
      // A truncated link must not end the client cleanly.
      handle = spliceTo(link, client.socket, { head: answer.rest, onTruncation: 'reset' });
    } catch (err) {
      // The client left while the agent answered (its socket is destroyed).
      link.destroy();
      refuse(client, (err as { code?: string }).code ?? 'ERR_TLS_SPLICE_INVALID_ARG',
        (err as Error).message);
      return;
    }
    group.add(handle);
    void handle.closed.then((end) => {
      // A link that ended without close_notify, or failed, resets the public client.
      if ((end.peerEofWithoutCloseNotify || end.error !== undefined) && !client.socket.destroyed) {
        client.socket.resetAndDestroy();
      } else {
        client.socket.destroy();
      }
      const { stats } = end;
      logger.connection({
        command: 'relay', client: client.name, backend: entry.name,
        bytesFromClient: stats.bytesOut, bytesToClient: stats.bytesIn,
        durationMs: Date.now() - client.startedAt, engine: end.engine, reason: end.reason,
        code: end.error?.code, ...(end.peerEofWithoutCloseNotify ? { truncated: true } : {}),
      });
    });
    try {
      await handle.start();
    } catch {
      // The end (with its code) is logged from `closed`; the client was reset there.
      link.destroy();
    }
  }

  const agentsBound = await listen(agentServer, config.agents, '--agents');
  const publicBound = await listen(publicServer, config.public, '--public');
  handleSignals({
    logger, servers: [publicServer, agentServer], group, drainTimeoutMs: config.drainTimeoutMs,
    pending,
    reload: () => {
      const fresh = tlsFiles();
      agentServer.setSecureContext({ cert: fresh.cert, key: fresh.key, ca: fresh.ca });
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
  },
  run,
};
