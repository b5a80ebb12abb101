// Errors that reach users. Every one has a stable `code`; tests assert the code, never the text.

export type SpliceErrorCode =
  | 'ERR_TLS_SPLICE_INVALID_ARG'
  | 'ERR_TLS_SPLICE_NOT_TAPPED'
  | 'ERR_TLS_SPLICE_NOT_ESTABLISHED'
  | 'ERR_TLS_SPLICE_ALREADY_CAPTURED'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_VERSION'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER'
  | 'ERR_TLS_SPLICE_NO_SECRETS'
  | 'ERR_TLS_SPLICE_KEY_UPDATE_SEEN'
  | 'ERR_TLS_SPLICE_RENEGOTIATED'
  | 'ERR_TLS_SPLICE_SELF_CHECK_FAILED'
  | 'ERR_TLS_SPLICE_CAPTURE_ABORTED'
  | 'ERR_TLS_SPLICE_SPENT'
  | 'ERR_TLS_SPLICE_UNSUPPORTED_NODE'
  | 'ERR_TLS_SPLICE_BAD_RECORD'
  | 'ERR_TLS_SPLICE_BAD_HANDSHAKE'
  | 'ERR_TLS_SPLICE_NO_FD'
  | 'ERR_TLS_SPLICE_INVALID_STATE'
  | 'ERR_TLS_SPLICE_TARGET_NOT_RAW'
  | 'ERR_TLS_SPLICE_TARGET_CLOSED'
  | 'ERR_TLS_SPLICE_STOPPED'
  | (string & {});

export class SpliceError extends Error {
  readonly code: SpliceErrorCode;

  constructor(code: SpliceErrorCode, message: string, options?: { cause?: unknown }) {
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
