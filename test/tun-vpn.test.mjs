// A working TLS VPN between two network namespaces: examples/vpn.ts runs as the server in one
// namespace and as the client in the other, joined by a veth pair; over the tunnel, ping both
// ways (IPv4 and IPv6, small and full-MTU packets) and a 100 MB TCP transfer each way at the
// same time (IPv4 one way, IPv6 the other), checked by length and SHA-256. MTU 1280 and 16000
// on the native engine (what the default 'auto' must pick), and a smaller run on the JS engine
// with the same framing (--engine js). One more native run is over PSK-AES128-CBC-SHA (--ciphers), the
// suite of devices that have only TLS 1.2 CBC (issue 20): both ends are vpn.js, since the tunnel
// needs a peer that speaks its JSON hello and hands each packet to a TUN in one write, which an
// openssl s_server on a pipe does not. Both ends' packet statistics must agree with each other
// and with the traffic, and both ends must exit cleanly on SIGTERM.
//
// Needs root, /dev/net/tun and `ip netns`; skipped with the reason otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { PrngStream } from './helpers/data.mjs';
import { NetnsSet, lineReader, tunSupport } from './helpers/netns.mjs';
import { requireProgram } from './helpers/programs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VPN_JS = path.join(ROOT, 'examples', 'dist', 'vpn.js');
const DATA_MJS = pathToFileURL(path.join(ROOT, 'test', 'helpers', 'data.mjs')).href;
const TRANSFER_BYTES = 100 * 1000 * 1000;
const SERVER_PORT = 4433;

const skip = tunSupport() ?? requireProgram('ping', 'iputils-ping');

// Compiles examples/ (tsc -p examples) when its output is missing or older than its sources.
function buildExample() {
  const sources = [path.join(ROOT, 'examples', 'vpn.ts'), path.join(ROOT, 'dist', 'index.d.ts')];
  const built = fs.existsSync(VPN_JS) ? fs.statSync(VPN_JS).mtimeMs : 0;
  if (sources.every((file) => fs.statSync(file).mtimeMs <= built)) return;
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'examples')],
    { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, `tsc -p examples failed:\n${r.stdout}${r.stderr}`);
}

// One end of the VPN: its JSON events, awaitable.
class VpnProcess {
  events = [];
  stderr = '';
  #waiters = new Set();

