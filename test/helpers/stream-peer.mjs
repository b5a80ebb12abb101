// A plain node:tls server in its own process for bulk and many-connection tests: every
// connection is sent `sendBytes` bytes of the seeded PRNG stream `seed` (generated on the fly, so
// neither process holds the whole payload), then the server closes its side; what each connection
// receives is hashed and reported when the client closes.
//
// Usage: node stream-peer.mjs '{"sendBytes": N, "seed": "s", "version": "TLSv1.3"}'
// stdout: "LISTENING <port>", then per connection "RECEIVED <bytes> <sha256>" (in close order).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { PrngStream } from './data.mjs';

const opts = JSON.parse(process.argv[2]);
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const CHUNK = 256 * 1024;

const server = tls.createServer({
  key: fs.readFileSync(path.join(fixtures, 'server-key.pem')),
  cert: fs.readFileSync(path.join(fixtures, 'server.pem')),
  minVersion: opts.version ?? 'TLSv1.2',
  maxVersion: opts.version ?? 'TLSv1.3',
  allowHalfOpen: true,
}, (socket) => {
  socket.on('error', () => {});
  const hash = crypto.createHash('sha256');
  let received = 0;
  socket.on('data', (chunk) => {
    hash.update(chunk);
    received += chunk.length;
  });
  socket.on('end', () => {
    process.stdout.write(`RECEIVED ${received} ${hash.digest('hex')}\n`);
  });
  const stream = new PrngStream(opts.seed);
  let left = opts.sendBytes;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(CHUNK, left);
      left -= n;
      if (!socket.write(stream.next(n))) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  pump();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
