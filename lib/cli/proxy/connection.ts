// One client connection, from its first request head to its end. The first head is read with
// readPreamble(): a CONNECT is tunnelled at once; anything else is put back on the socket and the
// connection handed to an internal http.Server, which parses that request and the kept-alive ones
// after it (a CONNECT among them is tunnelled the same way, once the requests before it have
// been answered).
import * as http from 'node:http';
import type * as net from 'node:net';
import type * as tls from 'node:tls';

import { readPreamble } from '../../index';
import type { HttpPreamble, SpliceError } from '../../index';
import { answerAndClose } from './answers';
import type { Refusal } from './answers';
import { clientOf, logRefusal } from './context';
import type { ProxyContext } from './context';
import { decide } from './decide';
import { forward } from './forward';
import { tunnel } from './tunnel';

// Requests a client may pipeline ahead of the one being answered; more and the connection is
// closed. Each waits with its head parsed (and at most a socket buffer of body), so this bounds
// the memory one connection holds. (Squid answers one at a time, pipeline_prefetch 1.)
const MAX_PIPELINED = 64;

// Node's http.Server checks headersTimeout only once it has emitted 'listening' (it starts its
// connection checker then). This one never listens: it is handed connections. Check at this
// interval, at most a second late.
const HEAD_CHECK_INTERVAL_MS = 1_000;

/** Requests on one connection are answered one at a time, in the order they came. */
interface Turns {
  last: Promise<void>;
  waiting: number;
}

async function connectAfterTurn(ctx: ProxyContext, tlsSocket: tls.TLSSocket, target: string,
  headers: http.IncomingHttpHeaders, head: Buffer, startedAt: number): Promise<void> {
  const client = clientOf(tlsSocket);
  const decision = decide(ctx.config, 'CONNECT', target, headers);
  if (decision.kind === 'connect') {
    await tunnel(ctx, tlsSocket, decision.addr, head, startedAt, client);
  } else if (decision.kind === 'refuse') {
    logRefusal(ctx, client, startedAt, decision, undefined, { method: 'CONNECT' });
    answerAndClose(tlsSocket, decision);
  }
}

function clientErrorStatus(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

/** The http.Server that parses every request after the first, and first requests not CONNECT. */
export function createHttpServer(ctx: ProxyContext): http.Server {
  const { headTimeoutMs, limits } = ctx.config;
  const server = http.createServer({
    keepAliveTimeout: limits.idleTimeoutMs,
    headersTimeout: headTimeoutMs,
    // A whole request (its body included) may take as long as its bytes keep coming.
    requestTimeout: 0,
    connectionsCheckingInterval: Math.min(HEAD_CHECK_INTERVAL_MS, headTimeoutMs),
  });
  server.emit('listening');
  const turns = new WeakMap<net.Socket, Turns>();
  const turnsOf = (socket: net.Socket): Turns => {
    let t = turns.get(socket);
    if (t === undefined) turns.set(socket, t = { last: Promise.resolve(), waiting: 0 });
    return t;
  };
  // Runs `job` once every request before it on this socket has been answered.
  const inTurn = (socket: net.Socket, job: () => Promise<void>): boolean => {
    const t = turnsOf(socket);
    if (t.waiting >= MAX_PIPELINED) return false;
    t.waiting += 1;
    t.last = t.last.then(job).catch(() => {}).finally(() => { t.waiting -= 1; });
    return true;
  };
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!inTurn(req.socket, () => forward(ctx, req, res))) {
      logRefusal(ctx, clientOf(req.socket), Date.now(), { status: 0,
        code: 'ERR_TLS_SPLICE_TOO_MANY_PIPELINED',
        why: `more than ${MAX_PIPELINED} requests pipelined ahead of their answers` });
      req.socket.destroy();
    }
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const startedAt = Date.now();
    socket.setTimeout(0);
    // Node stops parsing at a CONNECT; the requests before it may still be waiting for their
    // origins. Their answers go out first, in order, then the 200.
    const queued = inTurn(socket, () => connectAfterTurn(ctx, socket as tls.TLSSocket,
      req.url ?? '', req.headers, head, startedAt));
    if (!queued) socket.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const refusal = { status: clientErrorStatus(err.code),
      code: err.code ?? 'ERR_TLS_SPLICE_BAD_PREAMBLE', why: err.message };
    logRefusal(ctx, clientOf(socket), Date.now(), refusal);
    answerAndClose(socket, refusal);
  });
  return server;
}

function preambleRefusal(err: SpliceError & { detail?: string }): Refusal {
  const code = err.code ?? 'ERR_TLS_SPLICE_BAD_PREAMBLE';
  const status = code === 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE' ? 431
    : code === 'ERR_TLS_SPLICE_PREAMBLE_TIMEOUT' ? 408
      : code === 'ERR_TLS_SPLICE_BAD_PREAMBLE' ? 400 : 0;
  const why = err.detail ?? (status === 408 ? 'no request head in time'
    : status === 431 ? 'request head too large' : err.message);
  return { status, code, why };
}

/** Every connection: one request head, then a tunnel or the http.Server. */
export async function onSecureConnection(ctx: ProxyContext, httpServer: http.Server,
  tlsSocket: tls.TLSSocket): Promise<void> {
  const startedAt = Date.now();
  const client = clientOf(tlsSocket);
  tlsSocket.on('error', () => {});
  ctx.pending.add(tlsSocket);
  let request: HttpPreamble;
  try {
    request = await readPreamble(tlsSocket, { kind: 'http', timeout: ctx.config.headTimeoutMs });
  } catch (err) {
    const refusal = preambleRefusal(err as SpliceError);
    logRefusal(ctx, client, startedAt, refusal);
    if (refusal.status !== 0 && tlsSocket.writable) answerAndClose(tlsSocket, refusal);
    else tlsSocket.destroy();
    return;
  } finally {
    ctx.pending.delete(tlsSocket);
  }
  if (request.method === 'CONNECT') {
    await connectAfterTurn(ctx, tlsSocket, request.target, request.headers, request.rest,
      startedAt);
    return;
  }
  // Put the bytes back and let node:http parse this request and those after it.
  ctx.pending.add(tlsSocket);
  tlsSocket.once('close', () => ctx.pending.delete(tlsSocket));
  tlsSocket.unshift(Buffer.concat([request.preamble, request.rest]));
  httpServer.emit('connection', tlsSocket);
}
