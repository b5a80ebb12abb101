// RSS per idle connection (issue 11): N TLS connections left open after the handshake, in one
// server process. Clients and the backend's far ends run in a child process.
//   node --expose-gc bench/idle-rss.mjs [N=1000] [kind=splice]
// Kinds (each one adds or removes one part, so that differences give the cost of that part):
//   tcp           a plain net.Server socket (no TLS): one net.Socket + TCPWrap
//   plain         node:tls createServer (TLSSocket over TCPWrap, TLSWrap + SSL)
//   tap           tls-splice createServer, no splice (TLSSocket over the record tap)
//   splice        native splice of each connection to a backend net.Socket in this process
//   splice-ac     the same with autoClose (as the benchmark's terminator does)
//   splice-drop   splice-ac, and the spent TLSSocket destroyed right after start()
//                 (releaseSpentSocket()): what the spent TLSSocket costs
//   splice-min    splice-drop, and the backend net.Socket destroyed too: the native Splice alone
//   capture       captureSession() alone, no splice (the duplicate fd kept open): the spent
//                 TLSSocket and what capture leaves
//   capture-drop  capture, and the spent TLSSocket destroyed (releaseSpentSocket()) at once
// Prints the growth over the N connections, per connection (and over the second half alone): RSS after GC, V8 heap used, external
// memory (ArrayBuffers and other off-heap memory V8 is told about), the anonymous memory of
// /proc/self/smaps_rollup, and fds.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, '..', 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(FIXTURES, name));
const N = Number(process.argv[2] ?? 1000);
const mode = process.argv[3] ?? 'splice';
const KINDS = ['tcp', 'plain', 'tap', 'splice', 'splice-ac', 'splice-drop', 'splice-min',
  'capture', 'capture-drop'];
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

function sample() {
  const m = process.memoryUsage();
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  const anon = Number(/^Anonymous:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN);
  // The main malloc arena is the [heap] mapping (brk); V8's heap, thread arenas and large
  // allocations are other anonymous mappings.
  let brkHeap = 0;
  let inHeap = false;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.endsWith('[heap]');
    else if (inHeap && line.startsWith('Rss:')) brkHeap += Number(line.split(/\s+/)[1]);
  }
  return {
    rss: m.rss / 1024, heapUsed: m.heapUsed / 1024, heapTotal: m.heapTotal / 1024,
    external: m.external / 1024, arrayBuffers: m.arrayBuffers / 1024, anon, brkHeap,
    fds: fs.readdirSync('/proc/self/fd').length,
  };
}

async function gcSettled() {
  globalThis.gc?.();
  await settle();
  globalThis.gc?.();
  return sample();
}

if (process.argv[4] === 'child') {
  const backend = net.createServer((socket) => socket.on('error', () => {}));
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  process.send({ backend: backend.address().port });
  process.on('disconnect', () => process.exit(0));
  const sockets = [];
  process.on('message', async ({ n, port, plainTcp }) => {
    for (let i = 0; i < n; i++) {
      await new Promise((resolve) => {
        const socket = plainTcp ? net.connect(port, '127.0.0.1', resolve) :
          tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read('ca.pem') },
            resolve);
        socket.on('error', () => {});
        sockets.push(socket);
      });
    }
    process.send({ done: n });
  });
} else {
  if (!globalThis.gc) throw new Error('idle-rss: run with node --expose-gc');
  if (!KINDS.includes(mode)) throw new Error(`idle-rss: kind is one of ${KINDS.join(', ')}`);
  // IDLE_RSS_DIST: another build's dist/ (an A/B comparison).
  const lib = await import(path.join(process.env.IDLE_RSS_DIST ?? path.join(HERE, '..', 'dist'),
    'index.js'));
  const child = fork(fileURLToPath(import.meta.url), [String(N), mode, 'child']);
  const { backend } = await new Promise((resolve) => child.once('message', resolve));
  const kept = [];
  const options = { key: read('server-key.pem'), cert: read('server.pem') };
  const onSocket = (socket) => {
    socket.on('error', () => {});
    if (mode.startsWith('capture')) {
      setTimeout(async () => {
        const session = await lib.captureSession(socket);
        if (mode === 'capture-drop') lib.releaseSpentSocket(socket);
        kept.push({ socket, fd: session.fd });
      }, 20);
      return;
    }
    if (!mode.startsWith('splice')) {
      kept.push(socket);
      return;
    }
    const target = net.connect(backend, '127.0.0.1');
    target.once('connect', async () => {
      const autoClose = mode !== 'splice';
      const handle = lib.spliceTo(socket, target, { engine: 'native', autoClose });
      await handle.start();
      if (mode === 'splice-drop' || mode === 'splice-min') lib.releaseSpentSocket(socket);
      if (mode === 'splice-min') target.destroy();
      kept.push(handle);
    });
  };
  const server = mode === 'tcp' ? net.createServer(onSocket) :
    mode === 'plain' ? tls.createServer(options, onSocket) : lib.createServer(options, onSocket);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const open = async (n) => {
    const want = kept.length + n;
    child.send({ n, port: server.address().port, plainTcp: mode === 'tcp' });
    await new Promise((resolve) => child.once('message', resolve));
    while (kept.length < want) await settle();
  };
  await open(20);  // warm-up: JIT, contexts, the native I/O threads
  const before = await gcSettled();
  // In two halves: V8 grows its young generation (up to 32 MiB) while the connections are set
  // up, a cost that does not grow with the count; the second half's growth is the marginal cost
  // of a connection once that happened.
  const half = Math.floor(N / 2);
  await open(half);
  await settle();
  const middle = await gcSettled();
  await open(N - half);
  await settle();
  const after = await gcSettled();
  const per = (key) => ((after[key] - before[key]) / N).toFixed(1);
  const marginal = (key) => ((after[key] - middle[key]) / (N - half)).toFixed(1);
  console.log(`${mode}: ${N} idle connections, per connection: RSS +${per('rss')} KiB, ` +
    `anon +${per('anon')}, malloc [heap] +${per('brkHeap')}, V8 heapTotal +${per('heapTotal')} ` +
    `(used +${per('heapUsed')}), external +${per('external')} (arrayBuffers ` +
    `+${per('arrayBuffers')}); fds +${per('fds')}`);
  console.log(`${mode}: the last ${N - half} alone, per connection: RSS +${marginal('rss')} KiB, ` +
    `malloc [heap] +${marginal('brkHeap')}, V8 heapTotal +${marginal('heapTotal')} ` +
    `(used +${marginal('heapUsed')}), external +${marginal('external')}`);
  if (process.env.IDLE_RSS_SPACES) {
    for (const space of v8.getHeapSpaceStatistics()) {
      console.log(`  ${space.space_name}: size ${(space.space_size / 2 ** 20).toFixed(1)} MiB, ` +
        `used ${(space.space_used_size / 2 ** 20).toFixed(1)} MiB`);
    }
  }
  process.exit(0);
}
