// Child processes for the benchmarks: every peer and every process under test is spawned here,
// in its own process group, and killed (the whole group) when its case ends, whatever happens.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const ROOT = path.dirname(BENCH_DIR);
export const BENCHTOOL = path.join(BENCH_DIR, 'native', 'out', 'benchtool');
export const RECORD_BENCH = path.join(BENCH_DIR, 'native', 'out', 'record_bench');

const live = new Set();

process.once('exit', () => {
  for (const child of live) killGroup(child);
});

function killGroup(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
}

// --pin: the process under test on one CPU, every peer on the other(s), with taskset.
let pinning = null;

export function setPinning(value) {
  pinning = value;  // null, or { underTest: '1', peers: '0' }
}

// A child with its output collected. `netns`: run it inside that network namespace. `role`:
// 'under-test' or 'peer', for --pin.
export class Proc {
  constructor(name, cmd, args, { netns = null, stdio = ['ignore', 'pipe', 'pipe'], env, role = 'peer' } = {}) {
    this.name = name;
    if (pinning) {
      args = ['-c', role === 'under-test' ? pinning.underTest : pinning.peers, cmd, ...args];
      cmd = 'taskset';
    }
    const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
    this.child = spawn(file, argv, { stdio, detached: true, env: env ?? process.env });
    live.add(this.child);
    this.stdout = '';
    this.stderr = '';
    this.waiters = new Set();
    this.child.stdout?.on('data', (d) => { this.stdout += d; this.#wake(); });
    this.child.stderr?.on('data', (d) => { this.stderr += d; this.#wake(); });
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        this.done = { code, signal };
        // Output may still be in the pipes: let it arrive first.
        setImmediate(() => { this.#wake(); resolve(this.done); });
      });
      this.child.once('error', (err) => {
        live.delete(this.child);
        this.done = { code: -1, signal: null, error: err };
        this.#wake();
        resolve(this.done);
      });
    });
  }

  #wake() {
    for (const w of this.waiters) w();
  }

  // Resolves when stdout matches; rejects if the process exits first or on timeout.
  waitFor(pattern, timeout = 10000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.stdout.match(pattern);
        if (m) return finish(() => resolve(m[0]));
        if (this.done) {
          return finish(() => reject(new Error(`${this.name} exited (${JSON.stringify(this.done)}) ` +
            `before printing ${pattern}:\n${this.stderr.slice(-1500)}${this.stdout.slice(-500)}`)));
        }
      };
      const timer = setTimeout(() => finish(() => reject(new Error(
        `${this.name}: no ${pattern} after ${timeout} ms:\n${this.stderr.slice(-1500)}`))), timeout);
      const finish = (fn) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      this.waiters.add(check);
      check();
    });
  }

  async wait(timeout = 60000) {
    let timer;
    const result = await Promise.race([
      this.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeout); }),
    ]);
    clearTimeout(timer);
    if (result === null) {
      this.kill();
      throw new Error(`${this.name} did not finish within ${timeout} ms:\n${this.stderr.slice(-1500)}` +
        `${this.stdout.slice(-500)}`);
    }
    return result;
  }

  kill() {
    killGroup(this.child);
  }
}

// Runs `sh -c script` (redirections to FIFOs are how peers get their stdio).
export function shell(name, script, opts = {}) {
  return new Proc(name, 'sh', ['-c', script], opts);
}

export function quote(s) {
  return `'${String(s).replace(/'/g, "'\\''")}'`;
}

export function readJson(file) {
  const text = fs.readFileSync(file, 'utf8').trim();
  return JSON.parse(text.split('\n').pop());
}

// A report a process writes as it exits (benchtool duplex under socat EXEC may still be writing
// when socat has gone): wait for a whole line.
export async function waitJson(file, timeout = 5000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      const text = fs.readFileSync(file, 'utf8');
      if (text.endsWith('\n')) return readJson(file);
    } catch { /* not there yet */ }
    if (Date.now() > deadline) throw new Error(`no report in ${path.basename(file)} after ${timeout} ms`);
    await delay(20);
  }
}

export function readJsonIfAny(file) {
  try {
    return readJson(file);
  } catch {
    return null;
  }
}

export function mkfifo(file) {
  execFileSync('mkfifo', [file]);
  return file;
}

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls `ss` until something listens on 127.0.0.1:port (never connects: a connection would be
// the one connection a single-shot peer serves).
export async function waitListening(port, { netns = null, timeout = 10000, proc = null } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const args = ['-Hltn', `sport = :${port}`];
    const out = netns
      ? execFileSync('ip', ['netns', 'exec', netns, 'ss', ...args], { encoding: 'utf8' })
      : execFileSync('ss', args, { encoding: 'utf8' });
    if (out.trim()) return;
    if (proc?.done) throw new Error(`${proc.name} exited before listening:\n${proc.stderr.slice(-1500)}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeout} ms`);
    await delay(10);
  }
}

let nextPort = 20000 + (process.pid % 20000);

// A port nothing listens on right now (checked with `ss`), from a range private to this run.
export function freePort(netns = null) {
  for (;;) {
    nextPort = nextPort >= 45000 ? 20000 : nextPort + 1;
    const args = ['-Htan', `sport = :${nextPort}`];
    const out = netns
      ? execFileSync('ip', ['netns', 'exec', netns, 'ss', ...args], { encoding: 'utf8' })
      : execFileSync('ss', args, { encoding: 'utf8' });
    if (!out.trim()) return nextPort;
  }
}

export function createNetns(name) {
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  // No IPv6 chatter (router solicitations, MLD) out of the TUN during a measurement.
  for (const key of ['all', 'default']) {
    execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-qw', `net.ipv6.conf.${key}.disable_ipv6=1`]);
  }
  return name;
}

export function deleteNetns(name) {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch { /* already gone */ }
}

// The next IPC message of `type` from a forked child; rejects, naming `who`, if the child exits
// first.
export function childMessage(child, type, who) {
  return new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (msg.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(msg);
    };
    const onExit = (code) => reject(new Error(`${who}: a child exited (${code}) before '${type}'`));
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
