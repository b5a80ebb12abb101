// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): tells a backend
// the client's address when a TCP proxy stands in between. Written as a splice's `head`, it
// reaches the backend before any spliced byte, which is exactly where the protocol puts it.
import * as net from 'node:net';

import { invalidArg } from './errors';

export interface ProxyProtocolAddress {
  address: string;
  port: number;
}

export interface ProxyProtocolOptions {
  /** The client's address (the connection's remote end). */
  source?: ProxyProtocolAddress;
  /** The address the client connected to (the connection's local end). */
  destination?: ProxyProtocolAddress;
  /** v2 only: a PP2_TYPE_ALPN TLV with the negotiated protocol. */
  alpn?: string;
  /** v2 only: a PP2_TYPE_AUTHORITY TLV with the SNI host name. */
  authority?: string;
}

// proxy-protocol.txt 2.2: the 12-byte v2 signature.
const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V2_VERSION_PROXY = 0x21;   // version 2, command PROXY
const V2_AF_UNSPEC = 0x00;
const V2_TCP4 = 0x11;            // AF_INET, STREAM
const V2_TCP6 = 0x21;            // AF_INET6, STREAM
const PP2_TYPE_ALPN = 0x01;
const PP2_TYPE_AUTHORITY = 0x02;
// proxy-protocol.txt 2.1: "a 108-byte buffer is always enough to store all the line".
const V1_MAX_LINE = 107;

/** An IPv4-mapped IPv6 address (::ffff:1.2.3.4) as plain IPv4; others unchanged. */
function unmap(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m !== null ? m[1] : address;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '');   // a zone index does not travel
  let tail: number[] = [];
  const v4 = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {   // an embedded IPv4 address: the last two groups
    const b = ipv4Bytes(v4[1]);
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    text = text.slice(0, text.length - v4[1].length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((x) => parseInt(x, 16)));
  const gap = text.indexOf('::');
  let groups: number[];
  if (gap >= 0) {
    const head = parse(text.slice(0, gap));
    const rest = [...parse(text.slice(gap + 2)), ...tail];
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    groups = [...parse(text), ...tail];
  }
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] ?? 0, i * 2);
  return out;
}

function checkAddress(name: string, value: ProxyProtocolAddress | undefined): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || typeof value.address !== 'string' ||
      !Number.isInteger(value.port) || value.port < 0 || value.port > 65535) {
    throw invalidArg(name, 'an { address, port } object', value);
  }
}

function tlv(type: number, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > 0xffff) throw invalidArg('TLV value', 'at most 65535 bytes', value);
  const out = Buffer.alloc(3 + bytes.length);
  out[0] = type;
  out.writeUInt16BE(bytes.length, 1);
  bytes.copy(out, 3);
  return out;
}

/**
 * The PROXY protocol header for a connection from `source` to `destination`: version 1 (the text
 * line) or 2 (binary, with optional ALPN and authority TLVs). Addresses of different families,
 * or missing ones, give the protocol's "unknown" form (v1 `PROXY UNKNOWN`, v2 AF_UNSPEC), which
 * a backend treats as a connection of its own.
 */
export function proxyProtocolHeader(version: 1 | 2 | 'v1' | 'v2',
  options: ProxyProtocolOptions): Buffer {
  const v = version === 'v1' ? 1 : version === 'v2' ? 2 : version;
  if (v !== 1 && v !== 2) throw invalidArg('version', "1, 2, 'v1' or 'v2'", version);
  if (options === null || typeof options !== 'object') {
    throw invalidArg('options', 'an object', options);
  }
  checkAddress('options.source', options.source);
  checkAddress('options.destination', options.destination);
  // Both IPv4 (an IPv4-mapped IPv6 address counts as IPv4) or both IPv6; else "unknown".
  let src = options.source?.address ?? '';
  let dst = options.destination?.address ?? '';
  let family = 0;
  if (net.isIPv4(unmap(src)) && net.isIPv4(unmap(dst))) {
    family = 4;
    src = unmap(src);
    dst = unmap(dst);
  } else if (net.isIPv6(src) && net.isIPv6(dst)) {
    family = 6;
  }
  if (v === 1) {
    if (family === 0) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const line = `PROXY TCP${family} ${src} ${dst} ${options.source!.port} ` +
      `${options.destination!.port}\r\n`;
    // Cannot happen with valid addresses; a zone index could make an IPv6 line longer.
    if (line.length > V1_MAX_LINE) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    return Buffer.from(line, 'latin1');
  }
  let addresses: Buffer;
  let fam: number;
  if (family === 4) {
    fam = V2_TCP4;
    addresses = Buffer.alloc(12);
    ipv4Bytes(src).copy(addresses, 0);
    ipv4Bytes(dst).copy(addresses, 4);
    addresses.writeUInt16BE(options.source!.port, 8);
    addresses.writeUInt16BE(options.destination!.port, 10);
  } else if (family === 6) {
    fam = V2_TCP6;
    addresses = Buffer.alloc(36);
    ipv6Bytes(src).copy(addresses, 0);
    ipv6Bytes(dst).copy(addresses, 16);
    addresses.writeUInt16BE(options.source!.port, 32);
    addresses.writeUInt16BE(options.destination!.port, 34);
  } else {
    fam = V2_AF_UNSPEC;
    addresses = Buffer.alloc(0);
  }
  const tlvs: Buffer[] = [];
  if (options.alpn) tlvs.push(tlv(PP2_TYPE_ALPN, options.alpn));
  if (options.authority) tlvs.push(tlv(PP2_TYPE_AUTHORITY, options.authority));
  const body = Buffer.concat([addresses, ...tlvs]);
  if (body.length > 0xffff) {
    throw invalidArg('options', 'TLVs of at most 64 KiB in all', body.length);
  }
  const fixed = Buffer.alloc(4);
  fixed[0] = V2_VERSION_PROXY;
  fixed[1] = fam;
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}
