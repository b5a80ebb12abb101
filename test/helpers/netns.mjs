// Network namespaces, veth pairs and TUN devices for the TUN tests, always cleaned up.
//
// Every namespace is named `tsp<pid>-<label>` so that parallel runs never collide, and one left
// behind by a run that was killed is recognised (its pid is gone) and deleted by the next run.
//
// API
//   tunSupport() -> null when this machine can run the TUN tests, else the reason (a string
//                   for a skip message: not root, no /dev/net/tun, no `ip netns`, ...)
//   python3Path() -> absolute path of python3, or null (the packet capture needs it)
//   new NetnsSet()            a group of namespaces and what runs in them; always call cleanup()
//     .create(label) -> name  `ip netns add`; lo up
//     .veth(nsA, nsB, { addrA, addrB, addr6A, addr6B }) -> { devA, devB }
//                             a veth pair joining two namespaces, addressed and up
//     .exec(ns, cmd, args, { timeout }) -> Promise<{ code, signal, stdout, stderr }>
//                             runs to completion (killed after timeout ms); never rejects
//     .spawn(ns, cmd, args, opts) -> ChildProcess   tracked: killed by cleanup()
//     .nodeScript(ns, source, args) -> ChildProcess  an ES module given as text, run in `ns`
//     .moveTun(tun, ns, { up, addrs }) -> moves a TUN device opened here into `ns`
//     .cleanup()              kills the children (TERM, then KILL), deletes links and namespaces
//   ip(args, { ns }) -> stdout  runs `ip` synchronously, throws with stderr on failure
//   lineReader(stream, onLine)  calls onLine for each '\n'-terminated line of a text stream
//   PacketCapture.start(sets, ns, ifname) -> capture of the packets a device RECEIVES (what was
//       written to its TUN fd), via an AF_PACKET socket in a python3 child:
//       .packets (Buffer[] in arrival order), .waitFor(n, ms), .stop()
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { assertProgram, findProgram, requireProgram } from './programs.mjs';

const PREFIX = `tsp${process.pid}-`;

export function ip(args, { ns } = {}) {
  assertProgram('ip');
  const full = ns ? ['-n', ns, ...args] : args;
  try {
    return execFileSync('ip', full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = err.stderr ? String(err.stderr).trim() : '';
    throw new Error(`ip ${full.join(' ')} failed: ${stderr || err.message}`);
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// Namespaces left by runs that were killed before their cleanup ran.
function deleteStaleNamespaces() {
  let list = '';
  try {
    list = ip(['netns', 'list']);
  } catch {
    return;
  }
  for (const line of list.split('\n')) {
    const match = /^tsp(\d+)-\S+/.exec(line.trim());
    if (!match || Number(match[1]) === process.pid || pidAlive(Number(match[1]))) continue;
    try { ip(['netns', 'delete', match[0]]); } catch { /* raced with its owner */ }
  }
}

let supportChecked = null;

export function tunSupport() {
  if (supportChecked !== null) return supportChecked || null;
  supportChecked = (() => {
    if (process.platform !== 'linux') return `TUN tests need Linux (this is ${process.platform})`;
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      return 'TUN tests need root (network namespaces and TUN devices need CAP_NET_ADMIN)';
    }
    if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun is missing (modprobe tun)';
    try {
      fs.closeSync(fs.openSync('/dev/net/tun', 'r+'));
    } catch (err) {
      return `/dev/net/tun cannot be opened (${err.code})`;
    }
    // Under CI=true / TLS_SPLICE_REQUIRE_PEERS=1 a missing `ip` is not a reason to skip: the tests
    // run and ip() fails with the package to install (programs.mjs).
    if (!findProgram('ip')) return requireProgram('ip') || '';
    const probe = `${PREFIX}probe`;
    const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
    if (add.error) return `the ip command cannot run (${add.error.code}): apt-get install iproute2`;
    if (add.status !== 0) return `ip netns add is not allowed here: ${add.stderr.trim()}`;
    spawnSync('ip', ['netns', 'delete', probe]);
    deleteStaleNamespaces();
    return '';
  })();
  return supportChecked || null;
}

export function python3Path() {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = path.join(dir, 'python3');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      const r = spawnSync(candidate, ['-c', 'import socket; socket.AF_PACKET'], { timeout: 10000 });
      if (r.status === 0) return candidate;
    } catch { /* next */ }
  }
  return null;
}

export function lineReader(stream, onLine) {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (text) => {
    pending += text;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      onLine(line);
    }
  });
}

export class NetnsSet {
  namespaces = [];
  children = new Set();
  links = [];  // [ns, dev] deleted explicitly: a TUN read blocked in the kernel wakes up
  #counter = 0;

  create(label = 'ns') {
    const name = `${PREFIX}${label}${this.#counter++}`;
    ip(['netns', 'add', name]);
    this.namespaces.push(name);
    ip(['link', 'set', 'lo', 'up'], { ns: name });
    return name;
  }

