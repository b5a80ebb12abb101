// What to do with a request head, before any lookup: refuse it (credentials, form), tunnel it
// (CONNECT host:port) or forward it (GET http://...). Where a destination may be dialled is
// address-policy.ts's question, asked afterwards.
import * as crypto from 'node:crypto';
import * as net from 'node:net';

import type { Addr } from '../common';
import type { Refusal } from './answers';
import type { Config } from './config';

export type Decision =
  | ({ kind: 'refuse' } & Refusal)
  | { kind: 'connect'; addr: Addr }
  | { kind: 'forward'; addr: Addr; url: URL };

type Headers = Record<string, string | string[] | undefined>;

// RFC 9110 11.7.1 / RFC 7617: Proxy-Authorization: Basic base64(user:pass). Compared as SHA-256
// digests so the comparison takes the same time whatever the input.
function authorized(config: Config, header: string | undefined): boolean {
  if (config.auth === undefined) return true;
  const match = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header ?? '');
  if (match === null) return false;
  const given = crypto.createHash('sha256').update(Buffer.from(match[1], 'base64')).digest();
  return crypto.timingSafeEqual(given, config.auth);
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

// RFC 9112 3.2.2: a proxy is sent the absolute form; origin form is for origin servers.
function absoluteHttpUrl(target: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' || !/^http:\/\//i.test(target) || url.hostname === '') {
    return undefined;
  }
  return url;
}

const BAD = 'ERR_TLS_SPLICE_BAD_PREAMBLE';

export function decide(config: Config, method: string, target: string, headers: Headers): Decision {
  const header = headers['proxy-authorization'];
  if (!authorized(config, Array.isArray(header) ? header[0] : header)) {
    return { kind: 'refuse', status: 407, code: 'ERR_TLS_SPLICE_PROXY_AUTH',
      why: header === undefined ? 'no Proxy-Authorization' : 'wrong credentials' };
  }
  if (method === 'CONNECT') {
    const addr = parseAuthority(target);
    if (addr === undefined) {
      return { kind: 'refuse', status: 400, code: BAD,
        why: `CONNECT target ${JSON.stringify(target)} is not host:port` };
    }
    return { kind: 'connect', addr };
  }
  const url = absoluteHttpUrl(target);
  if (url === undefined) {
    return { kind: 'refuse', status: 400, code: BAD,
      why: 'a proxy request needs an absolute http:// URI (use CONNECT for https)' };
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { kind: 'forward', addr: { host, port: url.port === '' ? 80 : Number(url.port) }, url };
}
