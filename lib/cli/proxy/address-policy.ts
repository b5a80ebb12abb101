// Which address a destination may be dialled at. The name a client sends is resolved here, the
// addresses are checked against --allow and the internal ranges, and the caller dials the checked
// address literal: no second lookup, so no window for DNS rebinding between check and dial.
import * as dns from 'node:dns';
import * as net from 'node:net';

import type { Addr } from '../common';
import { AllowPattern, allowsAddress, allowsName, allowsPort, normalName } from './allow';

// Addresses that reach the proxy's own host or its private networks. Squid's default denies
// `to_localhost`; a proxy on a host with a private network behind it must deny more.
// (BlockList also matches IPv4-mapped IPv6 forms, ::ffff:127.0.0.1, against the IPv4 rules.)
const INTERNAL = new net.BlockList();
for (const [address, bits] of [
  ['0.0.0.0', 8],         // unspecified, "this network" (RFC 1122 3.2.1.3)
  ['127.0.0.0', 8],       // loopback
  ['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16],   // private (RFC 1918)
  ['169.254.0.0', 16],    // link-local (RFC 3927)
  ['224.0.0.0', 4],       // multicast
  ['255.255.255.255', 32],   // limited broadcast
] as const) INTERNAL.addSubnet(address, bits, 'ipv4');
for (const [address, bits] of [
  ['::', 128],            // unspecified
  ['::1', 128],           // loopback
  ['fc00::', 7],          // unique local (RFC 4193)
  ['fe80::', 10],         // link-local
  ['ff00::', 8],          // multicast
] as const) INTERNAL.addSubnet(address, bits, 'ipv6');

export function isInternal(address: string): boolean {
  return INTERNAL.check(address, net.isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

export type Resolution =
  | { ok: true; addresses: string[] }
  | { ok: false; status: 403 | 502; code: string; why: string };

const DENIED = 'ERR_TLS_SPLICE_PROXY_DENIED';

function lookupAll(host: string, timeoutMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(Object.assign(
      new Error(`looking up ${host} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    timeoutMs);
    dns.lookup(host, { all: true, verbatim: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(addresses.map((a) => a.address));
    });
  });
}

/**
 * The addresses `dest` (the host as the client sent it) may be dialled at, in the resolver's
 * order, or why none: 403 when no pattern allows the name or any address it resolves to, 502
 * when the lookup fails.
 */
export async function resolveDestination(patterns: AllowPattern[], dest: Addr,
  timeoutMs: number): Promise<Resolution> {
  const name = normalName(dest.host);
  const candidates = patterns.filter((p) => allowsPort(p, dest.port) && allowsName(p, name));
  if (candidates.length === 0) {
    // Refused before any lookup: the proxy's resolver is not an oracle for refused names.
    return { ok: false, status: 403, code: DENIED, why: 'destination not allowed' };
  }
  let addresses: string[];
  try {
    addresses = net.isIP(name) !== 0 ? [name] : await lookupAll(name, timeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
    return { ok: false, status: 502, code, why: `cannot resolve ${dest.host} (${code})` };
  }
  const allowed = addresses.filter((address) => {
    const internal = isInternal(address);
    return candidates.some((p) => allowsAddress(p, name, address, internal));
  });
  if (allowed.length > 0) return { ok: true, addresses: allowed };
  const internal = addresses.some(isInternal);
  return { ok: false, status: 403, code: DENIED, why: internal
    ? `destination not allowed: ${dest.host} is an internal address (${addresses.join(', ')}); ` +
      'only an --allow naming it exactly (name, address or CIDR) reaches it'
    : 'destination not allowed' };
}
