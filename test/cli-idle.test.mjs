// `tls-splice terminate --idle-timeout / --fin-timeout` (issue 17, item 5), run as the real
// command with a Node TLS client and a plain TCP backend on loopback: a connection with no byte
// either way, or one whose client has ended and whose backend stays silent, is ended by the
// command (log line `end=idle`) and released on both sides, instead of being held for good.
// The bytes before the quiet arrive whole (length and SHA-256).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { startCli, stopAllClis } from './helpers/cli.mjs';
import { withTimeout } from './helpers/scenarios.mjs';

const CERT_ARGS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const ca = fs.readFileSync(FIXTURES.ca);
const WAIT = 20000;
const closers = [];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

// A backend that keeps every connection and records what it received; it never writes and never
// ends on its own.
async function silentBackend() {
  const backend = { connections: [] };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const connection = { socket, chunks: [], ended: false };
    connection.endSeen = new Promise((resolve) => socket.once('end', () => {
      connection.ended = true;
      resolve();
    }));
    socket.on('data', (chunk) => connection.chunks.push(chunk));
    socket.on('error', () => {});
    backend.connections.push(connection);
    backend.onConnection?.(connection);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const { socket } of backend.connections) socket.destroy();
    server.close(() => resolve());
  }));
  backend.addr = `127.0.0.1:${server.address().port}`;
  backend.next = () => new Promise((resolve) => {
    if (backend.connections.length) resolve(backend.connections[0]);
    else backend.onConnection = resolve;
  });
  return backend;
}

function tlsClient(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost',
      allowHalfOpen: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function clientSide(socket) {
  const side = { chunks: [] };
  side.ended = new Promise((resolve) => socket.once('end', resolve));
  side.closed = new Promise((resolve) => socket.once('close', resolve));
  socket.on('data', (chunk) => side.chunks.push(chunk));
  socket.on('error', () => {});
  return side;
}

// Sockets the command's process holds (its listening socket, and two per live connection).
function socketsOf(pid) {
  let count = 0;
  for (const name of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${name}`).startsWith('socket:')) count++;
    } catch {
      // Closed while listing.
    }
  }
  return count;
}

async function socketsBackTo(pid, baseline) {
  const deadline = Date.now() + WAIT;
  let count = socketsOf(pid);
  while (count > baseline) {
    if (Date.now() > deadline) {
      throw new Error(`the command still holds ${count} sockets, ${baseline} before the connection`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    count = socketsOf(pid);
  }
}

async function received(connection, length) {
  const deadline = Date.now() + WAIT;
  while (connection.chunks.reduce((n, c) => n + c.length, 0) < length) {
    if (Date.now() > deadline) throw new Error('the backend did not receive the bytes');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Buffer.concat(connection.chunks);
}

test('--idle-timeout 1: a connection quiet both ways ends with end=idle, client and backend ' +
     'released', { timeout: 60000 }, async () => {
  const backend = await silentBackend();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend.addr, '--idle-timeout', '1']);
  const baseline = socketsOf(cli.child.pid);
  const client = await tlsClient(cli.port);
  const side = clientSide(client);
  const data = new PrngStream('cli idle').next(100 * 1024);
  client.write(data);
  const connection = await withTimeout(backend.next(), WAIT, 'the backend connection');
  const got = await received(connection, data.length);
  assert.equal(got.length, data.length);
  assert.equal(sha256(got), sha256(data));
  const quietFrom = Date.now();
  const line = await cli.waitForStderr(/^terminate: .*end=idle.*$/m, WAIT);
  assert.ok(Date.now() - quietFrom >= 500, `ended early: ${line[0]}`);
  assert.match(line[0], new RegExp(`in=${data.length} `));
  // Our close_notify reached the client, the backend got its end, the command let both go.
  await withTimeout(side.ended, WAIT, "the client's end");
  await withTimeout(connection.endSeen, WAIT, "the end (FIN) at the backend");
  await socketsBackTo(cli.child.pid, baseline);
  client.destroy();
  await cli.stop();
});

test('--fin-timeout 1: the client ends and leaves, the backend stays silent: end=idle and the ' +
     'command lets the connection go', { timeout: 60000 }, async () => {
  const backend = await silentBackend();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend.addr, '--fin-timeout', '1']);
  const baseline = socketsOf(cli.child.pid);
  const client = await tlsClient(cli.port);
  const side = clientSide(client);
  const data = new PrngStream('cli fin').next(256 * 1024 + 3);
  // close_notify after the data, then the client leaves once it is all out.
  client.end(data);
  const connection = await withTimeout(backend.next(), WAIT, 'the backend connection');
  const got = await received(connection, data.length);
  assert.equal(sha256(got), sha256(data));
  await withTimeout(connection.endSeen, WAIT, "the client's end at the backend");
  client.destroy();
  await withTimeout(side.closed, WAIT, 'the client closed');
  // The backend never answers nor ends: without the limit the connection stayed for good.
  const line = await cli.waitForStderr(/^terminate: .*end=idle.*$/m, WAIT);
  assert.match(line[0], new RegExp(`in=${data.length} `));
  await socketsBackTo(cli.child.pid, baseline);
  await cli.stop();
});
