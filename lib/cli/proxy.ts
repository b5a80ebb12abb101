// tls-splice proxy: an HTTPS forward proxy of the kind browsers use (TLS to the proxy, then
// CONNECT tunnels): Squid's or tinyproxy's job behind an https:// proxy URL.
//
// The first request head on a connection is read with readPreamble(). A CONNECT is checked
// (credentials, --allow), its destination dialled, answered `200`, and the TLS session spliced
// natively to the destination with whatever the client pipelined behind the head as `head`.
// A request in absolute form (`GET http://host/path`) is forwarded with node:http: the head is
// put back on the socket and the connection handed to an internal http.Server, which also
// parses the keep-alive requests after it (and answers a CONNECT among them the same way).
// Every refusal is an HTTP answer over the TLS session: 400 malformed, 403 destination not
// allowed, 407 credentials missing or wrong, 408 no head in time, 431 head too large, 502 the
// destination could not be reached.
//
// ALPN: only http/1.1 is offered. A client that negotiated h2 would multiplex its CONNECTs as
// streams of one session, and a session cannot be spliced to more than one destination.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, createServer, readPreamble } from '../index';
import type { HttpPreamble, SpliceError } from '../index';
import {
  Addr, Command, DEFAULT_DRAIN_TIMEOUT_MS, Logger, ParsedValues, UsageError, announceListening,
  dial, formatAddr, handleSignals, listen, loadTlsFiles, onHandshakeFailure, parseAddr,
  parseLogFormat, parseSeconds, requireFlags, spliceConnection, stringFlag, stringsFlag,
} from './common';

const USAGE = `Usage: tls-splice proxy --listen ADDR --cert FILE --key FILE [--allow HOST:PORT ...]
                        [--auth USER:PASS]`;

const HELP = `An HTTPS forward proxy (TLS to the proxy, then CONNECT tunnels spliced natively to
their destination; requests in absolute form, GET http://..., forwarded). Replaces Squid or
tinyproxy behind an https:// proxy URL.

Flags:
  --listen ADDR          where to accept TLS (HOST:PORT; port 0 picks one, see the listening line)
  --cert FILE --key FILE the proxy's certificate chain and key (PEM); SIGHUP reloads them
  --allow HOST:PORT      a destination clients may reach (repeatable). '*' matches any run of
                         characters in HOST and any PORT: --allow '*.example.com:443'
                         --allow '10.0.0.7:*'. Patterns match the name as the client sent it,
                         not the address it resolves to. Without --allow: CONNECT to port 443
                         and forwarding to port 80, to any host.
  --auth USER:PASS       require Proxy-Authorization: Basic (407 with Proxy-Authenticate
                         otherwise)
  --dial-timeout SECONDS give up on a destination that does not accept (default 10; then 502)
  --head-timeout SECONDS time a client has to send its request head (default 30; then 408)
Answers: 400 malformed request, 403 destination not allowed, 407 credentials, 502 unreachable.
ALPN: http/1.1 only (an h2 session multiplexes tunnels and cannot be spliced).

Example:
  tls-splice proxy --listen 0.0.0.0:3129 --cert proxy.pem --key proxy.key --auth alice:s3cret
  curl --proxy https://alice:s3cret@proxy.example:3129 https://example.com/`;

const DEFAULT_HEAD_TIMEOUT_MS = 30_000;
// A refused client that keeps its side open is cut off after this long.
const LINGER_AFTER_ANSWER_MS = 5_000;

export interface AllowPattern {
  host: RegExp;
  port: number | '*';
  text: string;
}

/** 'HOST:PORT' with '*' wildcards ('[v6]:PORT' for IPv6) as a pattern. */
export function parseAllow(text: string): AllowPattern {
  const match = /^\[([^\]]+)\]:(\d+|\*)$/.exec(text) ?? /^([^:[\]]+):(\d+|\*)$/.exec(text);
  if (match === null) {
    throw new UsageError(`--allow: "${text}" is not HOST:PORT ('*' allowed in either part)`);
  }
  const port = match[2] === '*' ? '*' : Number(match[2]);
  if (port !== '*' && port > 65535) throw new UsageError(`--allow: port ${port} is not in 0..65535`);
  const source = match[1].toLowerCase().split('*')
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return { host: new RegExp(`^${source}$`), port, text };
}

