// Writes to a stream until everything on the way is full, whatever the machine's socket buffers
// (net.ipv4.tcp_rmem/tcp_wmem differ: one machine of this kind holds 64 MiB in kernel buffers
// between a client and a backend that never reads). For tests that need "the splice holds bytes
// it cannot deliver": with the backend not reading, the splice stops reading only once its own
// write to the backend would block, and then the client's queue stops draining.
//
//   const written = await floodUntilStalled(socket);   // bytes written, once nothing moves
//
// Stalled means: bytes are queued in `socket` and not one of them left for `settleMs`. The queue
// is kept at a few MiB (one shared chunk: nothing is copied), and more than `limit` bytes in all
// is an error, so the test stays bounded in time and memory.
const CHUNK = Buffer.alloc(1024 * 1024, 7);
const QUEUED = 4 * CHUNK.length;

export async function floodUntilStalled(socket, { settleMs = 1000, limit = 2 ** 30 } = {}) {
  let written = 0;
  for (;;) {
    while (socket.writableLength < QUEUED) {
      if (written >= limit) {
        throw new Error(`floodUntilStalled: ${written} bytes written and the stream still drains`);
      }
      socket.write(CHUNK);
      written += CHUNK.length;
    }
    const queued = socket.writableLength;
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    if (socket.writableLength === queued) return written;
  }
}
