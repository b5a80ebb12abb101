// RSS per idle connection (issue 11): N TLS connections left open after the handshake, in one
// server process, for plain node:tls, the tls-splice tap (no splice) and native splices (each to a
// TCP backend socket in this process). Clients and the backend's far ends run in a child process.
//   node --expose-gc bench/idle-rss.mjs [N=1000] [plain|tap|splice]
// Prints the growth of RSS (after GC) from before the N connections to after, divided by N.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, '..', 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(FIXTURES, name));
const N = Number(process.argv[2] ?? 1000);
const mode = process.argv[3] ?? 'splice';
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

async function gcSettled() {
  globalThis.gc?.();
  await settle();
  globalThis.gc?.();
  return process.memoryUsage().rss;
}

if (process.argv[4] === 'child') {
  const backend = net.createServer((socket) => socket.on('error', () => {}));
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  process.send({ backend: backend.address().port });
  const sockets = [];
  process.on('message', async ({ n, port }) => {
    for (let i = 0; i < n; i++) {
      await new Promise((resolve) => {
        const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read('ca.pem') }, resolve);
        socket.on('error', () => {});
        sockets.push(socket);
      });
    }
    process.send({ done: n });
  });
} else {
  if (!globalThis.gc) throw new Error('idle-rss: run with node --expose-gc');
  const lib = await import(path.join(HERE, '..', 'dist', 'index.js'));
  const child = fork(fileURLToPath(import.meta.url), [String(N), mode, 'child']);
  const { backend } = await new Promise((resolve) => child.once('message', resolve));
  const kept = [];
  const options = { key: read('server-key.pem'), cert: read('server.pem') };
  const onSocket = (socket) => {
    socket.on('error', () => {});
    if (mode !== 'splice') {
      kept.push(socket);
      return;
    }
    const target = net.connect(backend, '127.0.0.1');
    target.once('connect', async () => {
      const handle = lib.spliceTo(socket, target, { engine: 'native' });
      await handle.start();
      kept.push(handle);
    });
  };
  const server = mode === 'plain' ? tls.createServer(options, onSocket) : lib.createServer(options, onSocket);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const open = async (n) => {
    const want = kept.length + n;
    child.send({ n, port: server.address().port });
    await new Promise((resolve) => child.once('message', resolve));
    while (kept.length < want) await settle();
  };
  await open(20);  // warm-up: JIT, contexts, the native I/O threads
  const before = await gcSettled();
  await open(N);
  await settle();
  const after = await gcSettled();
  console.log(`${mode}: ${N} idle connections, RSS +${((after - before) / N / 1024).toFixed(1)} KiB ` +
    'per connection');
  process.exit(0);
}
