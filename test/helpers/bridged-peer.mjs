// A plain node:tls server peer whose TCP connection passes through a JS Duplex that the test
// controls, so that it can end TCP with or without a close_notify first: `close()` is Node's own
// end() (close_notify, then FIN), `truncate()` sends a FIN that no close_notify precedes (what a
// killed process or an attacker cutting the connection produces). Node's tls, not tls-splice: a
// different code path from the sockets under test.
//
// API
//   bridgedServer({ minVersion, maxVersion }) -> { port, nextPeer(timeout) -> Promise<BridgedPeer>, close() }
//   BridgedPeer
//     .tls                       the peer's TLSSocket (allowHalfOpen: our close_notify does not end it)
//     .received -> Buffer        cleartext received so far
//     .waitFor(n, timeout)       until n bytes were received
//     .ended -> Promise          resolves at the TLSSocket's 'end' (our close_notify, or our FIN)
//     .send(buf) -> Promise      resolves once the ciphertext was handed to TCP
//     .close()                   close_notify, then FIN (Node's end())
//     .truncate() -> Promise     FIN without close_notify, after everything sent so far
//     .destroy()
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { FIXTURES } from './peers.mjs';

export class BridgedPeer {
  #chunks = [];
  #length = 0;
  #waiters = new Set();
  #truncated = false;

  constructor(raw, secureContext) {
    this.raw = raw;
    raw.setNoDelay(true);
    raw.on('error', () => {});
    const bridge = new Duplex({
      allowHalfOpen: true,
      read: () => raw.resume(),
      write: (chunk, _encoding, callback) => {
        // After truncate() nothing the TLS layer writes may reach the wire.
        if (this.#truncated || raw.writableEnded || raw.destroyed) return callback();
        raw.write(chunk, () => callback());
      },
      final: (callback) => {
        if (!this.#truncated && !raw.writableEnded) raw.end();
        callback();
      },
    });
    raw.on('data', (chunk) => {
      if (!bridge.push(chunk)) raw.pause();
    });
    raw.on('end', () => bridge.push(null));
    raw.on('close', () => bridge.destroy());
    this.tls = new tls.TLSSocket(bridge, { isServer: true, secureContext });
    this.tls.on('error', () => {});
    this.tls.on('data', (chunk) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      for (const wake of [...this.#waiters]) wake();
    });
    this.secure = new Promise((resolve) => this.tls.once('secure', resolve));
    this.ended = new Promise((resolve) => this.tls.once('end', resolve));
  }

  get received() {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  waitFor(n, timeout = 20000) {
    if (this.#length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`bridged peer: timed out waiting for ${n} bytes (have ${this.#length})`));
      }, timeout);
      const check = () => {
        if (this.#length < n) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  send(buffer) {
    return new Promise((resolve, reject) => {
      this.tls.write(buffer, (err) => (err ? reject(err) : resolve()));
    });
  }

  close() {
    this.tls.end();
  }

  // Everything written before went to TCP (send() resolved); the FIN follows it directly.
  async truncate() {
    this.#truncated = true;
    await new Promise((resolve) => this.raw.end(resolve));
  }

  destroy() {
    this.tls.destroy();
    this.raw.destroy();
  }
}

export async function bridgedServer({ minVersion = 'TLSv1.2', maxVersion = 'TLSv1.3' } = {}) {
  const secureContext = tls.createSecureContext({
    key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
    minVersion, maxVersion,
  });
  const peers = [];
  const waiters = [];
  const all = [];
  const server = net.createServer((raw) => {
    const peer = new BridgedPeer(raw, secureContext);
    all.push(peer);
    const waiter = waiters.shift();
    if (waiter) waiter(peer); else peers.push(peer);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    nextPeer(timeout = 10000) {
      if (peers.length) return Promise.resolve(peers.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no connection reached the peer')), timeout);
        waiters.push((peer) => { clearTimeout(timer); resolve(peer); });
      });
    },
    close() {
      for (const peer of all) peer.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
