// A request in absolute form (GET http://host/path) forwarded with node:http: its framing and
// end-to-end fields go to the checked address of its destination, the answer streams back.
import * as http from 'node:http';
import type * as net from 'node:net';

import { formatAddr } from '../common';
import { answerResponse } from './answers';
import type { Refusal } from './answers';
import { connectDestination, isConnected } from './destination';
import { clientOf, logRefusal } from './context';
import type { ProxyContext } from './context';
import { decide } from './decide';

const BAD = 'ERR_TLS_SPLICE_BAD_PREAMBLE';

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

/**
 * The fields that frame the request's body on the way to the origin. They are the proxy's to
 * keep whatever the method and whatever Connection names: a body sent on without its framing is
 * read by the origin as the next request (smuggling).
 */
export function requestFraming(req: http.IncomingMessage): [string, string][] | Refusal {
  const te = req.headers['transfer-encoding'];
  const cl = req.headers['content-length'];
  // RFC 9112 6.1: "A server MAY reject a request that contains both Content-Length and
  // Transfer-Encoding or process such a request in accordance with the Transfer-Encoding
  // alone"; an intermediary that picks one while the next hop picks the other is smuggled past.
  if (te !== undefined && cl !== undefined) {
    return { status: 400, code: BAD, why: 'both Content-Length and Transfer-Encoding' };
  }
  if (te !== undefined) {
    // RFC 9112 6.3: "If a Transfer-Encoding header field is present in a request and the chunked
    // transfer coding is not the final encoding, the message body length cannot be determined
    // reliably; the server MUST respond with the 400 (Bad Request) status code". Codings other
    // than chunked are refused too: nothing downstream is known to undo them.
    if (te.trim().toLowerCase() !== 'chunked') {
      return { status: 400, code: BAD,
        why: `Transfer-Encoding ${JSON.stringify(te)} is not chunked` };
    }
    return [['Transfer-Encoding', 'chunked']];
  }
  return cl === undefined ? [] : [['Content-Length', cl]];
}

interface Target {
  url: URL;
  backendName: string;
  /** Connected to the checked address (destination.ts). */
  backend: net.Socket;
  address: string;
  framing: [string, string][];
}

/** Forwards one request; resolves once its response is done (or abandoned). */
export function forward(ctx: ProxyContext, req: http.IncomingMessage,
  res: http.ServerResponse): Promise<void> {
  const done = new Promise<void>((resolve) => res.once('close', resolve));
  void checkAndSend(ctx, req, res);
  return done;
}

async function checkAndSend(ctx: ProxyContext, req: http.IncomingMessage,
  res: http.ServerResponse): Promise<void> {
  const startedAt = Date.now();
  const client = clientOf(req.socket);
  const refuse = (refusal: Refusal, backend?: string) => {
    logRefusal(ctx, client, startedAt, refusal, backend, { method: req.method });
    // A malformed request leaves the connection in doubt: close it after the answer.
    answerResponse(res, refusal, refusal.status === 400 || refusal.status === 502);
    req.resume();
  };
  const decision = decide(ctx.config, req.method ?? '', req.url ?? '', req.headers);
  if (decision.kind === 'refuse') return refuse(decision);
  if (decision.kind !== 'forward') return refuse({ status: 400, code: BAD, why: 'unexpected' });
  const backendName = formatAddr(decision.addr.host, decision.addr.port);
  const framing = requestFraming(req);
  if (!Array.isArray(framing)) return refuse(framing, backendName);
  const outcome = await connectDestination(ctx.config.forwardAllow, decision.addr,
    ctx.config.dialTimeoutMs);
  if (!isConnected(outcome)) return refuse(outcome, backendName);
  if (res.destroyed) {
    outcome.backend.destroy();   // the client left during the lookup or the dial
    return;
  }
  send(ctx, req, res, { url: decision.url, backendName, framing, ...outcome }, startedAt, client);
}

// --idle-timeout bounds each wait for a byte from the origin: then 504 if no answer began, else
// the answer is cut.
function applyIdleTimeout(ctx: ProxyContext, upstream: http.ClientRequest, backend: net.Socket,
  backendName: string): void {
  const { idleTimeoutMs } = ctx.config.limits;
  backend.setTimeout(idleTimeoutMs, () => upstream.destroy(Object.assign(
    new Error(`${backendName} sent nothing for ${idleTimeoutMs} ms (--idle-timeout)`),
    { code: 'ETIMEDOUT', status: 504 })));
}

