// The commands' log: stderr, one line per connection end (plus process events); `--log json` for
// JSON lines. Text lines carry values peers chose (SNI, ALPN, their error codes and messages), so
// each value is escaped: one event is always one line (docs/SECURITY.md).

export type LogFormat = 'text' | 'json';

export interface ConnectionRecord {
  /** The command ('terminate', 'proxy', ...). */
  command: string;
  client: string;
  backend?: string;
  /** Bytes from the client to the backend, and back. */
  bytesFromClient: number;
  bytesToClient: number;
  durationMs: number;
  engine: 'native' | 'js' | null;
  /** 'end' | 'stopped' | 'aborted' | 'error' (a splice end), or 'refused' / 'failed' before one. */
  reason: string;
  /** The error's code when it ended with one. */
  code?: string;
  /** Extra detail (why a handshake or dial failed, the SNI name, the ALPN protocol...). */
  [extra: string]: unknown;
}

// Text mode: one event is one line, whatever a peer put into a field (an SNI with a newline, an
// agent's error message). A value of printable ASCII without spaces, quotes or backslashes is
// written as it is; any other is JSON-quoted with every character outside printable ASCII
// escaped; objects are JSON. JSON mode needs none of this: JSON.stringify escapes.

const kPlainLogValue = /^[\x21-\x7e]+$/;

/** A field's value as one unambiguous token of a text log line. */
export function logValue(value: unknown): string {
  const text = typeof value === 'string' ? value
    : typeof value === 'object' && value !== null ? JSON.stringify(value) ?? String(value)
      : String(value);
  if (kPlainLogValue.test(text) && !/["\\]/.test(text)) return text;
  return quoteLogText(text);
}

// JSON string syntax with every non-ASCII and DEL character as \uXXXX (no bidi overrides or C1
// controls reach a terminal).
function quoteLogText(text: string): string {
  return JSON.stringify(text).replace(/[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Free text at the end of a line (a message): control characters, backslashes and non-ASCII
// escaped as in a JSON string, without quotes; OpenSSL's trailing newlines dropped.
function logText(text: string): string {
  return quoteLogText(text.trimEnd()).slice(1, -1).replace(/\\"/g, '"');
}

/** An error's message with OpenSSL's trailing newlines removed (for both formats). */
export function errorText(err: unknown): string | undefined {
  if (err === undefined || err === null) return undefined;
  const text = err instanceof Error ? err.message : typeof err === 'object' ? JSON.stringify(err)
    : String(err);
  return text.trimEnd();
}

export class Logger {
  constructor(readonly format: LogFormat = 'text', private readonly out: NodeJS.WritableStream =
  process.stderr) {}

  /** The one line per connection end. */
  connection(record: ConnectionRecord): void {
    if (this.format === 'json') {
      this.out.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'connection',
        ...trimmedStrings(record) })}\n`);
      return;
    }
    const { command, client, backend, bytesFromClient, bytesToClient, durationMs, engine, reason,
      code, ...extra } = record;
    const parts = [`${command}: ${logValue(client)}`, `-> ${logValue(backend ?? '-')}`,
      `in=${bytesFromClient}`, `out=${bytesToClient}`, `ms=${Math.round(durationMs)}`,
      `engine=${engine ?? '-'}`, `end=${logValue(reason)}`];
    if (code !== undefined) parts.push(`code=${logValue(code)}`);
    for (const [k, v] of Object.entries(extra)) {
      if (v !== undefined) parts.push(`${k}=${logValue(typeof v === 'string' ? v.trimEnd() : v)}`);
    }
    this.out.write(`${parts.join(' ')}\n`);
  }

  /** A line about the process (listening, reload, drain, a failure not tied to a connection). */
  info(message: string, fields: Record<string, unknown> = {}): void {
    if (this.format === 'json') {
      this.out.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'info', message,
        ...fields })}\n`);
    } else {
      const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${logValue(v)}`).join('');
      this.out.write(`${logText(message)}${extra}\n`);
    }
  }

  error(message: string, err?: unknown): void {
    const code = (err as { code?: unknown } | undefined)?.code;
    const text = errorText(err);
    if (this.format === 'json') {
      this.out.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'error', message,
        code, error: text })}\n`);
    } else {
      this.out.write(`${logText(message)}${code ? ` code=${logValue(code)}` : ''}` +
        `${text ? `: ${logText(text)}` : ''}\n`);
    }
  }
}

// OpenSSL's messages end in a newline; a JSON record carries them without it.
function trimmedStrings(record: ConnectionRecord): ConnectionRecord {
  const out: ConnectionRecord = { ...record };
  for (const [k, v] of Object.entries(out)) if (typeof v === 'string') out[k] = v.trimEnd();
  return out;
}
