// Real TLS peers for tests, on loopback only: OpenSSL (s_server / s_client), GnuTLS (gnutls-serv /
// gnutls-cli) and Node's own tls in a child process. Reused by the capture, data-plane, TUN and
// hardening tests.
//
// Every peer is a `Peer`: a child process (its own process group) whose stdin is what the peer
// sends over TLS and whose stdout is the cleartext it received — the OpenSSL `-quiet`, gnutls-cli
// `--logfile=/dev/null` and Node peer conventions. gnutls-serv is the exception: it only echoes
// (`peer.echo === true`), line by line, so send it base64 lines (data.mjs base64Lines).
//
//   const { peer, port } = await opensslServer({ version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256' });
//   try { ... peer.send(buf); await peer.waitForReceived(n); peer.received ... }
//   finally { await peer.stop(); }
//
// API
//   FIXTURES                      paths: ca, serverCert, serverKey, clientCert, clientKey
//   SUITES                        the matrix suites: { name (IANA), id, version, openssl, gnutls }
//   suiteByName(ianaName)
//   freePort() -> Promise<number> a port free on 127.0.0.1 right now
//   waitForListening(port, { timeout }) polls `ss` (never connects: `-naccept 1` stays unused)
//   opensslServer(opts)  -> { peer, port }   s_server on 127.0.0.1
//   opensslClient(opts)  -> { peer }         s_client to 127.0.0.1:opts.port
//   gnutlsServer(opts)   -> { peer, port }   gnutls-serv --echo in a private network namespace,
//                                            reached through socat over a Unix socket, so that it
//                                            binds nothing outside; port is on 127.0.0.1
//   gnutlsClient(opts)   -> { peer }         gnutls-cli to 127.0.0.1:opts.port (its stdout goes
//                                            through cat: it writes one byte per syscall)
//   nodeServer(opts)     -> { peer, port }   tls.createServer in a child process (node-peer.mjs)
//   nodeClient(opts)     -> { peer }         tls.connect in a child process
//   startServer(kind, opts), startClient(kind, opts)   kind: 'openssl' | 'gnutls' | 'node'
//   stopAll()                     kills every peer still running (also done at process exit)
//   A peer whose programs are not installed throws ProgramMissingError (programs.mjs) naming the
//   Debian package; declare the test with `{ skip: requirePeer(kind) }` to skip it instead.
//
// Common opts: version ('TLSv1.3' | 'TLSv1.2'), suite (IANA name, forced on the peer),
//   clientCert (client: present the fixture client certificate; server: require and verify one),
//   psk ({ key: hex, identity }), noCert (server: PSK only), groups ('P-256'), keylogFile,
//   sessionOut / sessionIn (client: save / resume a session file), naccept (servers, default 1;
//   0 = unlimited), quiet (OpenSSL, default true; false keeps interactive commands such as 'k'),
//   maxFragLen (s_client), extraArgs (appended to the command line), port (clients),
//   priority (GnuTLS: the whole --priority string, for suites outside SUITES such as CBC ones).
//
// Peer
//   .name, .child, .echo
//   .send(buf) -> boolean                     write to the peer's stdin (it sends it over TLS)
//   .sendAll(buf) -> Promise                  the same, resolved once stdin drained
//   .received -> Buffer                       everything it printed on stdout so far
//   .waitForReceived(n, timeout) -> Promise<Buffer>
//   .output -> string                         stdout + stderr as text (status lines)
//   .waitForOutput(regexp, timeout) -> Promise<string>
//   .exited -> Promise<{ code, signal }>
//   .stop() -> Promise                        SIGKILL to the whole process group, awaited
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { assertProgram, PEER_PROGRAMS } from './programs.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures');

export const FIXTURES = {
  ca: path.join(fixtures, 'ca.pem'),
  serverCert: path.join(fixtures, 'server.pem'),
  serverKey: path.join(fixtures, 'server-key.pem'),
  clientCert: path.join(fixtures, 'client.pem'),
  clientKey: path.join(fixtures, 'client-key.pem'),
};