// The request as the origin gets it: end-to-end fields, its own Host, its body's framing.
function upstreamHeaders(req: http.IncomingMessage, target: Target): [string, string][] {
  const headers = endToEndHeaders(req.rawHeaders, req.headers.connection)
    .filter(([name]) => !['host', 'content-length'].includes(name.toLowerCase()));
  // RFC 9112 3.2.2: the Host of a forwarded request is the authority of its absolute URI.
  return [['Host', target.url.host], ...headers, ...target.framing];
}

function send(ctx: ProxyContext, req: http.IncomingMessage, res: http.ServerResponse,
  target: Target, startedAt: number, client: string): void {
  let upstream: http.ClientRequest;
  try {
    upstream = http.request({
      method: req.method, path: `${target.url.pathname}${target.url.search}`,
      headers: upstreamHeaders(req, target).flat(),
      // No agent: the request goes on the socket dialled to the checked address.
      setHost: false, createConnection: () => target.backend,
    });
  } catch (err) {
    // A field node:http's parser let through but its client refuses (ERR_INVALID_CHAR...).
    const refusal = { status: 400, code: (err as NodeJS.ErrnoException).code ?? BAD,
      why: (err as Error).message };
    logRefusal(ctx, client, startedAt, refusal, target.backendName, { method: req.method });
    answerResponse(res, refusal, true);
    req.resume();
    target.backend.destroy();
    return;
  }
  applyIdleTimeout(ctx, upstream, target.backend, target.backendName);
  new Exchange(ctx, req, res, upstream, target, startedAt, client).start();
}

/** One forwarded request and its answer, logged once when it ends. */
class Exchange {
  private bytesFromClient = 0;
  private bytesToClient = 0;
  private status = 0;
  private logged = false;

  constructor(private readonly ctx: ProxyContext, private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse, private readonly upstream: http.ClientRequest,
    private readonly target: Target, private readonly startedAt: number,
    private readonly client: string) {}

  start(): void {
    const { req, res, upstream } = this;
    upstream.on('error', (err: NodeJS.ErrnoException & { status?: number }) => {
      this.fail({ status: err.status ?? 502, code: err.code ?? 'ERR_TLS_SPLICE_DIAL',
        why: `${this.target.backendName}: ${err.message}` });
    });
    upstream.on('upgrade', (_answer: http.IncomingMessage, socket: net.Socket) => {
      socket.destroy();
      this.refuseSwitch();
    });
    upstream.on('response', (answer: http.IncomingMessage) => this.onAnswer(answer));
    req.on('data', (chunk: Buffer) => { this.bytesFromClient += chunk.length; });
    req.pipe(upstream);
    res.on('close', () => {
      if (!res.writableFinished) {
        upstream.destroy();
        this.log('error', 'ECONNRESET');
      }
    });
  }

  private onAnswer(answer: http.IncomingMessage): void {
    if (answer.statusCode === 101) {
      answer.destroy();
      this.upstream.destroy();
      this.refuseSwitch();
      return;
    }
    this.status = answer.statusCode ?? 502;
    try {
      this.res.writeHead(this.status, answer.statusMessage,
        endToEndHeaders(answer.rawHeaders, answer.headers.connection).flat());
    } catch (err) {
      // An answer node:http will not repeat (a bad status text or field): the origin's fault.
      answer.destroy();
      this.res.destroy();
      this.log('error', (err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_BAD_ANSWER');
      return;
    }
    answer.on('data', (chunk: Buffer) => { this.bytesToClient += chunk.length; });
    answer.pipe(this.res);
    answer.on('end', () => this.log('end'));
    answer.on('error', (err: NodeJS.ErrnoException) => {
      this.res.destroy();
      this.log('error', err.code);
    });
  }

  // The Upgrade field is hop-by-hop and never forwarded, so a 101 answers nothing the client
  // asked for; node:http would hold the client forever waiting for a response that never comes.
  private refuseSwitch(): void {
    this.fail({ status: 502, code: 'ERR_TLS_SPLICE_BAD_ANSWER', why: `${this.target.backendName} ` +
      'answered 101 Switching Protocols to a request that asked for no upgrade' });
  }

  private fail(refusal: Refusal): void {
    if (this.logged) return;   // answered already (a 502 for a 101, then the socket's close)
    if (!this.res.headersSent) {
      this.status = refusal.status;
      answerResponse(this.res, refusal, true);
    } else {
      this.res.destroy();
    }
    this.log('error', refusal.code);
  }

  private log(reason: string, code?: string): void {
    if (this.logged) return;
    this.logged = true;
    this.ctx.logger.connection({ command: 'proxy', client: this.client,
      backend: this.target.backendName, bytesFromClient: this.bytesFromClient,
      bytesToClient: this.bytesToClient, durationMs: Date.now() - this.startedAt, engine: null,
      reason, code, method: this.req.method, status: this.status, address: this.target.address });
  }
}
