// The JS engine on a TUN device must not hold a libuv pool thread in a blocking read(): with a
// pool of one thread, fs must keep working while an idle TUN is spliced, and once the splice
// stops the process must exit by itself (no read left waiting for a packet that never comes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScript } from './helpers/child-script.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tunSupport } from './helpers/netns.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const skip = tunSupport();

const child = `
import fs from 'node:fs';
import tls from 'node:tls';
import { openTun, spliceTo } from ${JSON.stringify(path.join(here, '..', 'dist', 'index.js'))};
import { FIXTURES } from ${JSON.stringify(path.join(here, 'helpers', 'peers.mjs'))};
import { ourClient } from ${JSON.stringify(path.join(here, 'helpers', 'splice-env.mjs'))};

const tun = openTun();
const server = tls.createServer({ key: fs.readFileSync(FIXTURES.serverKey),
  cert: fs.readFileSync(FIXTURES.serverCert) }, (s) => s.on('error', () => {}));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const tlsSocket = await ourClient(server.address().port);
const handle = spliceTo(tlsSocket, tun.fd, { framing: 'ip', engine: 'js' });
await handle.start();
// The only pool thread must be free: an fs call completes.
const started = Date.now();
await fs.promises.readFile(${JSON.stringify(path.join(here, 'helpers', 'peers.mjs'))});
process.stdout.write('FS ' + (Date.now() - started) + '\\n');
const end = await handle.stop();
process.stdout.write('STOPPED ' + end.reason + ' ' + end.engine + '\\n');
server.close();
fs.closeSync(tun.fd);
// No process.exit(): the process must end because nothing is left on the loop.
`;

test('JS engine on an idle TUN: fs still works with one pool thread, and the process exits',
  { skip: skip ?? false, timeout: 30000 }, async () => {
    const { code, signal, stdout: out, stderr } = await runScript(child,
      { env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
    assert.equal(signal, null, `the child hung and was killed; it printed: ${out}${stderr}`);
    assert.equal(code, 0, stderr);
    assert.match(out, /^FS \d+$/m);
    assert.match(out, /^STOPPED stopped js$/m);
  });
