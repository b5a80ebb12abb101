// --allow HOST:PORT patterns: which destinations a client may name.
//
// HOST is one of
//   '*'                     any destination that is not internal (address-policy.ts)
//   a name, '*' in a label  '*.example.com' matches 'a.example.com', never 'a.b.example.com'
//                           nor '10.0.0.1.attacker.example' for '10.0.0.*' ('*' never crosses
//                           a dot)
//   an IP address           '10.0.0.7', '[fd00::7]'
//   a CIDR block            '10.0.0.0/8', '[fc00::]/7'
// PORT is a number, a range '8000-8999', or '*'.
//
// Only a pattern that names a destination exactly (an exact name, an address, a CIDR block that
// contains the address) reaches an internal address; a '*' in the host never does.
import * as net from 'node:net';

import { UsageError } from '../common';

export type HostPattern =
  | { kind: 'any' }
  | { kind: 'name'; name: string }
  | { kind: 'wildcard'; name: RegExp }
  | { kind: 'block'; block: net.BlockList };

export interface AllowPattern {
  text: string;
  host: HostPattern;
  /** Inclusive. */
  ports: [number, number];
}

// A DNS name with '*' allowed inside labels (RFC 1123 labels; '_' is common in practice).
const LABEL = '[a-z0-9_*](?:[a-z0-9_*-]{0,61}[a-z0-9_*])?';
const NAME = new RegExp(`^(?:${LABEL}\\.)*${LABEL}$`);

function usage(text: string, why: string): UsageError {
  return new UsageError(`--allow: "${text}" ${why}; write HOST:PORT with HOST a name ('*' ` +
    `within one label), an address or a CIDR block (10.0.0.0/8, [fc00::]/7), and PORT a number, ` +
    `a range 8000-8999 or '*'`);
}

function parsePorts(text: string, port: string): [number, number] {
  if (port === '*') return [1, 65535];
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(port);
  const low = Number(match?.[1]);
  const high = match?.[2] === undefined ? low : Number(match[2]);
  if (match === null || low < 1 || high > 65535 || low > high) {
    throw usage(text, `has a port "${port}" that is not 1..65535, LOW-HIGH or '*'`);
  }
  return [low, high];
}

function parseBlock(text: string, address: string, prefix: string | undefined): HostPattern {
  const family = net.isIP(address);
  if (family === 0) throw usage(text, `has "${address}", which is not an IP address`);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const bits = prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix);
  if (!/^\d{1,3}$/.test(prefix ?? '0') || bits > (family === 4 ? 32 : 128)) {
    throw usage(text, `has a prefix length "/${prefix}" out of range`);
  }
  const block = new net.BlockList();
  block.addSubnet(address, bits, type);
  return { kind: 'block', block };
}

function parseHost(text: string, host: string): HostPattern {
  if (host === '*') return { kind: 'any' };
  const cidr = /^([^/]+)(?:\/(.*))?$/.exec(host)!;
  if (net.isIP(cidr[1]) !== 0 || cidr[2] !== undefined) return parseBlock(text, cidr[1], cidr[2]);
  const name = host.toLowerCase().replace(/\.$/, '');
  if (!NAME.test(name)) throw usage(text, `has a host "${host}" that is not a DNS name`);
  if (!name.includes('*')) return { kind: 'name', name };
  const source = name.split('.').map((label) => label.split('*')
    .map((s) => s.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('[^.]*')).join('\\.');
  return { kind: 'wildcard', name: new RegExp(`^${source}$`) };
}

/** 'HOST:PORT' ('[IPv6]:PORT', '[IPv6]/LEN:PORT') as a pattern; a UsageError when malformed. */
export function parseAllow(text: string): AllowPattern {
  const match = /^\[([^\]]+)\](\/\d+)?:([^:]+)$/.exec(text) ?? /^([^:[\]]+):([^:]+)$/.exec(text);
  if (match === null) throw usage(text, 'is not HOST:PORT');
  const [host, port] = match.length === 4 ? [match[1] + (match[2] ?? ''), match[3]]
    : [match[1], match[2]];
  return { text, host: parseHost(text, host), ports: parsePorts(text, port) };
}

export function allowsPort(pattern: AllowPattern, port: number): boolean {
  return pattern.ports[0] <= port && port <= pattern.ports[1];
}

/** The destination's name as the client sent it: lower case, without a trailing dot. */
export function normalName(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/** Does the pattern's host part admit this name (as sent) before any lookup? */
export function allowsName(pattern: AllowPattern, name: string): boolean {
  switch (pattern.host.kind) {
    case 'any': return true;
    case 'name': return pattern.host.name === name;
    case 'wildcard': return net.isIP(name) === 0 && pattern.host.name.test(name);
    case 'block': return true;   // decided on the address, once it is known
  }
}

/**
 * May `address` (what `name` resolved to) be dialled under this pattern? `internal` addresses
 * only under a pattern that names them exactly.
 */
export function allowsAddress(pattern: AllowPattern, name: string, address: string,
  internal: boolean): boolean {
  switch (pattern.host.kind) {
    case 'any':
    case 'wildcard':
      return !internal && allowsName(pattern, name);
    case 'name': return pattern.host.name === name;
    case 'block':
      return pattern.host.block.check(address, net.isIP(address) === 4 ? 'ipv4' : 'ipv6');
  }
}
