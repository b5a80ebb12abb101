// The tap's parsers against hostile input: record framing and the hello parsers either return a
// result or throw a SpliceError with a stable code, whatever the bytes; never another exception.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { describe, test } from 'node:test';

import {
  HandshakeReassembler, parseClientHello, parseEncryptedExtensions, parseServerHello,
} from '../dist/hello.js';
import { RecordFramer } from '../dist/tap.js';
import { bigClientHello, fragmentHandshake } from './helpers/big-hello.mjs';
import { PrngStream } from './helpers/data.mjs';

// The first flight Node writes: one ClientHello record, taken from a real tls.connect.
function realClientHello(options = {}) {
  return new Promise((resolve) => {
    const sink = new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        resolve(Buffer.from(chunk));
        cb();
      },
    });
    const sock = tls.connect({ socket: sink, servername: 'example.com', ...options });
    sock.on('error', () => {});
    setTimeout(() => sock.destroy(), 100);
  });
}

function onlySpliceErrors(fn, code) {
  try {
    return fn();
  } catch (err) {
    assert.equal(err.name, 'SpliceError', err.stack);
    assert.equal(err.code, code);
    return undefined;
  }
}

describe('record framing', () => {
  test('whole records out, partial tail held, across any chunking', () => {
    const records = [
      Buffer.concat([Buffer.from([22, 3, 1, 0, 3]), Buffer.from('abc')]),
      Buffer.from([23, 3, 3, 0, 0]),
      Buffer.concat([Buffer.from([23, 3, 3, 0x40, 0x00]), Buffer.alloc(0x4000, 1)]),
    ];
    const stream = Buffer.concat(records);
    for (const step of [1, 2, 3, 5, 7, 100, stream.length]) {
      const framer = new RecordFramer('test');
      const out = [];
      for (let pos = 0; pos < stream.length; pos += step) {
        out.push(...framer.push(stream.subarray(pos, pos + step)));
      }
      assert.deepEqual(out, records);
      assert.equal(framer.partialLength, 0);
    }
    const framer = new RecordFramer('test');
    assert.deepEqual(framer.push(stream.subarray(0, 10)), [records[0]]);
    assert.equal(framer.partialLength, 2);
    assert.deepEqual(framer.takePartial(), stream.subarray(8, 10));
  });

  test('records are views of their chunk; only a record split across chunks is copied', () => {
    const a = Buffer.concat([Buffer.from([23, 3, 3, 0, 2]), Buffer.from('ab')]);
    const b = Buffer.concat([Buffer.from([23, 3, 3, 0, 3]), Buffer.from('cde')]);
    // Unpooled buffers, so that sharing an ArrayBuffer means being a view.
    const unpooled = (buf) => {
      const out = Buffer.alloc(buf.length);
      buf.copy(out);
      return out;
    };
    const chunk = unpooled(Buffer.concat([a, b, b.subarray(0, 6)]));
    const framer = new RecordFramer('test');
    const out = framer.push(chunk);
    assert.deepEqual(out, [a, b]);
    for (const record of out) assert.equal(record.buffer, chunk.buffer, 'a view, not a copy');
    const rest = unpooled(b.subarray(6));
    const [split] = framer.push(rest);
    assert.deepEqual(split, b);
    assert.notEqual(split.buffer, rest.buffer);
    assert.equal(framer.partialLength, 0);
  });

  for (const [what, header] of [
    ['content type 24', [24, 3, 3, 0, 1]],
    ['content type 0', [0, 3, 3, 0, 1]],
    ['SSLv2-style first byte', [0x80, 0x2e, 1, 3, 1]],
    ['record version 0x0203', [22, 2, 3, 0, 1]],
    ['length 2^14 + 2049', [23, 3, 3, 0x48, 0x01]],
    ['plain HTTP', [...Buffer.from('GET /')]],
  ]) {
    test(`a bad header (${what}) is ERR_TLS_SPLICE_BAD_RECORD`, () => {
      const framer = new RecordFramer('test');
      assert.throws(() => framer.push(Buffer.from(header)), { code: 'ERR_TLS_SPLICE_BAD_RECORD', name: 'SpliceError' });
    });
  }

  test('joinHandshakeRecords: a run of whole handshake records in one chunk is one view', () => {
    const hs = (body) => Buffer.concat([Buffer.from([22, 3, 3, 0, body.length]), Buffer.from(body)]);
    const app = Buffer.concat([Buffer.from([23, 3, 3, 0, 2]), Buffer.from('zz')]);
    const [a, b, c, d] = [hs('a'), hs('bb'), hs('c'), hs('dd')];
    const chunk = Buffer.concat([a, b, app, c, d.subarray(0, 4)]);
    const framer = new RecordFramer('test', { joinHandshakeRecords: true });
    const out = framer.push(chunk);
    assert.deepEqual(out, [Buffer.concat([a, b]), app, c]);
    for (const run of out) assert.equal(run.buffer, chunk.buffer, 'a view, not a copy');
    // A record completed by the next chunk comes alone, then the run goes on in that chunk.
    assert.deepEqual(framer.push(Buffer.concat([d.subarray(4), a, b])), [d, Buffer.concat([a, b])]);
    assert.equal(framer.partialLength, 0);
    // Every header of a run is checked.
    const bad = new RecordFramer('test', { joinHandshakeRecords: true });
    assert.throws(() => bad.push(Buffer.concat([a, Buffer.from([22, 2, 3, 0, 1, 0])])),
      { code: 'ERR_TLS_SPLICE_BAD_RECORD' });
    // Without the option, one record each, as before.
    assert.deepEqual(new RecordFramer('test').push(Buffer.concat([a, b])), [a, b]);
  });

  test('the largest legal length passes', () => {
    const framer = new RecordFramer('test');
    const body = Buffer.alloc(2 ** 14 + 2048);
    const [record] = framer.push(Buffer.concat([Buffer.from([23, 3, 3, 0x48, 0x00]), body]));
    assert.equal(record.length, 5 + body.length);
  });
});

