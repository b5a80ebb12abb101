// Run with NODE_DEBUG=tls-splice: one capture that succeeds and one refused, for a TLS 1.3 and a
// TLS 1.2 session. Prints (stdout, one JSON line) every piece of key material the process
// held in hex, so that the parent can check that none of it reached the trace on stderr.
import { captureSession } from '../../dist/index.js';
import { closeSession } from './captured.mjs';
import { stopAll } from './peers.mjs';
import { openClient } from './scenarios.mjs';

const material = [];
for (const suite of ['TLS_CHACHA20_POLY1305_SHA256', 'ECDHE-RSA-AES256-GCM-SHA384']) {
  const opened = await openClient('node', { suite });
  for (const line of opened.keylog.lines) material.push(line.trim().split(' ')[2]);
  const session = await captureSession(opened.sock);
  await captureSession(opened.sock).catch(() => {});   // refused: ERR_TLS_SPLICE_ALREADY_CAPTURED
  for (const key of ['readSecret', 'writeSecret', 'readKey', 'writeKey', 'readIv', 'writeIv']) {
    if (session[key]) material.push(session[key].toString('hex'));
  }
  closeSession(session);
  opened.sock.destroy();
}
await stopAll();
process.stdout.write(`${JSON.stringify({ material })}\n`);