function allowed(patterns: AllowPattern[], addr: Addr): boolean {
  const host = addr.host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => (p.port === '*' || p.port === addr.port) && p.host.test(host));
}

/** A CONNECT request-target (authority-form, RFC 9112 3.2.3): host:port, [v6]:port. */
export function parseAuthority(target: string): Addr | undefined {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(target) ??
    /^([A-Za-z0-9._~!$&'()*+,;=%-]+):(\d{1,5})$/.exec(target);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  if (match[0].startsWith('[') && net.isIPv6(match[1]) === false) return undefined;
  return { host: match[1], port };
}

interface Config {
  listen: Addr;
  certFile: string;
  keyFile: string;
  connectAllow: AllowPattern[];
  forwardAllow: AllowPattern[];
  auth?: Buffer;        // SHA-256 of "user:pass"
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
  dialTimeoutMs: number;
  headTimeoutMs: number;
}

function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['listen', 'cert', 'key']);
  const allow = stringsFlag(values, 'allow').map(parseAllow);
  const auth = stringFlag(values, 'auth');
  if (auth !== undefined && auth.indexOf(':') <= 0) {
    throw new UsageError('--auth: give USER:PASS');
  }
  return {
    listen: parseAddr(stringFlag(values, 'listen')!, '--listen'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    connectAllow: allow.length > 0 ? allow : [parseAllow('*:443')],
    forwardAllow: allow.length > 0 ? allow : [parseAllow('*:80')],
    auth: auth === undefined ? undefined : crypto.createHash('sha256').update(auth).digest(),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
    dialTimeoutMs: parseSeconds(stringFlag(values, 'dial-timeout'), '--dial-timeout', 10_000),
    headTimeoutMs: parseSeconds(stringFlag(values, 'head-timeout'), '--head-timeout',
      DEFAULT_HEAD_TIMEOUT_MS),
  };
}

// RFC 9110 11.7.1 / RFC 7617: Proxy-Authorization: Basic base64(user:pass). Compared as SHA-256
// digests so the comparison takes the same time whatever the input.
function authorized(config: Config, header: string | undefined): boolean {
  if (config.auth === undefined) return true;
  const match = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header ?? '');
  if (match === null) return false;
  const given = crypto.createHash('sha256').update(Buffer.from(match[1], 'base64')).digest();
  return crypto.timingSafeEqual(given, config.auth);
}

// What to do with a request: refuse it with a status, tunnel it, or forward it.
type Decision =
  | { kind: 'refuse'; status: number; code: string; why: string; backend?: string }
  | { kind: 'connect'; addr: Addr }
  | { kind: 'forward'; addr: Addr; url: URL };

function decide(config: Config, method: string, target: string,
  headers: Record<string, string | string[] | undefined>): Decision {
  const header = headers['proxy-authorization'];
  if (!authorized(config, Array.isArray(header) ? header[0] : header)) {
    return { kind: 'refuse', status: 407, code: 'ERR_TLS_SPLICE_PROXY_AUTH',
      why: header === undefined ? 'no Proxy-Authorization' : 'wrong credentials' };
  }
  if (method === 'CONNECT') {
    const addr = parseAuthority(target);
    if (addr === undefined) {
      return { kind: 'refuse', status: 400, code: 'ERR_TLS_SPLICE_BAD_PREAMBLE',
        why: `CONNECT target ${JSON.stringify(target)} is not host:port` };
    }
    if (!allowed(config.connectAllow, addr)) {
      return { kind: 'refuse', status: 403, code: 'ERR_TLS_SPLICE_PROXY_DENIED',
        why: 'destination not allowed', backend: formatAddr(addr.host, addr.port) };
    }
    return { kind: 'connect', addr };
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    url = new URL('invalid:');
  }
  // RFC 9112 3.2.2: a proxy is sent the absolute form; origin form is for origin servers.
  if (url.protocol !== 'http:' || !/^http:\/\//i.test(target) || url.hostname === '') {
    return { kind: 'refuse', status: 400, code: 'ERR_TLS_SPLICE_BAD_PREAMBLE',
      why: 'a proxy request needs an absolute http:// URI (use CONNECT for https)' };
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const addr = { host, port: url.port === '' ? 80 : Number(url.port) };
  if (!allowed(config.forwardAllow, addr)) {
    return { kind: 'refuse', status: 403, code: 'ERR_TLS_SPLICE_PROXY_DENIED',
      why: 'destination not allowed', backend: formatAddr(addr.host, addr.port) };
  }
  return { kind: 'forward', addr, url };
}

const REASONS: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 407: 'Proxy Authentication Required',
  408: 'Request Timeout', 431: 'Request Header Fields Too Large', 502: 'Bad Gateway',
};

function answerText(status: number, why: string, code: string): { head: string; body: string } {
  const body = `${status} ${REASONS[status] ?? ''}: ${why} (${code})\n`;
  const extra = status === 407 ? 'Proxy-Authenticate: Basic realm="tls-splice proxy"\r\n' : '';
  return {
    head: `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n${extra}` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n',
    body,
  };
}

// Answers and closes. The client's further bytes are read and dropped so that closing with
// unread data (which makes the kernel send a reset) cannot wipe the answer at the client.
function answerAndClose(socket: net.Socket, status: number, why: string, code: string): void {
  const { head, body } = answerText(status, why, code);
  socket.on('error', () => {});
  socket.resume();
  socket.end(head + body);
  setTimeout(() => socket.destroy(), LINGER_AFTER_ANSWER_MS).unref();
}

// RFC 9110 7.6.1: hop-by-hop fields (and those Connection names) are not forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authorization', 'proxy-connection',
  'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function endToEndHeaders(raw: string[], connection: string | undefined): [string, string][] {
  const drop = new Set(HOP_BY_HOP);
  for (const name of (connection ?? '').split(',')) drop.add(name.trim().toLowerCase());
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i].toLowerCase())) out.push([raw[i], raw[i + 1]]);
  }
  return out;
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile },
    tls.createSecureContext);
  const material = tlsFiles();
  const logger = new Logger(config.logFormat);
  const group = new SpliceGroup();
  const pending = new Set<net.Socket>();

  const server = createServer({
    cert: material.cert, key: material.key, ALPNProtocols: ['http/1.1'],
  });
  server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  onHandshakeFailure(server, (client, durationMs, err) => {
    logger.connection({
      command: 'proxy', client, bytesFromClient: 0, bytesToClient: 0, durationMs, engine: null,
      reason: 'handshake', code: err?.code ?? 'ECONNRESET',
      error: err?.message ?? 'the client left before the TLS handshake was done',
    });
  });

  // Requests after the first, and first requests that are not CONNECT, are parsed by node:http.
  const httpServer = http.createServer({ keepAliveTimeout: 5_000 });
  httpServer.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    forward(req, res);
  });
  httpServer.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const tlsSocket = socket as tls.TLSSocket;
    const decision = decide(config, 'CONNECT', req.url ?? '', req.headers);
    void tunnel(tlsSocket, decision, head, Date.now(), clientOf(tlsSocket));
  });
  httpServer.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 408 : 400;
    answerAndClose(socket, status, err.message, err.code ?? 'ERR_TLS_SPLICE_BAD_PREAMBLE');
  });

  const clientOf = (socket: net.Socket) => formatAddr(socket.remoteAddress, socket.remotePort);

  const logRefusal = (client: string, startedAt: number, status: number, code: string,
    why: string, backend?: string) => {
    logger.connection({ command: 'proxy', client, backend, bytesFromClient: 0, bytesToClient: 0,
      durationMs: Date.now() - startedAt, engine: null, reason: 'refused', code, status, error: why });
  };

  // A CONNECT that passed or failed the checks: answer, or dial, answer 200 and splice.
  async function tunnel(tlsSocket: tls.TLSSocket, decision: Decision, head: Buffer,
    startedAt: number, client: string): Promise<void> {
    if (decision.kind !== 'connect') {
      if (decision.kind === 'refuse') {
        logRefusal(client, startedAt, decision.status, decision.code, decision.why,
          decision.backend);
        answerAndClose(tlsSocket, decision.status, decision.why, decision.code);
      }
      return;
    }
    const backendName = formatAddr(decision.addr.host, decision.addr.port);
    let clientGone = false;
    const onClose = () => { clientGone = true; };
    tlsSocket.once('close', onClose);
    tlsSocket.on('error', () => {});
    pending.add(tlsSocket);
    let backend: net.Socket;
    try {
      backend = await dial(decision.addr, config.dialTimeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_DIAL';
      logRefusal(client, startedAt, 502, code, (err as Error).message, backendName);
      answerAndClose(tlsSocket, 502, `cannot reach ${backendName}`, code);
      return;
    } finally {
      pending.delete(tlsSocket);
    }
    if (clientGone || group.closing) {
      backend.destroy();
      tlsSocket.destroy();
      logRefusal(client, startedAt, 0, group.closing ? 'ERR_TLS_SPLICE_STOPPING' : 'ECONNRESET',
        'the client left while the destination was dialled', backendName);
      return;
    }
    tlsSocket.off('close', onClose);
    // The 200 must be on the wire before the session is captured.
    await new Promise<void>((resolve) => {
      tlsSocket.write('HTTP/1.1 200 Connection Established\r\n\r\n', () => resolve());
    });
    try {
      await spliceConnection(tlsSocket, backend, {
        command: 'proxy', group, logger, client, backend: backendName, startedAt, head,
        extra: { method: 'CONNECT' },
      });
    } catch {
      // Logged by spliceConnection from the handle's end.
    }
  }

  // A request in absolute form, forwarded with node:http; the answer streams back.
  function forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const startedAt = Date.now();
    const client = clientOf(req.socket);
    const decision = decide(config, req.method ?? '', req.url ?? '', req.headers);
    if (decision.kind !== 'forward') {
      const refusal = decision.kind === 'refuse' ? decision : {
        status: 400, code: 'ERR_TLS_SPLICE_BAD_PREAMBLE', why: 'unexpected', backend: undefined,
      };
      logRefusal(client, startedAt, refusal.status, refusal.code, refusal.why, refusal.backend);
      const { body } = answerText(refusal.status, refusal.why, refusal.code);
      res.writeHead(refusal.status, {
        'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body),
        ...(refusal.status === 407
          ? { 'Proxy-Authenticate': 'Basic realm="tls-splice proxy"' } : {}),
      });
      res.end(body);
      req.resume();
      return;
    }
    const { addr, url } = decision;
    const backendName = formatAddr(addr.host, addr.port);
    const headers = endToEndHeaders(req.rawHeaders, req.headers.connection)
      .filter(([name]) => name.toLowerCase() !== 'host');
    // RFC 9112 3.2.2: the Host of a forwarded request is the authority of its absolute URI.
    headers.unshift(['Host', url.host]);
    let bytesFromClient = 0;
    let bytesToClient = 0;
    let status = 0;
    let upstream: http.ClientRequest;
    try {
      upstream = http.request({
        host: addr.host, port: addr.port, method: req.method,
        path: `${url.pathname}${url.search}`, headers: headers.flat(), setHost: false,
        agent: false,
      });
    } catch (err) {
      // A field node:http's parser let through but its client refuses (ERR_INVALID_CHAR...).
      const code = (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_BAD_PREAMBLE';
      logRefusal(client, startedAt, 400, code, (err as Error).message, backendName);
      const { body } = answerText(400, (err as Error).message, code);
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body), Connection: 'close' });
      res.end(body);
      req.resume();
      return;
    }
    // --dial-timeout bounds the connect only; a slow answer is the origin's business.
    upstream.once('socket', (socket: net.Socket) => {
      socket.setTimeout(config.dialTimeoutMs, () => upstream.destroy(Object.assign(
        new Error(`connecting to ${backendName} timed out after ${config.dialTimeoutMs} ms`),
        { code: 'ETIMEDOUT' })));
      socket.once('connect', () => socket.setTimeout(0));
    });
    let logged = false;
    const log = (reason: string, code?: string) => {
      if (logged) return;
      logged = true;
      logger.connection({ command: 'proxy', client, backend: backendName, bytesFromClient,
        bytesToClient, durationMs: Date.now() - startedAt, engine: null, reason, code,
        method: req.method, status });
    };
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'ERR_TLS_SPLICE_DIAL';
      if (!res.headersSent) {
        status = 502;
        const { body } = answerText(502, `cannot reach ${backendName}`, code);
        res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8',
          'Content-Length': Buffer.byteLength(body), Connection: 'close' });
        res.end(body);
      } else {
        res.destroy();
      }
      log('error', code);
    });
    upstream.on('response', (answer: http.IncomingMessage) => {
      status = answer.statusCode ?? 502;
      const answerHeaders = endToEndHeaders(answer.rawHeaders, answer.headers.connection);
      try {
        res.writeHead(status, answer.statusMessage, answerHeaders.flat());
      } catch (err) {
        // An answer node:http will not repeat (a bad status text or field): the origin's fault.
        answer.destroy();
        res.destroy();
        log('error', (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_BAD_ANSWER');
        return;
      }
      answer.on('data', (chunk: Buffer) => { bytesToClient += chunk.length; });
      answer.pipe(res);
      answer.on('end', () => log('end'));
      answer.on('error', (err: NodeJS.ErrnoException) => {
        res.destroy();
        log('error', err.code);
      });
    });
    req.on('data', (chunk: Buffer) => { bytesFromClient += chunk.length; });
    req.pipe(upstream);
    res.on('close', () => {
      if (!res.writableFinished) {
        upstream.destroy();
        log('error', 'ECONNRESET');
      }
    });
  }

  // Every connection: one request head, then a tunnel or the http.Server.
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    void onSecureConnection(tlsSocket);
  });

  async function onSecureConnection(tlsSocket: tls.TLSSocket): Promise<void> {
    const startedAt = Date.now();
    const client = clientOf(tlsSocket);
    tlsSocket.on('error', () => {});
    pending.add(tlsSocket);
    let request: HttpPreamble;
    try {
      request = await readPreamble(tlsSocket, { kind: 'http', timeout: config.headTimeoutMs });
    } catch (err) {
      const code = (err as SpliceError).code;
      const status = code === 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE' ? 431
        : code === 'ERR_TLS_SPLICE_PREAMBLE_TIMEOUT' ? 408
          : code === 'ERR_TLS_SPLICE_BAD_PREAMBLE' ? 400 : 0;
      logRefusal(client, startedAt, status, code ?? 'ERR_TLS_SPLICE_BAD_PREAMBLE',
        (err as Error).message);
      if (status !== 0 && tlsSocket.writable) {
        const detail = (err as { detail?: string }).detail;
        answerAndClose(tlsSocket, status,
          detail ?? (status === 408 ? 'no request head in time' : 'request head too large'), code);
      } else {
        tlsSocket.destroy();
      }
      return;
    } finally {
      pending.delete(tlsSocket);
    }
    if (request.method === 'CONNECT') {
      await tunnel(tlsSocket, decide(config, 'CONNECT', request.target, request.headers),
        request.rest, startedAt, client);
      return;
    }
    // Put the bytes back and let node:http parse this request and those after it.
    pending.add(tlsSocket);
    tlsSocket.once('close', () => pending.delete(tlsSocket));
    tlsSocket.unshift(Buffer.concat([request.preamble, request.rest]));
    httpServer.emit('connection', tlsSocket);
  }

  const bound = await listen(server, config.listen);
  handleSignals({
    logger, servers: [server], group, drainTimeoutMs: config.drainTimeoutMs, pending,
    reload: () => {
      const fresh = tlsFiles();
      server.setSecureContext({ cert: fresh.cert, key: fresh.key });
    },
    beforeExit: () => { httpServer.close(); },
  });
  announceListening(bound);
}

export const command: Command = {
  summary: 'HTTPS forward proxy: CONNECT tunnels spliced natively (Squid, tinyproxy)',
  usage: USAGE,
  help: HELP,
  options: {
    listen: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    allow: { type: 'string', multiple: true },
    auth: { type: 'string' },
    'dial-timeout': { type: 'string' },
    'head-timeout': { type: 'string' },
  },
  run,
};
