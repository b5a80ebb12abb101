// npm start: tls-splice's main job on loopback, with nothing to configure.
//
// A TLS terminator (tls-splice createServer) accepts a TLS client, and splices the session to a
// plain TCP backend (an echo server): from then on, the native pumps move every byte between the
// TLS connection and the backend socket, on their own I/O thread. The client (another process,
// plain node:tls) sends a payload, gets it echoed back through the splice, and checks its hash.
//
//   node examples/demo.mjs [megabytes=256]
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createServer, pipeToNative } from '../esm/index.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// The demo reuses the test suite's self-signed CA and localhost certificate.
const fixtures = path.join(here, '..', 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(fixtures, name));

if (process.argv[2] === '--client') {
  runClient(Number(process.argv[3]), Number(process.argv[4]));
} else if (process.argv[2] === '--backend') {
  runBackend();
} else {
  await runServer(Number(process.argv[2] ?? 256));
}

// The backend: a plain TCP echo server, as any cleartext service behind a TLS terminator. Its
// own process, like the client's, so that the terminator's event loop does only the splice.
function runBackend() {
  const backend = net.createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  backend.listen(0, '127.0.0.1', () => process.send({ port: backend.address().port }));
}

// The client: plain node:tls, in its own process so it does not load the terminator's loop.
function runClient(port, megabytes) {
  const size = megabytes * 1024 * 1024;
  const chunk = crypto.randomBytes(1024 * 1024);
  const sent = crypto.createHash('sha256');
  const echoed = crypto.createHash('sha256');
  let received = 0;
  const start = performance.now();
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read('ca.pem') },
    () => {
      let left = size;
      const write = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          const part = chunk.subarray(0, n);
          sent.update(part);
          left -= n;
          if (!socket.write(part)) return socket.once('drain', write);
        }
        socket.end();
      };
      write();
    });
  socket.on('data', (data) => {
    echoed.update(data);
    received += data.length;
  });
  socket.on('end', () => {
    const seconds = (performance.now() - start) / 1000;
    process.send({
      protocol: socket.getProtocol(), cipher: socket.getCipher().standardName,
      size, received, ok: received === size && sent.digest('hex') === echoed.digest('hex'),
      seconds,
    });
  });
}

async function runServer(megabytes) {
  const backend = fork(fileURLToPath(import.meta.url), ['--backend']);
  const backendPort = (await new Promise((resolve) => backend.once('message', resolve))).port;

  let elu;
  let end;
  const server = createServer({ key: read('server-key.pem'), cert: read('server.pem') },
    async (tlsSocket) => {
      const upstream = net.connect(backendPort, '127.0.0.1');
      console.log(`terminator: TLS session established (${tlsSocket.getProtocol()}, ` +
        `${tlsSocket.getCipher().standardName}); splicing it to the backend ` +
        `127.0.0.1:${backendPort}`);
      elu = performance.eventLoopUtilization();
      try {
        end = await pipeToNative(tlsSocket, upstream, { autoClose: true });
      } catch (err) {
        console.error(`terminator: the splice failed: ${err.code}: ${err.message}`);
        process.exitCode = 1;
      }
      elu = performance.eventLoopUtilization(elu);
    });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  console.log(`tls-splice demo: a TLS terminator on 127.0.0.1:${server.address().port} in front ` +
    `of a TCP echo backend; a client will send ${megabytes} MiB and check the echo.`);

  const client = fork(fileURLToPath(import.meta.url),
    ['--client', String(server.address().port), String(megabytes)]);
  const result = await new Promise((resolve, reject) => {
    client.once('message', resolve);
    client.once('exit', (code) => code && reject(new Error(`client exited with ${code}`)));
  });
  while (end === undefined && process.exitCode !== 1) await new Promise((r) => setTimeout(r, 10));
  server.close();
  backend.kill();
  client.disconnect();
  if (!end) return;

  const mib = (n) => (n / 1048576).toFixed(1);
  const s = end.stats;
  console.log('');
  console.log('Where the bytes went (counted by the native engine):');
  console.log(`  client --TLS--> terminator: ${s.recordsIn} records, ${mib(s.ciphertextIn)} MiB ` +
    `ciphertext opened natively -> ${mib(s.bytesIn)} MiB cleartext to the backend socket`);
  console.log(`  backend --echo--> terminator: ${mib(s.bytesOut)} MiB cleartext sealed natively ` +
    `into ${s.recordsOut} records, ${mib(s.ciphertextOut)} MiB ciphertext to the client`);
  console.log(`  engine: ${end.engine}; session tickets skipped: ${s.ticketsIn}; ` +
    `KeyUpdates in/out: ${s.keyUpdatesIn}/${s.keyUpdatesOut}; ended: ${end.reason} ` +
    `(close_notify received: ${end.closeNotifyReceived}, sent: ${end.closeNotifySent})`);
  console.log(`  terminator's main event loop busy ${(elu.utilization * 100).toFixed(1)}% of the ` +
    'splice: the pumps ran on a native I/O thread');
  console.log(`  client: ${result.protocol} ${result.cipher}, ${mib(result.size)} MiB sent and ` +
    `${mib(result.received)} MiB echoed back in ${result.seconds.toFixed(2)} s ` +
    `(${(2 * result.size / result.seconds / 1e9).toFixed(2)} GB/s both ways), ` +
    `hash ${result.ok ? 'matches' : 'DIFFERS'}`);
  if (!result.ok) process.exitCode = 1;
}
