// Idle TLS clients for the `connections` scenario: a separate process that opens connections
// to the terminator under test and holds them, sending nothing. Commands on stdin:
//   open N    open connections until N are open (64 handshakes at a time); prints "opened N"
//   close     closes them all; prints "closed"
// argv[2]: the port on 127.0.0.1.
import readline from 'node:readline';
import tls from 'node:tls';

const port = Number(process.argv[2]);
const sockets = new Set();
const PARALLEL = 64;

function openOne() {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    s.once('secureConnect', () => {
      s.removeListener('error', reject);
      s.on('error', () => sockets.delete(s));
      s.on('close', () => sockets.delete(s));
      sockets.add(s);
      resolve();
    });
    s.once('error', reject);
  });
}

async function openUntil(n) {
  let failures = 0;
  while (sockets.size < n) {
    const batch = [];
    for (let i = sockets.size; i < n && batch.length < PARALLEL; i++) batch.push(openOne());
    const results = await Promise.allSettled(batch);
    failures += results.filter((r) => r.status === 'rejected').length;
    if (failures > 100) throw new Error(`idle clients: ${failures} connections failed`);
  }
  return failures;
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'open') {
    const failures = await openUntil(Number(arg));
    process.stdout.write(`opened ${sockets.size} failures ${failures}\n`);
  } else if (cmd === 'close') {
    for (const s of sockets) s.destroy();
    sockets.clear();
    process.stdout.write('closed\n');
  }
}
process.exit(0);
