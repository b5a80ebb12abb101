// Drives a captured session's fd with the independent oracle (tls-oracle.mjs): what the native
// data plane will do, done in plain JS so that tests prove a CapturedSession right without the
// native code.
//
// API
//   new Keylog()                     .add(line) (a 'keylog' listener), .secret(label, clientRandom)
//   oracleCiphers(session, keylog)   -> { read, write } RecordCiphers at readSeq / writeSeq, keys
//                                       derived by the oracle (TLS 1.2: from the logged master
//                                       secret, and checked equal to the session's keys)
//   new CapturedEndpoint(session, { keylog })
//       takes the session's fd and opens everything the other side sends with the oracle
//       (pendingCiphertext first, then the fd), following its TLS 1.3 KeyUpdates
//       .readAppData(n, timeout) -> Promise<Buffer>  all application data opened so far, once
//                                                    at least n bytes arrived
//       .writeAppData(buf)        seals records of at most session.maxFragmentLength at writeSeq
//       .send(buf) -> Promise     raw bytes on the connection
//       .appLength, .appData() -> Buffer, .appHash() -> hex
//       .alerts [{ level, description, length }], .handshakes [{ type, body }], .handshakeTypes
//       .records (count), .maxRecordPlaintext
//       .openError (a record that did not open), .error (the first of that or a socket error),
//       .ended, .closed
//       .waitFor(predicate, what, timeout) -> Promise  predicate(this)'s first truthy value;
//                                                      rejects on openError, or once closed
//       .close()                  destroys the socket over the fd (closes the fd)
//   Received                      chunks with a length, a lazy concat, a hash
//   closeSession(session)         releases a session no endpoint took (closes fd, spent socket)
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';

import { RecordCipher, TLS12, TLS13, nextTrafficSecret, splitRecords, tls12KeyBlock } from './tls-oracle.mjs';

export class Keylog {
  lines = [];

  add = (line) => {
    this.lines.push(line.toString('latin1').trim());
  };

  secret(label, clientRandom) {
    const random = Buffer.isBuffer(clientRandom) ? clientRandom.toString('hex') : clientRandom;
    for (const line of this.lines) {
      const [l, r, s] = line.split(' ');
      if (l === label && r.toLowerCase() === random) return Buffer.from(s, 'hex');
    }
    return undefined;
  }
}

export function oracleCiphers(session, keylog) {
  const { versionId: version, cipherSuite: suite } = session;
  if (version === TLS13) {
    if (keylog) {
      const ours = session.isServer ? ['CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0'] :
        ['SERVER_TRAFFIC_SECRET_0', 'CLIENT_TRAFFIC_SECRET_0'];
      assert.deepEqual(session.readSecret, keylog.secret(ours[0], session.clientRandom), 'readSecret');
      assert.deepEqual(session.writeSecret, keylog.secret(ours[1], session.clientRandom), 'writeSecret');
    }
    return {
      read: new RecordCipher({ version, suite, secret: session.readSecret, seq: session.readSeq }),
      write: new RecordCipher({ version, suite, secret: session.writeSecret, seq: session.writeSeq }),
      readSecret: session.readSecret,
    };
  }
  assert.equal(version, TLS12);
  const master = keylog?.secret('CLIENT_RANDOM', session.clientRandom);
  assert.ok(master, 'the test saw the CLIENT_RANDOM keylog line');
  const block = tls12KeyBlock(suite, master, session.clientRandom, session.serverRandom);
  const client = { key: block.clientKey, iv: block.clientIv };
  const server = { key: block.serverKey, iv: block.serverIv };
  const read = session.isServer ? client : server;
  const write = session.isServer ? server : client;
  assert.deepEqual(session.readKey, read.key, 'readKey');
  assert.deepEqual(session.readIv, read.iv, 'readIv');
  assert.deepEqual(session.writeKey, write.key, 'writeKey');
  assert.deepEqual(session.writeIv, write.iv, 'writeIv');
  return {
    read: new RecordCipher({ version, suite, ...read, seq: session.readSeq }),
    write: new RecordCipher({ version, suite, ...write, seq: session.writeSeq }),
  };
}

export function closeSession(session) {
  try { fs.closeSync(session.fd); } catch { /* already closed */ }
}

// A list of chunks with a length, a lazy concat and a hash.
export class Received {
  chunks = [];
  length = 0;

  push(chunk) {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  bytes() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  hash() {
    const h = crypto.createHash('sha256');
    for (const c of this.chunks) h.update(c);
    return h.digest('hex');
  }
}

export class CapturedEndpoint {
  #buffer;
  #app = new Received();
  #waiters = new Set();
  #readSecret;
  handshakes = [];
  alerts = [];
  records = 0;
  maxRecordPlaintext = 0;
  openError = null;
  error = null;
  ended = false;
  closed = false;