  veth(nsA, nsB, { addrA, addrB, addr6A, addr6B } = {}) {
    const id = `${process.pid % 10000}${this.#counter++}`;
    const devA = `vta${id}`;
    const devB = `vtb${id}`;
    ip(['link', 'add', devA, 'type', 'veth', 'peer', 'name', devB]);
    ip(['link', 'set', devA, 'netns', nsA]);
    ip(['link', 'set', devB, 'netns', nsB]);
    this.links.push([nsA, devA]);
    for (const [ns, dev, addr, addr6] of [[nsA, devA, addrA, addr6A], [nsB, devB, addrB, addr6B]]) {
      if (addr) ip(['addr', 'add', addr, 'dev', dev], { ns });
      if (addr6) ip(['-6', 'addr', 'add', addr6, 'dev', dev, 'nodad'], { ns });
      ip(['link', 'set', dev, 'up'], { ns });
    }
    return { devA, devB };
  }

  moveTun(tun, ns, { up = true, addrs = [], routes = [] } = {}) {
    ip(['link', 'set', tun.name, 'netns', ns]);
    this.links.push([ns, tun.name]);
    for (const addr of addrs) {
      const family = addr.includes(':') ? ['-6'] : [];
      ip([...family, 'addr', 'add', ...addr.split(' '), 'dev', tun.name,
        ...(addr.includes(':') ? ['nodad'] : [])], { ns });
    }
    if (up) ip(['link', 'set', tun.name, 'up'], { ns });
    for (const route of routes) {
      const family = route.includes(':') ? ['-6'] : [];
      ip([...family, 'route', 'add', ...route.split(' '), 'dev', tun.name], { ns });
    }
  }

  spawn(ns, cmd, args = [], opts = {}) {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.children.delete(child);
        resolve({ code, signal });
      });
      child.once('error', (err) => {
        this.children.delete(child);
        resolve({ code: null, signal: null, error: err });
      });
    });
    return child;
  }

  nodeScript(ns, source, args = [], opts = {}) {
    return this.spawn(ns, process.execPath, ['--input-type=module', '-e', source, '--', ...args],
      opts);
  }

  async exec(ns, cmd, args = [], { timeout = 20000 } = {}) {
    const child = this.spawn(ns, cmd, args);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t) => { stdout += t; });
    child.stderr.setEncoding('utf8').on('data', (t) => { stderr += t; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    const { code, signal, error } = await child.exited;
    clearTimeout(timer);
    return { code, signal, stdout, stderr: error ? String(error) : stderr };
  }

  async cleanup() {
    const children = [...this.children];
    for (const child of children) child.kill('SIGTERM');
    await Promise.race([
      Promise.all(children.map((c) => c.exited)),
      new Promise((resolve) => setTimeout(resolve, 3000)),
    ]);
    for (const child of [...this.children]) child.kill('SIGKILL');
    await Promise.race([
      Promise.all(children.map((c) => c.exited)),
      new Promise((resolve) => setTimeout(resolve, 2000)),
    ]);
    for (const [ns, dev] of this.links.splice(0)) {
      spawnSync('ip', ['-n', ns, 'link', 'delete', dev], { stdio: 'ignore' });
    }
    for (const ns of this.namespaces.splice(0)) {
      spawnSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    }
  }
}

// Captures every packet a device receives (what a TUN fd wrote into the kernel), byte for byte:
// an AF_PACKET socket in the device's namespace, each packet framed with a 4-byte length.
const CAPTURE_SOURCE = String.raw`
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: no drops under a burst
s.bind((sys.argv[1], 0))
out = sys.stdout.buffer
out.write(b'R'); out.flush()
while True:
    data, addr = s.recvfrom(262144)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    out.write(struct.pack('>I', len(data)) + data); out.flush()
`;

export class PacketCapture {
  packets = [];
  #buffer = Buffer.alloc(0);
  #waiters = new Set();

  static async start(sets, ns, ifname, python = python3Path()) {
    const capture = new PacketCapture();
    capture.child = sets.spawn(ns, python, ['-c', CAPTURE_SOURCE, ifname]);
    let stderr = '';
    capture.child.stderr.setEncoding('utf8').on('data', (t) => { stderr += t; });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`capture did not start: ${stderr}`)), 10000);
      capture.child.stdout.once('data', (chunk) => {
        clearTimeout(timer);
        capture.#take(chunk.subarray(1));
        capture.child.stdout.on('data', (c) => capture.#take(c));
        resolve();
      });
      capture.child.exited.then(() => reject(new Error(`capture exited: ${stderr}`)));
    });
    return capture;
  }

  #take(chunk) {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    while (this.#buffer.length >= 4) {
      const length = this.#buffer.readUInt32BE(0);
      if (this.#buffer.length < 4 + length) break;
      this.packets.push(Buffer.from(this.#buffer.subarray(4, 4 + length)));
      this.#buffer = this.#buffer.subarray(4 + length);
    }
    for (const wake of this.#waiters) wake();
  }

  // Resolves once `predicate(packets)` holds, or after `ms` (the caller asserts what it got).
  waitFor(predicate, ms = 10000) {
    return new Promise((resolve) => {
      const check = () => {
        if (!predicate(this.packets)) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(this.packets);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve(this.packets);
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }

  async stop() {
    this.child.kill('SIGKILL');
    await this.child.exited;
  }
}
