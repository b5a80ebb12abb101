// What each code that reaches users means, and what to do about it: the end codes of a splice
// (native and JS engines) and start() refusals. Every ERR_TLS_SPLICE_* code a splice can end with
// has an entry; the SpliceErrorCode union in errors.ts lists the codes.
export const HINTS: Record<string, string> = {
  ERR_TLS_SPLICE_BAD_RECORD_MAC: 'A record from the peer failed authentication: the ' +
    'connection was tampered with, or the peer is broken. The session cannot continue.',
  ERR_TLS_SPLICE_RECORD_OVERFLOW: 'The peer sent a record longer than TLS allows.',
  ERR_TLS_SPLICE_BAD_RECORD_VERSION: 'The peer sent a record with a wrong version number.',
  ERR_TLS_SPLICE_UNEXPECTED_RECORD: 'The peer sent a record type that is not allowed after ' +
    'the handshake.',
  ERR_TLS_SPLICE_UNEXPECTED_MESSAGE: 'The peer sent a post-handshake message that is not ' +
    'allowed here.',
  ERR_TLS_SPLICE_RENEGOTIATION: 'The peer kept asking for TLS 1.2 renegotiation, which a ' +
    'spliced session refuses. Disable renegotiation on the peer.',
  ERR_TLS_SPLICE_POST_HANDSHAKE_AUTH: 'The server asked for a client certificate after the ' +
    'handshake (TLS 1.3 post-handshake auth), which a spliced session cannot answer.',
  ERR_TLS_SPLICE_DECODE_ERROR: 'The peer sent a malformed alert or handshake message.',
  ERR_TLS_SPLICE_ILLEGAL_PARAMETER: 'The peer sent a message with a forbidden value.',
  ERR_TLS_SPLICE_EMPTY_RECORD_FLOOD: 'The peer sent too many empty records in a row.',
  ERR_TLS_SPLICE_KEY_UPDATE_FLOOD: 'The peer sent too many KeyUpdates without data.',
  ERR_TLS_SPLICE_MESSAGE_TOO_LARGE: 'The peer sent an oversized post-handshake message.',
  ERR_TLS_SPLICE_SEQUENCE_EXHAUSTED: 'The TLS sequence numbers of this session are used up. ' +
    'Open a new connection.',
  ERR_TLS_SPLICE_TRUNCATED_RECORD: "The peer's TCP stream ended in the middle of a TLS record.",
  ERR_TLS_SPLICE_FRAMING: 'A packet did not match the framing.',
  ERR_TLS_SPLICE_UNEXPECTED_DATA: "The peer sent data, but direction 'out' has nowhere to " +
    "deliver it. Use direction 'duplex'.",
  ERR_TLS_SPLICE_INTERNAL: 'An internal error (OpenSSL failed). Please report it.',
  ERR_TLS_SPLICE_INVALID_ARG: 'The native engine cannot use an fd it was given (see the detail): ' +
    'pass an open socket, pipe or character device that stays open while the splice runs.',
  ERR_TLS_SPLICE_UNSUPPORTED_CIPHER: "The native record layer cannot use this session's cipher " +
    "suite. Use engine: 'auto' to fall back to the JS engine.",
  EPIPE: 'The other end closed while data was still being written to it.',
  ECONNRESET: 'The connection was reset by the other end.',
  EBADF: 'An fd was closed while the splice was using it.',
  // start() refusals (the TLSSocket is untouched and still the caller's).
  ERR_TLS_SPLICE_TARGET_NOT_RAW: "The target's fd does not carry its cleartext (a tls.TLSSocket, " +
    "or a socket that is not a plain TCP or Pipe stream), so the native engine cannot use it. " +
    "Use engine: 'auto' or 'js' (the JS engine writes through the socket), or pass a plain " +
    'net.Socket.',
  ERR_TLS_SPLICE_TARGET_CLOSED: 'The target socket closed before the splice started; nothing ' +
    'was taken over. Answer the peer over the TLSSocket (e.g. an HTTP 502) or close it.',
  ERR_TLS_SPLICE_INVALID_STATE: 'start() was called on a splice that was already stopped; ' +
    'create a new one with spliceTo().',
  ERR_TLS_SPLICE_STOPPED: 'stop() was called before the splice started; nothing was taken over ' +
    'and the TLSSocket is still yours.',
  ECONNREFUSED: 'The target refused the connection. Nothing was taken over: answer the peer over ' +
    'the TLSSocket (e.g. an HTTP 502) or close it.',
};

