// Bad TLS 1.2 AES-CBC records against a native splice (issue 20), from a real peer: OpenSSL
// s_client (PSK-AES128-CBC-SHA, with and without -no_etm) talks to our spliced server through a
// TCP relay that, once armed, alters the next application-data record the client sends: a bit of
// the explicit IV, of the ciphertext, of the MAC or of the padding flipped, a body one byte short
// (not whole blocks), or a body too short to hold an IV and a MAC. Each must end the splice with
// ERR_TLS_SPLICE_BAD_RECORD_MAC and the bad_record_mac alert (which s_client reports), deliver
// exactly the data sent before it, and nothing of that record.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spliceTo } from '../dist/index.js';
import { startClient, stopAll } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourServer, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';
import { requirePeer } from './helpers/programs.mjs';

const PSK_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const SUITE = 'PSK-AES128-CBC-SHA';
const MAC_LENGTH = 20;  // HMAC-SHA1
const BLOCK = 16;
const kApplicationData = 23;

after(() => stopAll());

// A relay to 127.0.0.1:targetPort that passes everything, except that after arm(fn) the next
// application-data record from the client is replaced by fn(record).
async function startTamperRelay(targetPort) {
  let tamper = null;
  const sockets = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.push(client, upstream);
    upstream.pipe(client);
    let held = Buffer.alloc(0);
    client.on('data', (chunk) => {
      held = Buffer.concat([held, chunk]);
      while (held.length >= 5 && held.length >= 5 + held.readUInt16BE(3)) {
        const size = 5 + held.readUInt16BE(3);
        let record = held.subarray(0, size);
        held = held.subarray(size);
        if (tamper !== null && record[0] === kApplicationData) {
          record = tamper(Buffer.from(record));
          tamper = null;
        }
        upstream.write(record);
      }
    });
    for (const s of [client, upstream]) s.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    arm(fn) { tamper = fn; },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function flip(record, index) {
  record[index] ^= 0x01;
  return record;
}

function withBodyLength(record, length) {
  const out = Buffer.alloc(5 + length);
  record.copy(out, 0, 0, Math.min(record.length, 5 + length));
  out.writeUInt16BE(length, 3);
  return out;
}

// Where the MAC and the padding length byte are: with encrypt-then-MAC the MAC follows the
// ciphertext; with MAC-then-encrypt both are encrypted, and a bit flipped in the block before
// the last flips the same bit of the last plaintext block (1000 bytes + a 20-byte MAC + 4 bytes
// of padding: its first 12 bytes are MAC, its last byte the padding length).
function tampers(etm) {
  const encryptedEnd = (r) => r.length - (etm ? MAC_LENGTH : 0);
  return {
    'explicit IV': (r) => flip(r, 5),
    ciphertext: (r) => flip(r, 5 + BLOCK + 3),
    MAC: (r) => flip(r, etm ? r.length - 1 : r.length - BLOCK - 1 - 8),
    padding: (r) => flip(r, encryptedEnd(r) - BLOCK - 1),
    'body one byte short': (r) => withBodyLength(r, r.length - 5 - 1),
    'body of one block': (r) => withBodyLength(r, BLOCK),
  };
}

for (const etm of [true, false]) {
  describe(`${SUITE}, ${etm ? 'encrypt-then-MAC' : 'MAC-then-encrypt (-no_etm)'}`, () => {
    for (const [what, tamper] of Object.entries(tampers(etm))) {
      test(`${what}: bad_record_mac, nothing of the record delivered`, { timeout: 30000, skip: requirePeer('openssl') }, async () => {
        const psk = Buffer.from(PSK_HEX, 'hex');
        const ours = await ourServer({
          minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: SUITE,
          pskCallback: (_socket, identity) => (identity === 'id' ? psk : null),
        });
        const relay = await startTamperRelay(ours.port);
        const { peer } = await startClient('openssl', {
          port: relay.port, version: 'TLSv1.2', suite: SUITE, noCert: true,
          psk: { key: PSK_HEX, identity: 'id' }, extraArgs: etm ? [] : ['-no_etm'],
        });
        try {
          const tlsSocket = await ours.nextSocket();
          const [spliceFd, testFd] = socketPair();
          const user = userSide(testFd);
          const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
          await handle.start();
          assert.equal(handle.engine, 'native');
          const prng = new PrngStream(`cbc-tamper/${etm}/${what}`);
          // At most PIPE_BUF bytes per write: s_client reads each whole and sends one record.
          const before = prng.next(1000);
          peer.send(before);
          await user.waitFor(before.length, 10000);
          relay.arm(tamper);
          peer.send(prng.next(1000));
          const end = await withTimeout(handle.closed, 20000, 'splice end');
          assert.equal(end.error?.code, 'ERR_TLS_SPLICE_BAD_RECORD_MAC', end.error?.message);
          await user.waitForEnd(10000);
          assert.equal(user.length, before.length);
          assert.equal(sha256(user.received), sha256(before));
          assert.equal(end.stats.bytesIn, before.length);
          // The alert reached the peer, which names it.
          await peer.waitForOutput(/bad record mac/i, 10000);
        } finally {
          await peer.stop();
          await relay.close();
          await ours.close();
        }
      });
    }
  });
}
