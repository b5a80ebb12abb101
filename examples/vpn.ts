// A small TLS VPN: IP packets between a TUN device and a TLS connection, spliced natively.
//
//   server: TLS listen; per client, a TUN device of its own and a pair of tunnel addresses
//   client: TLS connect; one TUN device
//
// Before the splice both ends speak one JSON line each over the TLSSocket, in JS (the way iOS
// tunnel services hand out tunnel parameters):
//   client -> {"op":"hello","version":1,"mtu":1400}
//   server -> {"op":"welcome","version":1,"mtu":1400,
//              "ipv4":{"client":"10.99.0.2","server":"10.99.0.1"},
//              "ipv6":{"client":"fd00:99::2","server":"fd00:99::1"}}
// then spliceTo(tlsSocket, tun.fd, { framing: 'ip' }) carries the packets: one TLS record per
// packet read from the TUN, and one write() to the TUN per packet received.
//
// The tunnel's addresses are set with `ip` commands, printed (you run them; the tunnel waits
// until the device is up) or run by this program with --configure. Run as root (or with
// CAP_NET_ADMIN). See examples/README.md.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { parseArgs } from 'node:util';

import { SpliceError, connect, createServer, openTun, spliceTo } from 'tls-splice';
import type { SpliceEnd, SpliceEngineOption, SpliceHandle, TunDevice } from 'tls-splice';

const USAGE = `Usage:
  node examples/dist/vpn.js server --listen [HOST:]PORT (--psk HEX [--identity ID] |
      --cert FILE --key FILE [--ca FILE]) [--ipv4 10.99.0.1/24] [--ipv6 fd00:99::1/64]
      [--mtu 1400] [--tun NAME] [--ciphers LIST] [--configure] [--engine auto|native|js] [--json]
  node examples/dist/vpn.js client --connect HOST:PORT (--psk HEX [--identity ID] |
      --ca FILE [--servername NAME] [--cert FILE --key FILE]) [--mtu N] [--tun NAME]
      [--route CIDR]... [--ciphers LIST] [--configure] [--engine auto|native|js] [--json]

  --psk HEX        TLS 1.2 pre-shared key (at least 16 bytes), e.g. from \`openssl rand -hex 32\`;
                   suites PSK-AES256-GCM-SHA384, PSK-AES128-GCM-SHA256, PSK-CHACHA20-POLY1305
  --ciphers LIST   TLS 1.2 suites to offer or accept (OpenSSL names), instead of the PSK list above
                   or Node's default, e.g. PSK-AES128-CBC-SHA to talk to a peer that has only CBC
  --identity ID    PSK identity: the client sends it (default ""); the server, if given, requires it
  --ipv4 / --ipv6  the server's tunnel address and the prefix clients are numbered from
                   (server +1, +2, ...); --ipv6 none / --ipv4 none turns a family off
  --mtu N          tunnel MTU (default 1400; the server's value caps the client's; IPv6 needs 1280)
  --tun NAME       interface name; %d is replaced by the kernel with a free number (tlsvpn%d)
  --route CIDR     client: also route this prefix through the tunnel
  --configure      run the ip commands instead of printing them
  --engine E       auto (default: native, else the JS engine), native, or js
  --json           one JSON object per event on stdout`;

const PSK_CIPHERS = 'PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305';
const HELLO_TIMEOUT_MS = 10_000;
const MAX_LINE_BYTES = 4096;
const STOP_TIMEOUT_MS = 2_000;
const PROTOCOL_VERSION = 1;
const IFF_UP = 0x1;

type Role = 'server' | 'client';

interface Options {
  role: Role;
  listen?: { host: string; port: number };
  connect?: { host: string; port: number };
  psk?: Buffer;
  ciphers?: string;
  identity?: string;
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
  servername?: string;
  mtu: number;
  ipv4: Subnet | null;
  ipv6: Subnet | null;
  tun: string;
  routes: string[];
  configure: boolean;
  engine: SpliceEngineOption;
  json: boolean;
}

class UsageError extends Error {}

// --- output ----------------------------------------------------------------------------------

let jsonOutput = false;
let roleName: Role = 'client';

