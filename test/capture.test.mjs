// The capture matrix: both roles x the six AEAD suites x each peer (OpenSSL, GnuTLS, Node). Each
// cell exchanges bytes through the TLSSocket, captures, then proves the exported keys and sequence
// numbers with the independent oracle: records the peer sends after capture are opened at readSeq,
// records sealed at writeSeq reach the peer intact (length and SHA-256 of every byte).
import { after, describe, test } from 'node:test';

import { SUITES, stopAll } from './helpers/peers.mjs';
import { runCell } from './helpers/scenarios.mjs';
import { requirePeer } from './helpers/programs.mjs';

after(stopAll);

for (const role of ['client', 'server']) {
  describe(`we are the ${role}`, () => {
    for (const kind of ['openssl', 'gnutls', 'node']) {
      for (const suite of SUITES) {
        test(`${kind} peer, ${suite.version} ${suite.name}`, { timeout: 20000, skip: requirePeer(kind) }, async () => {
          await runCell(role, kind, suite.name, { verify: { seed: `${role}-${kind}-${suite.name}` } });
        });
      }
    }
  });
}