  constructor(sets, ns, args) {
    this.child = sets.spawn(ns, process.execPath, [VPN_JS, ...args, '--json']);
    lineReader(this.child.stdout, (line) => {
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        event = { event: 'text', line };
      }
      this.events.push(event);
      for (const wake of this.#waiters) wake();
    });
    this.child.stderr.setEncoding('utf8').on('data', (t) => { this.stderr += t; });
    this.child.exited.then(() => { for (const wake of this.#waiters) wake(); });
  }

  waitEvent(name, ms = 20000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.find((e) => e.event === name);
        if (found) {
          finish();
          resolve(found);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          finish();
          reject(new Error(`vpn exited before '${name}': ${this.describe()}`));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no '${name}' event within ${ms} ms: ${this.describe()}`));
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }

  describe() {
    return `events ${JSON.stringify(this.events)} stderr ${this.stderr}`;
  }
}

const RECEIVER = `
import crypto from 'node:crypto';
import net from 'node:net';
const [host, port] = process.argv.slice(1);
const server = net.createServer((socket) => {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
  socket.on('end', () => {
    console.log(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
    socket.end();
    server.close();
  });
});
server.listen(Number(port), host, () => console.log(JSON.stringify({ listening: true })));
`;

const SENDER = `
import net from 'node:net';
import { PrngStream } from ${JSON.stringify(DATA_MJS)};
const [host, port, seed, total] = process.argv.slice(1);
const prng = new PrngStream(seed);
let left = Number(total);
const socket = net.connect(Number(port), host);
const pump = () => {
  while (left > 0) {
    const n = Math.min(left, 256 * 1024);
    left -= n;
    if (!socket.write(prng.next(n))) return socket.once('drain', pump);
  }
  socket.end();
};
socket.on('connect', pump);
socket.on('close', (hadError) => process.exit(hadError ? 1 : 0));
`;

function expectedDigest(seed, total) {
  const prng = new PrngStream(seed);
  const hash = crypto.createHash('sha256');
  for (let left = total; left > 0;) {
    const n = Math.min(left, 1 << 20);
    hash.update(prng.next(n));
    left -= n;
  }
  return hash.digest('hex');
}

// A transfer of `total` PRNG bytes from a sender in `fromNs` to a receiver in `toNs` listening
// on host:port (a tunnel address). Resolves with what the receiver counted and hashed.
async function transfer(sets, { fromNs, toNs, host, port, seed, total }) {
  const receiver = sets.nodeScript(toNs, RECEIVER, [host, String(port)]);
  const lines = [];
  let stderr = '';
  receiver.stderr.setEncoding('utf8').on('data', (t) => { stderr += t; });
  const listening = new Promise((resolve, reject) => {
    lineReader(receiver.stdout, (line) => {
      lines.push(JSON.parse(line));
      if (lines.length === 1) resolve();
    });
    receiver.exited.then(() => reject(new Error(`receiver exited: ${stderr}`)));
  });
  await listening;
  const sender = sets.nodeScript(fromNs, SENDER, [host, String(port), seed, String(total)]);
  let senderErr = '';
  sender.stderr.setEncoding('utf8').on('data', (t) => { senderErr += t; });
  const [sent, received] = await Promise.all([sender.exited, receiver.exited]);
  assert.equal(sent.code, 0, `sender to ${host} failed: ${senderErr}`);
  assert.equal(received.code, 0, `receiver on ${host} failed: ${stderr}`);
  assert.equal(lines.length, 2, `receiver output: ${JSON.stringify(lines)}`);
  return lines[1];
}

async function ping(sets, ns, address, { size = 56, count = 3 } = {}) {
  const family = address.includes(':') ? '-6' : '-4';
  const r = await sets.exec(ns, 'ping',
    [family, '-n', '-c', String(count), '-i', '0.2', '-W', '2', '-s', String(size), '-M', 'do', address],
    { timeout: 15000 });
  assert.equal(r.code, 0, `ping ${address} -s ${size} from ${ns} failed:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`${count} packets transmitted, ${count} received`), r.stdout);
}

describe('VPN example between two network namespaces', { skip }, () => {
  before(() => buildExample());

  const CASES = [
    { mtu: 1280, engine: 'native', bytes: TRANSFER_BYTES },
    { mtu: 16000, engine: 'native', bytes: TRANSFER_BYTES },
    // The JS engine with the same framing (--engine js): a smaller transfer, it is far slower.
    { mtu: 1400, engine: 'js', bytes: 10 * 1000 * 1000 },
    // TLS 1.2 AES-CBC with HMAC-SHA1 (encrypt-then-MAC, as two OpenSSL ends negotiate it) spliced
    // natively at both ends: 'auto' must still pick native.
    { mtu: 1400, engine: 'native', bytes: 10 * 1000 * 1000, ciphers: 'PSK-AES128-CBC-SHA',
      cipher: 'TLS_PSK_WITH_AES_128_CBC_SHA' },
  ];
  for (const { mtu, engine, bytes, ciphers, cipher = 'TLS_PSK_WITH_AES_256_GCM_SHA384' } of CASES) {
    test(`MTU ${mtu}, ${engine} engine, ${cipher}: ping both ways (IPv4, IPv6), ${bytes / 1e6} MB each way ` +
      'byte-exact, packet stats', { timeout: 240000 }, async () => {
        const sets = new NetnsSet();
        try {
          const nsServer = sets.create('srv');
          const nsClient = sets.create('cli');
          sets.veth(nsServer, nsClient, { addrA: '10.211.0.1/24', addrB: '10.211.0.2/24' });
          const psk = crypto.randomBytes(32).toString('hex');
          // The native engine is what 'auto' (the default) must pick; js is asked for.
          const engineArgs = [...(engine === 'js' ? ['--engine', 'js'] : []),
            ...(ciphers ? ['--ciphers', ciphers] : [])];
          const server = new VpnProcess(sets, nsServer, ['server',
            '--listen', `10.211.0.1:${SERVER_PORT}`, '--psk', psk, '--ipv4', '10.99.0.1/24',
            '--ipv6', 'fd00:99::1/64', '--mtu', String(mtu), '--configure', ...engineArgs]);
          await server.waitEvent('listening');
          const client = new VpnProcess(sets, nsClient, ['client',
            '--connect', `10.211.0.1:${SERVER_PORT}`, '--psk', psk, '--mtu', String(mtu),
            '--configure', ...engineArgs]);
          const [serverUp, clientUp] =
            await Promise.all([server.waitEvent('tunnel'), client.waitEvent('tunnel')]);
          for (const up of [serverUp, clientUp]) {
            assert.equal(up.engine, engine, `${up.role} engine`);
            assert.equal(up.mtu, mtu);
          }
          assert.deepEqual(clientUp.ipv4, { client: '10.99.0.2', server: '10.99.0.1' });
          assert.deepEqual(clientUp.ipv6, { client: 'fd00:99::2', server: 'fd00:99::1' });
          const connected = client.events.find((e) => e.event === 'connected');
          assert.equal(connected.cipher, cipher);

          // Ping both ways, both families; then packets of exactly the tunnel MTU (DF set).
          await ping(sets, nsClient, '10.99.0.1');
          await ping(sets, nsServer, '10.99.0.2');
          await ping(sets, nsClient, 'fd00:99::1');
          await ping(sets, nsServer, 'fd00:99::2');
          await ping(sets, nsClient, '10.99.0.1', { size: mtu - 28, count: 2 });
          await ping(sets, nsServer, 'fd00:99::2', { size: mtu - 48, count: 2 });

          // 100 MB each way at the same time: client -> server over IPv4, server -> client
          // over IPv6.
          const up = { seed: `vpn-up-${mtu}-${cipher}`, total: bytes };
          const down = { seed: `vpn-down-${mtu}-${cipher}`, total: bytes };
          const [gotUp, gotDown] = await Promise.all([
            transfer(sets, { fromNs: nsClient, toNs: nsServer, host: '10.99.0.1', port: 5001, ...up }),
            transfer(sets, { fromNs: nsServer, toNs: nsClient, host: 'fd00:99::2', port: 5002, ...down }),
          ]);
          assert.equal(gotUp.bytes, bytes, 'client -> server length');
          assert.equal(gotUp.sha256, expectedDigest(up.seed, up.total), 'client -> server SHA-256');
          assert.equal(gotDown.bytes, bytes, 'server -> client length');
          assert.equal(gotDown.sha256, expectedDigest(down.seed, down.total),
            'server -> client SHA-256');

          // Clean shutdown: SIGTERM stops the splice, sends close_notify and closes the TUN.
          client.child.kill('SIGTERM');
          assert.deepEqual(await client.child.exited, { code: 0, signal: null }, client.describe());
          const serverClosed = await server.waitEvent('closed');
          server.child.kill('SIGTERM');
          assert.deepEqual(await server.child.exited, { code: 0, signal: null }, server.describe());
          const clientClosed = client.events.find((e) => e.event === 'closed');
          assert.ok(clientClosed, client.describe());

          for (const closed of [clientClosed, serverClosed]) {
            assert.equal(closed.engine, engine, `${closed.role}: ${JSON.stringify(closed)}`);
            assert.equal(closed.error, undefined, `${closed.role}: ${JSON.stringify(closed)}`);
            assert.ok(['stopped', 'end'].includes(closed.reason), closed.reason);
            const s = closed.stats;
            if (engine === 'native') {
              // Each packet read from the TUN went out as exactly one TLS record (plus our
              // close_notify alert); packets above the record limit do not exist at these MTUs.
              // (The JS engine does not count records.)
              assert.equal(s.recordsOut, s.packetsOut + (closed.closeNotifySent ? 1 : 0),
                `${closed.role} recordsOut vs packetsOut: ${JSON.stringify(s)}`);
              assert.ok(s.recordsIn >= s.packetsIn, `${closed.role}: ${JSON.stringify(s)}`);
            }
            // The TCP payload each way: at least that many bytes of IP packets, in at least
            // bytes / (MTU - 40) packets (IPv4 header 20 + TCP header 20).
            const minPackets = Math.ceil(bytes / (mtu - 40));
            assert.ok(s.bytesIn > bytes && s.bytesOut > bytes,
              `${closed.role}: ${JSON.stringify(s)}`);
            assert.ok(s.packetsIn >= minPackets && s.packetsOut >= minPackets,
              `${closed.role}: ${JSON.stringify(s)}, expected >= ${minPackets} packets each way`);
          }
          // The client stopped first: every packet it sent reached the server's TUN.
          assert.equal(serverClosed.stats.packetsIn, clientClosed.stats.packetsOut);
          assert.equal(serverClosed.stats.bytesIn, clientClosed.stats.bytesOut);
          assert.ok(serverClosed.stats.packetsOut >= clientClosed.stats.packetsIn);
          assert.equal(clientClosed.closeNotifySent, true);
          assert.equal(serverClosed.closeNotifyReceived, true);
        } finally {
          await sets.cleanup();
        }
      });
  }
});

after(() => {
  // Nothing of ours may survive the file: no namespace named after this process.
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.status === 0) assert.ok(!r.stdout.includes(`tsp${process.pid}-`), r.stdout);
});
