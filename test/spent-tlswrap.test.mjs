// The handle (TLSWrap) of a spent TLSSocket, on whatever Node runs the suite: every function of
// the running Node's TLSWrap prototype throws ERR_TLS_SPLICE_SPENT, except the few that never
// read the SSL object (below, with why). The list comes from the prototype itself, not from one
// Node's source: Node 24 added clientHelloDone() and hasPeerCertificate(), which read the SSL and
// crash the process once it is freed. A transfer through the splice (length and SHA-256 both
// ways) shows the socket still works as a spent socket must.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'node:test';

import { spliceTo } from '../dist/index.js';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { collectData, listenServer, onceEvent, read, withTimeout } from './helpers/scenarios.mjs';

// What a spent handle keeps, and why it is safe without the SSL: Node's own forwarders to the TCP
// handle underneath (_tls_wrap.js proxiedMethods), what destroy() calls (close, which calls
// destroySSL, a no-op without an SSL), and the stream plumbing, which forwards reads to the TCP
// handle and refuses writes and shutdown after destroySSL. Written out here on purpose: a name
// added to the library's list must be added here too, with its reason.
const SAFE = new Set([
  'ref', 'unref', 'open', 'bind', 'listen', 'connect', 'bind6', 'connect6', 'getsockname',
  'getpeername', 'setNoDelay', 'setKeepAlive', 'setSimultaneousAccepts', 'setBlocking',
  'setPendingInstances', 'close', 'destroySSL', 'readStart', 'readStop', 'shutdown',
  'useUserBuffer', 'writev', 'writeBuffer', 'writeAsciiString', 'writeLatin1String',
  'writeUcs2String', 'writeUtf8String', 'onread',
]);

// The functions of the TLSWrap prototype under a spent handle (which inserts its own prototype
// above the handle: the first one named TLSWrap along the chain is Node's).
function nodeTlsWrapFunctions(handle) {
  let proto = Object.getPrototypeOf(handle);
  while (proto !== null && !Object.hasOwn(proto, 'constructor')) {
    proto = Object.getPrototypeOf(proto);
  }
  assert.equal(proto?.constructor?.name, 'TLSWrap');
  return Object.getOwnPropertyNames(proto).filter((name) => name !== 'constructor' &&
    typeof Object.getOwnPropertyDescriptor(proto, name).value === 'function');
}

test('every SSL method of the running TLSWrap prototype throws ERR_TLS_SPLICE_SPENT on a spent ' +
  'handle; the transfer goes on both ways', { timeout: 30000 }, async () => {
  const kUp = 200_000;
  const kDown = 150_000;
  const upAtBackend = [];
  let upLength = 0;
  let gotUp;
  const allUp = new Promise((resolve) => { gotUp = resolve; });
  const backend = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(prngBytes('tlswrap-down', kDown));
    socket.on('data', (chunk) => {
      upAtBackend.push(chunk);
      upLength += chunk.length;
      if (upLength >= kUp) gotUp();
    });
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const { server, port } = await listenServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
  });
  try {
    const spent = new Promise((resolve, reject) => server.once('secureConnection', (sock) => {
      const target = net.connect(backend.address().port, '127.0.0.1');
      target.once('connect', () => {
        const handle = spliceTo(sock, target, { engine: 'native', autoClose: true });
        handle.start().then(() => resolve({ sock, handle }), reject);
      });
      target.once('error', reject);
    }));
    const client = tls.connect({ port, host: '127.0.0.1', servername: 'localhost',
      ca: read(FIXTURES.ca) });
    const data = collectData(client);
    const clientEnded = onceEvent(client, 'end', 20000);
    const { sock, handle } = await withTimeout(spent, 15000, 'the splice to start');
    assert.equal(sock.ssl, null, 'the SSL was freed at capture');

    const names = nodeTlsWrapFunctions(sock._handle);
    assert.ok(names.includes('getSession') && names.includes('getProtocol'), names.join(' '));
    const major = Number(process.versions.node.split('.')[0]);
    if (major >= 24) {
      assert.ok(names.includes('clientHelloDone') && names.includes('hasPeerCertificate'),
        `Node ${process.version}'s TLSWrap: ${names.join(' ')}`);
    }
    const refused = [];
    for (const name of names.filter((n) => !SAFE.has(n))) {
      assert.throws(() => sock._handle[name](), { code: 'ERR_TLS_SPLICE_SPENT',
        message: /before start\(\)/ }, `${name}() on a spent handle`);
      refused.push(name);
    }
    assert.ok(refused.length >= 30, `only ${refused.length} refused`);
    // The safe ones are Node's own: the spent prototype above the handle does not replace them.
    const spentPrototype = Object.getPrototypeOf(sock._handle);
    for (const name of names.filter((n) => SAFE.has(n))) {
      assert.equal(Object.hasOwn(spentPrototype, name), false, `${name} replaced`);
    }

    const up = prngBytes('tlswrap-up', kUp);
    client.end(up);
    await withTimeout(allUp, 15000, 'the upload at the backend');
    const received = Buffer.concat(upAtBackend);
    assert.equal(received.length, kUp);
    assert.equal(sha256(received), sha256(up));
    await clientEnded;
    assert.equal(data.length, kDown);
    assert.equal(sha256(data.bytes()), sha256(prngBytes('tlswrap-down', kDown)));
    const end = await withTimeout(handle.closed, 15000, 'the splice to end');
    assert.equal(end.reason, 'end', `the splice ended with ${end.error?.code ?? end.reason}`);
  } finally {
    server.close();
    backend.close();
  }
});
