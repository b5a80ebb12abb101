// Errors that reach users. Every one has a stable `code`; tests assert the code, never the text.

// Every ERR_TLS_SPLICE_* code the library and its commands produce, from lib/, lib/cli/ or
// src-native/ (and nothing else: no open-ended `string`). Engine ends also carry
// ERR_TLS_ALERT_<name> (a fatal alert from the peer) and libuv names (EPIPE, ECONNRESET, ...).
// test/error-codes.test.mjs checks this list against the C++ strings, lib/, lib/cli/ and the hints.
export type SpliceErrorCode =
  // Arguments, state and platform (lib/ and the binding).
  | 'ERR_TLS_SPLICE_INVALID_ARG'
  | 'ERR_TLS_SPLICE_INVALID_STATE'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_NODE'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_PLATFORM'
  | 'ERR_TLS_SPLICE_SELF_CHECK_FAILED'
  | 'ERR_TLS_SPLICE_INTERNAL'
  // Capture refusals (the TLSSocket is untouched unless said otherwise).
  | 'ERR_TLS_SPLICE_NOT_TAPPED'
  | 'ERR_TLS_SPLICE_NOT_ESTABLISHED'
  | 'ERR_TLS_SPLICE_ALREADY_CAPTURED'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_VERSION'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER'
  | 'ERR_TLS_SPLICE_NO_SECRETS'
  | 'ERR_TLS_SPLICE_KEY_UPDATE_SEEN'
  | 'ERR_TLS_SPLICE_RENEGOTIATED'
  | 'ERR_TLS_SPLICE_CAPTURE_ABORTED'
  | 'ERR_TLS_SPLICE_SPENT'
  | 'ERR_TLS_SPLICE_BAD_RECORD'
  | 'ERR_TLS_SPLICE_BAD_HANDSHAKE'
  | 'ERR_TLS_SPLICE_NO_FD'
  | 'ERR_TLS_SPLICE_ENCODING_LOSSY'
  // Ends of a running splice: the record layer (record_layer.cc) ...
  | 'ERR_TLS_SPLICE_BAD_RECORD_MAC'
  | 'ERR_TLS_SPLICE_RECORD_OVERFLOW'
  | 'ERR_TLS_SPLICE_BAD_RECORD_VERSION'
  | 'ERR_TLS_SPLICE_UNEXPECTED_RECORD'
  | 'ERR_TLS_SPLICE_UNEXPECTED_MESSAGE'
  | 'ERR_TLS_SPLICE_RENEGOTIATION'
  | 'ERR_TLS_SPLICE_POST_HANDSHAKE_AUTH'
  | 'ERR_TLS_SPLICE_DECODE_ERROR'
  | 'ERR_TLS_SPLICE_ILLEGAL_PARAMETER'
  | 'ERR_TLS_SPLICE_EMPTY_RECORD_FLOOD'
  | 'ERR_TLS_SPLICE_KEY_UPDATE_FLOOD'
  | 'ERR_TLS_SPLICE_MESSAGE_TOO_LARGE'
  | 'ERR_TLS_SPLICE_SEQUENCE_EXHAUSTED'
  // ... and the engines' pumps (splice.cc, js-engine.ts).
  | 'ERR_TLS_SPLICE_TRUNCATED_RECORD'
  | 'ERR_TLS_SPLICE_FRAMING'
  | 'ERR_TLS_SPLICE_UNEXPECTED_DATA'
  | 'ERR_TLS_SPLICE_TARGET_NOT_RAW'
  | 'ERR_TLS_SPLICE_TARGET_CLOSED'
  | 'ERR_TLS_SPLICE_STOPPED'
  // createServer() (server.ts): a connection closed before its handshake could go on.
  | 'ERR_TLS_SPLICE_TOO_MANY_HANDSHAKES'
  // readPreamble() (preamble.ts).
  | 'ERR_TLS_SPLICE_BAD_PREAMBLE'
  | 'ERR_TLS_SPLICE_PREAMBLE_TIMEOUT'
  | 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE'
  | 'ERR_TLS_SPLICE_PREAMBLE_TRUNCATED'
  // The commands (lib/cli/): their log lines and exit messages.
  | 'ERR_TLS_SPLICE_USAGE'
  | 'ERR_TLS_SPLICE_LISTEN'
  | 'ERR_TLS_SPLICE_WORKER'
  | 'ERR_TLS_SPLICE_BAD_CERTIFICATE'
  | 'ERR_TLS_SPLICE_DIAL'
  | 'ERR_TLS_SPLICE_UPSTREAM'
  | 'ERR_TLS_SPLICE_NO_ROUTE'
  | 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS'
  | 'ERR_TLS_SPLICE_STOPPING'
  | 'ERR_TLS_SPLICE_PROXY_AUTH'
  | 'ERR_TLS_SPLICE_PROXY_DENIED'
  | 'ERR_TLS_SPLICE_NO_AGENT'
  | 'ERR_TLS_SPLICE_BAD_ANSWER'
  | 'ERR_TLS_SPLICE_TOO_MANY_PIPELINED'
  | 'ERR_TLS_SPLICE_LINK_PROTOCOL'
  // terminate's certificates, ticket keys and privileges (lib/cli/terminate/).
  | 'ERR_TLS_SPLICE_NO_CERTIFICATE'
  | 'ERR_TLS_SPLICE_CERT_DIR'
  | 'ERR_TLS_SPLICE_OCSP'
  | 'ERR_TLS_SPLICE_TICKET_KEYS'
  | 'ERR_TLS_SPLICE_NO_USER'
  | 'ERR_TLS_SPLICE_NO_GROUP'
  | 'ERR_TLS_SPLICE_PRIVILEGES';

// A code a SpliceError carries without owning it: a libuv name passed through from a socket
// (EPIPE, ECONNREFUSED, ...), ERR_TLS_ALERT_<name> from the peer, Node's ABORT_ERR. Kept out of
// SpliceErrorCode, which lists exactly tls-splice's own codes.
export type PassedThroughCode = string & {};

export class SpliceError extends Error {
  readonly code: SpliceErrorCode | PassedThroughCode;

  constructor(code: SpliceErrorCode | PassedThroughCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpliceError';
    this.code = code;
  }
}

export function invalidArg(name: string, expected: string, actual: unknown): SpliceError {
  const shown = typeof actual === 'string' ? JSON.stringify(actual) : String(actual);
  return new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
    `The "${name}" argument must be ${expected}. Received ${shown}`);
}
