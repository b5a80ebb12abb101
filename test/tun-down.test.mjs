// A TUN device that is down refuses packets with EIO. A tunnel must not die of a link that is
// briefly down: both engines drop such packets, count them in stats.packetsDropped, and deliver
// again once the device is up.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import tls from 'node:tls';
import { openTun, spliceTo } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { NetnsSet, ip, tunSupport } from './helpers/netns.mjs';
import { ourClient } from './helpers/splice-env.mjs';

const skip = tunSupport();
const sets = new NetnsSet();
after(() => sets.cleanup());

// A minimal IPv4/UDP packet (the checksum does not matter to the TUN write).
function ipv4Packet(payloadLength, id) {
  const packet = Buffer.alloc(28 + payloadLength);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(id, 4);
  packet[8] = 64;
  packet[9] = 17;
  Buffer.from([10, 77, 0, 2]).copy(packet, 12);
  Buffer.from([10, 77, 0, 1]).copy(packet, 16);
  packet.writeUInt16BE(4000, 20);
  packet.writeUInt16BE(4001, 22);
  packet.writeUInt16BE(8 + payloadLength, 24);
  packet.fill(id & 0xff, 28);
  return packet;
}

async function waitForStat(handle, name, value, timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (handle.stats()[name] < value) {
    if (Date.now() > deadline) {
      throw new Error(`stats.${name} is ${handle.stats()[name]}, expected ${value}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const engine of ['native', 'js']) {
  test(`${engine}: packets to a TUN that is down are dropped and counted, then delivered`,
    { skip: skip ?? false, timeout: 30000 }, async () => {
      const ns = sets.create(`down-${engine}`);
      const tun = openTun({ mtu: 1500 });
      sets.moveTun(tun, ns, { up: false });
      let peerSocket;
      const server = tls.createServer({
        key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
      }, (socket) => { peerSocket = socket; socket.on('error', () => {}); });
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      try {
        const tlsSocket = await ourClient(server.address().port);
        const handle = spliceTo(tlsSocket, tun.fd, { framing: 'ip', direction: 'in', engine });
        await handle.start();
        while (!peerSocket) await new Promise((r) => setTimeout(r, 5));

        for (let i = 0; i < 5; i++) peerSocket.write(ipv4Packet(100 + i, i));
        await waitForStat(handle, 'packetsDropped', 5);
        assert.equal(handle.stats().packetsIn, 0);

        ip(['link', 'set', 'dev', tun.name, 'up'], { ns });
        for (let i = 0; i < 5; i++) peerSocket.write(ipv4Packet(200 + i, 100 + i));
        await waitForStat(handle, 'packetsIn', 5);
        assert.equal(handle.stats().packetsDropped, 5);
        assert.equal(handle.stats().bytesIn, [200, 201, 202, 203, 204].reduce((a, n) => a + n + 28, 0));

        peerSocket.end();
        const end = await handle.closed;
        assert.equal(end.reason, 'end', end.error?.message);
      } finally {
        server.close();
        fs.closeSync(tun.fd);
      }
    });
}
