// readPreamble(): read what a protocol sends before the bytes to splice — one line, or an HTTP
// request head — off a readable stream (a TLSSocket before spliceTo(), or a plain net.Socket),
// within a size limit.
//
// The peer may send its first spliced bytes in the same write as the preamble (a client that
// pipelines its TLS ClientHello behind a CONNECT, an agent's data behind its JSON line), so a
// read can return more than the preamble. Those bytes come back as `rest`: pass them to
// spliceTo() as `head` and the target sees exactly the bytes that followed the preamble. What
// Node decrypted beyond `rest` stays buffered in the socket, where capture takes it (after
// `head`). None of our listeners stay on the stream: nothing reads it until you do (spliceTo(),
// a 'data' listener, resume()). On a stream with setEncoding() it undoes that first (its decoded
// text could not give `rest` exactly): the stream delivers Buffers from then on.
//
// A peer may send its preamble and close its side at once (a one-shot request, an announcement
// followed by EOF). Reading never goes past the bytes buffered, so an EOF that came with the
// preamble stays pending in the stream: 'end' is not emitted, Node does not end our side in
// answer, and the splice sees the peer's close and carries the half-close through. An EOF that
// arrives later, into an empty buffer, Node acts on at once ('end'; with allowHalfOpen false it
// ends our side too), and a socket in that state can no longer be spliced: splice soon after
// the preamble, or keep the peer from closing until then (tls-splice relay holds its client's
// bytes until the agent has answered).
import type { Readable } from 'node:stream';

import { SpliceError, invalidArg } from './errors';
import { encodingHandoverRefusal, revertEncoding } from './readable-encoding';

export type PreambleKind = 'line' | 'http';

export interface ReadPreambleOptions {
  /** 'line' (default): up to the first LF. 'http': an HTTP/1.x request head (up to an empty line). */
  kind?: PreambleKind;
  /** The longest preamble accepted, terminator included (default 8 KiB line, 16 KiB http). */
  maxLength?: number;
  /** Give up after this many milliseconds without a whole preamble (default: no limit). */
  timeout?: number;
  /** Aborting it rejects with an AbortError (code ABORT_ERR). */
  signal?: AbortSignal;
}

export interface LinePreamble {
  kind: 'line';
  /** The bytes of the line, its LF (or CRLF) included. */
  preamble: Buffer;
  /** The line as UTF-8, without its CRLF / LF. */
  line: string;
  /** The bytes read past the line: pass them to spliceTo() as `head`. */
  rest: Buffer;
}

export interface HttpRequestHead {
  method: string;
  /** The request-target as sent: 'host:port' for CONNECT, 'http://...' for a proxy request. */
  target: string;
  /** '1.0' or '1.1'. */
  httpVersion: string;
  /** Field names lower-cased; repeated fields joined with ', ' (RFC 9110 5.3). */
  headers: Record<string, string>;
  /** [name, value, name, value, ...] as received (names in their case). */
  rawHeaders: string[];
}

export interface HttpPreamble extends HttpRequestHead {
  kind: 'http';
  /** The bytes of the request head, its empty line included. */
  preamble: Buffer;
  /** The bytes read past the head (a pipelined body or tunnel bytes): spliceTo()'s `head`. */
  rest: Buffer;
}

export type Preamble = LinePreamble | HttpPreamble;

// A line protocol's greeting (a JSON line, a PROXY v1 header is 107 bytes) fits in 8 KiB.
export const kDefaultMaxLineLength = 8 * 1024;
// Node's own HTTP parser refuses a head over 16 KiB (--max-http-header-size), as we do.
export const kDefaultMaxHttpHeadLength = 16 * 1024;

const LF = 0x0a;
const CR = 0x0d;

function preambleError(code: string, message: string, bytesRead: number): SpliceError {
  const error = new SpliceError(code, message);
  (error as SpliceError & { bytesRead: number }).bytesRead = bytesRead;
  return error;
}

// Where the terminator of a line ends (the index after its LF), or -1.
function lineEnd(data: Buffer, from: number): number {
  const lf = data.indexOf(LF, from);
  return lf < 0 ? -1 : lf + 1;
}

// RFC 9112 2.2: "a server that is expecting to receive and parse a request-line SHOULD ignore at
// least one empty line (CRLF) received prior to the request-line". Returns where the head starts,
// or -1 while the bytes seen are all empty lines (or a CR that may begin one).
function skipLeadingEmptyLines(data: Buffer): number {
  let i = 0;
  while (i < data.length) {
    if (data[i] === LF) {
      i += 1;
    } else if (data[i] === CR) {
      if (i + 1 >= data.length) return -1;
      if (data[i + 1] !== LF) return i;   // a bare CR: the parser rejects it
      i += 2;
    } else {
      return i;
    }
  }
  return -1;
}

