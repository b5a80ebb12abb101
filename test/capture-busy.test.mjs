// Capture in the middle of a busy stream: the peer writes a PRNG stream as fast as it can while
// the user reads it through the TLSSocket and captures from inside a 'data' handler, after a
// setImmediate, or after pause(). Bytes the user read + session.plaintext + records decrypted from
// the fd must be exactly a prefix of the peer's stream: nothing lost, nothing doubled.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { captureSession, releaseSpentSocket } from '../dist/index.js';
import { CapturedEndpoint, closeSession } from './helpers/captured.mjs';
import { PrngStream, prngBytes, sha256 } from './helpers/data.mjs';
import { stopAll } from './helpers/peers.mjs';
import { openClient, openServer, withTimeout } from './helpers/scenarios.mjs';
import { requirePeer } from './helpers/programs.mjs';

after(stopAll);

const kCaptureAfter = 256 * 1024;     // stream bytes read through the TLSSocket before capture
const kReadAfter = 512 * 1024;        // stream bytes then read from the fd

function startPump(peer, seed) {
  const stream = new PrngStream(seed);
  let stopped = false;
  const pump = () => {
    while (!stopped) {
      if (!peer.send(stream.next(16 * 1024))) {
        peer.child.stdin.once('drain', pump);
        return;
      }
    }
  };
  pump();
  return { stop() { stopped = true; } };
}

async function busyCapture({ role, kind, trigger, version }) {
  const seed = `busy-${role}-${kind}-${trigger}-${version}`;
  const tlsOpts = { minVersion: version, maxVersion: version };
  const opened = role === 'client' ?
    await openClient(kind, { peerOpts: { version }, connectOpts: tlsOpts }) :
    await openServer(kind, { peerOpts: { version }, serverOpts: tlsOpts });
  const { peer, sock, keylog } = opened;
  let pump;
  let session;
  let endpoint;
  try {
    const user = [];
    let userLength = 0;
    let capturing;
    let signal;
    const started = new Promise((resolve) => { signal = resolve; });
    sock.on('data', (chunk) => {
      user.push(chunk);
      userLength += chunk.length;
      if (userLength < kCaptureAfter || capturing) return;
      if (trigger === 'data') {
        capturing = captureSession(sock);
      } else if (trigger === 'immediate') {
        capturing = new Promise((resolve) => setImmediate(() => resolve(captureSession(sock))));
      } else {
        sock.pause();
        capturing = new Promise((resolve) => setTimeout(() => resolve(captureSession(sock)), 50));
      }
      signal();
    });
    pump = startPump(peer, seed);
    await withTimeout(started, 10000, 'enough data before capture');
    session = await withTimeout(capturing, 10000, 'captureSession');
    const userAtCapture = userLength;
    endpoint = new CapturedEndpoint(session, { keylog });
    await endpoint.readAppData(kReadAfter, 10000);
    pump.stop();
    assert.equal(userLength, userAtCapture, "no 'data' event after capture");
    if (trigger === 'pause') assert.ok(session.plaintext.length > 0, 'paused socket left plaintext');
    const all = Buffer.concat([...user, session.plaintext, endpoint.appData()]);
    assert.equal(sha256(all), sha256(prngBytes(`${seed}`, all.length)), 'exact prefix of the stream');
    assert.equal(endpoint.error, null);
  } finally {
    pump?.stop();
    if (endpoint) endpoint.close();
    else if (session) closeSession(session);
    if (session) releaseSpentSocket(sock);
    sock.destroy();
    opened.server?.close();
    await peer.stop();
  }
}

// The PRNG stream each peer sends starts at the seed's first byte; data.mjs and the pump agree.
for (const [role, kind, version] of [
  ['client', 'openssl', 'TLSv1.3'], ['client', 'node', 'TLSv1.3'], ['client', 'openssl', 'TLSv1.2'],
  ['server', 'node', 'TLSv1.3'], ['server', 'openssl', 'TLSv1.3'], ['server', 'node', 'TLSv1.2'],
]) {
  describe(`busy stream, we are the ${role}, ${kind} peer, ${version}`, { skip: requirePeer(kind) }, () => {
    for (const trigger of ['data', 'immediate', 'pause']) {
      test(`capture ${trigger === 'data' ? "inside a 'data' handler" :
        trigger === 'immediate' ? 'after setImmediate' : 'after pause()'}`, { timeout: 30000 }, async () => {
        await busyCapture({ role, kind, trigger, version });
      });
    }
  });
}
