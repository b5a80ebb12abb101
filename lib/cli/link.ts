// The relay <-> agent link protocol, one module for both ends (relay.ts, agent.ts).
//
// A link is a mutual-TLS connection the agent opened to the relay's --agents address. Before it
// carries a public client's stream it carries three JSON lines, each at most MAX_LINE_LENGTH:
//
//   relay -> agent  greeting      {"relay":"tls-splice"}
//                                 Sent once the relay has verified the agent's certificate: under
//                                 TLS 1.3 the client finishes its handshake before the server has
//                                 checked its certificate, so this is the agent's sign that the
//                                 link is accepted.
//   relay -> agent  announcement  {"client":"HOST:PORT","source":{address,port},
//                                  "destination":{address,port}}
//                                 A public client for this link (source/destination: the public
//                                 connection's ends, for the agent's PROXY header).
//   agent -> relay  answer        {"ok":true} or {"ok":false,"code":"ECONNREFUSED"} (then closes)
//
// From the byte after the answer the link carries the public client's stream both ways. Each
// side parses the other's lines as untrusted: they are bounded, must be JSON of the right shape,
// and a field that reaches a log line (the answer's code, the announced client) must match a
// narrow pattern or is replaced, so a peer cannot write its own log lines through ours.
import * as net from 'node:net';
import type { Readable } from 'node:stream';

import { readPreamble } from '../index';
import type { ProxyProtocolAddress } from '../index';
import { formatAddr } from './common';

/** Every link message is one short JSON line (LF included). */
export const MAX_LINE_LENGTH = 4096;
/** A relay that accepted the handshake greets at once; one that refused our certificate closes. */
export const GREETING_TIMEOUT_MS = 10_000;
/** The agent dials its backend before answering (its --dial-timeout is 10 s by default). */
export const ANSWER_TIMEOUT_MS = 30_000;

/** A line of the wrong shape, or bytes where the protocol has none. */
export const LINK_PROTOCOL_ERROR = 'ERR_TLS_SPLICE_LINK_PROTOCOL';

// A code is a libuv name (ECONNREFUSED), an ERR_* name or a TLS alert name in upper case.
const CODE_SHAPE = /^[A-Z0-9_]{1,64}$/;

export class LinkProtocolError extends Error {
  readonly code = LINK_PROTOCOL_ERROR;

  constructor(message: string) {
    super(message);
    this.name = 'LinkProtocolError';
  }
}

export interface Announcement {
  /** The public client as 'host:port' (for log lines). */
  client: string;
  source?: ProxyProtocolAddress;
  destination?: ProxyProtocolAddress;
}

export type Answer = { ok: true } | { ok: false; code: string };

export interface Received<T> {
  message: T;
  /** Bytes read past the line: the start of the spliced stream. */
  rest: Buffer;
}

// ---------------------------------------------------------------------------------------------
// Encoding.

export function encodeGreeting(): string {
  return `${JSON.stringify({ relay: 'tls-splice' })}\n`;
}

export function encodeAnnouncement(announcement: Announcement): string {
  return `${JSON.stringify(announcement)}\n`;
}

export function encodeAnswer(answer: Answer): string {
  return `${JSON.stringify(answer)}\n`;
}

// ---------------------------------------------------------------------------------------------
// Parsing (untrusted lines).

function parseObject(line: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new LinkProtocolError(`the ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LinkProtocolError(`the ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function parseGreeting(line: string): void {
  if (parseObject(line, 'greeting').relay !== 'tls-splice') {
    throw new LinkProtocolError('the greeting is not {"relay":"tls-splice"}');
  }
}

/** { address, port } with an IP address and a port in range, else undefined. */
export function parseAddress(value: unknown): ProxyProtocolAddress | undefined {
  const v = value as { address?: unknown; port?: unknown } | null | undefined;
  if (typeof v?.address !== 'string' || !net.isIP(v.address)) return undefined;
  if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 0 || v.port > 65535) {
    return undefined;
  }
  return { address: v.address, port: v.port };
}

// The client's name comes from its source address when there is one (an IP and a port cannot
// carry anything else); a relay that sent none gets '?'.
export function parseAnnouncement(line: string): Announcement {
  const parsed = parseObject(line, 'announcement');
  const source = parseAddress(parsed.source);
  const destination = parseAddress(parsed.destination);
  const client = source === undefined ? '?' : formatAddr(source.address, source.port);
  return { client, source, destination };
}

/** The agent's code reaches the relay's log: unless it is CODE_SHAPE, LINK_PROTOCOL_ERROR. */
export function parseAnswer(line: string): Answer {
  const parsed = parseObject(line, 'answer');
  if (parsed.ok === true) return { ok: true };
  if (parsed.ok !== false) throw new LinkProtocolError('the answer has no "ok" true or false');
  const code = typeof parsed.code === 'string' && CODE_SHAPE.test(parsed.code) ? parsed.code
    : LINK_PROTOCOL_ERROR;
  return { ok: false, code };
}

// ---------------------------------------------------------------------------------------------
// Reading one message from a link. Each rejects with a code: LINK_PROTOCOL_ERROR, or
// readPreamble's (ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE / _TRUNCATED / _TIMEOUT).

async function readMessage<T>(link: Readable, parse: (line: string) => T, timeout?: number):
Promise<Received<T>> {
  const { line, rest } = await readPreamble(link, { maxLength: MAX_LINE_LENGTH, timeout });
  return { message: parse(line), rest };
}

/** The agent waits for the greeting; bytes after it (an announcement on its way) go back. */
export async function readGreeting(link: Readable): Promise<void> {
  const { rest } = await readMessage(link, parseGreeting, GREETING_TIMEOUT_MS);
  if (rest.length > 0) link.unshift(rest);
}

/** An idle link waits for its announcement as long as the relay keeps it open. */
export function readAnnouncement(link: Readable): Promise<Received<Announcement>> {
  return readMessage(link, parseAnnouncement);
}

export function readAnswer(link: Readable): Promise<Received<Answer>> {
  return readMessage(link, parseAnswer, ANSWER_TIMEOUT_MS);
}
