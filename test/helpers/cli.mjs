// Running the `tls-splice` command in tests: spawn bin/tls-splice.js as a child process (its own
// process group), wait for its readiness line on stdout, read its log lines on stderr, signal it.
//
//   const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...]);
//   try { ... cli.port ... await cli.waitForLog((rec) => rec.event === 'connection') }
//   finally { await cli.kill(); }
//
// API
//   BIN                               absolute path of bin/tls-splice.js
//   startCli(args, { ready = /^listening (\S+)$/, timeout, env }) -> Cli
//       resolves once stdout printed the ready line; rejects with stderr if the process exits
//       first. Pass `--log json` to parse log records with waitForLog.
//   runCli(args, { timeout }) -> { code, signal, stdout, stderr }   for commands that exit
//   requireTool(command, debianPackage) -> false | skip message: for test(..., { skip }).
//       In CI (CI=true) a missing tool is a failure, not a skip: the test runs and fails.
//   stopAllClis()                      SIGKILL every child still running (also at exit)
//
// Cli
//   .child, .host, .port, .addr ('host:port'), .lines (stdout lines), .ready (the match)
//   .stderr (text so far), .records (parsed JSON log lines so far)
//   .waitForStdout(regexp, timeout) -> match
//   .waitForStderr(regexp, timeout) -> match
//   .waitForLog(predicate, timeout) -> record      (with --log json)
//   .signal(name)                    sends a signal to the command's process
//   .exited -> Promise<{ code, signal }>
//   .stop(signal = 'SIGTERM', timeout) -> { code, signal }   signal, then wait for the exit
//   .kill()                          SIGKILL to the process group, awaited
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN = path.join(here, '..', '..', 'bin', 'tls-splice.js');

const running = new Set();

export function stopAllClis() {
  for (const cli of running) {
    try { process.kill(-cli.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  running.clear();
}
process.on('exit', stopAllClis);

function waitFor(getter, subscribe, timeout, what, cli) {
  return new Promise((resolve, reject) => {
    const first = getter();
    if (first) { resolve(first); return; }
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}; stderr:\n${cli.stderr}`));
    }, timeout);
    const unsubscribe = subscribe(() => {
      const hit = getter();
      if (hit) {
        clearTimeout(timer);
        unsubscribe();
        resolve(hit);
      }
    });
  });
}

export class Cli {
  lines = [];
  stderr = '';
  records = [];
  #listeners = new Set();
  #stdoutBuffer = '';
  #stderrBuffer = '';

  constructor(args, { env } = {}) {
    this.args = args;
    this.child = spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env },
    });
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        running.delete(this);
        resolve({ code, signal });
        this.#notify();
      });
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (text) => {
      this.#stdoutBuffer += text;
      let nl;
      while ((nl = this.#stdoutBuffer.indexOf('\n')) >= 0) {
        this.lines.push(this.#stdoutBuffer.slice(0, nl));
        this.#stdoutBuffer = this.#stdoutBuffer.slice(nl + 1);
      }
      this.#notify();
    });
    this.child.stderr.on('data', (text) => {
      this.stderr += text;
      this.#stderrBuffer += text;
      let nl;
      while ((nl = this.#stderrBuffer.indexOf('\n')) >= 0) {
        const line = this.#stderrBuffer.slice(0, nl);
        this.#stderrBuffer = this.#stderrBuffer.slice(nl + 1);
        if (line.startsWith('{')) {
          try { this.records.push(JSON.parse(line)); } catch { /* not a record */ }
        }
      }
      this.#notify();
    });
  }

  #notify() {
    for (const fn of [...this.#listeners]) fn();
  }

  #subscribe = (fn) => {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  };

  waitForStdout(regexp, timeout = 10000) {
    return waitFor(() => {
      for (const line of this.lines) {
        const m = regexp.exec(line);
        if (m) return m;
      }
      return null;
    }, this.#subscribe, timeout, `stdout ${regexp}`, this);
  }

  waitForStderr(regexp, timeout = 10000) {
    return waitFor(() => regexp.exec(this.stderr), this.#subscribe, timeout,
      `stderr ${regexp}`, this);
  }

  waitForLog(predicate, timeout = 10000) {
    return waitFor(() => this.records.find(predicate), this.#subscribe, timeout,
      `a log record ${predicate}`, this);
  }

  signal(name) {
    this.child.kill(name);
  }

  async stop(signal = 'SIGTERM', timeout = 20000) {
    this.child.kill(signal);
    let timer;
    const result = await Promise.race([this.exited, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the command did not exit within ${timeout} ms ` +
        `of ${signal}; stderr:\n${this.stderr}`)), timeout);
    })]).finally(() => clearTimeout(timer));
    return result;
  }

  async kill() {
    if (!running.has(this)) return;
    try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* gone */ }
    await this.exited;
  }
}

export async function startCli(args, { ready = /^listening (\S+)$/, timeout = 15000, env } = {}) {
  const cli = new Cli(args, { env });
  const exitedEarly = cli.exited.then(({ code, signal }) => {
    throw new Error(`tls-splice ${args.join(' ')} exited (${signal ?? code}) before it was ` +
      `ready; stderr:\n${cli.stderr}`);
  });
  try {
    cli.ready = await Promise.race([cli.waitForStdout(ready, timeout), exitedEarly]);
  } catch (err) {
    await cli.kill();
    throw err;
  }
  exitedEarly.catch(() => {});
  const listening = cli.lines.map((l) => /^listening (\S+)$/.exec(l)).find(Boolean);
  if (listening) {
    cli.addr = listening[1];
    const m = /^\[?(.*?)\]?:(\d+)$/.exec(cli.addr);
    cli.host = m[1];
    cli.port = Number(m[2]);
  }
  return cli;
}

export async function runCli(args, { timeout = 15000 } = {}) {
  const cli = new Cli(args);
  let timer;
  const { code, signal } = await Promise.race([cli.exited, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`tls-splice ${args.join(' ')} did not exit`)),
      timeout);
  })]).finally(() => clearTimeout(timer));
  return { code, signal, stdout: cli.lines.join('\n'), stderr: cli.stderr };
}

export function requireTool(command, debianPackage) {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
  if (found) return false;
  if (process.env.CI === 'true') return false;   // CI installs it: run and fail loudly
  return `needs ${command}: install Debian package ${debianPackage}`;
}
