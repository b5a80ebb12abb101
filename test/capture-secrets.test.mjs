// Keylog secrets do not outlive their use in the JS heap (issue 10, item 10, the JS part): the
// tap zeroes and forgets them at capture (the CapturedSession holds its own copies, which the
// splice wipes once native has them) or when the connection is destroyed uncaptured.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { captureSession } from '../dist/index.js';
import { parseKeylogLine, tapOf } from '../dist/tap.js';
import { closeSession } from './helpers/captured.mjs';
import { stopAll } from './helpers/peers.mjs';
import { onceEvent, openClient, openServer, withTimeout } from './helpers/scenarios.mjs';

after(stopAll);

const LABELS = [
  'CLIENT_RANDOM', 'CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET',
  'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET',
];

// The secret Buffers the tap holds now, by label.
function heldSecrets(tap) {
  const held = new Map();
  for (const label of LABELS) {
    const secret = tap.secret(label);
    if (secret !== undefined) held.set(label, secret);
  }
  return held;
}

function assertHeld(held, version) {
  const expected = version === 'TLSv1.3' ? ['CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0'] :
    ['CLIENT_RANDOM'];
  for (const label of expected) assert.ok(held.has(label), `${label} is held before`);
  for (const [label, secret] of held) {
    assert.ok(secret.some((b) => b !== 0), `${label} is not zero before`);
  }
}

function assertWiped(tap, held) {
  for (const [label, secret] of held) {
    assert.ok(secret.every((b) => b === 0), `${label} was zeroed`);
    assert.equal(tap.secret(label), undefined, `${label} is gone`);
  }
  assert.equal(tap.secretsWiped, true);
}

const SUITE = { 'TLSv1.3': 'TLS_AES_256_GCM_SHA384', 'TLSv1.2': 'ECDHE-RSA-AES128-GCM-SHA256' };

describe('keylog secrets are wiped', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2']) {
    test(`${version}: at capture, the session keeps its own copies`, { timeout: 20000 }, async () => {
      const opened = await openClient('node', { suite: SUITE[version] });
      let session;
      try {
        const tap = tapOf(opened.sock);
        const held = heldSecrets(tap);
        assertHeld(held, version);
        session = await withTimeout(captureSession(opened.sock), 10000, 'captureSession');
        assertWiped(tap, held);
        const copies = version === 'TLSv1.3' ? [session.readSecret, session.writeSecret] :
          [session.readKey, session.writeKey, session.readIv, session.writeIv];
        for (const copy of copies) assert.ok(copy.some((b) => b !== 0), 'the session has its keys');
        // Lines Node might still log for this session are not kept.
        const line = opened.keylog.lines.find((l) => l.startsWith(LABELS[version === 'TLSv1.3' ? 3 : 0]));
        assert.equal(tap.addKeylogLine(Buffer.from(line)), false);
        assert.equal(tap.secret(line.split(' ')[0]), undefined);
      } finally {
        if (session) closeSession(session);
        opened.sock.destroy();
        await opened.peer.stop();
      }
    });

    test(`${version}: at destroy of an uncaptured socket, both roles`, { timeout: 20000 }, async () => {
      const client = await openClient('node', { suite: SUITE[version] });
      const served = await openServer('node', { suite: SUITE[version] });
      try {
        for (const sock of [client.sock, served.sock]) {
          const tap = tapOf(sock);
          const held = heldSecrets(tap);
          assertHeld(held, version);
          const closed = onceEvent(sock, 'close');
          sock.destroy();
          await closed;
          assertWiped(tap, held);
        }
      } finally {
        served.server.close();
        await client.peer.stop();
        await served.peer.stop();
      }
    });
  }
});

describe('key log lines are parsed from their bytes', () => {
  test('valid and invalid lines', () => {
    const random = 'ab'.repeat(32);
    const parsed = parseKeylogLine(Buffer.from(`CLIENT_TRAFFIC_SECRET_0 ${random.toUpperCase()} 00ff10Aa\n`));
    assert.equal(parsed.label, 'CLIENT_TRAFFIC_SECRET_0');
    assert.equal(parsed.clientRandom, random);
    assert.deepEqual([...parsed.secret], [0x00, 0xff, 0x10, 0xaa]);
    for (const bad of [
      `X ${random}`, `X ${random} 0`, `X ${random} 0g`, `X ${random.slice(2)} 00`,
      `X ${random} 00 00`, `X  ${random} 00`, `X ${random} ${'00'.repeat(65)}`, '',
    ]) {
      assert.equal(parseKeylogLine(Buffer.from(bad)), undefined, JSON.stringify(bad));
    }
  });
});
