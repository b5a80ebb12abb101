// lib/internals.ts: the one place tls-splice touches Node internals. Its accessors answer for
// real sockets of each kind, and its load-time self-check fails loudly, with a code and the Node
// version, when an internal it relies on moved (simulated in a child process by moving one
// before tls-splice loads).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { captureSession, releaseSpentSocket } from '../dist/index.js';
import * as internals from '../dist/internals.js';
import { closeSession } from './helpers/captured.mjs';
import { FIXTURES, stopAll } from './helpers/peers.mjs';
import { onceEvent, openClient, openServer, read, withTimeout } from './helpers/scenarios.mjs';
import { socketPair } from './helpers/splice-env.mjs';

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
const servers = [];
after(() => { for (const s of servers) s.close(); });
after(stopAll);

function loadWith(prelude) {
  const script = `${prelude}
try {
  require(${JSON.stringify(dist)});
  console.log(JSON.stringify({ loaded: true }));
} catch (err) {
  console.log(JSON.stringify({ loaded: false, code: err.code, message: err.message }));
}`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { timeout: 20000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim()));
    });
  });
}

describe('self-check at load', () => {
  test('passes on this Node', async () => {
    assert.deepEqual(await loadWith(''), { loaded: true });
    assert.doesNotThrow(() => internals.selfCheck());
  });

  for (const [what, prelude] of [
    ["tls.Server's connection listener renamed", `
      const tls = require('node:tls');
      const listener = new tls.Server().listeners('connection')[0];
      Object.defineProperty(listener, 'name', { value: 'onConnection' });`],
    ['net.Socket without _final', `
      const net = require('node:net');
      net.Socket.prototype._final = undefined;`],
  ]) {
    test(`fails with ERR_TLS_SPLICE_UNSUPPORTED_NODE: ${what}`, { timeout: 30000 }, async () => {
      const result = await loadWith(prelude);
      assert.equal(result.loaded, false);
      assert.equal(result.code, 'ERR_TLS_SPLICE_UNSUPPORTED_NODE', result.message);
      assert.ok(result.message.includes(process.version), result.message);
    });
  }
});

describe('accessors', () => {
  test('handle kind and fd: TCP, Pipe, TLSSocket, unconnected', { timeout: 20000 }, async () => {
    const unconnected = new net.Socket();
    assert.equal(internals.handleKind(unconnected), 'none');
    assert.equal(internals.socketFd(unconnected), -1);

    const [a, b] = socketPair();
    const pipeA = new net.Socket({ fd: a, readable: true, writable: true });
    const pipeB = new net.Socket({ fd: b, readable: true, writable: true });
    assert.equal(internals.handleKind(pipeA), 'Pipe');
    assert.equal(internals.socketFd(pipeA), a);
    pipeA.destroy();
    pipeB.destroy();

    const server = tls.createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
    servers.push(server);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const tcp = net.connect(server.address().port, '127.0.0.1');
    await onceEvent(tcp, 'connect');
    assert.equal(internals.handleKind(tcp), 'TCP');
    assert.ok(internals.socketFd(tcp) >= 0);
    const secure = tls.connect({ socket: tcp, servername: 'localhost', ca: read(FIXTURES.ca) });
    await onceEvent(secure, 'secureConnect');
    // A TLSSocket's handle is a TLSWrap: its fd carries ciphertext, never a splice target's bytes.
    assert.equal(internals.handleKind(secure), 'other');
    secure.destroy();
  });

  test('readStop stops reading, and a later resume() reads again', { timeout: 20000 }, async () => {
    const [a, b] = socketPair();
    const reader = new net.Socket({ fd: a, readable: true, writable: true });
    const writer = new net.Socket({ fd: b, readable: true, writable: true });
    try {
      const chunks = [];
      reader.on('data', (c) => chunks.push(c));
      writer.write('one');
      await new Promise((resolve) => reader.once('data', resolve));
      reader.pause();
      internals.readStop(reader);
      writer.write('two');
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(reader.readableLength, 0, 'nothing was read after readStop');
      reader.resume();
      await new Promise((resolve) => reader.once('data', resolve));
      assert.equal(Buffer.concat(chunks).toString(), 'onetwo');
    } finally {
      reader.destroy();
      writer.destroy();
    }
  });

  test('readableEndReached is true before the end is emitted', async () => {
    const { Readable } = await import('node:stream');
    const stream = new Readable({ read() {} });
    stream.push('x');
    assert.equal(internals.readableEndReached(stream), false);
    stream.push(null);
    assert.equal(internals.readableEndReached(stream), true);
    assert.equal(stream.readableEnded, false);
  });
});

describe('a tapped TLSSocket reports the TCP socket\'s addresses', () => {
  for (const role of ['client', 'server']) {
    test(`we are the ${role}: before and after capture (the TCP socket is gone then)`, { timeout: 20000 }, async () => {
      const opened = role === 'client' ? await openClient('node') : await openServer('node');
      let session;
      try {
        const read = (sock) => ({
          remoteAddress: sock.remoteAddress, remotePort: sock.remotePort, remoteFamily: sock.remoteFamily,
          localAddress: sock.localAddress, localPort: sock.localPort, localFamily: sock.localFamily,
          address: sock.address(),
        });
        const before = read(opened.sock);
        assert.equal(before.remoteAddress, '127.0.0.1');
        assert.equal(before.localAddress, '127.0.0.1');
        assert.ok(before.remotePort > 0 && before.localPort > 0);
        assert.deepEqual(before.address, { address: '127.0.0.1', family: 'IPv4', port: before.localPort });
        session = await withTimeout(captureSession(opened.sock), 10000, 'captureSession');
        assert.deepEqual(read(opened.sock), before);
      } finally {
        if (session) {
          closeSession(session);
          releaseSpentSocket(opened.sock);
        }
        opened.server?.close();
        await opened.peer.stop();
      }
    });
  }
});
