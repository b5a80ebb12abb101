// The JS engine must not close a character-device fd it was given (autoClose: false, the
// default): the benchmarks found that stop() closed the user's /dev/zero fd, which the user would
// then close again, possibly closing an unrelated descriptor that reused the number.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import tls from 'node:tls';
import { test } from 'node:test';

import { connect, spliceTo } from '../esm/index.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { sha256 } from './helpers/data.mjs';

test("engine 'js', direction 'out' from /dev/zero: stop() leaves the user's fd open", { timeout: 20000 }, async () => {
  // A Node TLS server as the peer: it keeps every byte it gets.
  const received = [];
  const server = tls.createServer({
    key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
  }, (socket) => {
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const fd = fs.openSync('/dev/zero', 'r');
  let fdClosed = false;
  try {
    const socket = connect({ port: server.address().port, host: '127.0.0.1', rejectUnauthorized: false });
    await once(socket, 'secureConnect');
    const handle = spliceTo(socket, { readFd: fd }, { direction: 'out', engine: 'js' });
    await handle.start();
    assert.equal(handle.engine, 'js');
    while (handle.stats().bytesOut < 1 << 20) await new Promise((resolve) => setTimeout(resolve, 5));
    const end = await handle.stop();
    assert.equal(end.reason, 'stopped');
    assert.equal(end.error, undefined);

    // What went out reached the peer, byte for byte (zeros from /dev/zero).
    const sent = end.stats.bytesOut;
    const deadline = Date.now() + 5000;
    while (received.reduce((n, b) => n + b.length, 0) < sent && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const got = Buffer.concat(received);
    assert.equal(got.length, sent);
    assert.equal(sha256(got), sha256(Buffer.alloc(sent)));

    // The user's fd is still theirs.
    assert.doesNotThrow(() => fs.fstatSync(fd));
    assert.ok(fs.fstatSync(fd).isCharacterDevice());
  } finally {
    try {
      fs.closeSync(fd);
    } catch (err) {
      fdClosed = err.code === 'EBADF';
    }
    server.close();
  }
  assert.equal(fdClosed, false, "the JS engine closed the user's fd");
});
