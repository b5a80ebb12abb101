// A hostile TLS peer for the hardening tests. It does a REAL handshake — both ends are tls-splice
// sockets (connect() / createServer()) over loopback — then takes its own session with
// captureSession() and from there on writes TLS records made by hand with the independent
// node:crypto oracle (tls-oracle.mjs): well-formed ones at the right keys and sequence numbers,
// and broken ones on purpose. The other end, the side under test, is spliced with
// engine: 'native' to a loopback TCP "sink" whose far end the test reads and hashes.
//
// Everything the side under test sends back is opened with the oracle too, so a test can read the
// alert the splice sent, follow its KeyUpdates and check the cleartext byte for byte.
//
//   const pair = await openPair({ version: 'TLSv1.3' });
//   try {
//     await pair.hostile.sendData(buf);              // sealed at the right sequence number
//     await pair.hostile.send(pair.hostile.tamper(…)); // or anything at all
//     const end = await pair.ended();                 // the SpliceEnd, bounded in time
//     const alert = await pair.hostile.waitForAlert();
//   } finally { await pair.close(); }
//
// API
//   ALERT, ALERT_LEVEL, CONTENT, HANDSHAKE      protocol numbers (RFC 8446 B.2 / 5.1 / 4)
//   VERSION_SUITES                               { 'TLSv1.3': IANA suite name, 'TLSv1.2': ... }
//   MAX_CIPHERTEXT                               { 'TLSv1.3': 2^14 + 256, 'TLSv1.2': 2^14 + 2048 }
//   openPair({ version, suite, underTest, spliceOptions, target, timeout }) -> Pair
//       underTest: 'server' (default) or 'client': which end is the spliced side; the hostile
//       peer is the other. spliceOptions go to spliceTo() (engine 'native' unless they say).
//       target: the splice target instead of a Sink (pair.sink is then null).
//   Pair
//       .hostile (HostilePeer), .sink (Sink), .handle (SpliceHandle), .version, .suite
//       .ended(timeout) -> Promise<SpliceEnd>       handle.closed, or a rejection after `timeout`
//       .close() -> Promise                         tears everything down (stop, destroy, close),
//                                                   safe to call twice and after a failure
//   HostilePeer (a CapturedEndpoint, captured.mjs)
//       .version ('TLSv1.3' | 'TLSv1.2'), .tls13, .session (the captured session), .socket
//       .seal(type, plaintext) -> Buffer            one record at the current write key and seq
//       .seal13Inner(innerType, content, padding)   TLS 1.3: any inner type, explicit zero padding
//       .record(type, body, version?) -> Buffer     a raw record: header + body, nothing sealed
//       .tamper(record, byteIndex, mask) -> Buffer  a copy with one byte XORed
//       .data(buf) -> Buffer                        application data records (<= 2^14 each)
//       .alert(level, description) -> Buffer
//       .handshake(type, body) -> Buffer            one handshake message in one record
//       .keyUpdate(requested, value?) -> Buffer     TLS 1.3: the KeyUpdate record, sealed under the
//                                                   current key; the write key then moves on
//       .send(buf) -> Promise                       raw bytes on the TCP connection
//       .sendData(buf) -> Promise                   .send(.data(buf))
//       .end()                                      TCP FIN, no close_notify
//       .resetAndDestroy()                          TCP RST
//       .destroy()
//     what the side under test sent, opened with the oracle:
//       .appLength, .appData() -> Buffer, .appHash() -> hex
//       .alerts [{ level, description }], .handshakes [{ type, body }]
//       .records (count), .openError (a record that did not open), .ended, .closed,
//       .error (the first of openError or a socket error)
//       .waitFor(predicate, what, timeout) -> Promise
//       .waitForAppData(n, timeout), .waitForAlert(timeout) -> { level, description }
//       .waitForClose(timeout)
//   Sink: a connected loopback TCP pair; `near` is the splice's target, the test drives `far`.
//       .near, .far, .length, .bytes(), .hash(), .ended
//       .waitFor(n, timeout), .waitForEnd(timeout), .write(buf) -> Promise, .end(), .close()
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { captureSession, connect, createServer, releaseSpentSocket, spliceTo } from '../../dist/index.js';
import { CapturedEndpoint, Keylog, Received } from './captured.mjs';
import { onceEvent, withTimeout } from './scenarios.mjs';
import { RecordCipher, TLS13, nextTrafficSecret } from './tls-oracle.mjs';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const read = (name) => fs.readFileSync(path.join(fixtures, name));

