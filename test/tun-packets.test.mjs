// Packet framing against real TUN devices, for the native engine and the JS engine alike.
//
// The rig is an iOS-tunnel-style session: a plain Node TLS server (the "device") with TLS 1.2
// PSK (PSK-AES256-GCM-SHA384, identity ""), reached through a TCP relay that records the wire;
// our client connects with tls-splice, exchanges one JSON line each way in JS over the
// TLSSocket ({"op":"hello"} -> tunnel parameters), then splices the session to a TUN device that
// lives in a network namespace of its own.
//
// What the TUN receives (every write() of the splice) is captured byte for byte by an AF_PACKET
// socket on the device (test/helpers/netns.mjs PacketCapture); what the TUN sends is real kernel
// traffic (UDP datagrams from a process in the namespace). The records on the wire are opened by
// the independent oracle (test/helpers/tls-oracle.mjs) to prove one packet per TLS record.
//
// Needs root, /dev/net/tun, `ip netns` and python3 (for the capture); skipped otherwise.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { connect, openTun, spliceTo } from '../esm/index.mjs';
import { prngBytes } from './helpers/data.mjs';
import { Keylog } from './helpers/captured.mjs';
import { NetnsSet, PacketCapture, ip, python3Path, tunSupport } from './helpers/netns.mjs';
import { findProgram, requireProgram } from './helpers/programs.mjs';
import { RecordCipher, TLS12, splitRecords, tls12KeyBlock } from './helpers/tls-oracle.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DATA_MJS = pathToFileURL(path.join(ROOT, 'test', 'helpers', 'data.mjs')).href;

const PSK_SUITE = 0x00a9;  // TLS_PSK_WITH_AES_256_GCM_SHA384
const CT_CHANGE_CIPHER_SPEC = 20;
const CT_ALERT = 21;
const CT_HANDSHAKE = 22;
const CT_APPLICATION_DATA = 23;
const MAX_RECORD_PLAINTEXT = 16384;

// Tunnel addresses inside the namespace: the TUN is ::2 / .2, the TLS peer is ::1 / .1.
const TUN6 = 'fd00:5::2';
const PEER6 = 'fd00:5::1';
const TUN4 = '10.55.0.2';
const PEER4 = '10.55.0.1';
const UDP_PORT = 7000;

const python = tunSupport() === null ? python3Path() : null;
const skip = tunSupport() ?? (!findProgram('python3') ? requireProgram('python3') : python ? false :
  'python3 with AF_PACKET sockets is needed to capture what a TUN device receives');

// --- packets, built here independently of lib/framing.ts -------------------------------------