function report(event: string, fields: Record<string, unknown>, text: string): void {
  if (jsonOutput) {
    process.stdout.write(`${JSON.stringify({ event, role: roleName, ...fields })}\n`);
  } else {
    process.stdout.write(`vpn ${roleName}: ${text}\n`);
  }
}

function errorFields(err: unknown): { code: string; message: string } {
  const e = err as { code?: string; message?: string };
  return { code: e?.code ?? 'ERR_VPN', message: e?.message ?? String(err) };
}

// --- addresses -------------------------------------------------------------------------------

interface Subnet {
  family: 4 | 6;
  server: bigint;  // the server's own tunnel address
  first: bigint;   // first and last usable address of the prefix
  last: bigint;
}

function parseIpv4(text: string): bigint {
  if (!net.isIPv4(text)) throw new UsageError(`not an IPv4 address: ${text}`);
  return text.split('.').reduce((value, part) => (value << 8n) | BigInt(Number(part)), 0n);
}

function parseIpv6(text: string): bigint {
  if (!net.isIPv6(text) || text.includes('.')) throw new UsageError(`not an IPv6 address: ${text}`);
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups]
    .reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function formatAddress(value: bigint, family: 4 | 6): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  }
  const groups = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push((value >> shift) & 0xffffn);
  // RFC 5952 4.2: compress the longest run of two or more zero groups.
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0n) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0n) j++;
    if (j - i > bestLength) { best = i; bestLength = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
}

function parseSubnet(text: string, family: 4 | 6): Subnet | null {
  if (text === 'none') return null;
  const [address, prefixText] = text.split('/');
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits - 8 : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits - 2) {
    throw new UsageError(`bad prefix length in ${text}`);
  }
  const server = family === 4 ? parseIpv4(address) : parseIpv6(address);
  const hostBits = BigInt(bits - prefix);
  const network = (server >> hostBits) << hostBits;
  const size = 1n << hostBits;
  // IPv4: neither the network nor the broadcast address.
  const first = family === 4 ? network + 1n : network;
  const last = family === 4 ? network + size - 2n : network + size - 1n;
  return { family, server, first, last };
}

// Client number n (1, 2, ...) gets the server's address + n in each family.
function clientAddress(subnet: Subnet, n: number): bigint | null {
  const address = subnet.server + BigInt(n);
  return address >= subnet.first && address <= subnet.last ? address : null;
}

interface TunnelAddresses {
  ipv4?: { client: string; server: string };
  ipv6?: { client: string; server: string };
}

// --- ip commands -----------------------------------------------------------------------------

function ipCommands(dev: string, local: 'client' | 'server', addresses: TunnelAddresses,
                    routes: string[]): string[][] {
  const commands: string[][] = [];
  const peer = local === 'client' ? 'server' : 'client';
  if (addresses.ipv4) {
    commands.push(['addr', 'add', `${addresses.ipv4[local]}/32`, 'dev', dev]);
  }
  if (addresses.ipv6) {
    // nodad: the tunnel has one address per end; waiting out duplicate detection gains nothing.
    commands.push(['-6', 'addr', 'add', `${addresses.ipv6[local]}/128`, 'dev', dev, 'nodad']);
  }
  commands.push(['link', 'set', 'dev', dev, 'up']);
  if (addresses.ipv4) {
    commands.push(['route', 'add', `${addresses.ipv4[peer]}/32`, 'dev', dev,
      'src', addresses.ipv4[local]]);
  }
  if (addresses.ipv6) {
    commands.push(['-6', 'route', 'add', `${addresses.ipv6[peer]}/128`, 'dev', dev]);
  }
  for (const route of routes) {
    commands.push([...(route.includes(':') ? ['-6'] : []), 'route', 'add', route, 'dev', dev]);
  }
  return commands;
}

function isUp(dev: string): boolean {
  try {
    return (parseInt(fs.readFileSync(`/sys/class/net/${dev}/flags`, 'utf8'), 16) & IFF_UP) !== 0;
  } catch {
    return false;
  }
}

