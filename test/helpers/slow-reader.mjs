// Reads fd 3 (a socket handed over by the parent) slowly, at most 64 KiB per millisecond, hashing
// as it goes and keeping nothing; at EOF prints "RECEIVED <bytes> <sha256>" and exits.
//
// A child process of its own so that the memory a test measures is the splice's alone: the
// garbage of a reader in the same process (each 64 KiB chunk is a fresh buffer) counts in RSS
// until the allocator gives it back, which Node 24 and 26 do later than Node 20 (seen: +57 MiB of
// RSS over 256 MiB with the splice's own share under 2 MiB).
import crypto from 'node:crypto';
import net from 'node:net';

const socket = new net.Socket({ fd: 3, readable: true, writable: false });
const hash = crypto.createHash('sha256');
let bytes = 0;
let sinceBreak = 0;
socket.on('data', (chunk) => {
  hash.update(chunk);
  bytes += chunk.length;
  sinceBreak += chunk.length;
  if (sinceBreak >= 64 * 1024) {
    sinceBreak = 0;
    socket.pause();
    setTimeout(() => socket.resume(), 1);
  }
});
socket.on('end', () => {
  process.stdout.write(`RECEIVED ${bytes} ${hash.digest('hex')}\n`, () => process.exit(0));
});
socket.on('error', (err) => {
  process.stdout.write(`ERROR ${err.code}\n`, () => process.exit(1));
});
