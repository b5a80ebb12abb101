// A TCP backend on 127.0.0.1 that accepts and never reads, with a receive buffer of a few KiB
// (stuck-backend.py), whatever the machine's net.ipv4.tcp_rmem: its window closes after a few
// KiB, so once a splice's write towards it would block, no acknowledgement frees room for the
// bytes the splice holds (with a large window the kernel goes on freeing room below the level
// that wakes a writer, and a graceful stop could deliver into it).
//
//   const backend = await stuckBackend();   // { port, addr: '127.0.0.1:PORT', close() }
//   await backend.accepted()                // once a connection came in
//   await backend.shrinkPeerSndbuf(pid)     // SO_SNDBUF of process pid's socket to us: small
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

// The kernel doubles what is asked, with a floor of a few KiB.
const RCVBUF = 4096;

export async function stuckBackend({ rcvbuf = RCVBUF } = {}) {
  const child = spawn('python3', [path.join(here, 'stuck-backend.py'), String(rcvbuf)],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const waiters = new Set();
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('stuck backend: no LISTENING line in 10 s')),
      10000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`stuck backend exited with ${code}: ${out}`)));
    child.stdout.setEncoding('utf8').on('data', (s) => {
      out += s;
      for (const wake of waiters) wake();
      const match = /^LISTENING (\d+)$/m.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
  });
  const acceptedPort = () => Number(/^ACCEPTED (\d+)$/m.exec(out)?.[1] ?? NaN);
  return {
    port,
    addr: `127.0.0.1:${port}`,
    async accepted(timeout = 10000) {
      const deadline = Date.now() + timeout;
      while (Number.isNaN(acceptedPort())) {
        if (Date.now() > deadline) throw new Error('stuck backend: no connection came in');
        await new Promise((resolve) => {
          const wake = () => {
            waiters.delete(wake);
            resolve();
          };
          waiters.add(wake);
          setTimeout(wake, 100);
        });
      }
      return acceptedPort();
    },
    // Small fixed send buffer on `pid`'s socket to this backend (shrink-sndbuf.py says why).
    shrinkPeerSndbuf(pid, bytes = 4096) {
      return new Promise((resolve, reject) => {
        execFile('python3', [path.join(here, 'shrink-sndbuf.py'), String(pid), String(port),
          String(bytes)], { timeout: 10000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`shrink-sndbuf.py: ${stderr || err.message}`));
          else resolve(Number(stdout.trim().split(' ')[2]));
        });
      });
    },
    close() {
      child.stdin.end();
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    },
  };
}