export const ALERT = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  illegal_parameter: 47,
  decode_error: 50,
  protocol_version: 70,
  internal_error: 80,
  user_canceled: 90,
  no_renegotiation: 100,
};
export const ALERT_LEVEL = { warning: 1, fatal: 2 };
export const CONTENT = { change_cipher_spec: 20, alert: 21, handshake: 22, application_data: 23 };
export const HANDSHAKE = {
  hello_request: 0, client_hello: 1, new_session_ticket: 4, certificate_request: 13, key_update: 24,
};
export const VERSION_SUITES = {
  'TLSv1.3': 'TLS_AES_128_GCM_SHA256',
  'TLSv1.2': 'ECDHE-RSA-AES128-GCM-SHA256',
};
export const MAX_CIPHERTEXT = { 'TLSv1.3': 16384 + 256, 'TLSv1.2': 16384 + 2048 };

const MAX_FRAGMENT = 16384;

// The reading side (opening, KeyUpdates, what came back, waitFor) is CapturedEndpoint's; this
// adds the records a hostile peer writes.
export class HostilePeer extends CapturedEndpoint {
  #writeSecret;

  constructor(session, keylog) {
    super(session, { keylog });
    this.tls13 = session.versionId === TLS13;
    this.version = this.tls13 ? 'TLSv1.3' : 'TLSv1.2';
    this.#writeSecret = session.writeSecret;
  }

  // --- records --------------------------------------------------------------------------------

  seal(type, plaintext) {
    return this.write.seal(type, Buffer.from(plaintext));
  }

  // TLS 1.3 TLSInnerPlaintext = content || type || zeros (RFC 8446 5.2). innerType 0 with
  // all-zero content is a record with no content type at all (RFC 8446 5.4).
  seal13Inner(innerType, content = Buffer.alloc(0), padding = 0) {
    assert.ok(this.tls13, 'seal13Inner is TLS 1.3 only');
    if (padding === 0) return this.write.seal(innerType, Buffer.from(content));
    // The oracle appends the type byte it is given: give it 0, the last byte of the padding.
    return this.write.seal(0, Buffer.concat([Buffer.from(content), Buffer.from([innerType]),
      Buffer.alloc(padding - 1)]));
  }

  record(type, body, version = 0x0303) {
    const header = Buffer.from([type, version >> 8, version & 0xff, body.length >> 8, body.length & 0xff]);
    return Buffer.concat([header, body]);
  }

  tamper(record, byteIndex, mask) {
    const copy = Buffer.from(record);
    copy[byteIndex < 0 ? copy.length + byteIndex : byteIndex] ^= mask;
    return copy;
  }

  data(buf) {
    const records = [];
    for (let pos = 0; pos < buf.length; pos += MAX_FRAGMENT) {
      records.push(this.seal(CONTENT.application_data, buf.subarray(pos, pos + MAX_FRAGMENT)));
    }
    return Buffer.concat(records);
  }

  alert(level, description) {
    return this.seal(CONTENT.alert, Buffer.from([level, description]));
  }

  handshake(type, body = Buffer.alloc(0)) {
    const header = Buffer.from([type, 0, 0, 0]);
    header.writeUIntBE(body.length, 1, 3);
    return this.seal(CONTENT.handshake, Buffer.concat([header, body]));
  }

  keyUpdate(requested, value = requested ? 1 : 0) {
    assert.ok(this.tls13, 'KeyUpdate is TLS 1.3 only');
    const record = this.handshake(HANDSHAKE.key_update, Buffer.from([value]));
    // RFC 8446 4.6.3: the KeyUpdate goes out under the old key; later records use the new one.
    this.#writeSecret = nextTrafficSecret(this.session.cipherSuite, this.#writeSecret);
    this.write = new RecordCipher({ version: TLS13, suite: this.session.cipherSuite,
      secret: this.#writeSecret, seq: 0n });
    return record;
  }

  // --- wire -----------------------------------------------------------------------------------

  sendData(buf) {
    return this.send(this.data(buf));
  }

  end() {
    this.socket.end();
  }

  resetAndDestroy() {
    this.socket.resetAndDestroy();
  }

  destroy() {
    this.socket.destroy();
  }

  // --- what came back (the rest is CapturedEndpoint's) -----------------------------------------

  waitForAppData(n, timeout = 5000) {
    return this.waitFor((p) => p.appLength >= n && p.appData(),
      () => `${n} bytes from the side under test (has ${this.appLength})`, timeout);
  }

  waitForAlert(timeout = 5000) {
    return this.waitFor((p) => p.alerts[0], 'an alert from the side under test', timeout);
  }

  // Resolves once the TCP connection is closed (EOF read, or reset) with everything read.
  waitForClose(timeout = 5000) {
    return withTimeout(new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.resume();
    }), timeout, 'the side under test closing the TCP connection');
  }
}