function ipv6Bytes(text) {
  const [head, tail = null] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

// An IPv6 packet of `size` bytes (40 + payload) for the TUN: from the peer to an address in the
// tunnel prefix that is not the TUN's, with next header 59 (no next header): the kernel drops it
// without answering, so the only trace of it is the capture.
function ipv6Packet(size, seed) {
  const p = Buffer.alloc(size);
  p[0] = 0x60;
  p.writeUInt16BE(size - 40, 4);
  p[6] = 59;
  p[7] = 64;
  ipv6Bytes(PEER6).copy(p, 8);
  ipv6Bytes('fd00:5::99').copy(p, 24);
  prngBytes(seed, size - 40).copy(p, 40);
  return p;
}

// An IPv4 packet of `size` bytes with a wrong header checksum (the kernel drops it silently).
function ipv4Packet(size, seed, ihl = 5) {
  const p = Buffer.alloc(size);
  p[0] = 0x40 | ihl;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = 253;  // RFC 3692 experimental protocol
  p.writeUInt16BE(0xdead, 10);
  Buffer.from([10, 55, 0, 1]).copy(p, 12);
  Buffer.from([10, 55, 0, 99]).copy(p, 16);
  prngBytes(seed, size - 20).copy(p, 20);
  return p;
}

// The IP packets at the start of a byte stream, cut by their own headers.
function cutIp(stream) {
  const packets = [];
  let pos = 0;
  while (stream.length - pos >= 6) {
    const version = stream[pos] >> 4;
    const length = version === 4 ? stream.readUInt16BE(pos + 2) :
      version === 6 ? 40 + stream.readUInt16BE(pos + 4) : -1;
    assert.ok(length >= 20, `not an IP packet at ${pos}: ${stream.subarray(pos, pos + 8).toString('hex')}`);
    if (stream.length - pos < length) break;
    packets.push(stream.subarray(pos, pos + length));
    pos += length;
  }
  return { packets, rest: stream.subarray(pos) };
}

function cutU16(stream) {
  const packets = [];
  let pos = 0;
  while (stream.length - pos >= 2) {
    const length = stream.readUInt16BE(pos);
    if (stream.length - pos - 2 < length) break;
    packets.push(stream.subarray(pos + 2, pos + 2 + length));
    pos += 2 + length;
  }
  return { packets, rest: stream.subarray(pos) };
}

function frame(framing, packets) {
  if (framing === 'ip') return Buffer.concat(packets);
  return Buffer.concat(packets.flatMap((p) => {
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(p.length);
    return [prefix, p];
  }));
}

// The UDP payload of an IPv4/IPv6 packet to UDP_PORT, or null.
function udpPayload(packet) {
  const version = packet[0] >> 4;
  const [proto, offset] = version === 4 ? [packet[9], (packet[0] & 0x0f) * 4] : [packet[6], 40];
  if (proto !== 17 || packet.readUInt16BE(offset + 2) !== UDP_PORT) return null;
  return packet.subarray(offset + 8, offset + packet.readUInt16BE(offset + 4));
}

const hex = (packets) => packets.map((p) => p.toString('hex'));

// Mixed sizes from `min` to `max`: both ends, every tiny size, and seeded sizes in between.
function mixedSizes(min, max, count, seed) {
  const sizes = [min, max, min, max - 1, min + 1];
  for (let s = min; s < Math.min(min + 8, max); s++) sizes.push(s);
  const r = prngBytes(seed, count * 4);
  while (sizes.length < count) {
    const v = r.readUInt32BE(sizes.length * 4);
    // Half tiny-to-small, half anywhere: tunnels carry both.
    sizes.push(min + (sizes.length % 2 ? v % Math.min(200, max - min + 1) : v % (max - min + 1)));
  }
  return sizes;
}

// --- the iOS-style peer and the rig ----------------------------------------------------------

const SENDER = `
import dgram from 'node:dgram';
import { prngBytes } from ${JSON.stringify(DATA_MJS)};
const plan = JSON.parse(process.argv[1]);
const sockets = {};
for (const family of ['udp4', 'udp6']) {
  sockets[family] = dgram.createSocket(family);
  await new Promise((resolve) => sockets[family].bind(0, family === 'udp4' ? ${JSON.stringify(TUN4)} : ${JSON.stringify(TUN6)}, resolve));
}
let done = 0;
for (const [i, d] of plan.entries()) {
  const payload = prngBytes(d.seed, d.size);
  sockets[d.family].send(payload, ${UDP_PORT}, d.family === 'udp4' ? ${JSON.stringify(PEER4)} : ${JSON.stringify(PEER6)}, (err) => {
    if (err) { console.error(String(err)); process.exit(1); }
    if (++done === plan.length) process.exit(0);
  });
  // Bursts of 32 datagrams: many packets queued in the TUN at once.
  if (i % 32 === 31) await new Promise((resolve) => setImmediate(resolve));
}
`;

function readJsonLine(socket) {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onReadable = () => {
      let chunk;
      while ((chunk = socket.read()) !== null) {
        buffered = Buffer.concat([buffered, chunk]);
        const nl = buffered.indexOf(0x0a);
        if (nl < 0) continue;
        socket.removeListener('readable', onReadable);
        socket.removeListener('error', reject);
        // What came after the line is the first packets: back into the socket, for the splice.
        if (nl + 1 < buffered.length) socket.unshift(buffered.subarray(nl + 1));
        resolve(JSON.parse(buffered.subarray(0, nl).toString()));
        return;
      }
    };
    socket.on('readable', onReadable);
    socket.once('error', reject);
  });
}

