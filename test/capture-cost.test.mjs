// What a tapped connection that is never spliced pays (issue 11): no trial decryption. The tap
// defers opening records (the TLS 1.3 application-key boundary, KeyUpdate probes) to capture, so a
// handshake and a short exchange call the native openRecord not once; capture then does that
// work and still proves its keys. Calls are counted on the real binding (nothing is stubbed).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { binding } from '../dist/binding.js';
import { captureSession } from '../dist/index.js';
import { closeSession } from './helpers/captured.mjs';
import { stopAll } from './helpers/peers.mjs';
import { collectData, exchangeAndVerify, openServer } from './helpers/scenarios.mjs';

after(stopAll);

// Counts native trial decryption: records opened (openRecord() calls and RecordOpener opens)
// and key derivations (each openRecord() call derives its keys; a RecordOpener derives them once).
function countOpenRecord() {
  const original = binding.openRecord;
  const OriginalOpener = binding.RecordOpener;
  const counter = {
    calls: 0,
    derivations: 0,
    restore: () => {
      binding.openRecord = original;
      binding.RecordOpener = OriginalOpener;
    },
  };
  binding.openRecord = (params) => {
    counter.calls++;
    counter.derivations++;
    return original(params);
  };
  binding.RecordOpener = class extends OriginalOpener {
    constructor(params) {
      super(params);
      counter.derivations++;
    }

    open(seq, record) {
      counter.calls++;
      return super.open(seq, record);
    }
  };
  return counter;
}

test('TLS 1.3: no record is opened in JS before capture; capture opens what it needs', { timeout: 30000 }, async () => {
  const counter = countOpenRecord();
  let opened;
  let session;
  try {
    opened = await openServer('node', { suite: 'TLS_AES_128_GCM_SHA256' });
    // A few short records each way (each one a KeyUpdate candidate), through the TLSSocket.
    const data = collectData(opened.sock);
    for (let i = 0; i < 5; i++) {
      opened.peer.send(`ping ${i}\n`);
      await data.wait(`ping ${i}\n`.length * (i + 1));
      opened.sock.write(`pong ${i}\n`);
    }
    await opened.peer.waitForOutput(/pong 4/);
    assert.equal(counter.calls, 0, 'openRecord calls before capture');
    session = await captureSession(opened.sock);
    assert.ok(counter.calls > 0, 'capture found the boundary and probed the short records');
    // The boundary search, the probes and the proofs of the last records open 10 or more
    // records here; the keys of each direction's application secret are derived once for all.
    assert.ok(counter.calls >= 10, `records opened: ${counter.calls}`);
    assert.equal(counter.derivations, 2, 'key derivations: one per direction');
    assert.equal(session.readSeq, 5n);
    assert.equal(session.writeSeq, 5n + 2n, 'five pongs after the two session tickets');
  } finally {
    counter.restore();
    if (session) closeSession(session);
    opened?.sock.destroy();
    opened?.server.close();
    await opened?.peer.stop();
  }
});

test('TLS 1.3: the deferred work is right with many short records before capture', { timeout: 30000 }, async () => {
  const opened = await openServer('node', { suite: 'TLS_CHACHA20_POLY1305_SHA256' });
  try {
    const data = collectData(opened.sock);
    let expected = 0;
    for (let i = 0; i < 40; i++) {
      opened.peer.send(`line ${i}\n`);
      expected += `line ${i}\n`.length;
      await data.wait(expected);
    }
    await exchangeAndVerify({ ...opened, isServer: true, suite: 'TLS_CHACHA20_POLY1305_SHA256', seed: 'cost-many' });
  } finally {
    opened.sock.destroy();
    opened.server.close();
    await opened.peer.stop();
  }
});