  constructor(session, { keylog } = {}) {
    this.session = session;
    const { read, write } = oracleCiphers(session, keylog);
    this.read = read;
    this.write = write;
    this.#readSecret = session.readSecret;
    this.#buffer = Buffer.from(session.pendingCiphertext);
    this.socket = new net.Socket({ fd: session.fd, readable: true, writable: true });
    this.socket.on('data', (chunk) => {
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
      this.#process();
    });
    this.socket.on('error', (err) => {
      this.error ??= err;
      this.#wake();
    });
    this.socket.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    this.#process();
  }

  #wake() {
    for (const check of [...this.#waiters]) check();
  }

  #process() {
    if (this.openError === null) {
      const { records, rest } = splitRecords(this.#buffer);
      this.#buffer = rest.length ? Buffer.from(rest) : Buffer.alloc(0);
      for (const record of records) {
        const seq = this.read.seq;
        let opened = null;
        try {
          opened = this.read.open(record);
        } catch (err) {
          this.openError = err;
        }
        if (opened === null) {
          this.openError ??= new Error(`record #${this.records} from the other side ` +
            `(type ${record[0]}, ${record.length} bytes) does not open at sequence ${seq}`);
          this.error ??= this.openError;
          break;
        }
        this.records++;
        this.#onRecord(opened);
      }
    }
    this.#wake();
  }

  #onRecord({ type, plaintext }) {
    if (type === 23) {
      this.#app.push(Buffer.from(plaintext));
      this.maxRecordPlaintext = Math.max(this.maxRecordPlaintext, plaintext.length);
    } else if (type === 21) {
      this.alerts.push({ level: plaintext[0], description: plaintext[1], length: plaintext.length });
    } else if (type === 22) {
      for (let pos = 0; pos + 4 <= plaintext.length;) {
        const hsType = plaintext[pos];
        const length = plaintext.readUIntBE(pos + 1, 3);
        this.handshakes.push({ type: hsType, body: Buffer.from(plaintext.subarray(pos + 4, pos + 4 + length)) });
        pos += 4 + length;
        // RFC 8446 4.6.3: after a KeyUpdate the sender uses the next generation of its secret.
        if (hsType === 24 && this.session.versionId === TLS13) {
          this.#readSecret = nextTrafficSecret(this.session.cipherSuite, this.#readSecret);
          this.read = new RecordCipher({ version: TLS13, suite: this.session.cipherSuite,
            secret: this.#readSecret, seq: 0n });
        }
      }
    }
  }

  get handshakeTypes() {
    return this.handshakes.map((m) => m.type);
  }

  get appLength() {
    return this.#app.length;
  }

  appData() {
    return this.#app.bytes();
  }

  appHash() {
    return this.#app.hash();
  }

  // `what` (a string, or a function giving one) names what was awaited in the rejections.
  waitFor(predicate, what, timeout = 5000) {
    const describe = () => (typeof what === 'function' ? what() : what);
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        let value;
        try {
          value = predicate(this);
        } catch (err) {
          finish(reject, err);
          return;
        }
        if (value) finish(resolve, value);
        else if (this.openError) finish(reject, this.openError);
        else if (this.closed) {
          finish(reject, this.error ?? new Error(`the connection closed before: ${describe()}`));
        }
      };
      const finish = (settle, value) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        settle(value);
      };
      timer = setTimeout(() => {
        finish(reject, new Error(`timed out after ${timeout} ms: ${describe()}`));
      }, timeout);
      this.#waiters.add(check);
      check();
    });
  }

  readAppData(n, timeout = 5000) {
    return this.waitFor((p) => {
      if (p.appLength >= n) return p.appData();
      if (p.ended) throw new Error(`fd ended after ${p.appLength} of ${n} bytes`);
      return null;
    }, () => `reading ${n} bytes of application data from the fd (has ${this.appLength})`,
    timeout);
  }

  send(buf) {
    return new Promise((resolve, reject) => {
      this.socket.write(buf, (err) => (err ? reject(err) : resolve()));
    });
  }

  writeAppData(data) {
    const max = this.session.maxFragmentLength;
    const records = [];
    for (let pos = 0; pos < data.length; pos += max) {
      records.push(this.write.seal(23, data.subarray(pos, pos + max)));
    }
    return this.send(Buffer.concat(records));
  }

  close() {
    this.socket.destroy();
  }
}