export const SUITES = [
  { name: 'TLS_AES_128_GCM_SHA256', id: 0x1301, version: 'TLSv1.3', openssl: 'TLS_AES_128_GCM_SHA256', gnutls: 'AES-128-GCM' },
  { name: 'TLS_AES_256_GCM_SHA384', id: 0x1302, version: 'TLSv1.3', openssl: 'TLS_AES_256_GCM_SHA384', gnutls: 'AES-256-GCM' },
  { name: 'TLS_CHACHA20_POLY1305_SHA256', id: 0x1303, version: 'TLSv1.3', openssl: 'TLS_CHACHA20_POLY1305_SHA256', gnutls: 'CHACHA20-POLY1305' },
  { name: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', id: 0xc02f, version: 'TLSv1.2', openssl: 'ECDHE-RSA-AES128-GCM-SHA256', gnutls: 'AES-128-GCM' },
  { name: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', id: 0xc030, version: 'TLSv1.2', openssl: 'ECDHE-RSA-AES256-GCM-SHA384', gnutls: 'AES-256-GCM' },
  { name: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', id: 0xcca8, version: 'TLSv1.2', openssl: 'ECDHE-RSA-CHACHA20-POLY1305', gnutls: 'CHACHA20-POLY1305' },
];

export function suiteByName(name) {
  const suite = SUITES.find((s) => s.name === name || s.openssl === name);
  if (!suite) throw new Error(`peers: unknown suite ${name}`);
  return suite;
}

const live = new Set();

process.once('exit', () => {
  for (const peer of live) peer.killNow();
});

export async function stopAll() {
  await Promise.all([...live].map((p) => p.stop()));
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class Peer {
  #stdout = [];
  #stdoutLength = 0;
  #text = '';
  #waiters = new Set();

  constructor(child, { name, echo = false, companions = [] }) {
    this.child = child;
    this.name = name;
    this.echo = echo;
    this.companions = companions;
    live.add(this);
    child.stdin?.on('error', () => {});
    child.stdout?.on('data', (chunk) => {
      this.#stdout.push(chunk);
      this.#stdoutLength += chunk.length;
      this.#text += chunk.toString('latin1');
      this.#wake();
    });
    child.stderr?.on('data', (chunk) => {
      this.#text += chunk.toString('latin1');
      this.#wake();
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(this);
        this.#wake();
        resolve({ code, signal });
      });
    });
    this.exitedAlready = false;
    this.exited.then(() => { this.exitedAlready = true; });
  }

  #wake() {
    for (const wake of this.#waiters) wake();
  }

  #waitFor(predicate, timeout, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = predicate();
        if (value !== undefined) {
          done();
          resolve(value);
        } else if (this.exitedAlready) {
          done();
          reject(new Error(`${this.name} exited while waiting for ${what}; output:\n${this.output.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: timed out after ${timeout} ms waiting for ${what}; output:\n${this.output.slice(-2000)}`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  get received() {
    if (this.#stdout.length > 1) this.#stdout = [Buffer.concat(this.#stdout)];
    return this.#stdout[0] ?? Buffer.alloc(0);
  }

  get output() {
    return this.#text;
  }

  send(data) {
    return this.child.stdin.write(data);
  }

  sendAll(data) {
    return new Promise((resolve, reject) => {
      this.child.stdin.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  waitForReceived(n, timeout = 5000) {
    return this.#waitFor(() => (this.#stdoutLength >= n ? this.received : undefined), timeout,
      `${n} bytes (has ${this.#stdoutLength})`);
  }

  waitForOutput(pattern, timeout = 5000) {
    return this.#waitFor(() => {
      const m = this.#text.match(pattern);
      return m ? m[0] : undefined;
    }, timeout, `output ${pattern}`);
  }

  killNow() {
    for (const p of [this.child, ...this.companions]) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      try {
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        try { p.kill('SIGKILL'); } catch { /* already gone */ }
      }
    }
  }

  async stop() {
    this.killNow();
    await Promise.all([this.exited, ...this.companions.map((c) =>
      c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r)))]);
    this.onStop?.();
  }
}

// Every program a peer of `kind` runs is checked before the first spawn, so a missing one fails
// with the package to install rather than as a peer that "exited while waiting".
function launch(command, args, options = {}, kind) {
  for (const program of kind ? PEER_PROGRAMS[kind] : []) assertProgram(program);
  return spawn(command, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,             // own process group: stop() kills helpers it started too
    ...options,
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function isListening(port) {
  return new Promise((resolve) => {
    execFile('ss', ['-Hltn', `sport = :${port}`], (err, stdout) => resolve(!err && /LISTEN/.test(stdout)));
  });
}

export async function waitForListening(port, { timeout = 5000, peer } = {}) {
  const deadline = Date.now() + timeout;
  while (!(await isListening(port))) {
    if (peer?.exitedAlready) throw new Error(`${peer.name} exited before listening:\n${peer.output}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeout} ms`);
    await delay(20);
  }
}

// A server peer once it listens on `port`; stopped if it never does.
async function listeningServer(peer, port) {
  try {
    await waitForListening(port, { peer });
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return { peer, port };
}

// ---- OpenSSL -----------------------------------------------------------------------------------

function opensslVersionArgs({ version, suite }) {
  const args = [];
  if (version === 'TLSv1.3') args.push('-tls1_3');
  else if (version === 'TLSv1.2') args.push('-tls1_2');
  if (suite) {
    const s = SUITES.find((x) => x.name === suite || x.openssl === suite);
    const name = s ? s.openssl : suite;
    if ((s?.version ?? version) === 'TLSv1.3') args.push('-ciphersuites', name);
    else args.push('-cipher', name);
  }
  return args;
}

export async function opensslServer(opts = {}) {
  const port = opts.port ?? await freePort();
  const args = ['s_server', '-accept', `127.0.0.1:${port}`, ...opensslVersionArgs(opts)];
  if (opts.naccept !== 0) args.push('-naccept', String(opts.naccept ?? 1));
  if (opts.noCert) args.push('-nocert');
  else args.push('-cert', FIXTURES.serverCert, '-key', FIXTURES.serverKey);
  if (opts.clientCert) args.push('-Verify', '1', '-CAfile', FIXTURES.ca, '-verify_return_error');
  if (opts.psk) {
    args.push('-psk', opts.psk.key);
    if (opts.psk.identity !== undefined) args.push('-psk_identity', opts.psk.identity);
  }
  if (opts.groups) args.push('-groups', opts.groups);
  if (opts.keylogFile) args.push('-keylogfile', opts.keylogFile);
  if (opts.quiet !== false) args.push('-quiet');
  args.push(...(opts.extraArgs ?? []));
  const peer = new Peer(launch('openssl', args, {}, 'openssl'), { name: `openssl s_server :${port}` });
  return listeningServer(peer, port);
}

export async function opensslClient(opts) {
  const args = ['s_client', '-connect', `127.0.0.1:${opts.port}`, ...opensslVersionArgs(opts)];
  if (!opts.noCert) {
    args.push('-servername', 'localhost', '-CAfile', FIXTURES.ca, '-verify_return_error',
      '-verify_hostname', 'localhost');
  }
  if (opts.clientCert) args.push('-cert', FIXTURES.clientCert, '-key', FIXTURES.clientKey);
  if (opts.psk) {
    args.push('-psk', opts.psk.key);
    if (opts.psk.identity !== undefined) args.push('-psk_identity', opts.psk.identity);
  }
  if (opts.groups) args.push('-groups', opts.groups);
  if (opts.maxFragLen) args.push('-maxfraglen', String(opts.maxFragLen));
  if (opts.sessionOut) args.push('-sess_out', opts.sessionOut);
  if (opts.sessionIn) args.push('-sess_in', opts.sessionIn);
  if (opts.keylogFile) args.push('-keylogfile', opts.keylogFile);
  if (opts.quiet !== false) args.push('-quiet');
  args.push(...(opts.extraArgs ?? []));
  return { peer: new Peer(launch('openssl', args, {}, 'openssl'), { name: 's_client' }) };
}

// ---- GnuTLS ------------------------------------------------------------------------------------

function gnutlsPriority({ version, suite, priority: given }) {
  if (given) return given;
  let priority = 'NORMAL';
  if (version === 'TLSv1.3') priority += ':-VERS-ALL:+VERS-TLS1.3';
  else if (version === 'TLSv1.2') priority += ':-VERS-ALL:+VERS-TLS1.2';
  if (suite) {
    const s = suiteByName(suite);
    priority += `:-CIPHER-ALL:+${s.gnutls}`;
    if (s.version === 'TLSv1.2') priority += ':-KX-ALL:+ECDHE-RSA';
  }
  return priority;
}

function gnutlsEnv(opts) {
  return opts.keylogFile ? { ...process.env, SSLKEYLOGFILE: opts.keylogFile } : process.env;
}

// gnutls-serv listens on every address, so it runs in a private network namespace; a socat in
// there forwards a Unix socket to it, and a socat here (bound to 127.0.0.1) forwards TCP to that
// Unix socket. Bytes pass through unchanged; the peer's TCP endpoint is socat's.
export async function gnutlsServer(opts = {}) {
  for (const program of PEER_PROGRAMS.gnutls) assertProgram(program);   // before the temp dir
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-gnutls-'));
  const sock = path.join(dir, 'serv.sock');
  const innerPort = 5556;
  const serv = ['gnutls-serv', '--echo', '-p', String(innerPort), '--priority', `'${gnutlsPriority(opts)}'`];
  if (opts.psk) {
    const file = path.join(dir, 'psk.passwd');
    fs.writeFileSync(file, `${opts.psk.identity ?? ''}:${opts.psk.key}\n`);
    serv.push('--pskpasswd', file);
  }
  if (!opts.noCert) serv.push('--x509certfile', FIXTURES.serverCert, '--x509keyfile', FIXTURES.serverKey);
  if (opts.clientCert) serv.push('--require-client-cert', '--verify-client-cert', '--x509cafile', FIXTURES.ca);
  serv.push(...(opts.extraArgs ?? []));
  const script = [
    'set -e',
    'ip link set lo up',
    `${serv.join(' ')} >/dev/null 2>&1 &`,
    `while ! ss -Hltn 'sport = :${innerPort}' | grep -q LISTEN; do sleep 0.02; done`,
    `exec socat UNIX-LISTEN:${sock},fork TCP:127.0.0.1:${innerPort}`,
  ].join('\n');
  const inner = launch('unshare', ['-n', 'sh', '-c', script], { env: gnutlsEnv(opts) }, 'gnutls');
  const innerPeer = new Peer(inner, { name: 'gnutls-serv (netns)' });
  const deadline = Date.now() + 5000;
  while (!fs.existsSync(sock)) {
    if (innerPeer.exitedAlready || Date.now() > deadline) {
      await innerPeer.stop();
      throw new Error(`gnutls-serv did not start:\n${innerPeer.output}`);
    }
    await delay(20);
  }
  const port = opts.port ?? await freePort();
  const outer = launch('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${sock}`]);
  live.delete(innerPeer);
  const peer = new Peer(outer, { name: `gnutls-serv :${port}`, echo: true, companions: [inner] });
  peer.onStop = () => fs.rmSync(dir, { recursive: true, force: true });
  return listeningServer(peer, port);
}

export async function gnutlsClient(opts) {
  const args = ['--logfile=/dev/null', '-p', String(opts.port), '--priority', gnutlsPriority(opts)];
  if (opts.noCert) args.push('--insecure');
  else args.push('--x509cafile', FIXTURES.ca, '--verify-hostname', 'localhost', '--sni-hostname', 'localhost');
  if (opts.clientCert) args.push('--x509certfile', FIXTURES.clientCert, '--x509keyfile', FIXTURES.clientKey);
  if (opts.psk) args.push('--pskusername', opts.psk.identity ?? '', '--pskkey', opts.psk.key);
  if (opts.maxFragLen) args.push('--recordsize', String(opts.maxFragLen));
  args.push(...(opts.extraArgs ?? []), '127.0.0.1');
  // gnutls-cli writes what it receives to stdout one byte per write(2) (about 5 s per MiB into a
  // Node pipe); a cat in between takes those cheaply and hands Node large reads.
  const command = `exec gnutls-cli ${args.map(shellQuote).join(' ')} | exec cat`;
  return { peer: new Peer(launch('sh', ['-c', command], { env: gnutlsEnv(opts) }, 'gnutls'), { name: 'gnutls-cli' }) };
}

function shellQuote(arg) {
  return `'${String(arg).replace(/'/g, "'\\''")}'`;
}

// ---- Node --------------------------------------------------------------------------------------

const nodePeerScript = path.join(here, 'node-peer.mjs');

function nodePeerArgs(role, opts) {
  const suiteOpenssl = opts.suite ? suiteByName(opts.suite).openssl : undefined;
  return [nodePeerScript, JSON.stringify({ role, ...opts, suiteOpenssl })];
}

export async function nodeServer(opts = {}) {
  const child = launch(process.execPath, nodePeerArgs('server', opts));
  const peer = new Peer(child, { name: 'node server' });
  let port;
  try {
    port = Number((await peer.waitForOutput(/LISTENING \d+/, 5000)).split(' ')[1]);
  } catch (err) {
    await peer.stop();
    throw err;
  }
  peer.name = `node server :${port}`;
  return { peer, port };
}

export async function nodeClient(opts) {
  const child = launch(process.execPath, nodePeerArgs('client', opts));
  return { peer: new Peer(child, { name: 'node client' }) };
}

export function startServer(kind, opts) {
  switch (kind) {
    case 'openssl': return opensslServer(opts);
    case 'gnutls': return gnutlsServer(opts);
    case 'node': return nodeServer(opts);
    default: throw new Error(`peers: unknown kind ${kind}`);
  }
}

export function startClient(kind, opts) {
  switch (kind) {
    case 'openssl': return opensslClient(opts);
    case 'gnutls': return gnutlsClient(opts);
    case 'node': return nodeClient(opts);
    default: throw new Error(`peers: unknown kind ${kind}`);
  }
}