export class Sink {
  #received = new Received();
  #waiters = new Set();
  ended = false;

  static async open() {
    // Half-open both ways: the splice passes the peer's close on as a FIN to `far`, whose own
    // direction must stay open.
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    try {
      const accepted = onceEvent(server, 'connection', 5000, 'sink accept');
      const near = net.connect({ port: server.address().port, host: '127.0.0.1', allowHalfOpen: true });
      near.on('error', () => {});
      const [far] = await accepted;
      await (near.connecting ? onceEvent(near, 'connect', 5000, 'sink connect') : Promise.resolve());
      return new Sink(near, far);
    } finally {
      server.close();
    }
  }

  constructor(near, far) {
    this.near = near;
    this.far = far;
    far.on('error', (err) => {
      this.error ??= err;
    });
    far.on('data', (chunk) => {
      this.#received.push(chunk);
      this.#wake();
    });
    far.on('end', () => {
      this.ended = true;
      this.#wake();
    });
  }

  #wake() {
    for (const check of [...this.#waiters]) check();
  }

  get length() {
    return this.#received.length;
  }

  bytes() {
    return this.#received.bytes();
  }

  hash() {
    return this.#received.hash();
  }

  #wait(done, what, timeout) {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        if (done()) {
          this.#waiters.delete(check);
          resolve();
        }
      };
      this.#waiters.add(check);
      check();
    }), timeout, what);
  }

  waitFor(n, timeout = 5000) {
    return this.#wait(() => this.length >= n, `${n} bytes at the sink (has ${this.length})`, timeout);
  }

  waitForEnd(timeout = 5000) {
    return this.#wait(() => this.ended, `EOF at the sink (has ${this.length} bytes)`, timeout);
  }

  write(buf) {
    return new Promise((resolve, reject) => {
      this.far.write(buf, (err) => (err ? reject(err) : resolve()));
    });
  }

  end() {
    this.far.end();
  }

  close() {
    this.near.destroy();
    this.far.destroy();
  }
}

function tlsOptions(version, suite) {
  return {
    minVersion: version,
    maxVersion: version,
    ciphers: suite,
  };
}

export async function openPair({ version = 'TLSv1.3', suite, underTest = 'server', spliceOptions = {},
                                 target, timeout = 10000 } = {}) {
  suite ??= VERSION_SUITES[version];
  const pair = new Pair(version, suite);
  try {
    await withTimeout(pair.open(underTest, spliceOptions, target), timeout,
      `opening a hostile ${version} pair`);
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}

class Pair {
  hostile = null;
  sink = null;
  handle = null;
  #server = null;
  #sockets = [];
  #hostileSocket = null;
  #closed = false;

  constructor(version, suite) {
    this.version = version;
    this.suite = suite;
  }

  async open(underTest, spliceOptions, target) {
    const serverKeylog = new Keylog();
    const clientKeylog = new Keylog();
    const server = createServer({ key: read('server-key.pem'), cert: read('server.pem'),
      ...tlsOptions(this.version, this.suite) });
    this.#server = server;
    server.on('keylog', serverKeylog.add);
    server.on('tlsClientError', () => {});
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const secured = onceEvent(server, 'secureConnection', 5000, "the server's 'secureConnection'");
    const client = connect({ host: '127.0.0.1', port: server.address().port, servername: 'localhost',
      ca: read('ca.pem'), ...tlsOptions(this.version, this.suite) });
    this.#sockets.push(client);
    client.on('keylog', clientKeylog.add);
    const [[serverSocket]] = await Promise.all([secured, onceEvent(client, 'secureConnect', 5000, "'secureConnect'")]);
    this.#sockets.push(serverSocket);
    server.close();

    const [testSocket, hostileSocket, keylog] = underTest === 'server' ?
      [serverSocket, client, clientKeylog] : [client, serverSocket, serverKeylog];
    for (const s of this.#sockets) s.on('error', () => {});
    if (target === undefined) this.sink = await Sink.open();
    this.handle = spliceTo(testSocket, target ?? this.sink.near, { engine: 'native', ...spliceOptions });
    const [session] = await Promise.all([captureSession(hostileSocket), this.handle.start()]);
    this.#hostileSocket = hostileSocket;
    this.hostile = new HostilePeer(session, keylog);
  }

  ended(timeout = 5000) {
    return withTimeout(this.handle.closed, timeout, 'the splice ending');
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    await withTimeout(this.handle?.stop({ graceful: false }) ?? Promise.resolve(), 5000, 'stop() in close()');
    this.hostile?.destroy();
    if (this.#hostileSocket) releaseSpentSocket(this.#hostileSocket);
    for (const s of this.#sockets) s.destroy();
    this.sink?.close();
    this.#server?.close();
  }
}
