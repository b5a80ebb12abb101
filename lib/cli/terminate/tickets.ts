// Session ticket keys (TLS 1.2 tickets, TLS 1.3 PSK tickets), shared by every process that must
// resume every other's sessions: the --workers of one terminate (the cluster primary makes the
// keys and hands them out) or separate terminate processes given one --ticket-keys file.
//
// Node 20's public API holds one key per context (ticketKeys, setTicketKeys): every SIGHUP
// (setSecureContext) and every SNI context would otherwise get fresh random keys, and a rotation
// would make every outstanding ticket useless. So each context gets OpenSSL's ticket key callback
// through Node's SecureContext.enableTicketKeyCallback() (setTicketKeyCallback() in
// lib/internals.ts, checked at load). The first key encrypts; every key decrypts; every resumed
// session gets a fresh ticket (see #callback).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';

import { setTicketKeyCallback } from '../../internals';
import { CliError } from '../common';

/** One key as Node's ticketKeys lays it out: 16 bytes name, 16 HMAC secret, 16 AES-128 key. */
export const TICKET_KEY_BYTES = 48;

export interface TicketKey {
  name: Buffer;
  hmac: Buffer;
  aes: Buffer;
}

export function newTicketKey(): Buffer {
  return crypto.randomBytes(TICKET_KEY_BYTES);
}

/** Node's layout (name, HMAC, AES) -> a key. */
export function keyOfNodeBytes(raw: Buffer): TicketKey {
  return { name: raw.subarray(0, 16), hmac: raw.subarray(16, 32), aes: raw.subarray(32, 48) };
}

export function nodeBytesOfKey(key: TicketKey): Buffer {
  return Buffer.concat([key.name, key.hmac, key.aes]);
}

/**
 * --ticket-keys FILE: raw binary, 48 bytes per key in Node's layout (name, HMAC, AES; what
 * `openssl rand 48` makes), or HAProxy's tls-ticket-keys text (one base64 key per line, 48 bytes
 * decoded, laid out name, AES, HMAC as HAProxy's struct tls_sess_key_128). HAProxy's 80-byte
 * (AES-256) keys cannot be used: Node's ticket cipher is AES-128-CBC.
 */
export function readTicketKeys(file: string): TicketKey[] {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    throw new CliError((err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_TICKET_KEYS',
      `cannot read --ticket-keys ${file}: ${(err as Error).message}`, { cause: err });
  }
  const keys = /^[A-Za-z0-9+/=\s]+$/.test(data.toString('latin1'))
    ? keysOfBase64Lines(file, data.toString('latin1')) : keysOfBinary(file, data);
  if (keys.length === 0) throw badKeys(file, 'it holds no key');
  return keys;
}

function keysOfBinary(file: string, data: Buffer): TicketKey[] {
  if (data.length % TICKET_KEY_BYTES !== 0) {
    throw badKeys(file, `${data.length} bytes is not a multiple of ${TICKET_KEY_BYTES}`);
  }
  const keys: TicketKey[] = [];
  for (let at = 0; at < data.length; at += TICKET_KEY_BYTES) {
    keys.push(keyOfNodeBytes(Buffer.from(data.subarray(at, at + TICKET_KEY_BYTES))));
  }
  return keys;
}

function keysOfBase64Lines(file: string, text: string): TicketKey[] {
  return text.split('\n').map((line) => line.trim()).filter((line) => line !== '')
    .map((line, index) => {
      const raw = Buffer.from(line, 'base64');
      if (raw.length === 80) {
        throw badKeys(file, `line ${index + 1} is an 80-byte (AES-256) HAProxy key; Node's ` +
          'tickets use AES-128: make 48-byte keys (openssl rand -base64 48)');
      }
      if (raw.length !== TICKET_KEY_BYTES) {
        throw badKeys(file, `line ${index + 1} decodes to ${raw.length} bytes, not 48`);
      }
      return { name: raw.subarray(0, 16), aes: raw.subarray(16, 32), hmac: raw.subarray(32, 48) };
    });
}

function badKeys(file: string, why: string): CliError {
  return new CliError('ERR_TLS_SPLICE_TICKET_KEYS', `--ticket-keys ${file}: ${why} (raw 48-byte ` +
    'keys, or base64 lines of 48 bytes as in HAProxy\'s tls-ticket-keys)');
}

/** The live key list of one process; every context it serves with asks it. */
export class TicketKeyring {
  #keys: TicketKey[];

  constructor(keys: TicketKey[]) {
    this.#keys = keys;
  }

  get keys(): readonly TicketKey[] {
    return this.#keys;
  }

  replace(keys: TicketKey[]): void {
    if (keys.length > 0) this.#keys = keys;
  }

  /** Makes `context` encrypt and decrypt tickets with this keyring. */
  attach(context: tls.SecureContext): void {
    setTicketKeyCallback(context, (name, _iv, encrypt) => this.#callback(name, encrypt));
  }

  #callback(name: Buffer, encrypt: boolean): unknown[] {
    if (encrypt) {
      const key = this.#keys[0];
      return [1, key.hmac, key.aes, key.name, crypto.randomBytes(16)];
    }
    const index = this.#keys.findIndex((key) => key.name.equals(name));
    // 0: not ours (a full handshake follows); Node still wants a 16-byte AES key to be there.
    if (index < 0) return [0, UNUSED, UNUSED];
    // Always 2 (renew): OpenSSL sends a TLS 1.3 server a NewSessionTicket after a resumed
    // handshake only when the ticket callback asked for renewal (t1_lib.c, tls_decrypt_ticket
    // sets ticket_expected). With 1, a client that offers its latest session on every reconnect
    // (wrk, curl, browsers after the first ticket) finds no fresh one after a resumption and falls
    // back to a full handshake every second time: the 50% resumption the issue measured. In
    // TLS 1.2 it costs one more ticket per resumption, which also moves it to the first key.
    const key = this.#keys[index];
    return [2, key.hmac, key.aes];
  }
}

const UNUSED = Buffer.alloc(16);