async function startRig({ engine, framing = 'ip', packetInfo = false, tunPacketInfo = packetInfo,
  mtu = 1500, maxPacketSize = mtu, firstBurst = [] }) {
  const rig = { sets: new NetnsSet(), closers: [], upWire: [], downWire: [] };
  try {
    const ns = rig.sets.create('pkt');
    rig.ns = ns;
    rig.tun = openTun({ mtu, packetInfo: tunPacketInfo });
    rig.closers.push(() => fs.closeSync(rig.tun.fd));
    rig.sets.moveTun(rig.tun, ns, { addrs: [`${TUN6}/64`, `${TUN4}/24`] });
    // Room for a burst of datagrams while the splice catches up: none is dropped before it.
    ip(['link', 'set', rig.tun.name, 'txqueuelen', '10000'], { ns });
    rig.capture = await PacketCapture.start(rig.sets, ns, rig.tun.name, python);

    // The device: Node's own TLS, PSK identity "", a JSON answer, then packets.
    const psk = crypto.randomBytes(32);
    rig.keylog = new Keylog();
    rig.peer = { stream: Buffer.alloc(0), ended: false, waiters: new Set() };
    const peerReady = new Promise((resolve, reject) => {
      rig.server = tls.createServer({
        ciphers: 'PSK-AES256-GCM-SHA384', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2',
        pskCallback: (_socket, identity) => (identity === '' ? psk : null),
      }, async (socket) => {
        try {
          rig.peer.socket = socket;
          socket.on('error', () => {});
          const hello = await readJsonLine(socket);
          assert.deepEqual(hello, { op: 'hello' });
          socket.on('data', (chunk) => {
            rig.peer.stream = Buffer.concat([rig.peer.stream, chunk]);
            for (const wake of rig.peer.waiters) wake();
          });
          socket.on('end', () => {
            rig.peer.ended = true;
            for (const wake of rig.peer.waiters) wake();
          });
          // The answer and the first packets in one write: the client reads the line in JS, and
          // the splice must deliver the packets that came with it.
          socket.write(Buffer.concat([Buffer.from(`${JSON.stringify({
            serverAddress: PEER6, clientParameters: { address: TUN6, mtu },
          })}\n`), frame(framing, firstBurst)]));
          resolve();
        } catch (err) {
          reject(err);
        }
      });
      rig.server.on('keylog', rig.keylog.add);
    });
    await new Promise((resolve) => rig.server.listen(0, '127.0.0.1', resolve));
    rig.closers.push(() => rig.server.close());

    // The relay: records every byte on the wire, both ways.
    rig.relay = net.createServer((down) => {
      const up = net.connect(rig.server.address().port, '127.0.0.1');
      for (const [from, to, wire] of [[down, up, rig.upWire], [up, down, rig.downWire]]) {
        from.on('data', (chunk) => {
          wire.push(chunk);
          to.write(chunk);
        });
        from.on('end', () => to.end());
        from.on('error', () => to.destroy());
      }
      rig.closers.push(() => { up.destroy(); down.destroy(); });
    });
    await new Promise((resolve) => rig.relay.listen(0, '127.0.0.1', resolve));
    rig.closers.push(() => rig.relay.close());

    rig.client = connect({
      host: '127.0.0.1', port: rig.relay.address().port,
      ciphers: 'PSK-AES256-GCM-SHA384', maxVersion: 'TLSv1.2',
      pskCallback: () => ({ psk, identity: '' }),
      checkServerIdentity: () => undefined,
    });
    rig.closers.push(() => rig.client.destroy());
    await new Promise((resolve, reject) => {
      rig.client.once('secureConnect', resolve);
      rig.client.once('error', reject);
    });
    assert.equal(rig.client.getCipher().standardName, 'TLS_PSK_WITH_AES_256_GCM_SHA384');
    rig.client.write('{"op":"hello"}\n');
    rig.params = await readJsonLine(rig.client);
    await peerReady;

    rig.handle = spliceTo(rig.client, rig.tun.fd, { framing, packetInfo, maxPacketSize, engine });
    await rig.handle.start();
    assert.equal(rig.handle.engine, engine);
    return rig;
  } catch (err) {
    await stopRig(rig);
    throw err;
  }
}

