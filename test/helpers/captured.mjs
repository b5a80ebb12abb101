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
//       .readAppData(n, timeout) -> Promise<Buffer>  all application data opened so far, once
//                                                    at least n bytes arrived (pendingCiphertext
//                                                    first, then the fd)
//       .writeAppData(buf)        seals records of at most session.maxFragmentLength at writeSeq
//       .handshakeTypes, .alerts, .records, .maxRecordPlaintext
//       .close()                  destroys the socket over the fd (closes the fd)
//   closeSession(session)         releases a session no endpoint took (closes fd, spent socket)
import assert from 'node:assert/strict';
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

export class CapturedEndpoint {
  #buffer;
  #app = [];
  #appLength = 0;
  #waiters = new Set();
  #readSecret;
  handshakeTypes = [];
  alerts = [];
  records = 0;
  maxRecordPlaintext = 0;
  error = null;
  ended = false;

  constructor(session, { keylog } = {}) {
    this.session = session;
    const { read, write, readSecret } = oracleCiphers(session, keylog);
    this.read = read;
    this.write = write;
    this.#readSecret = readSecret;
    this.#buffer = Buffer.from(session.pendingCiphertext);
    this.socket = new net.Socket({ fd: session.fd, readable: true, writable: true });
    this.socket.on('data', (chunk) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
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
    this.#process();
  }

  #wake() {
    for (const wake of this.#waiters) wake();
  }

  #process() {
    if (this.error) return;
    const { records, rest } = splitRecords(this.#buffer);
    this.#buffer = Buffer.from(rest);
    for (const record of records) {
      const seq = this.read.seq;
      const opened = this.read.open(record);
      if (opened === null) {
        this.error = new Error(`record #${this.records} after capture (type ${record[0]}, ` +
          `${record.length} bytes) does not open at sequence ${seq}`);
        break;
      }
      this.records++;
      if (opened.type === 23) {
        this.#app.push(opened.plaintext);
        this.#appLength += opened.plaintext.length;
        this.maxRecordPlaintext = Math.max(this.maxRecordPlaintext, opened.plaintext.length);
      } else if (opened.type === 22) {
        for (let pos = 0; pos + 4 <= opened.plaintext.length;) {
          const type = opened.plaintext[pos];
          this.handshakeTypes.push(type);
          pos += 4 + opened.plaintext.readUIntBE(pos + 1, 3);
          // RFC 8446 4.6.3: after a KeyUpdate the sender uses the next generation of its secret.
          if (type === 24 && this.session.versionId === TLS13) {
            this.#readSecret = nextTrafficSecret(this.session.cipherSuite, this.#readSecret);
            this.read = new RecordCipher({ version: TLS13, suite: this.session.cipherSuite,
              secret: this.#readSecret, seq: 0n });
          }
        }
      } else if (opened.type === 21) {
        this.alerts.push(opened.plaintext);
      }
    }
    this.#wake();
  }

  get appData() {
    if (this.#app.length > 1) this.#app = [Buffer.concat(this.#app)];
    return this.#app[0] ?? Buffer.alloc(0);
  }

  readAppData(n, timeout = 5000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.#appLength >= n) {
          done();
          resolve(this.appData);
        } else if (this.error || this.ended) {
          done();
          reject(this.error ?? new Error(`fd ended after ${this.#appLength} of ${n} bytes`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out reading ${n} bytes of application data from the fd ` +
          `(has ${this.#appLength})`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  writeAppData(data) {
    const max = this.session.maxFragmentLength;
    const records = [];
    for (let pos = 0; pos < data.length; pos += max) {
      records.push(this.write.seal(23, data.subarray(pos, pos + max)));
    }
    return new Promise((resolve, reject) => {
      this.socket.write(Buffer.concat(records), (err) => (err ? reject(err) : resolve()));
    });
  }

  close() {
    this.socket.destroy();
  }
}
