// Building blocks for the data-plane tests: a spliced tls-splice socket facing a real peer, and
// the "user side" of the splice target whose bytes are hashed.
//
// API
//   ourClient(port, { suite, version, ...connectOpts }) -> Promise<TLSSocket>  connect() + handshake
//   ourServer({ suite, version, ...serverOpts }) -> { server, port, nextSocket() }
//   userSide(fd) -> UserSide    a net.Socket over our end of a socketpair/pipe, collecting bytes
//   socketPair() -> [fdForSplice, fdForTest]
//   drain(stream) -> Promise<Buffer>    everything a readable stream delivers until it ends
//   peerTlsOptions(suite)              { version, suite } for peers.mjs from a SUITES entry
//   withTimeout(promise, ms, what)     (from scenarios.mjs)
import net from 'node:net';
import fs from 'node:fs';
import { binding } from '../../dist/binding.js';
import { connect, createServer } from '../../dist/index.js';
import { FIXTURES } from './peers.mjs';

const read = (file) => fs.readFileSync(file);

export function tlsOptionsFor(suite) {
  if (!suite) return {};
  if (suite.version === 'TLSv1.3') {
    return { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphersuites: suite.openssl };
  }
  return { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: suite.openssl };
}

export function peerTlsOptions(suite) {
  return { version: suite.version, suite: suite.name };
}

export async function ourClient(port, { suite, ...connectOpts } = {}) {
  const socket = connect({
    host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca),
    ...tlsOptionsFor(suite), ...connectOpts,
  });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

export async function ourServer({ suite, ...serverOpts } = {}) {
  const sockets = [];
  const waiters = [];
  const server = createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), ...tlsOptionsFor(suite),
    ...serverOpts,
  }, (socket) => {
    const waiter = waiters.shift();
    if (waiter) waiter(socket); else sockets.push(socket);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: server.address().port,
    nextSocket(timeout = 10000) {
      if (sockets.length) return Promise.resolve(sockets.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no TLS connection arrived')), timeout);
        waiters.push((s) => { clearTimeout(timer); resolve(s); });
      });
    },
    close() {
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

export function socketPair() {
  return binding.socketPair();
}

export function pipe() {
  return binding.pipe();
}

// The test's end of the splice target: collects what the splice delivers, writes what it sends.
export class UserSide {
  chunks = [];
  length = 0;
  ended = false;
  #waiters = new Set();

  constructor(socket) {
    this.socket = socket;
    socket.on('data', (chunk) => {
      this.chunks.push(chunk);
      this.length += chunk.length;
      this.#wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', resolve));
  }

  get received() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  waitFor(n, timeout = 30000) {
    return this.#wait(() => this.length >= n, timeout, `${n} bytes (have ${this.length})`);
  }

  waitForEnd(timeout = 30000) {
    return this.#wait(() => this.ended, timeout, 'end');
  }

  async write(buffer) {
    if (!this.socket.write(buffer)) await new Promise((r) => this.socket.once('drain', r));
  }

  #wait(ready, timeout, what) {
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (!ready()) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`user side: timed out waiting for ${what}`));
      }, timeout);
      this.#waiters.add(waiter);
    });
  }

  #wake() {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

export function userSide(fd, options = {}) {
  return new UserSide(new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true,
    ...options }));
}

export function drain(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

export { withTimeout } from './scenarios.mjs';