describe('hello parsers', () => {
  test('a real ClientHello: random and max_fragment_length absent', async () => {
    const record = await realClientHello();
    assert.equal(record[0], 22);
    const [message] = new HandshakeReassembler().push(record.subarray(5));
    assert.equal(message.type, 1);
    const hello = parseClientHello(message.body);
    assert.equal(hello.random.length, 32);
    assert.equal(hello.offeredMaxFragmentLength, undefined);
  });

  test('a hello\'s random owns its memory: it pins no pooled slab for the life of a splice', async () => {
    const [message] = new HandshakeReassembler().push((await realClientHello()).subarray(5));
    const clientRandom = parseClientHello(message.body).random;
    assert.equal(clientRandom.buffer.byteLength, 32);
    const serverHello = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0, 0x13, 0x01, 0])]);
    const serverRandom = parseServerHello(serverHello).random;
    assert.equal(serverRandom.buffer.byteLength, 32);
    assert.deepEqual(serverRandom, Buffer.alloc(32, 7));
  });

  test('every truncation and 2000 random corruptions of a ClientHello', async () => {
    const record = await realClientHello();
    const body = record.subarray(9);
    for (let n = 0; n < body.length; n++) {
      onlySpliceErrors(() => parseClientHello(body.subarray(0, n)), 'ERR_TLS_SPLICE_BAD_HANDSHAKE');
    }
    const prng = new PrngStream('corrupt-client-hello');
    for (let i = 0; i < 2000; i++) {
      const copy = Buffer.from(body);
      const r = prng.next(4);
      copy[r.readUInt16BE(0) % copy.length] ^= r[2] || 1;
      onlySpliceErrors(() => parseClientHello(copy), 'ERR_TLS_SPLICE_BAD_HANDSHAKE');
    }
  });

  test('ServerHello: TLS 1.3 supported_versions, HelloRetryRequest, TLS 1.2 max_fragment_length', () => {
    const random = Buffer.alloc(32, 7);
    const ext = (type, data) => Buffer.concat([Buffer.from([type >> 8, type & 0xff, data.length >> 8, data.length & 0xff]), data]);
    const hello = (rnd, suite, exts) => {
      const extensions = Buffer.concat(exts);
      return Buffer.concat([Buffer.from([3, 3]), rnd, Buffer.from([0]), Buffer.from([suite >> 8, suite & 0xff, 0]),
        Buffer.from([extensions.length >> 8, extensions.length & 0xff]), extensions]);
    };
    const sh13 = parseServerHello(hello(random, 0x1301, [ext(43, Buffer.from([3, 4]))]));
    assert.deepEqual([sh13.version, sh13.cipherSuite, sh13.isHelloRetryRequest], [0x0304, 0x1301, false]);
    const hrrRandom = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
    assert.equal(parseServerHello(hello(hrrRandom, 0x1302, [ext(43, Buffer.from([3, 4]))])).isHelloRetryRequest, true);
    const sh12 = parseServerHello(hello(random, 0xc02f, [ext(1, Buffer.from([1]))]));
    assert.deepEqual([sh12.version, sh12.maxFragmentLength], [0x0303, 512]);
    assert.throws(() => parseServerHello(hello(random, 0xc02f, [ext(1, Buffer.from([5]))])), { code: 'ERR_TLS_SPLICE_BAD_HANDSHAKE' });
    assert.throws(() => parseServerHello(hello(random, 0xc02f, [ext(1, Buffer.from([1])), ext(1, Buffer.from([2]))])), { code: 'ERR_TLS_SPLICE_BAD_HANDSHAKE' });
    assert.throws(() => parseServerHello(hello(random, 0x1301, [ext(43, Buffer.from([3, 4, 0]))])), { code: 'ERR_TLS_SPLICE_BAD_HANDSHAKE' });
    // RFC 7366: encrypt_then_mac (22), empty, changes TLS 1.2 CBC records.
    assert.equal(sh12.encryptThenMac, false);
    assert.equal(parseServerHello(hello(random, 0xc013, [ext(22, Buffer.alloc(0))])).encryptThenMac, true);
    assert.throws(() => parseServerHello(hello(random, 0xc013, [ext(22, Buffer.from([0]))])), { code: 'ERR_TLS_SPLICE_BAD_HANDSHAKE' });
    const ee = parseEncryptedExtensions(Buffer.concat([Buffer.from([0, 5]), ext(1, Buffer.from([4]))]));
    assert.equal(ee.maxFragmentLength, 4096);
    const prng = new PrngStream('random-server-hello');
    for (let i = 0; i < 2000; i++) {
      const bytes = prng.next(prng.next(1)[0]);
      onlySpliceErrors(() => parseServerHello(bytes), 'ERR_TLS_SPLICE_BAD_HANDSHAKE');
      onlySpliceErrors(() => parseEncryptedExtensions(bytes), 'ERR_TLS_SPLICE_BAD_HANDSHAKE');
    }
  });

  test('the reassembler joins fragments and refuses a message over its bound', () => {
    const body = Buffer.alloc(300, 9);
    const message = Buffer.concat([Buffer.from([2, 0, 1, 44]), body, Buffer.from([11, 0, 0, 1, 0])]);
    const r = new HandshakeReassembler();
    const out = [];
    for (let i = 0; i < message.length; i += 7) out.push(...r.push(message.subarray(i, i + 7)));
    assert.deepEqual(out.map((m) => [m.type, m.body.length]), [[2, 300], [11, 1]]);
    assert.throws(() => new HandshakeReassembler(1000).push(Buffer.from([1, 0, 0x10, 0])), { code: 'ERR_TLS_SPLICE_BAD_HANDSHAKE' });
  });

  // Issue 17: the reassembler joined everything it held on every fragment, so a 131 KB hello sent
  // one byte per record cost O(n^2) copying (2.5 s of CPU). Its copied bytes are now counted.
  test('the reassembler copies O(n) bytes whatever the fragmentation (131 KB hello, 1-byte fragments)', () => {
    const hello = bigClientHello(131000);
    const next = Buffer.from([2, 0, 0, 3, 7, 8, 9]);
    const stream = Buffer.concat([hello, next, Buffer.from([11, 0])]);
    for (const step of [1, 3, 1000, 16384]) {
      const r = new HandshakeReassembler();
      const out = [];
      for (let pos = 0; pos < stream.length; pos += step) {
        out.push(...r.push(stream, pos, Math.min(stream.length, pos + step)));
      }
      // Compared after every push: a message returned earlier is still intact.
      assert.deepEqual(out.map((m) => m.type), [1, 2], `step ${step}`);
      assert.ok(out[0].body.equals(hello.subarray(4)), `step ${step}: the hello's bytes`);
      assert.ok(out[1].body.equals(Buffer.from([7, 8, 9])));
      assert.equal(r.heldLength, 2, 'the partial third message is held');
      assert.ok(r.copiedBytes <= 3 * stream.length,
        `step ${step}: ${r.copiedBytes} bytes copied for a ${stream.length}-byte stream`);
    }
  });

  test('the reassembler holds no more than the message its header announced', () => {
    const message = bigClientHello(100000);
    const r = new HandshakeReassembler();
    for (let pos = 0; pos < 90000; pos++) r.push(message, pos, pos + 1);
    assert.equal(r.heldLength, 90000);
    assert.ok(r.heldCapacity <= message.length, `${r.heldCapacity} bytes held for a ${message.length}-byte message`);
    const [whole] = r.push(message, 90000, message.length);
    assert.ok(whole.body.equals(message.subarray(4)));
  });

  test('the fragmented records of a 131 KB hello: one view per run, one hello out', () => {
    const hello = bigClientHello(131000);
    const wire = fragmentHandshake(hello, 1);
    const framer = new RecordFramer('test', { joinHandshakeRecords: true });
    const r = new HandshakeReassembler();
    const messages = [];
    let runs = 0;
    for (let pos = 0; pos < wire.length; pos += 65536) {
      for (const run of framer.push(wire.subarray(pos, pos + 65536))) {
        runs++;
        for (let at = 0; at < run.length; at += 5 + run.readUInt16BE(at + 3)) {
          messages.push(...r.push(run, at + 5, at + 5 + run.readUInt16BE(at + 3)));
        }
      }
    }
    assert.ok(runs <= 2 * Math.ceil(wire.length / 65536), `${runs} runs`);
    assert.equal(messages.length, 1);
    assert.ok(messages[0].body.equals(hello.subarray(4)));
    assert.equal(parseClientHello(messages[0].body).random.length, 32);
  });
});
