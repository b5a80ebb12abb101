// A TCP relay that re-cuts one direction's plaintext handshake records into records of one byte
// each (a legal, hostile fragmentation: RFC 8446 5.1), until the first record of another type;
// everything else passes unchanged. Put between a real TLS client and server, it makes the
// hellos (and, in TLS 1.2, the whole first flight) of that direction arrive 1 byte per record.
//
// API
//   startFragmentingRelay({ targetPort, direction })  direction: 'toServer' | 'toClient'
//     -> { port, close(), fragmentedBytes() }   fragmentedBytes: handshake bytes re-cut so far
import net from 'node:net';
import { Transform } from 'node:stream';

const kHeader = 5;
const kHandshake = 22;

// Re-cuts the handshake records at the start of a record stream.
class HandshakeFragmenter extends Transform {
  #held = Buffer.alloc(0);
  #passing = false;

  constructor(onBytes) {
    super();
    this.onBytes = onBytes;
  }

  _transform(chunk, _encoding, callback) {
    if (this.#passing) {
      callback(null, chunk);
      return;
    }
    this.#held = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const out = [];
    let pos = 0;
    while (this.#held.length - pos >= kHeader) {
      const size = kHeader + this.#held.readUInt16BE(pos + 3);
      if (this.#held[pos] !== kHandshake) {
        this.#passing = true;
        break;
      }
      if (this.#held.length - pos < size) break;
      out.push(this.#oneBytePerRecord(this.#held.subarray(pos, pos + size)));
      pos += size;
    }
    if (this.#passing) {
      out.push(this.#held.subarray(pos));
      this.#held = Buffer.alloc(0);
    } else {
      this.#held = Buffer.from(this.#held.subarray(pos));
    }
    callback(null, out.length ? Buffer.concat(out) : undefined);
  }

  #oneBytePerRecord(record) {
    const body = record.subarray(kHeader);
    const out = Buffer.allocUnsafe(body.length * (kHeader + 1));
    for (let i = 0; i < body.length; i++) {
      const at = i * (kHeader + 1);
      out[at] = kHandshake;
      out[at + 1] = record[1];
      out[at + 2] = record[2];
      out[at + 3] = 0;
      out[at + 4] = 1;
      out[at + 5] = body[i];
    }
    this.onBytes(body.length);
    return out;
  }
}

export async function startFragmentingRelay({ targetPort, direction }) {
  let fragmented = 0;
  const count = (n) => { fragmented += n; };
  const sockets = new Set();
  // Half-open on both sides: each direction ends when its source ends, as TLS peers expect.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => sockets.delete(s));
    }
    if (direction === 'toServer') {
      client.pipe(new HandshakeFragmenter(count)).pipe(upstream);
      upstream.pipe(client);
    } else {
      upstream.pipe(new HandshakeFragmenter(count)).pipe(client);
      client.pipe(upstream);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    fragmentedBytes: () => fragmented,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
