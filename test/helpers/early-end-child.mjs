// One scenario of a peer that ends its side (data, close_notify, FIN) before the splice runs,
// in its own process so that an unhandled 'error' shows as a crash (exit code, stderr) rather than
// as a failure somewhere else in the test runner. No 'error' listener is put on our TLSSocket.
//
// Usage: node early-end-child.mjs '{"order":"before"|"during"|"after","role":"client"|"server",
//                                   "version":"TLSv1.3"|"TLSv1.2"}'
//   before: we read the peer's data and 'end' through the TLSSocket (allowHalfOpen: true), then
//           splice the direction that remains;
//   during: allowHalfOpen false (Node's default): the splice starts inside the 'end' listener, so
//           Node's own end() of our side arrives while capture runs;
//   after:  the data and the end are left unread in Node; capture drains them and 'end' (and
//           Node's end() of our side, allowHalfOpen false) comes after capture.
// Prints one JSON line: engine, end reason, digests and lengths of each direction, the 'error'
// events our TLSSocket emitted, and what Node knew of the peer's end before the splice.
import fs from 'node:fs';
import tls from 'node:tls';

import { connect, createServer, spliceTo } from '../../dist/index.js';
import { readableEndReached } from '../../dist/internals.js';
import { PrngStream, sha256 } from './data.mjs';
import { FIXTURES } from './peers.mjs';
import { drain, socketPair, userSide, withTimeout } from './splice-env.mjs';

const { order, role, version } = JSON.parse(process.argv[2]);
const PEER_BYTES = 12_000;  // under a TLSSocket's highWaterMark: Node buffers all of it
const OUR_BYTES = 1024 * 1024;
const peerData = new PrngStream(`early-end/${order}/${role}/peer`).next(PEER_BYTES);
const ourData = new PrngStream(`early-end/${order}/${role}/ours`).next(OUR_BYTES);
const read = (file) => fs.readFileSync(file);
const versionOptions = { minVersion: version, maxVersion: version };
const allowHalfOpen = order === 'before';

// The peer, plain node:tls: sends its data and ends at once, reads until our end.
function peerSide(socket) {
  socket.on('error', () => {});
  const received = drain(socket);
  socket.end(peerData);
  return received;
}

let ours;
let peerReceived;
let server;
if (role === 'client') {
  server = tls.createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), allowHalfOpen: true,
    ...versionOptions,
  }, (socket) => { peerReceived = peerSide(socket); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  ours = connect({
    host: '127.0.0.1', port: server.address().port, servername: 'localhost', ca: read(FIXTURES.ca),
    allowHalfOpen, ...versionOptions,
  });
  await withTimeout(new Promise((resolve) => ours.once('secureConnect', resolve)), 5000,
    'secureConnect');
} else {
  server = createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), allowHalfOpen,
    ...versionOptions,
  });
  const accepted = new Promise((resolve) => server.once('secureConnection', resolve));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const peer = tls.connect({
    host: '127.0.0.1', port: server.address().port, servername: 'localhost', ca: read(FIXTURES.ca),
    allowHalfOpen: true, ...versionOptions,
  });
  peer.once('secureConnect', () => { peerReceived = peerSide(peer); });
  ours = await withTimeout(accepted, 5000, 'secureConnection');
}

// Record every 'error' our TLSSocket emits, without listening to 'error' (a listener would hide
// the crash this scenario is about).
const errors = [];
const emit = ours.emit;
ours.emit = function (event, ...args) {
  if (event === 'error') errors.push(args[0]?.code ?? String(args[0]));
  return emit.call(this, event, ...args);
};

const [spliceFd, testFd] = socketPair();
const user = userSide(testFd);
const preamble = [];
let handle;
const start = () => {
  handle = spliceTo(ours, spliceFd, { engine: 'native', autoClose: true });
  return handle.start();
};
let started;
const before = {};
if (order === 'after') {
  // Wait until Node holds the peer's data and its end, unread: 'end' has not been emitted.
  await withTimeout(new Promise((resolve) => {
    const poll = () => (ours.readableLength >= PEER_BYTES && readableEndReached(ours) ?
      resolve() : setTimeout(poll, 5));
    poll();
  }), 5000, "the peer's data and end, buffered in Node");
  before.endEmitted = ours.readableEnded;
  started = start();
} else {
  ours.on('data', (chunk) => preamble.push(chunk));
  started = withTimeout(new Promise((resolve, reject) => {
    ours.once('end', () => {
      before.endEmitted = true;
      if (order === 'during') start().then(resolve, reject);
      else setTimeout(() => start().then(resolve, reject), 20);
    });
  }), 5000, "'end' on our TLSSocket");
}
await started;
await user.waitForEnd(10000);
await user.write(ourData);
user.socket.end();
const [end, toPeer] = await withTimeout(Promise.all([handle.closed, peerReceived]), 20000,
  'the splice and the peer to end');
const toUs = Buffer.concat([...preamble, user.received]);
server.close();
process.stdout.write(`${JSON.stringify({
  engine: handle.engine,
  reason: end.reason,
  errorCode: end.error?.code ?? null,
  closeNotifyReceived: end.closeNotifyReceived,
  preambleLength: preamble.reduce((n, c) => n + c.length, 0),
  toUsLength: toUs.length,
  toUsDigest: sha256(toUs),
  peerDigest: sha256(peerData),
  toPeerLength: toPeer.length,
  toPeerDigest: sha256(toPeer),
  ourDigest: sha256(ourData),
  errors,
  before,
})}\n`);
// Let any 'error' scheduled on a later tick surface before exiting.
setTimeout(() => process.exit(0), 50);
