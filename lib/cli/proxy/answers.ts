// The proxy's own answers: every refusal is an HTTP response over the TLS session, with the
// error's code in its body, on a raw socket (before or instead of node:http) or through
// node:http's ServerResponse.
import type * as http from 'node:http';
import type * as net from 'node:net';

// A refused client that keeps its side open is cut off after this long.
const LINGER_AFTER_ANSWER_MS = 5_000;

const REASONS: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 407: 'Proxy Authentication Required',
  408: 'Request Timeout', 431: 'Request Header Fields Too Large', 502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

export interface Refusal {
  status: number;
  code: string;
  why: string;
}

const PROXY_AUTHENTICATE = 'Basic realm="tls-splice proxy"';

function answerBody(refusal: Refusal): string {
  return `${refusal.status} ${REASONS[refusal.status] ?? ''}: ${refusal.why} (${refusal.code})\n`;
}

/** Answers on a raw socket and closes it. */
export function answerAndClose(socket: net.Socket, refusal: Refusal): void {
  const body = answerBody(refusal);
  const extra = refusal.status === 407 ? `Proxy-Authenticate: ${PROXY_AUTHENTICATE}\r\n` : '';
  const head = `HTTP/1.1 ${refusal.status} ${REASONS[refusal.status] ?? 'Error'}\r\n${extra}` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n';
  // The client's further bytes are read and dropped so that closing with unread data (which
  // makes the kernel send a reset) cannot wipe the answer at the client.
  socket.on('error', () => {});
  socket.resume();
  socket.end(head + body);
  setTimeout(() => socket.destroy(), LINGER_AFTER_ANSWER_MS).unref();
}

/** Answers through node:http; `close` ends the connection after it. */
export function answerResponse(res: http.ServerResponse, refusal: Refusal, close: boolean): void {
  const body = answerBody(refusal);
  res.writeHead(refusal.status, {
    'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body),
    ...(refusal.status === 407 ? { 'Proxy-Authenticate': PROXY_AUTHENTICATE } : {}),
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(body);
}
