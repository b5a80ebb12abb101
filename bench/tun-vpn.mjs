#!/usr/bin/env node
// End-to-end TUN benchmark through the real VPN example (examples/vpn.ts): two network
// namespaces joined by a veth pair, the server in one, the client in the other, both on the
// native engine, then both on the JS engine with the same framing (--engine js), side by side.
//
//   node bench/tun-vpn.mjs [--quick] [--mtu 1280,16000] [--engines native,js] [--seconds N] [--json]
//
// Per MTU and engine, each in fresh processes (the two VPN ends are restarted):
//   - TCP throughput through the tunnel, each way (iperf3, one stream, N seconds)
//   - packets per second: UDP with 64-byte payloads at full speed (iperf3 -u -b 0 -l 64), the
//     rate the receiver got and the loss
//   - latency: 200 pings, 56-byte payload, 10 ms apart (round trip through both splices)
// The same measurements over the bare veth (no tunnel) are the reference. Results are printed
// as a Markdown table with native/js ratios; --json prints the raw figures.
//
// Noise: the machine is shared (2 cores here); runs are interleaved (native then js per MTU),
// the load average is printed with the results, and nothing else of ours runs meanwhile.
// Needs root, /dev/net/tun, iproute2, iperf3 and ping.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NetnsSet, lineReader, tunSupport } from '../test/helpers/netns.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VPN_JS = path.join(ROOT, 'examples', 'dist', 'vpn.js');

function parseArgs(argv) {
  const opts = { quick: false, mtus: [1280, 16000], engines: ['native', 'js'], seconds: 5, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') { opts.quick = true; opts.seconds = 2; }
    else if (a === '--mtu') opts.mtus = argv[++i].split(',').map(Number);
    else if (a === '--engines') opts.engines = argv[++i].split(',');
    else if (a === '--seconds') opts.seconds = Number(argv[++i]);
    else if (a === '--json') opts.json = true;
    else throw new Error(`unknown option ${a}`);
  }
  return opts;
}

function buildExample() {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'examples')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc -p examples failed:\n${r.stdout}${r.stderr}`);
}

function waitEvent(child, events, name, ms = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' within ${ms} ms: ${JSON.stringify(events)}`)), ms);
    const check = () => {
      const e = events.find((x) => x.event === name);
      if (e) {
        clearTimeout(timer);
        resolve(e);
      } else if (child.exitCode !== null) {
        clearTimeout(timer);
        reject(new Error(`vpn exited before '${name}': ${JSON.stringify(events)}`));
      } else {
        setTimeout(check, 50);
      }
    };
    check();
  });
}

function startVpn(sets, ns, args) {
  const child = sets.spawn(ns, process.execPath, [VPN_JS, ...args, '--json']);
  const events = [];
  lineReader(child.stdout, (line) => {
    try { events.push(JSON.parse(line)); } catch { /* text */ }
  });
  child.stderr.resume();
  return { child, events };
}