async function stopRig(rig) {
  if (rig.handle) {
    await Promise.race([rig.handle.stop({ graceful: false }),
      new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
  for (const close of rig.closers.reverse()) {
    try { close(); } catch { /* already closed */ }
  }
  // Deleting the TUN also wakes a JS-engine read still blocked on it in the thread pool.
  await rig.sets.cleanup();
}

// Waits until the peer's stream holds `predicate`, the peer's side ended, or `ms` passed.
function peerWait(rig, predicate, ms = 15000) {
  return new Promise((resolve) => {
    const check = () => {
      if (!predicate(rig.peer.stream) && !rig.peer.ended) return;
      done();
    };
    const done = () => {
      rig.peer.waiters.delete(check);
      clearTimeout(timer);
      resolve(rig.peer.stream);
    };
    const timer = setTimeout(done, ms);
    rig.peer.waiters.add(check);
    check();
  });
}

// Sends UDP datagrams from inside the namespace to the peer (they leave through the TUN) and
// checks that each arrives at the peer exactly once, byte-exact.
async function udpFromTun(rig, { framing, mtu, count = 300, seed }) {
  const sizes6 = mixedSizes(0, mtu - 48, count / 2, `${seed}/6`);
  const sizes4 = mixedSizes(0, mtu - 28, count / 2, `${seed}/4`);
  const plan = [];
  for (let i = 0; i < count / 2; i++) {
    plan.push({ family: 'udp6', size: sizes6[i], seed: `${seed}/6/${i}` });
    plan.push({ family: 'udp4', size: sizes4[i], seed: `${seed}/4/${i}` });
  }
  // Expected datagrams as a multiset (empty payloads repeat), keyed by family and bytes.
  const expected = new Map();
  const keyOf = (family, payload) => `${family}:${payload.toString('hex')}`;
  for (const d of plan) {
    const key = keyOf(d.family === 'udp4' ? 4 : 6, prngBytes(d.seed, d.size));
    expected.set(key, (expected.get(key) ?? 0) + 1);
  }
  const sender = rig.sets.nodeScript(rig.ns, SENDER, [JSON.stringify(plan)]);
  let senderErr = '';
  sender.stderr.setEncoding('utf8').on('data', (t) => { senderErr += t; });
  const cut = framing === 'ip' ? cutIp : cutU16;
  const received = () => cut(rig.peer.stream).packets.filter((p) => udpPayload(p) !== null);
  await peerWait(rig, () => received().length >= plan.length);
  const { code } = await sender.exited;
  assert.equal(code, 0, `UDP sender failed: ${senderErr}`);
  const got = new Map();
  for (const packet of received()) {
    const key = keyOf(packet[0] >> 4, udpPayload(packet));
    assert.ok(expected.has(key), `a datagram nobody sent (${packet.length} bytes)`);
    got.set(key, (got.get(key) ?? 0) + 1);
  }
  const missing = [...expected].filter(([key, n]) => (got.get(key) ?? 0) < n).length;
  const doubled = [...expected].filter(([key, n]) => (got.get(key) ?? 0) > n).length;
  if (process.env.TUN_DEBUG) {
    const all = cut(rig.peer.stream).packets;
    console.error('peer got', all.length, 'packets; udp', received().length, 'kinds',
      JSON.stringify(all.slice(0, 20).map((p) => [p[0] >> 4, p[0] >> 4 === 4 ? p[9] : p[6], p.length])));
  }
  assert.equal(missing, 0, 'datagrams that never arrived');
  assert.equal(doubled, 0, 'datagrams that arrived twice');
  return plan.length;
}

// Opens the client's records on the wire with the oracle: after the JSON hello, every
// application-data record must hold exactly one packet (one u16be unit), whole.
function recordsOnTheWire(rig, { framing }) {
  const up = splitRecords(Buffer.concat(rig.upWire)).records;
  const down = splitRecords(Buffer.concat(rig.downWire)).records;
  // ClientHello / ServerHello: 5-byte record header, 4-byte handshake header, 2-byte version.
  const clientRandom = up[0].subarray(11, 43);
  const serverRandom = down[0].subarray(11, 43);
  const master = rig.keylog.secret('CLIENT_RANDOM', clientRandom);
  assert.ok(master, 'the peer logged the master secret');
  const keys = tls12KeyBlock(PSK_SUITE, master, clientRandom, serverRandom);
  const cipher = new RecordCipher({ version: TLS12, suite: PSK_SUITE, key: keys.clientKey,
    iv: keys.clientIv, seq: 0n });
  const ccs = up.findIndex((r) => r[0] === CT_CHANGE_CIPHER_SPEC);
  assert.ok(ccs > 0, 'the client sent ChangeCipherSpec');
  const opened = up.slice(ccs + 1).map((record) => {
    const r = cipher.open(record);
    assert.ok(r, `record ${cipher.seq} does not open`);
    return r;
  });
  assert.equal(opened[0].type, CT_HANDSHAKE, 'Finished');
  assert.equal(opened[1].type, CT_APPLICATION_DATA);
  assert.equal(opened[1].plaintext.toString(), '{"op":"hello"}\n');
  const packets = [];
  for (const { type, plaintext } of opened.slice(2)) {
    if (type === CT_ALERT) continue;
    assert.equal(type, CT_APPLICATION_DATA);
    const { packets: inRecord, rest } = (framing === 'ip' ? cutIp : cutU16)(plaintext);
    assert.equal(rest.length, 0, 'a record ends inside a packet');
    assert.equal(inRecord.length, 1, `a record holds ${inRecord.length} packets`);
    packets.push(inRecord[0]);
  }
  return packets;
}

// How the splice is doing, for assertion messages.
async function spliceState(rig) {
  const end = await Promise.race([rig.handle.closed,
    new Promise((resolve) => setTimeout(() => resolve(null), 100))]);
  if (end === null) return `splice running: ${JSON.stringify(rig.handle.stats())}`;
  return `splice ended: ${end.reason} ${end.error?.code ?? ''} ${end.error?.message ?? ''} ` +
    JSON.stringify(end.stats);
}

async function burstToTun(rig, { framing, bursts }) {
  // Each burst is one TLS write; a burst over 16 KiB spans records, so packets straddle them.
  for (const burst of bursts) {
    if (burst.trickle) {
      // One byte per write, one record per byte: every partial header and body.
      const bytes = frame(framing, burst.packets);
      for (let i = 0; i < bytes.length; i++) rig.peer.socket.write(bytes.subarray(i, i + 1));
    } else if (burst.split) {
      const bytes = frame(framing, burst.packets);
      rig.peer.socket.write(bytes.subarray(0, burst.split));
      await new Promise((resolve) => setTimeout(resolve, 20));
      rig.peer.socket.write(bytes.subarray(burst.split));
    } else {
      rig.peer.socket.write(frame(framing, burst.packets));
    }
  }
}

// Packets both ways with a framing: mixed IPv4/IPv6 sizes to the TUN (one big write, a trickled
// packet, then the rest), UDP from the TUN; every packet exactly once, byte-exact, one per write
// to the TUN and one per record on the wire.
async function exchange(rig, { engine, framing, mtu, seed }) {
  const sizes6 = mixedSizes(40, mtu, 60, `${seed}/6`);
  const sizes4 = mixedSizes(20, mtu, 60, `${seed}/4`);
  const all = sizes6.flatMap((size, i) =>
    [ipv6Packet(size, `${seed}/6/${i}`), ipv4Packet(sizes4[i], `${seed}/4/${i}`)]);
  await burstToTun(rig, { framing, bursts: [
    { packets: all.slice(0, 100) },
    { packets: all.slice(100, 101), trickle: true },
    { packets: all.slice(101), split: 7 },
  ] });
  const captured = await rig.capture.waitFor((p) => p.length >= all.length);
  assert.equal(captured.length, all.length, await spliceState(rig));
  assert.deepEqual(hex(captured), hex(all));
  const sent = await udpFromTun(rig, { framing, mtu, count: 200, seed });
  const end = await rig.handle.stop();
  assert.equal(end.error, undefined, end.error?.message);
  assert.equal(end.reason, 'stopped');
  assert.equal(end.stats.packetsIn, all.length);
  assert.equal(end.stats.bytesIn, all.reduce((n, p) => n + p.length, 0));
  assert.ok(end.stats.packetsOut >= sent);
  if (engine === 'native') {
    assert.equal(end.stats.recordsOut, end.stats.packetsOut + 1, JSON.stringify(end.stats));
  }
  await peerWait(rig, () => false, 5000);
  const onWire = recordsOnTheWire(rig, { framing });
  assert.equal(onWire.length, end.stats.packetsOut);
}

// Bytes the peer sends that are not a packet of the framing. `good` packets before them must
// reach the TUN whole; nothing of the bad one or after it may.
const MAX = 1500;
const u16 = (n) => Buffer.from([n >> 8, n & 0xff]);
const MALFORMED = [
  { name: 'bad IP version (5)', framing: 'ip', problem: /version/,
    bad: () => { const p = ipv6Packet(100, 'bad'); p[0] = 0x50; return p; } },
  { name: 'IPv4 total length below its header', framing: 'ip', problem: /total length below/,
    bad: () => { const p = ipv4Packet(60, 'bad'); p.writeUInt16BE(12, 2); return p; } },
  { name: 'IPv4 header length below 5 words', framing: 'ip', problem: /IHL/,
    bad: () => ipv4Packet(60, 'bad', 4) },
  { name: 'IPv4 above maxPacketSize', framing: 'ip', problem: /maxPacketSize/,
    bad: () => ipv4Packet(MAX + 1, 'bad') },
  { name: 'IPv6 above maxPacketSize', framing: 'ip', problem: /maxPacketSize/,
    bad: () => ipv6Packet(MAX + 1, 'bad') },
  { name: 'IPv6 jumbogram (payload length 0, Hop-by-Hop)', framing: 'ip', problem: /jumbogram/,
    bad: () => { const p = ipv6Packet(48, 'bad'); p.writeUInt16BE(0, 4); p[6] = 0; return p; } },
  { name: 'bad IP version, TUN with packet info', framing: 'ip', packetInfo: true, problem: /version/,
    bad: () => { const p = ipv4Packet(100, 'bad'); p[0] = 0x05; return p; } },
  { name: 'u16be above maxPacketSize, TUN with packet info', framing: 'u16be', packetInfo: true,
    problem: /maxPacketSize/, bad: () => u16(MAX + 1) },
  { name: 'u16be length 0', framing: 'u16be', problem: /prefix of 0/,
    bad: () => u16(0) },
  { name: 'u16be length above maxPacketSize', framing: 'u16be', problem: /maxPacketSize/,
    bad: () => Buffer.concat([u16(MAX + 1), ipv6Packet(MAX + 1, 'bad')]) },
  { name: 'stream ends inside a packet', framing: 'ip', problem: /ended inside a packet/,
    bad: () => ipv6Packet(200, 'cut').subarray(0, 30), endAfter: true },
  { name: 'u16be stream ends inside a packet', framing: 'u16be', problem: /ended inside a packet/,
    bad: () => Buffer.concat([u16(200), ipv6Packet(200, 'cut').subarray(0, 30)]), endAfter: true },
];

async function malformedCase(engine, c) {
  const good = [ipv6Packet(40, 'good0'), ipv4Packet(1500, 'good1'), ipv6Packet(1500, 'good2')];
  const after = [ipv6Packet(60, 'after')];
  const rig = await startRig({ engine, framing: c.framing, packetInfo: c.packetInfo ?? false,
    mtu: MAX, maxPacketSize: MAX });
  try {
    const bytes = Buffer.concat([frame(c.framing, good), c.bad(),
      ...(c.endAfter ? [] : [frame(c.framing, after)])]);
    rig.peer.socket.write(bytes);
    if (c.endAfter) rig.peer.socket.end();
    const end = await Promise.race([rig.handle.closed,
      new Promise((resolve) => setTimeout(() => resolve(null), 10000))]);
    assert.ok(end, `the splice did not end: ${JSON.stringify(rig.handle.stats())}`);
    assert.equal(end.reason, 'error');
    assert.equal(end.error?.code, 'ERR_TLS_SPLICE_FRAMING', end.error?.message);
    assert.match(end.error.message, c.problem);
    // Let anything the splice wrote reach the capture, then compare.
    await rig.capture.waitFor(() => false, 300);
    const captured = rig.capture.packets;
    // Everything before the bad bytes, whole; nothing of them or after them.
    assert.deepEqual(hex(captured), hex(good));
    assert.equal(end.stats.packetsIn, good.length);
  } finally {
    await stopRig(rig);
  }
}

// Opens every client record after the hello and checks that packets are split only at the
// record limit: a packet's records are all full except its last, and no record holds the end of
// one packet and the start of the next.
function recordsOnTheWireBig(rig) {
  const up = splitRecords(Buffer.concat(rig.upWire)).records;
  const down = splitRecords(Buffer.concat(rig.downWire)).records;
  const clientRandom = up[0].subarray(11, 43);
  const serverRandom = down[0].subarray(11, 43);
  const master = rig.keylog.secret('CLIENT_RANDOM', clientRandom);
  const keys = tls12KeyBlock(PSK_SUITE, master, clientRandom, serverRandom);
  const cipher = new RecordCipher({ version: TLS12, suite: PSK_SUITE, key: keys.clientKey,
    iv: keys.clientIv, seq: 0n });
  const ccs = up.findIndex((r) => r[0] === CT_CHANGE_CIPHER_SPEC);
  const opened = up.slice(ccs + 1).map((record) => cipher.open(record))
    .slice(2).filter((r) => r.type === CT_APPLICATION_DATA).map((r) => r.plaintext);
  let packetLeft = 0;
  for (const plaintext of opened) {
    if (packetLeft === 0) {
      const { packets, rest } = cutIp(plaintext);
      assert.ok(packets.length <= 1, 'two packets in one record');
      if (packets.length === 1) {
        assert.equal(rest.length, 0, 'a packet and part of another in one record');
        continue;
      }
      const length = 40 + plaintext.readUInt16BE(4);
      assert.equal(plaintext.length, MAX_RECORD_PLAINTEXT, 'a packet split below the record limit');
      packetLeft = length - plaintext.length;
    } else {
      assert.ok(plaintext.length <= packetLeft, 'a record holds the end of one packet and more');
      assert.ok(plaintext.length === MAX_RECORD_PLAINTEXT || plaintext.length === packetLeft);
      packetLeft -= plaintext.length;
    }
  }
  assert.equal(packetLeft, 0);
  return opened;
}

const ENGINES = ['native', 'js'];

describe('TUN packet framing', { skip }, () => {
  for (const engine of ENGINES) {
    test(`iOS-style tunnel (${engine}): PSK, JSON hello, IPv6 bursts of mixed sizes to the TUN, ` +
      'UDP from the TUN one packet per record', { timeout: 90000 }, async () => {
      const mtu = 16000;
      const seed = `ios-${engine}`;
      const sizes = mixedSizes(40, mtu, 400, seed);
      const all = sizes.map((size, i) => ipv6Packet(size, `${seed}/${i}`));
      const first = all.slice(0, 20);
      const bursts = [
        { packets: all.slice(20, 220) },                        // ~1.6 MB in one write
        { packets: all.slice(220, 221), trickle: true },        // byte by byte
        { packets: all.slice(221, 223), split: all[221].length - 3 },  // cut 3 bytes before a boundary
        { packets: all.slice(223, 224), split: 3 },             // cut inside the header
        ...all.slice(224).map((p) => ({ packets: [p] })),       // one packet per write
      ];
      const rig = await startRig({ engine, mtu, firstBurst: first });
      try {
        assert.deepEqual(rig.params, { serverAddress: PEER6, clientParameters: { address: TUN6, mtu } });
        await burstToTun(rig, { framing: 'ip', bursts });
        const captured = await rig.capture.waitFor((p) => p.length >= all.length);
        // Every packet exactly once, in order, one per write, byte-exact; nothing else.
        assert.equal(captured.length, all.length, await spliceState(rig));
        assert.deepEqual(hex(captured), hex(all));
        assert.ok(sizes.includes(40) && sizes.includes(mtu), 'tiny and maximum sizes were sent');

        const sent = await udpFromTun(rig, { framing: 'ip', mtu, seed });
        const stats = rig.handle.stats();
        assert.equal(stats.packetsIn, all.length);
        assert.equal(stats.bytesIn, all.reduce((n, p) => n + p.length, 0));
        assert.ok(stats.packetsOut >= sent, JSON.stringify(stats));
        const end = await rig.handle.stop();
        assert.equal(end.error, undefined, end.error?.message);
        assert.equal(end.reason, 'stopped');
        assert.equal(end.engine, engine);
        await peerWait(rig, () => false, 5000);  // until the peer has read our close_notify
        assert.ok(rig.peer.ended, 'the peer saw our close_notify');
        if (engine === 'native') {
          // One record per packet, plus our close_notify.
          assert.equal(end.stats.recordsOut, end.stats.packetsOut + 1, JSON.stringify(end.stats));
        }
        const onWire = recordsOnTheWire(rig, { framing: 'ip' });
        assert.equal(onWire.length, end.stats.packetsOut);
        assert.equal(rig.peer.stream.length, onWire.reduce((n, p) => n + p.length, 0));
      } finally {
        await stopRig(rig);
      }
    });

    test(`MTU 65535 (${engine}): packets above the record limit span records, and only they`,
      { timeout: 60000 }, async () => {
        const mtu = 65535;
        const sizes = [65535, 40, 16384, 16385, 30000, 41, 65534];
        const all = sizes.map((size, i) => ipv6Packet(size, `big-${engine}/${i}`));
        const rig = await startRig({ engine, mtu });
        try {
          await burstToTun(rig, { framing: 'ip', bursts: [{ packets: all }] });
          const captured = await rig.capture.waitFor((p) => p.length >= all.length);
          assert.deepEqual(hex(captured), hex(all));
          // From the TUN: UDP datagrams of up to 65,487 bytes, each one IPv6 packet.
          const sender = rig.sets.nodeScript(rig.ns, SENDER, [JSON.stringify(
            [60000, 16000, 65487, 0].map((size, i) => ({ family: 'udp6', size, seed: `big/${i}` })))]);
          await peerWait(rig, (s) => cutIp(s).packets.filter(udpPayload).length >= 4);
          assert.equal((await sender.exited).code, 0);
          const end = await rig.handle.stop();
          assert.equal(end.error, undefined, end.error?.message);
          // The records of each packet: full records, then the rest; never two packets in one.
          const up = splitRecords(Buffer.concat(rig.upWire)).records;
          assert.ok(up.length > 0);
          const got = cutIp(rig.peer.stream).packets.map(udpPayload).filter(Boolean);
          assert.deepEqual(got.map((p) => p.length).sort((a, b) => a - b), [0, 16000, 60000, 65487]);
          for (const [i, size] of [60000, 16000, 65487, 0].entries()) {
            assert.ok(got.some((p) => p.equals(prngBytes(`big/${i}`, size))), `datagram ${i}`);
          }
          if (engine === 'native') {
            // 60048-, 16048- and 65535-byte packets: 4 + 1 + 4 records; the 48-byte one: 1.
            const extra = end.stats.packetsOut - 4;  // the kernel's own packets, one record each
            assert.equal(end.stats.recordsOut, 4 + 1 + 4 + 1 + extra + 1, JSON.stringify(end.stats));
          }
          const records = recordsOnTheWireBig(rig);
          for (const r of records) assert.ok(r.length <= MAX_RECORD_PLAINTEXT);
        } finally {
          await stopRig(rig);
        }
      });

    for (const [framing, packetInfo] of [['u16be', false], ['ip', true], ['u16be', true]]) {
      test(`${framing}${packetInfo ? ' + packet info' : ''} (${engine}): both ways, mixed IPv4/IPv6`,
        { timeout: 60000 }, async () => {
          const rig = await startRig({ engine, framing, packetInfo, mtu: 1500 });
          try {
            await exchange(rig, { engine, framing, mtu: 1500, seed: `${framing}-${packetInfo}-${engine}` });
          } finally {
            await stopRig(rig);
          }
        });
    }

    for (const c of MALFORMED) {
      test(`malformed from the peer (${engine}): ${c.name} -> ERR_TLS_SPLICE_FRAMING, nothing partial`,
        { timeout: 30000 }, () => malformedCase(engine, c));
    }

    test(`malformed from the TUN (${engine}): a packet-info header the splice was not told of ` +
      '-> ERR_TLS_SPLICE_FRAMING, nothing sent', { timeout: 30000 }, async () => {
      const rig = await startRig({ engine, framing: 'ip', packetInfo: false, tunPacketInfo: true });
      try {
        const sender = rig.sets.nodeScript(rig.ns, SENDER,
          [JSON.stringify([{ family: 'udp6', size: 100, seed: 'pi' }])]);
        const end = await Promise.race([rig.handle.closed,
          new Promise((resolve) => setTimeout(() => resolve(null), 10000))]);
        await sender.exited;
        assert.ok(end, 'the splice did not end');
        assert.equal(end.error?.code, 'ERR_TLS_SPLICE_FRAMING', end.error?.message);
        assert.match(end.error.message, /version/);
        assert.equal(end.stats.packetsOut, 0);
        await peerWait(rig, () => false, 3000);
        assert.equal(rig.peer.stream.length, 0, 'the peer received part of a packet');
      } finally {
        await stopRig(rig);
      }
    });
  }
});


