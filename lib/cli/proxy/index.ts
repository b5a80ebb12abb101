// tls-splice proxy: an HTTPS forward proxy of the kind browsers use (TLS to the proxy, then
// CONNECT tunnels): Squid's or tinyproxy's job behind an https:// proxy URL.
//
//   connection.ts      a client connection: its first head, then a tunnel or node:http
//   decide.ts          a request head: credentials and form (refuse, CONNECT or forward)
//   address-policy.ts  where a destination may be dialled (--allow, internal addresses)
//   allow.ts           --allow patterns
//   tunnel.ts          CONNECT: dial, 200, splice natively
//   forward.ts         absolute-form requests forwarded with node:http
//   answers.ts         the proxy's own answers (400 403 407 408 431 502 504)
//
// ALPN: only http/1.1 is offered. A client that negotiated h2 would multiplex its CONNECTs as
// streams of one session, and a session cannot be spliced to more than one destination.
import type * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceGroup, createServer } from '../../index';
import {
  Command, LIMIT_OPTIONS, Logger, ParsedValues, announceListening, handleSignals,
  capConnections, listen, loadTlsFiles, onHandshakeFailure,
} from '../common';
import { parseConfig } from './config';
import { createHttpServer, onSecureConnection } from './connection';
import type { ProxyContext } from './context';

export { parseAllow } from './allow';
export { parseAuthority } from './decide';

const USAGE = `Usage: tls-splice proxy --listen ADDR --cert FILE --key FILE [--allow HOST:PORT ...]
                        [--auth USER:PASS] [limits]`;

const HELP = `An HTTPS forward proxy (TLS to the proxy, then CONNECT tunnels spliced natively to
their destination; requests in absolute form, GET http://..., forwarded). Replaces Squid or
tinyproxy behind an https:// proxy URL.

Flags:
  --listen ADDR          where to accept TLS (HOST:PORT; port 0 picks one, see the listening line)
  --cert FILE --key FILE the proxy's certificate chain and key (PEM); SIGHUP reloads them
  --allow HOST:PORT      a destination clients may reach (repeatable). HOST: a name, where '*'
                         matches within one label ('*.example.com'), an address, or a CIDR
                         block (10.0.0.0/8, [fc00::]/7); PORT: a number, a range 8000-8999, or
                         '*'. Without --allow: CONNECT to port 443 and forwarding to port 80.
                         Names are resolved by the proxy and the checked address is dialled.
                         Internal addresses (loopback, private, link-local, unspecified,
                         multicast; IPv4 and IPv6) are refused (403) unless a pattern names
                         them exactly: --allow localhost:8080, --allow 10.0.0.7:443,
                         --allow 10.0.0.0/8:443. A '*' in HOST never reaches them.
  --auth USER:PASS       require Proxy-Authorization: Basic (407 with Proxy-Authenticate
                         otherwise)
  --dial-timeout SECONDS give up on a destination that does not resolve or accept (default 10;
                         then 502)
  --head-timeout SECONDS time a client has to send each request head, the first and every
                         kept-alive one (default 30; then 408)
Limits:
  --handshake-timeout SECONDS  a TLS handshake not done by then is closed (default 10)
  --max-connections N    client connections at once; a new one over it is closed at once and
                         logged (default 10000)
  --idle-timeout SECONDS a kept-alive connection with no request, a tunnel with no byte either
                         way, or an origin silent for this long is closed (default 3600; an
                         origin that never answered gets the client a 504)
  --fin-timeout SECONDS  once one side of a tunnel ended, the other has this long to send a
                         byte (default 60)
Answers: 400 malformed request (or Content-Length with Transfer-Encoding, or a transfer coding
other than chunked), 403 destination not allowed, 407 credentials, 408 no head in time, 431 head
too large, 502 unreachable (or an origin answering 101), 504 origin timed out.
ALPN: http/1.1 only (an h2 session multiplexes tunnels and cannot be spliced).

Example:
  tls-splice proxy --listen 0.0.0.0:3129 --cert proxy.pem --key proxy.key --auth alice:s3cret
  curl --proxy https://alice:s3cret@proxy.example:3129 https://example.com/`;

function createTlsServer(ctx: ProxyContext, material: { cert?: Buffer; key?: Buffer }): tls.Server {
  const { handshakeTimeoutMs, maxConnections } = ctx.config.limits;
  const server = createServer({
    cert: material.cert, key: material.key, ALPNProtocols: ['http/1.1'],
    handshakeTimeout: handshakeTimeoutMs,
  });
  capConnections(server, maxConnections, ctx.logger);
  server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  onHandshakeFailure(server, (client, durationMs, err) => {
    ctx.logger.connection({
      command: 'proxy', client, bytesFromClient: 0, bytesToClient: 0, durationMs, engine: null,
      reason: 'handshake', code: err?.code ?? 'ECONNRESET',
      error: err?.message ?? 'the client left before the TLS handshake was done',
    });
  });
  return server;
}

async function run(values: ParsedValues): Promise<void> {
  const config = parseConfig(values);
  const tlsFiles = () => loadTlsFiles({ cert: config.certFile, key: config.keyFile },
    tls.createSecureContext);
  const ctx: ProxyContext = { config, logger: new Logger(config.logFormat),
    group: new SpliceGroup(), pending: new Set() };
  const server = createTlsServer(ctx, tlsFiles());
  const httpServer = createHttpServer(ctx);
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    void onSecureConnection(ctx, httpServer, tlsSocket);
  });
  const bound = await listen(server, config.listen);
  handleSignals({
    logger: ctx.logger, servers: [server], group: ctx.group,
    drainTimeoutMs: config.drainTimeoutMs, pending: ctx.pending,
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
    ...LIMIT_OPTIONS,
  },
  run,
};