async function iperfTcp(sets, serverNs, clientNs, address, seconds) {
  const server = sets.spawn(serverNs, 'iperf3', ['-s', '-1', '-B', address]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const r = await sets.exec(clientNs, 'iperf3', ['-c', address, '-t', String(seconds), '-J'],
    { timeout: (seconds + 20) * 1000 });
  await server.exited;
  const j = JSON.parse(r.stdout);
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  return { mbitPerS: j.end.sum_received.bits_per_second / 1e6, retransmits: j.end.sum_sent.retransmits };
}

async function iperfUdp(sets, serverNs, clientNs, address, seconds) {
  const server = sets.spawn(serverNs, 'iperf3', ['-s', '-1', '-B', address]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const r = await sets.exec(clientNs, 'iperf3',
    ['-c', address, '-u', '-b', '0', '-l', '64', '-t', String(seconds), '-J'], { timeout: (seconds + 20) * 1000 });
  await server.exited;
  const j = JSON.parse(r.stdout);
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const s = j.end.sum_received ?? j.end.sum;
  const received = s.packets - s.lost_packets;
  return { receivedPps: received / s.seconds, lossPercent: s.lost_percent };
}

async function pingRtt(sets, ns, address) {
  const r = await sets.exec(ns, 'ping', ['-q', '-n', '-c', '200', '-i', '0.01', '-W', '2', address],
    { timeout: 30000 });
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(r.stdout);
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(r.stdout);
  if (!m) throw new Error(`ping failed: ${r.stdout}${r.stderr}`);
  return { avgMs: Number(m[2]), minMs: Number(m[1]), maxMs: Number(m[3]), mdevMs: Number(m[4]), lossPercent: Number(loss?.[1]) };
}

async function measure(sets, nsServer, nsClient, serverAddr, clientAddr, seconds) {
  return {
    tcpUp: await iperfTcp(sets, nsServer, nsClient, serverAddr, seconds),
    tcpDown: await iperfTcp(sets, nsClient, nsServer, clientAddr, seconds),
    udpPps: await iperfUdp(sets, nsServer, nsClient, serverAddr, seconds),
    ping: await pingRtt(sets, nsClient, serverAddr),
  };
}

async function runCase(mtu, engine, seconds) {
  const sets = new NetnsSet();
  try {
    const nsServer = sets.create('bsrv');
    const nsClient = sets.create('bcli');
    sets.veth(nsServer, nsClient, { addrA: '10.211.0.1/24', addrB: '10.211.0.2/24' });
    if (engine === 'veth') {
      return await measure(sets, nsServer, nsClient, '10.211.0.1', '10.211.0.2', seconds);
    }
    const psk = crypto.randomBytes(32).toString('hex');
    const common = ['--psk', psk, '--mtu', String(mtu), '--configure', '--engine', engine];
    const server = startVpn(sets, nsServer, ['server', '--listen', '10.211.0.1:4433', ...common]);
    await waitEvent(server.child, server.events, 'listening');
    const client = startVpn(sets, nsClient, ['client', '--connect', '10.211.0.1:4433', ...common]);
    const up = await waitEvent(client.child, client.events, 'tunnel');
    if (up.engine !== engine) throw new Error(`asked for ${engine}, got ${up.engine}`);
    const result = await measure(sets, nsServer, nsClient, '10.99.0.1', '10.99.0.2', seconds);
    client.child.kill('SIGTERM');
    const closed = await waitEvent(client.child, client.events, 'closed', 10000).catch(() => null);
    result.clientStats = closed?.stats ?? null;
    return result;
  } finally {
    await sets.cleanup();
  }
}

const fmt = (n, digits = 1) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits));

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const skip = tunSupport();
  if (skip) {
    console.log(`tun-vpn bench skipped: ${skip}`);
    return;
  }
  buildExample();
  const results = [];
  for (const mtu of opts.mtus) {
    for (const engine of opts.engines) {
      process.stderr.write(`tun-vpn: MTU ${mtu}, ${engine} engine...\n`);
      results.push({ mtu, engine, ...await runCase(mtu, engine, opts.seconds) });
    }
  }
  process.stderr.write('tun-vpn: bare veth (reference)...\n');
  const reference = { mtu: 1500, engine: 'veth', ...await runCase(1500, 'veth', opts.seconds) };
  const load = os.loadavg().map((n) => n.toFixed(2)).join(' ');
  if (opts.json) {
    console.log(JSON.stringify({ machine: { nproc: os.cpus().length, load, node: process.version }, results, reference }, null, 2));
    return;
  }
  const lines = [
    `TUN VPN through examples/vpn.ts (PSK-AES256-GCM-SHA384), ${opts.seconds} s per measurement, ` +
      `${os.cpus().length} CPUs, load ${load}`,
    '',
    '| MTU | engine | TCP up Mbit/s | TCP down Mbit/s | UDP 64 B packets/s (loss) | ping avg ms (mdev) |',
    '|---:|---|---:|---:|---:|---:|',
  ];
  for (const r of [...results, reference]) {
    lines.push(`| ${r.mtu} | ${r.engine} | ${fmt(r.tcpUp.mbitPerS, 0)} | ${fmt(r.tcpDown.mbitPerS, 0)} | ` +
      `${fmt(r.udpPps.receivedPps, 0)} (${fmt(r.udpPps.lossPercent)}%) | ${fmt(r.ping.avgMs, 3)} (${fmt(r.ping.mdevMs, 3)}) |`);
  }
  lines.push('');
  for (const mtu of opts.mtus) {
    const n = results.find((r) => r.mtu === mtu && r.engine === 'native');
    const j = results.find((r) => r.mtu === mtu && r.engine === 'js');
    if (!n || !j) continue;
    lines.push(`MTU ${mtu}, native/js: TCP up ×${fmt(n.tcpUp.mbitPerS / j.tcpUp.mbitPerS, 2)}, ` +
      `TCP down ×${fmt(n.tcpDown.mbitPerS / j.tcpDown.mbitPerS, 2)}, ` +
      `packets/s ×${fmt(n.udpPps.receivedPps / j.udpPps.receivedPps, 2)}, ` +
      `ping latency ×${fmt(j.ping.avgMs / n.ping.avgMs, 2)} lower`);
  }
  console.log(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
