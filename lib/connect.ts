// connect(): tls.connect() over a record tap, so the session can later be captured.
//
// The TLSSocket is a real tls.TLSSocket created by tls.connect({ ...options, socket: tap }); every
// option means what it means to tls.connect. The tap is in place before tls.connect writes the
// ClientHello (it does so synchronously), and our 'keylog' listener is attached before any secret
// exists (the first ones come with the ServerHello). Users may listen to 'keylog' too.
//
// Differences from tls.connect, all because the TLSSocket sits on a JS stream:
//   - `onread` is refused when we create the TCP socket (Node only honours it on its own socket);
//   - remoteAddress/localAddress/…, address(), setNoDelay() and setKeepAlive() are forwarded to
//     the TCP socket, and its 'connect' is re-emitted on the TLSSocket;
//   - with `options.socket`, 'data' listeners the application left on that socket would see the
//     TLS records (Node's own TLS takes the handle and they go silent): remove them first;
//   - `options.socket` other than a net.Socket is passed to tls.connect untapped (capture then
//     refuses with ERR_TLS_SPLICE_NOT_TAPPED).
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceError } from './errors';
import { RecordTap } from './tap';

export type ConnectOptions = tls.ConnectionOptions;
type SecureConnectListener = () => void;

// Same argument forms as tls.connect: (options[, cb]), (port[, host][, options][, cb]),
// (path[, options][, cb]).
function normalizeConnectArgs(args: unknown[]): [ConnectOptions, SecureConnectListener | undefined] {
  let listener: SecureConnectListener | undefined;
  if (typeof args[args.length - 1] === 'function') {
    listener = args.pop() as SecureConnectListener;
  }
  const [first, second, third] = args;
  let options: ConnectOptions = {};
  if (typeof first === 'object' && first !== null) {
    options = { ...(first as ConnectOptions) };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    options.port = Number(first);
    if (typeof second === 'string') options.host = second;
    const extra = typeof second === 'object' && second !== null ? second :
      typeof third === 'object' && third !== null ? third : undefined;
    if (extra) options = { ...(extra as ConnectOptions), ...options };
  } else if (typeof first === 'string') {
    options.path = first;
    if (typeof second === 'object' && second !== null) {
      options = { ...(second as ConnectOptions), ...options };
    }
  } else if (first !== undefined) {
    throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
      'connect() takes (options[, callback]), (port[, host][, options][, callback]) or ' +
      `(path[, options][, callback]); received ${typeof first}`);
  }
  return [options, listener];
}

export function connect(options: ConnectOptions, listener?: SecureConnectListener): tls.TLSSocket;
export function connect(port: number, host?: string, options?: ConnectOptions,
                        listener?: SecureConnectListener): tls.TLSSocket;
export function connect(port: number, options?: ConnectOptions,
                        listener?: SecureConnectListener): tls.TLSSocket;
export function connect(path: string, options?: ConnectOptions,
                        listener?: SecureConnectListener): tls.TLSSocket;
export function connect(...args: unknown[]): tls.TLSSocket {
  const [options, listener] = normalizeConnectArgs(args);
  const given = options.socket;
  if (given !== undefined && given !== null && !(given instanceof net.Socket)) {
    return tls.connect(options, listener);
  }
  let raw: net.Socket;
  const created = given === undefined || given === null;
  if (created) {
    if ((options as { onread?: unknown }).onread !== undefined) {
      throw new SpliceError('ERR_TLS_SPLICE_INVALID_ARG',
        "tls-splice connect() does not support 'onread'; read with 'data' events");
    }
    // The TCP socket gets the network options; timeout belongs to the TLSSocket (as with
    // tls.connect), and signal is handled by the TLSSocket, whose destruction closes the TCP one.
    const { timeout: _timeout, signal: _signal, socket: _socket, ...netOptions } =
      options as ConnectOptions & { signal?: AbortSignal };
    raw = net.connect(netOptions as net.NetConnectOpts);
  } else {
    raw = given as net.Socket;
  }
  let tap: RecordTap;
  let tlsSocket: tls.TLSSocket;
  try {
    tap = new RecordTap(raw, { isServer: false });
    tlsSocket = tls.connect({ ...options, socket: tap }, listener);
    tap.tlsSocketCreated();
  } catch (err) {
    if (created) raw.destroy();
    throw err;
  }
  tap.attachTLSSocket(tlsSocket);
  tlsSocket.on('keylog', (line: Buffer) => tap.addKeylogLine(line));
  if (created && options.timeout) tlsSocket.setTimeout(options.timeout);
  if (raw.connecting) raw.once('connect', () => tlsSocket.emit('connect'));
  return tlsSocket;
}
