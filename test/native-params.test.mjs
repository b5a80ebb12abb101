// The native engine's handling of what it is given and what it leaves behind: fds that share one
// open file description, TCP_NODELAY on the fds it owns, the key buffer it wipes, a native Splice
// that is never started, and the TLS 1.2 AES-GCM explicit nonce across the handover. Peers are plain node:tls servers in this process (a different
// code path from the tapped sockets under test); every transfer checks length + hash both ways.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { runScript } from './helpers/child-script.mjs';
import { binding } from '../dist/binding.js';
import { spliceTo } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, drain, withTimeout, socketPair, userSide } from './helpers/splice-env.mjs';
import { splitRecords } from './helpers/tls-oracle.mjs';

const { O_NONBLOCK } = fs.constants;
const servers = [];
after(() => { for (const s of servers) s.close(); });

// A plain node:tls server: sends `toClient` and ends; `received` resolves with what it got once
// the client closed its side.
async function plainServer({ toClient, tlsOptions = {} }) {
  let resolveReceived;
  const received = new Promise((resolve) => { resolveReceived = resolve; });
  const server = tls.createServer({
    key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
    allowHalfOpen: true, ...tlsOptions,
  }, (socket) => {
    drain(socket).then(resolveReceived, resolveReceived);
    socket.end(toClient);
  });
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, received };
}

test('readFd and writeFd on one open file description are blocking again afterwards',
  { timeout: 60000 }, async () => {
    const SIZE = 1024 * 1024 + 3;
    const toClient = new PrngStream('shared-description/down').next(SIZE);
    const toServer = new PrngStream('shared-description/up').next(SIZE);
    const { port, received } = await plainServer({ toClient });
    const tlsSocket = await ourClient(port);
    // Like fds 0 and 1 of an inetd program: two fd numbers, one open file description.
    const [fd, testFd] = socketPair();
    binding.setNonBlocking(fd, false);
    const sameFd = binding.dupFd(fd);
    assert.equal(binding.getFdFlags(sameFd) & O_NONBLOCK, 0);
    const handle = spliceTo(tlsSocket, { readFd: fd, writeFd: sameFd },
      { engine: 'native', autoClose: false });
    await handle.start();
    const user = userSide(testFd);
    await user.write(toServer);
    user.socket.end();
    const [, gotServer, end] = await withTimeout(
      Promise.all([user.waitForEnd(), received, handle.closed]), 30000, 'transfer');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(user.received.length, SIZE);
    assert.equal(sha256(user.received), sha256(toClient));
    assert.equal(gotServer.length, SIZE);
    assert.equal(sha256(gotServer), sha256(toServer));
    assert.equal(binding.getFdFlags(fd) & O_NONBLOCK, 0, 'readFd left non-blocking');
    assert.equal(binding.getFdFlags(sameFd) & O_NONBLOCK, 0, 'writeFd left non-blocking');
    binding.closeFd(fd);
    binding.closeFd(sameFd);
    user.socket.destroy();
  });