// Where an HTTP head ends (the index after the LF of its empty line), or -1. RFC 9112 2.2: "a
// recipient MAY recognize a single LF as a line terminator and ignore any preceding CR", so the
// empty line is LF, optionally preceded by a CR, right after a LF.
function httpHeadEnd(data: Buffer, start: number, from: number): number {
  for (let lf = data.indexOf(LF, Math.max(start, from)); lf >= 0; lf = data.indexOf(LF, lf + 1)) {
    let next = lf + 1;
    if (data[next] === CR) next += 1;
    if (next >= data.length) return -1;
    if (data[next] === LF) return next + 1;
  }
  return -1;
}

// RFC 9110 5.6.2: token = 1*tchar.
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 5.5: field-value chars are VCHAR, obs-text, SP and HTAB (no CTL, so no bare CR or NUL).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 9112 3.2: a request-target has no whitespace; we take any visible ASCII (the forms are
// checked by whoever routes on it).
const REQUEST_TARGET = /^[\x21-\x7e]+$/;

function badRequest(why: string, bytesRead: number): SpliceError {
  const error = preambleError('ERR_TLS_SPLICE_BAD_PREAMBLE',
    `The HTTP request head is malformed: ${why}. Answer 400 (Bad Request) and close.`, bytesRead);
  // What is wrong, without the advice: for the 400 answer's body.
  (error as SpliceError & { detail: string }).detail = why;
  return error;
}

/** Parses an HTTP/1.x request head (request-line and header fields, up to its empty line). */
export function parseHttpRequestHead(head: Buffer): HttpRequestHead {
  const start = skipLeadingEmptyLines(head);
  const text = head.toString('latin1', start < 0 ? head.length : start);
  // Lines end in LF with an optional CR before it; the head ends with an empty line.
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw badRequest('no request-line', head.length);
  // RFC 9112 3: request-line = method SP request-target SP HTTP-version
  const parts = lines[0].split(' ');
  if (parts.length !== 3) {
    throw badRequest('the request-line is not "METHOD TARGET HTTP/x.y"', head.length);
  }
  const [method, target, version] = parts;
  if (!TCHAR.test(method)) throw badRequest('the method is not a token', head.length);
  if (!REQUEST_TARGET.test(target)) throw badRequest('bad characters in the request-target', head.length);
  const versionMatch = /^HTTP\/(1\.[01])$/.exec(version);
  if (versionMatch === null) throw badRequest(`unsupported version ${JSON.stringify(version)}`, head.length);
  const headers: Record<string, string> = Object.create(null);
  const rawHeaders: string[] = [];
  for (const line of lines.slice(1)) {
    // RFC 9112 5.2: "A server that receives an obs-fold in a request message ... MUST either
    // reject the message by sending a 400 (Bad Request) ..."
    if (line.startsWith(' ') || line.startsWith('\t')) {
      throw badRequest('a folded header line (obs-fold)', head.length);
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw badRequest('a header line without a field name and colon', head.length);
    const name = line.slice(0, colon);
    // RFC 9112 5.1: "A server MUST reject, with a response status code of 400 (Bad Request), any
    // received request message that contains whitespace between a header field name and colon."
    if (!TCHAR.test(name)) throw badRequest(`the field name ${JSON.stringify(name)} is not a token`, head.length);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw badRequest(`control characters in the ${name} field`, head.length);
    rawHeaders.push(name, value);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { method, target, httpVersion: versionMatch[1], headers, rawHeaders };
}

/**
 * Reads a preamble (a line, or an HTTP request head) off `stream` and resolves with it and the
 * bytes read past it (`rest`, for spliceTo()'s `head`). Rejects with a coded SpliceError:
 * ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE, ERR_TLS_SPLICE_PREAMBLE_TRUNCATED (the stream ended first),
 * ERR_TLS_SPLICE_PREAMBLE_TIMEOUT, ERR_TLS_SPLICE_BAD_PREAMBLE (a malformed HTTP head), ABORT_ERR,
 * ERR_TLS_SPLICE_ENCODING_LOSSY (setEncoding() text that cannot turn back into the peer's bytes),
 * or the stream's own error.
 */
export function readPreamble(stream: Readable, options: ReadPreambleOptions & { kind: 'http' }):
  Promise<HttpPreamble>;
export function readPreamble(stream: Readable, options?: ReadPreambleOptions & { kind?: 'line' }):
  Promise<LinePreamble>;
export function readPreamble(stream: Readable, options?: ReadPreambleOptions): Promise<Preamble>;
export function readPreamble(stream: Readable, options: ReadPreambleOptions = {}):
    Promise<Preamble> {
  if (stream === null || typeof stream !== 'object' || typeof stream.read !== 'function') {
    return Promise.reject(invalidArg('stream', 'a readable stream (a TLSSocket)', stream));
  }
  if (options === null || typeof options !== 'object') {
    return Promise.reject(invalidArg('options', 'an object', options));
  }
  const kind = options.kind ?? 'line';
  if (kind !== 'line' && kind !== 'http') {
    return Promise.reject(invalidArg('options.kind', "'line' or 'http'", kind));
  }
  const maxLength = options.maxLength ??
    (kind === 'line' ? kDefaultMaxLineLength : kDefaultMaxHttpHeadLength);
  if (!Number.isSafeInteger(maxLength) || maxLength < 1) {
    return Promise.reject(invalidArg('options.maxLength', 'a positive integer', maxLength));
  }
  const timeout = options.timeout ?? 0;
  if (typeof timeout !== 'number' || !(timeout >= 0) || !Number.isFinite(timeout)) {
    return Promise.reject(invalidArg('options.timeout', 'a non-negative number of ms', timeout));
  }
  const signal = options.signal ?? null;
  if (signal !== null && !(signal instanceof AbortSignal)) {
    return Promise.reject(invalidArg('options.signal', 'an AbortSignal', signal));
  }
  if (signal?.aborted) {
    return Promise.reject(new SpliceError('ABORT_ERR', 'Reading the preamble was aborted.'));
  }
  if (stream.readableEnded || stream.destroyed) {
    return Promise.reject(preambleError('ERR_TLS_SPLICE_PREAMBLE_TRUNCATED',
      'The stream has already ended, so it has no preamble to read.', 0));
  }
  // The preamble and `rest` are the peer's bytes: a setEncoding() on the stream is undone (its
  // decoded text would make `rest` differ from what the peer sent).
  const lossy = encodingHandoverRefusal(stream);
  if (lossy !== null) return Promise.reject(lossy);
  revertEncoding(stream);

  return new Promise<Preamble>((resolve, reject) => {
    let data: Buffer = Buffer.alloc(0);
    let scanFrom = 0;      // where the terminator search resumes
    let timer: NodeJS.Timeout | null = null;
    let done = false;

    const finish = (error: Error | null, preamble?: Preamble) => {
      if (done) return;
      done = true;
      stream.removeListener('readable', onReadable);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.removeListener('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (timer !== null) clearTimeout(timer);
      if (error) reject(error); else resolve(preamble!);
    };

    // Searches the bytes read so far; true once the preamble is complete (or refused).
    const scan = (): boolean => {
      let end: number;
      if (kind === 'line') {
        end = lineEnd(data, scanFrom);
      } else {
        const start = skipLeadingEmptyLines(data);
        end = start < 0 ? -1 : httpHeadEnd(data, start, scanFrom);
      }
      if (end < 0) {
        if (data.length > maxLength) {
          finish(tooLarge(data.length));
          return true;
        }
        // A terminator can straddle reads: resume two bytes back (LF, CR before the final LF).
        scanFrom = Math.max(0, data.length - 2);
        return false;
      }
      if (end > maxLength) {
        finish(tooLarge(end));
        return true;
      }
      const preambleBytes = data.subarray(0, end);
      const rest = Buffer.from(data.subarray(end));
      if (kind === 'line') {
        let text = preambleBytes.subarray(0, preambleBytes.length - 1);
        if (text.length > 0 && text[text.length - 1] === CR) text = text.subarray(0, text.length - 1);
        finish(null, { kind, preamble: preambleBytes, line: text.toString('utf8'), rest });
      } else {
        let head: HttpRequestHead;
        try {
          head = parseHttpRequestHead(preambleBytes);
        } catch (err) {
          finish(err as Error);
          return true;
        }
        finish(null, { kind, ...head, preamble: preambleBytes, rest });
      }
      return true;
    };

    const tooLarge = (length: number) => preambleError('ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE',
      `The ${kind === 'line' ? 'line' : 'HTTP request head'} is longer than ${maxLength} bytes ` +
      `(at least ${length} read). Answer with an error and close, or raise maxLength.`, length);

    function onReadable() {
      // read(n) with n what is buffered: a read() without a size that empties the buffer after
      // the peer's EOF emits 'end', which must wait for whoever reads past the preamble.
      while (stream.readableLength > 0) {
        const chunk = stream.read(stream.readableLength) as Buffer | string | null;
        if (chunk === null) break;
        // A string only if setEncoding() is called again while the preamble is read.
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        data = data.length === 0 ? bytes : Buffer.concat([data, bytes]);
        if (scan()) return;
      }
      // Nothing buffered and no preamble yet: ask for more (at EOF this emits 'end': truncated).
      stream.read();
    }
    function onEnd() {
      finish(preambleError('ERR_TLS_SPLICE_PREAMBLE_TRUNCATED',
        `The peer ended the stream after ${data.length} bytes, before a whole ` +
        `${kind === 'line' ? 'line' : 'HTTP request head'}.`, data.length));
    }
    function onError(err: Error) {
      finish(err);
    }
    function onClose() {
      finish(preambleError('ERR_TLS_SPLICE_PREAMBLE_TRUNCATED',
        `The stream closed after ${data.length} bytes, before a whole ` +
        `${kind === 'line' ? 'line' : 'HTTP request head'}.`, data.length));
    }
    function onAbort() {
      finish(new SpliceError('ABORT_ERR', 'Reading the preamble was aborted.'));
    }

    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeout > 0) {
      timer = setTimeout(() => finish(preambleError('ERR_TLS_SPLICE_PREAMBLE_TIMEOUT',
        `No whole ${kind === 'line' ? 'line' : 'HTTP request head'} within ${timeout} ms ` +
        `(${data.length} bytes read). Close the connection.`, data.length)), timeout);
    }
  });
}
