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

import { debug } from './debug';
import { SpliceError } from './errors';
import { tlsConnectionListener } from './internals';
import { RecordTap, keylogClientRandom, tapOf } from './tap';

type ConnectionListener = (this: tls.Server, socket: net.Socket) => void;

// Connections whose ClientHello was read but whose TLSSocket has not logged a secret yet, at
// most. Each entry belongs to a live connection (it goes when the connection closes, links, or
// its handshake times out), so this only bounds a flood of concurrent half-done handshakes. Past
// it a new connection is closed (ERR_TLS_SPLICE_TOO_MANY_HANDSHAKES), never served unregistered:
// it could not be spliced, and a replayed random could link it to another connection's tap.
const kMaxPendingHellos = 16 * 1024;

function tooManyHandshakes(pending: number): SpliceError {
  return new SpliceError('ERR_TLS_SPLICE_TOO_MANY_HANDSHAKES',
    `tls-splice closed this connection: ${pending} other handshakes had sent their ClientHello ` +
    'and not finished. If the load is genuine, lower handshakeTimeout so that stalled handshakes ' +
    'are closed sooner, or spread connections over more processes.');
}

// The live taps that read one ClientHello random. `ambiguous` once a second connection sent the
// same random (a replayed hello): none of them is ever linked, since a keylog line names only the
// random, and the entry goes when the last of them closes.
interface PendingHello {
  taps: Set<RecordTap>;
  ambiguous: boolean;
}

const pendingCounts = new WeakMap<SpliceServer, () => number>();
const pendingLimits = new WeakMap<SpliceServer, number>();

// For tests: how many client randoms the server's table of pending hellos holds.
export function pendingHelloCount(server: SpliceServer): number {
  return pendingCounts.get(server)?.() ?? 0;
}

// For tests: a smaller table, so that a few connections fill it.
export function setPendingHelloLimit(server: SpliceServer, limit: number): void {
  pendingLimits.set(server, limit);
}

export class SpliceServer extends tls.Server {
  #pending = new Map<string, PendingHello>();
  #tooManyHandshakes = 0;

  constructor(options?: tls.TlsOptions | ((socket: tls.TLSSocket) => void),
              listener?: (socket: tls.TLSSocket) => void) {
    super(options as tls.TlsOptions, listener);
    // tls.Server registers its connection handler with net.Server(options, tlsConnectionListener).
    const original = tlsConnectionListener(this) as ConnectionListener | undefined;
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
    pendingCounts.set(this, () => this.#pending.size);
  }

  // Connections closed with ERR_TLS_SPLICE_TOO_MANY_HANDSHAKES since the server was created.
  get tooManyHandshakesCount(): number {
    return this.#tooManyHandshakes;
  }

  // Node's handshakeTimeout (default 120 s) only reports ERR_TLS_HANDSHAKE_TIMEOUT through
  // 'tlsClientError' and leaves the connection open (Node 20 does so whether or not anybody
  // listens), so a peer that connects and never finishes its handshake would hold a socket and
  // its tap for good. The listeners see the error and the socket first; then it is destroyed,
  // whatever they did (or if one threw).
  override emit(event: string | symbol, ...args: any[]): boolean {
    if (event !== 'tlsClientError' ||
        (args[0] as NodeJS.ErrnoException | undefined)?.code !== 'ERR_TLS_HANDSHAKE_TIMEOUT') {
      return super.emit(event, ...args);
    }
    try {
      return super.emit(event, ...args);
    } finally {
      (args[1] as tls.TLSSocket | undefined)?.destroy();
    }
  }

  #register(tap: RecordTap): void {
    const random = tap.clientHello!.random.toString('hex');
    const entry = this.#pending.get(random);
    if (entry !== undefined) {
      entry.taps.add(tap);
      if (!entry.ambiguous) {
        debug('server: a second connection sent a pending ClientHello random; neither is ' +
          'spliceable natively');
      }
      entry.ambiguous = true;
      return;
    }
    if (this.#pending.size >= (pendingLimits.get(this) ?? kMaxPendingHellos)) {
      debug('server: %d ClientHellos pending; closing this connection', this.#pending.size);
      this.#tooManyHandshakes++;
      // Node reports the tap's error as this connection's 'tlsClientError', then closes it.
      tap.destroy(tooManyHandshakes(this.#pending.size));
      return;
    }
    this.#pending.set(random, { taps: new Set([tap]), ambiguous: false });
  }

  // On close (or capture) of the tap's connection.
  #unregister(tap: RecordTap): void {
    if (tap.clientHello === undefined) return;
    const random = tap.clientHello.random.toString('hex');
    const entry = this.#pending.get(random);
    if (entry === undefined || !entry.taps.delete(tap)) return;
    if (entry.taps.size === 0) this.#pending.delete(random);
  }

  #onKeylog(line: Buffer, tlsSocket: tls.TLSSocket): void {
    let tap = tapOf(tlsSocket);
    if (tap === undefined) {
      const random = keylogClientRandom(line);
      if (random === undefined) return;
      const entry = this.#pending.get(random);
      if (entry === undefined || entry.ambiguous) return;
      const [candidate] = entry.taps;
      this.#pending.delete(random);
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