// Two connected loopback TCP sockets as raw fds (Node's sockets keep theirs; we dup them so the
// test owns plain fds it can inspect after the splice).
async function tcpPair() {
  const server = net.createServer();
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise((resolve) => server.once('connection', resolve));
  const client = net.connect(server.address().port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  const peer = await accepted;
  return { client, peer };
}

test('TCP_NODELAY: the native engine sets it on a TCP target by default', { timeout: 60000 },
  async () => {
    const SIZE = 256 * 1024;
    const toClient = new PrngStream('nodelay/down').next(SIZE);
    const toServer = new PrngStream('nodelay/up').next(SIZE);
    const { port, received } = await plainServer({ toClient });
    const { client: target, peer: backend } = await tcpPair();
    const fd = target._handle.fd;
    assert.equal(binding.getSocketOption(fd, 'TCP_NODELAY'), false, 'Node left Nagle on');
    const backendGot = drain(backend);
    backend.end(toServer);
    const tlsSocket = await ourClient(port);
    const handle = spliceTo(tlsSocket, target, { engine: 'native' });
    await handle.start();
    // The I/O thread sets it as the splice starts there: wait for it (bounded).
    for (let i = 0; i < 400 && !binding.getSocketOption(fd, 'TCP_NODELAY'); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(binding.getSocketOption(fd, 'TCP_NODELAY'), true);
    const [gotBackend, gotServer, end] = await withTimeout(
      Promise.all([backendGot, received, handle.closed]), 30000, 'bridge');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(gotBackend.length, SIZE);
    assert.equal(sha256(gotBackend), sha256(toClient));
    assert.equal(gotServer.length, SIZE);
    assert.equal(sha256(gotServer), sha256(toServer));
    target.destroy();
  });

// TLS 1.3 TLS_AES_128_GCM_SHA256: the keys Buffer is the read secret then the write secret.
function nativeSpliceParams(tcpFd, userFd, extra = {}) {
  return {
    tcpFd, readFd: userFd, writeFd: userFd, version: 0x0304, cipherSuite: 0x1301,
    keys: Buffer.alloc(64, 0xa5), readSeq: 0n, writeSeq: 0n, ...extra,
  };
}

test('TCP_NODELAY: noDelay: false leaves the fds alone, absent sets it', { timeout: 30000 },
  async () => {
    for (const noDelay of [false, undefined]) {
      const { client, peer } = await tcpPair();
      const [userFd, testFd] = socketPair();
      const tcpFd = client._handle.fd;
      let onClose;
      const closed = new Promise((resolve) => { onClose = resolve; });
      const splice = new binding.Splice(nativeSpliceParams(tcpFd, userFd, { noDelay }),
        (type, info) => { if (type === 'close') onClose(info); });
      splice.start();
      splice.stop(false);
      const info = await withTimeout(closed, 10000, 'close');
      assert.equal(info.reason, 'aborted');
      // The splice has started and ended on its thread; the option stays with the socket.
      assert.equal(binding.getSocketOption(tcpFd, 'TCP_NODELAY'), noDelay === undefined,
        `noDelay: ${noDelay}`);
      client.destroy();
      peer.destroy();
      binding.closeFd(userFd);
      binding.closeFd(testFd);
    }
  });

test('keys reach native in one Buffer, which native zeroes', { timeout: 30000 }, async () => {
  // TLS 1.3: read secret || write secret; TLS 1.2 AES-128-GCM: read key || read IV || write key
  // || write IV.
  for (const [extra, length] of [[{}, 64], [{ version: 0x0303, cipherSuite: 0xc02f }, 40]]) {
    const [tcpFd, peerFd] = socketPair();
    const [userFd, testFd] = socketPair();
    const keys = Buffer.alloc(length, 0x5a);
    let onClose;
    const closed = new Promise((resolve) => { onClose = resolve; });
    const splice = new binding.Splice(nativeSpliceParams(tcpFd, userFd, { ...extra, keys }),
      (type, info) => { if (type === 'close') onClose(info); });
    splice.start();
    assert.ok(keys.every((b) => b === 0), `the ${length}-byte keys Buffer was not wiped`);
    splice.stop(false);
    assert.equal((await withTimeout(closed, 10000, 'close')).reason, 'aborted');
    for (const fd of [tcpFd, peerFd, userFd, testFd]) binding.closeFd(fd);
  }
  // A Buffer of the wrong length is refused, and wiped all the same.
  const [tcpFd, peerFd] = socketPair();
  const keys = Buffer.alloc(63, 0x5a);
  assert.throws(() => new binding.Splice(nativeSpliceParams(tcpFd, tcpFd, { keys }), () => {}),
    { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.ok(keys.every((b) => b === 0));
  binding.closeFd(tcpFd);
  binding.closeFd(peerFd);
});

test('idleTimeout / finTimeout: native takes whole milliseconds; a quiet splice ends idle with a ' +
     'close_notify sealed under its write key and a FIN to the fd', { timeout: 30000 }, async () => {
  for (const [name, value] of [['idleTimeout', -1], ['idleTimeout', 1.5], ['finTimeout', '9'],
    ['finTimeout', 2 ** 31]]) {
    const [tcpFd, peerFd] = socketPair();
    const keys = Buffer.alloc(64, 0xa5);
    assert.throws(() => new binding.Splice(nativeSpliceParams(tcpFd, tcpFd, { keys, [name]: value }),
      () => {}), { code: 'ERR_TLS_SPLICE_INVALID_ARG' }, `${name}: ${value}`);
    binding.closeFd(tcpFd);
    binding.closeFd(peerFd);
  }
  const [tcpFd, peerFd] = socketPair();
  const [userFd, testFd] = socketPair();
  let onClose;
  const closed = new Promise((resolve) => { onClose = resolve; });
  const splice = new binding.Splice(nativeSpliceParams(tcpFd, userFd, { idleTimeout: 200 }),
    (type, info) => { if (type === 'close') onClose(info); });
  splice.start();
  const end = await withTimeout(closed, 20000, 'the idle end');
  assert.equal(end.reason, 'idle');
  assert.equal(end.code, undefined);
  assert.equal(end.closeNotifySent, true);
  // The peer's end holds one record: our close_notify, under the write secret (the keys' second
  // half), sequence 0.
  const record = Buffer.alloc(256);
  const length = fs.readSync(peerFd, record);
  const opened = binding.openRecord({ version: 0x0304, cipherSuite: 0x1301,
    secret: Buffer.alloc(32, 0xa5), seq: 0n, record: record.subarray(0, length) });
  assert.ok(opened, 'the record did not open under the write key');
  assert.equal(opened.type, 21);
  assert.deepEqual([...opened.plaintext], [1, 0], 'close_notify');
  // The fd got an end (FIN) with nothing before it.
  assert.equal(fs.readSync(testFd, Buffer.alloc(16)), 0);
  for (const fd of [tcpFd, peerFd, userFd, testFd]) binding.closeFd(fd);
});

// A native Splice that never runs must not keep the process alive: its thread-safe function is
// created by start(), not by the constructor.
test('a native Splice constructed but never started lets the process exit', { timeout: 30000 },
  async () => {
    const bindingUrl = new URL('../dist/binding.js', import.meta.url).href;
    const script = `
      import { binding } from ${JSON.stringify(bindingUrl)};
      const [tcpFd] = binding.socketPair();
      const [userFd] = binding.socketPair();
      globalThis.kept = new binding.Splice({ tcpFd, readFd: userFd, writeFd: userFd,
        version: 0x0304, cipherSuite: 0x1301, keys: Buffer.alloc(64, 1), readSeq: 0n,
        writeSeq: 0n }, () => {});
      // A second one whose start() is refused after it ran once.
      const [tcp2] = binding.socketPair();
      const [user2] = binding.socketPair();
      const twice = new binding.Splice({ tcpFd: tcp2, readFd: user2, writeFd: user2,
        version: 0x0304, cipherSuite: 0x1301, keys: Buffer.alloc(64, 1), readSeq: 0n,
        writeSeq: 0n }, () => {});
      twice.start();
      try { twice.start(); } catch (err) { console.log(err.code); }
      twice.stop(false);
    `;
    const { code, signal, stdout, stderr } = await runScript(script);
    const output = stdout + stderr;
    assert.equal(signal, null, `the child did not exit on its own (killed): ${output}`);
    assert.equal(code, 0, output);
    assert.match(output, /ERR_TLS_SPLICE_INVALID_STATE/);
  });

// A TCP relay between our client and the server that keeps a copy of what the client sent.
async function recordingRelay(serverPort) {
  const fromClient = [];
  const relay = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port: serverPort, host: '127.0.0.1', allowHalfOpen: true });
    client.on('data', (chunk) => fromClient.push(Buffer.from(chunk)));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  servers.push(relay);
  await new Promise((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return { port: relay.address().port, sent: () => Buffer.concat(fromClient) };
}

test('TLS 1.2 AES-GCM: every explicit nonce we send is distinct, +1 across the handover',
  { timeout: 60000 }, async () => {
    const before = new PrngStream('nonce/before').next(100 * 1024);
    const after = new PrngStream('nonce/after').next(100 * 1024);
    const toClient = new PrngStream('nonce/down').next(64 * 1024);
    const { port, received } = await plainServer({ toClient,
      tlsOptions: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' } });
    const relay = await recordingRelay(port);
    const tlsSocket = await ourClient(relay.port, {
      minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256',
    });
    assert.equal(tlsSocket.getCipher().standardName, 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
    // Records sealed by Node (OpenSSL) before the handover...
    await new Promise((resolve) => tlsSocket.write(before, resolve));
    const [fd, testFd] = socketPair();
    const handle = spliceTo(tlsSocket, fd, { engine: 'native' });
    await handle.start();
    // ... and by the native side after it.
    const user = userSide(testFd);
    await user.write(after);
    user.socket.end();
    const [, gotServer, end] = await withTimeout(
      Promise.all([user.waitForEnd(), received, handle.closed]), 30000, 'transfer');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(gotServer.length, before.length + after.length);
    assert.equal(sha256(gotServer), sha256(before, after));
    assert.equal(user.received.length, toClient.length);
    assert.equal(sha256(user.received), sha256(toClient));
    user.socket.destroy();

    // The client's records after its ChangeCipherSpec are all under one key: Finished, Node's
    // data, then ours, then our close_notify. RFC 5288 3: the 8-byte nonce_explicit at the start
    // of each fragment must never repeat under a key.
    const { records, rest } = splitRecords(relay.sent());
    assert.equal(rest.length, 0);
    const ccs = records.findIndex((r) => r[0] === 20);
    assert.ok(ccs >= 0, 'no ChangeCipherSpec from the client');
    const nonces = records.slice(ccs + 1).map((r) => r.readBigUInt64BE(5));
    const ours = Math.ceil(after.length / 16384) + 1;  // data records + close_notify
    assert.ok(nonces.length > ours + 1, `only ${nonces.length} protected records`);
    assert.equal(new Set(nonces).size, nonces.length, 'an explicit nonce was used twice');
    for (let i = 1; i < nonces.length; i++) {
      assert.equal(nonces[i], (nonces[i - 1] + 1n) & 0xffffffffffffffffn,
        `record ${i} after the ChangeCipherSpec: nonce ${nonces[i]} after ${nonces[i - 1]}`);
    }
  });