// A TUN device that is down refuses writes (EIO), which would end the splice: the tunnel
// starts only once its device is up.
async function configureTun(dev: string, commands: string[][], options: Options,
                            signal: AbortSignal): Promise<void> {
  const shown = commands.map((args) => `ip ${args.join(' ')}`);
  if (options.configure) {
    for (const args of commands) execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    report('configured', { tun: dev, commands: shown }, `configured ${dev}:\n  ${shown.join('\n  ')}`);
    return;
  }
  report('configure', { tun: dev, commands: shown },
    `run these commands; the tunnel starts once ${dev} is up:\n  ${shown.join('\n  ')}`);
  while (!isUp(dev)) {
    if (signal.aborted) throw new SpliceError('ABORT_ERR', 'shutting down');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// --- the JSON line before the splice ---------------------------------------------------------

// Reads one '\n'-terminated JSON line. Bytes after it stay in the socket (unshift): they are the
// first packets, and the splice delivers them.
function readJsonLine(socket: tls.TLSSocket): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = (err: Error | null, value?: Record<string, unknown>) => {
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      if (err) reject(err); else resolve(value!);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buffered = Buffer.concat([buffered, chunk]);
        const newline = buffered.indexOf(0x0a);
        if (newline >= 0) {
          const rest = buffered.subarray(newline + 1);
          if (rest.length > 0) socket.unshift(rest);
          let value: unknown;
          try {
            value = JSON.parse(buffered.subarray(0, newline).toString('utf8'));
          } catch {
            return done(new SpliceError('ERR_VPN_PROTOCOL', 'the peer sent a line that is not JSON'));
          }
          if (value === null || typeof value !== 'object') {
            return done(new SpliceError('ERR_VPN_PROTOCOL', 'the peer sent JSON that is not an object'));
          }
          return done(null, value as Record<string, unknown>);
        }
        if (buffered.length > MAX_LINE_BYTES) {
          return done(new SpliceError('ERR_VPN_PROTOCOL', 'the peer sent an over-long line'));
        }
      }
    };
    const onEnd = () => done(new SpliceError('ERR_VPN_PROTOCOL', 'the peer closed before its line'));
    const onError = (err: Error) => done(err);
    const timer = setTimeout(() => done(new SpliceError('ERR_VPN_TIMEOUT',
      `no JSON line from the peer within ${HELLO_TIMEOUT_MS} ms`)), HELLO_TIMEOUT_MS);
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

function sendJsonLine(socket: tls.TLSSocket, value: object): void {
  socket.write(`${JSON.stringify(value)}\n`);
}

// --- a tunnel: TUN <-> TLS -------------------------------------------------------------------

interface Tunnel {
  tun: TunDevice;
  handle: SpliceHandle;
  closed: Promise<SpliceEnd>;
}

const tunnels = new Set<Tunnel>();
const shutdown = new AbortController();

async function startTunnel(socket: tls.TLSSocket, tun: TunDevice, mtu: number,
                           options: Options, fields: Record<string, unknown>): Promise<Tunnel> {
  const handle = spliceTo(socket, tun.fd, {
    framing: 'ip', maxPacketSize: mtu, engine: options.engine,
  });
  try {
    await handle.start();
  } catch (err) {
    fs.closeSync(tun.fd);
    throw err;
  }
  // A TUN never reports EOF, so when the peer closes its side the splice is stopped here; that
  // sends our close_notify and ends it.
  handle.on('end', () => void handle.stop({ graceful: true, timeout: STOP_TIMEOUT_MS }));
  const closed = handle.closed.then((end) => {
    fs.closeSync(tun.fd);  // the device goes away with its last fd...
    // ...unless a read of it is still blocked in a thread (the JS engine reads a TUN with
    // blocking reads on libuv's thread pool): deleting the device wakes that read, so the
    // process can exit. Only when we configured the device ourselves.
    if (options.configure && fs.existsSync(`/sys/class/net/${tun.name}`)) {
      try {
        execFileSync('ip', ['link', 'delete', 'dev', tun.name], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
    tunnels.delete(tunnel);
    const error = end.error ? errorFields(end.error) : undefined;
    report('closed', {
      tun: tun.name, reason: end.reason, error, engine: end.engine, stats: end.stats,
      closeNotifySent: end.closeNotifySent, closeNotifyReceived: end.closeNotifyReceived,
    },
      `tunnel on ${tun.name} closed (${end.reason}${error ? `: ${error.code} ${error.message}` : ''}); ` +
      `packets in ${end.stats.packetsIn}, out ${end.stats.packetsOut}`);
    return end;
  });
  const tunnel: Tunnel = { tun, handle, closed };
  tunnels.add(tunnel);
  report('tunnel', { tun: tun.name, mtu, engine: handle.engine, ...fields },
    `tunnel up on ${tun.name} (mtu ${mtu}, ${handle.engine} engine` +
    `${handle.fallbackReason ? `, because ${handle.fallbackReason.code}` : ''})`);
  if (shutdown.signal.aborted) void handle.stop({ graceful: true, timeout: STOP_TIMEOUT_MS });
  return tunnel;
}

// --- server ----------------------------------------------------------------------------------

function serverTlsOptions(options: Options): tls.TlsOptions {
  if (options.psk) {
    const psk = options.psk;
    return {
      ciphers: options.ciphers ?? PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2',
      pskCallback: (_socket, identity) =>
        options.identity === undefined || identity === options.identity ? psk : null,
    };
  }
  return {
    cert: options.cert, key: options.key, ...(options.ciphers ? { ciphers: options.ciphers } : {}),
    ...(options.ca ? { ca: options.ca, requestCert: true, rejectUnauthorized: true } : {}),
  };
}

async function runServer(options: Options): Promise<void> {
  const inUse = new Set<number>();
  const handshaking = new Set<tls.TLSSocket>();

  const allocate = (): { n: number; addresses: TunnelAddresses } | null => {
    for (let n = 1; ; n++) {
      if (inUse.has(n)) continue;
      const v4 = options.ipv4 ? clientAddress(options.ipv4, n) : null;
      const v6 = options.ipv6 ? clientAddress(options.ipv6, n) : null;
      if ((options.ipv4 && v4 === null) || (options.ipv6 && v6 === null)) return null;
      inUse.add(n);
      const addresses: TunnelAddresses = {};
      if (options.ipv4 && v4 !== null) {
        addresses.ipv4 = { client: formatAddress(v4, 4), server: formatAddress(options.ipv4.server, 4) };
      }
      if (options.ipv6 && v6 !== null) {
        addresses.ipv6 = { client: formatAddress(v6, 6), server: formatAddress(options.ipv6.server, 6) };
      }
      return { n, addresses };
    }
  };

  const onClient = async (socket: tls.TLSSocket) => {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    handshaking.add(socket);
    // Errors before the splice are this connection's alone.
    socket.on('error', (err) => report('error', { remote, ...errorFields(err) },
      `${remote}: ${errorFields(err).code} ${errorFields(err).message}`));
    let slot: { n: number; addresses: TunnelAddresses } | null = null;
    let tun: TunDevice | null = null;
    let welcomed = false;
    try {
      const hello = await readJsonLine(socket);
      if (hello.op !== 'hello') throw new SpliceError('ERR_VPN_PROTOCOL', 'expected {"op":"hello"}');
      const asked = typeof hello.mtu === 'number' && Number.isInteger(hello.mtu) ? hello.mtu : options.mtu;
      const mtu = Math.max(options.ipv6 ? 1280 : 68, Math.min(asked, options.mtu));
      slot = allocate();
      if (slot === null) throw new SpliceError('ERR_VPN_POOL_FULL', 'no tunnel address is free');
      tun = openTun({ name: options.tun, mtu });
      // The answer goes first, so that the client does not wait on us while the device is being
      // configured (by hand, maybe); its first packets wait in the TLS session meanwhile.
      sendJsonLine(socket, { op: 'welcome', version: PROTOCOL_VERSION, mtu, ...slot.addresses });
      welcomed = true;
      await configureTun(tun.name, ipCommands(tun.name, 'server', slot.addresses, []), options,
        shutdown.signal);
      handshaking.delete(socket);
      const opened = tun;
      tun = null;  // startTunnel owns it now
      const tunnel = await startTunnel(socket, opened, mtu, options, { remote, ...slot.addresses });
      const n = slot.n;
      slot = null;
      void tunnel.closed.then(() => inUse.delete(n));
    } catch (err) {
      handshaking.delete(socket);
      if (tun) fs.closeSync(tun.fd);
      if (slot) inUse.delete(slot.n);
      const fields = errorFields(err);
      report('error', { remote, ...fields }, `${remote}: ${fields.code} ${fields.message}`);
      // After the welcome, the client may be splicing already: no more JSON, just close.
      if (!welcomed && !socket.destroyed && socket.writable) {
        sendJsonLine(socket, { op: 'error', code: fields.code, message: fields.message });
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      } else {
        socket.destroy();
      }
    }
  };

  const server = createServer(serverTlsOptions(options), (socket) => void onClient(socket));
  server.on('tlsClientError', (err, socket) => {
    report('error', { remote: `${socket.remoteAddress}:${socket.remotePort}`, ...errorFields(err) },
      `TLS handshake failed: ${errorFields(err).message}`);
  });
  const listen = options.listen!;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  report('listening', { address: address.address, port: address.port },
    `listening on ${address.address}:${address.port}`);

  await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve(),
    { once: true }));
  server.close();
  for (const socket of handshaking) socket.destroy();
  await Promise.all([...tunnels].map((t) => t.handle.stop({ graceful: true, timeout: STOP_TIMEOUT_MS })));
  await Promise.all([...tunnels].map((t) => t.closed));
}

// --- client ----------------------------------------------------------------------------------

function clientTlsOptions(options: Options): tls.ConnectionOptions {
  const target = options.connect!;
  const base = { host: target.host, port: target.port };
  if (options.psk) {
    const psk = options.psk;
    const identity = options.identity ?? '';
    return {
      ...base, ciphers: options.ciphers ?? PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2',
      pskCallback: () => ({ psk, identity }),
      // A PSK authenticates the server; there is no certificate to check a name against.
      checkServerIdentity: () => undefined,
    };
  }
  return {
    ...base, ca: options.ca, cert: options.cert, key: options.key,
    ...(options.ciphers ? { ciphers: options.ciphers } : {}),
    servername: options.servername ?? (net.isIP(target.host) ? undefined : target.host),
  };
}

async function runClient(options: Options): Promise<number> {
  const socket = connect(clientTlsOptions(options));
  const onAbort = () => socket.destroy(new SpliceError('ABORT_ERR', 'shutting down'));
  shutdown.signal.addEventListener('abort', onAbort, { once: true });
  let tun: TunDevice | null = null;
  let tunnel: Tunnel;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    report('connected', { cipher: socket.getCipher().standardName, protocol: socket.getProtocol() },
      `connected (${socket.getProtocol()}, ${socket.getCipher().standardName})`);
    sendJsonLine(socket, { op: 'hello', version: PROTOCOL_VERSION, mtu: options.mtu });
    const welcome = await readJsonLine(socket);
    if (welcome.op === 'error') {
      throw new SpliceError(String(welcome.code ?? 'ERR_VPN_REFUSED'),
        `the server refused: ${String(welcome.message)}`);
    }
    if (welcome.op !== 'welcome' || typeof welcome.mtu !== 'number') {
      throw new SpliceError('ERR_VPN_PROTOCOL', 'expected {"op":"welcome"} from the server');
    }
    const mtu = welcome.mtu;
    const addresses: TunnelAddresses = {};
    for (const family of ['ipv4', 'ipv6'] as const) {
      const pair = welcome[family] as { client?: unknown; server?: unknown } | undefined;
      if (pair === undefined) continue;
      if (!net.isIP(String(pair.client)) || !net.isIP(String(pair.server))) {
        throw new SpliceError('ERR_VPN_PROTOCOL', `bad ${family} addresses from the server`);
      }
      addresses[family] = { client: String(pair.client), server: String(pair.server) };
    }
    tun = openTun({ name: options.tun, mtu });
    await configureTun(tun.name, ipCommands(tun.name, 'client', addresses, options.routes),
      options, shutdown.signal);
    const opened = tun;
    tun = null;
    socket.on('error', () => {});  // the splice reports errors from here on
    tunnel = await startTunnel(socket, opened, mtu, options, { ...addresses });
  } catch (err) {
    if (tun) fs.closeSync(tun.fd);
    socket.destroy();
    shutdown.signal.removeEventListener('abort', onAbort);
    const fields = errorFields(err);
    if (!shutdown.signal.aborted) report('error', fields, `${fields.code}: ${fields.message}`);
    return shutdown.signal.aborted ? 0 : 1;
  }
  shutdown.signal.removeEventListener('abort', onAbort);
  const stopOnSignal = () => void tunnel.handle.stop({ graceful: true, timeout: STOP_TIMEOUT_MS });
  shutdown.signal.addEventListener('abort', stopOnSignal, { once: true });
  const end = await tunnel.closed;
  shutdown.signal.removeEventListener('abort', stopOnSignal);
  return end.reason === 'error' ? 1 : 0;
}

// --- command line ----------------------------------------------------------------------------

function parseHostPort(text: string, defaultHost: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  if (!match) throw new UsageError(`expected [HOST:]PORT, got ${text}`);
  const port = Number(match[3]);
  if (port < 0 || port > 65535) throw new UsageError(`bad port in ${text}`);
  return { host: match[1] || match[2] || defaultHost, port };
}

function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      listen: { type: 'string' }, connect: { type: 'string' },
      psk: { type: 'string' }, identity: { type: 'string' }, ciphers: { type: 'string' },
      cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' },
      servername: { type: 'string' }, mtu: { type: 'string' },
      ipv4: { type: 'string' }, ipv6: { type: 'string' }, tun: { type: 'string' },
      route: { type: 'string', multiple: true }, configure: { type: 'boolean' },
      engine: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help) throw new UsageError('');
  const role = positionals[0];
  if (role !== 'server' && role !== 'client') throw new UsageError('say "server" or "client"');
  const mtu = values.mtu === undefined ? 1400 : Number(values.mtu);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new UsageError('--mtu: 68 to 65535');
  const engine = values.engine ?? 'auto';
  if (engine !== 'auto' && engine !== 'native' && engine !== 'js') {
    throw new UsageError('--engine: auto, native or js');
  }
  const read = (file: string | undefined) => (file === undefined ? undefined : fs.readFileSync(file));
  let psk: Buffer | undefined;
  if (values.psk !== undefined) {
    if (!/^([0-9a-fA-F]{2})+$/.test(values.psk)) throw new UsageError('--psk: hex bytes');
    psk = Buffer.from(values.psk, 'hex');
    if (psk.length < 16) throw new UsageError('--psk: at least 16 bytes');
  }
  const options: Options = {
    role, mtu, psk, ciphers: values.ciphers, identity: values.identity,
    cert: read(values.cert), key: read(values.key), ca: read(values.ca),
    servername: values.servername,
    ipv4: parseSubnet(values.ipv4 ?? '10.99.0.1/24', 4),
    ipv6: parseSubnet(values.ipv6 ?? 'fd00:99::1/64', 6),
    tun: values.tun ?? 'tlsvpn%d', routes: values.route ?? [], configure: values.configure === true,
    engine, json: values.json === true,
  };
  for (const route of options.routes) {
    const [address, prefix] = route.split('/');
    if (!net.isIP(address) || (prefix !== undefined && !/^\d+$/.test(prefix))) {
      throw new UsageError(`--route: not a CIDR prefix: ${route}`);
    }
  }
  if (role === 'server') {
    if (values.listen === undefined) throw new UsageError('server: --listen [HOST:]PORT');
    options.listen = parseHostPort(values.listen, '0.0.0.0');
    if (!psk && (!options.cert || !options.key)) throw new UsageError('server: --psk, or --cert and --key');
    if (!options.ipv4 && !options.ipv6) throw new UsageError('server: --ipv4 and --ipv6 are both none');
    if (options.ipv6 && mtu < 1280) throw new UsageError('IPv6 needs --mtu 1280 or more (or --ipv6 none)');
  } else {
    if (values.connect === undefined) throw new UsageError('client: --connect HOST:PORT');
    options.connect = parseHostPort(values.connect, 'localhost');
    if (!psk && !options.ca) throw new UsageError('client: --psk, or --ca (the server\'s CA)');
  }
  return options;
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError) && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') !== true) throw err;
    if ((err as Error).message) process.stderr.write(`vpn: ${(err as Error).message}\n\n`);
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  jsonOutput = options.json;
  roleName = options.role;

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      report('exit', { signal, forced: true }, `${signal} again: exiting now`);
      process.exit(130);
    }
    report('shutdown', { signal }, `${signal}: stopping`);
    shutdown.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    process.exitCode = options.role === 'server' ? (await runServer(options), 0) : await runClient(options);
  } catch (err) {
    const fields = errorFields(err);
    report('error', fields, `${fields.code}: ${fields.message}`);
    process.exitCode = 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

void main();
