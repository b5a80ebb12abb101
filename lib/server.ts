// createServer(): a tls.Server whose connections run over record taps.
//
// SpliceServer is a real tls.Server (listen, 'secureConnection', 'tlsClientError', SNICallback,
// ALPNProtocols, requestCert, pskCallback, tickets, 'keylog' for the user too, and
// server.emit('connection', socket) with a plain net.Socket). Only Node's own 'connection'
// listener is replaced by one that wraps each raw socket in a tap and then calls Node's.
//
// Node creates the server TLSSocket inside its listener and does not hand it back. Each TLSSocket
// is linked to its tap through 'keylog', which the server emits with (line, tlsSocket) while the
// handshake runs: the line's client random names the connection whose ClientHello the tap read.
import * as net from 'node:net';
import * as tls from 'node:tls';

import { SpliceError } from './errors';
import { RecordTap, parseKeylogLine, tapOf } from './tap';

type ConnectionListener = (this: tls.Server, socket: net.Socket) => void;

export class SpliceServer extends tls.Server {
  // Taps whose ClientHello was read but which are not yet linked to a TLSSocket, by client random.
  // null marks a random sent by more than one connection: neither is linked (a replayed hello).
  #pending = new Map<string, RecordTap | null>();

  constructor(options?: tls.TlsOptions | ((socket: tls.TLSSocket) => void),
              listener?: (socket: tls.TLSSocket) => void) {
    super(options as tls.TlsOptions, listener);
    // tls.Server registers its connection handler with net.Server(options, tlsConnectionListener).
    const original = this.listeners('connection')
      .find((fn) => fn.name === 'tlsConnectionListener') as ConnectionListener | undefined;
    if (original === undefined) {
      throw new SpliceError('ERR_TLS_SPLICE_UNSUPPORTED_NODE',
        `tls-splice cannot find tls.Server's connection listener in Node ${process.version}; ` +
        "use tls.createServer with engine: 'js'");
    }
    this.removeListener('connection', original);
    const onClientHello = (tap: RecordTap) => this.#register(tap);
    const onClose = (tap: RecordTap) => this.#unregister(tap);
    this.on('connection', function tapConnection(this: SpliceServer, socket: net.Socket) {
      if (!(socket instanceof net.Socket)) {
        original.call(this, socket);
        return;
      }
      let tap: RecordTap;
      try {
        tap = new RecordTap(socket, { isServer: true, onClientHello, onClose });
      } catch (err) {
        socket.destroy(err as Error);
        return;
      }
      original.call(this, tap as unknown as net.Socket);
      tap.tlsSocketCreated();
    });
    // Node enables keylog on each server TLSSocket only if the server has a listener when the
    // connection arrives, so this one is always there.
    this.on('keylog', (line: Buffer, tlsSocket: tls.TLSSocket) => this.#onKeylog(line, tlsSocket));
  }

  #register(tap: RecordTap): void {
    const random = tap.clientHello!.random.toString('hex');
    this.#pending.set(random, this.#pending.has(random) ? null : tap);
  }

  #unregister(tap: RecordTap): void {
    if (tap.clientHello === undefined) return;
    const random = tap.clientHello.random.toString('hex');
    if (this.#pending.get(random) === tap) this.#pending.delete(random);
  }

  #onKeylog(line: Buffer, tlsSocket: tls.TLSSocket): void {
    let tap = tapOf(tlsSocket);
    if (tap === undefined) {
      const parsed = parseKeylogLine(line);
      if (parsed === undefined) return;
      const candidate = this.#pending.get(parsed.clientRandom);
      if (!candidate) return;
      this.#pending.delete(parsed.clientRandom);
      candidate.attachTLSSocket(tlsSocket);
      tap = candidate;
    }
    tap.addKeylogLine(line);
  }
}

export function createServer(options?: tls.TlsOptions | ((socket: tls.TLSSocket) => void),
                             listener?: (socket: tls.TLSSocket) => void): SpliceServer {
  return new SpliceServer(options, listener);
}
