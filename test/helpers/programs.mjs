// The external programs the tests drive (peers, tools), and what happens when one is missing.
//
// On a fresh machine (`npm install && npm test` with Node only) a test that needs a program that is
// not installed is skipped with a reason that names the Debian package to install. In CI
// (CI=true, set by .ci/run) or with TLS_SPLICE_REQUIRE_PEERS=1 nothing is skipped for that reason:
// the test runs and fails where it launches the program, with an error naming the package, so a CI
// run never passes by skipping silently. TLS_SPLICE_REQUIRE_PEERS=0 turns that off even under CI.
//
//   test('...', { skip: requireProgram('gnutls-cli', 'gnutls-bin') }, async () => { ... });
//   test('...', { skip: requirePeer(kind) }, ...)        kind: 'openssl' | 'gnutls' | 'node'
//
// API
//   PACKAGES                          program -> Debian package that installs it
//   PEER_PROGRAMS                     peers.mjs kind -> the programs its server and client run
//   peersRequired() -> boolean        CI=true or TLS_SPLICE_REQUIRE_PEERS=1 (and not =0)
//   findProgram(name) -> path | null  the executable `name` on PATH, as spawn() would find it
//   requireProgram(name, pkg = PACKAGES[name]) -> false | string
//                                     false: run the test; a string: the skip reason
//   requirePrograms(...names) -> false | string   the reason for the first missing one
//   requirePeer(kind) -> false | string            requirePrograms(...PEER_PROGRAMS[kind])
//   assertProgram(name)               throws ProgramMissingError (code ERR_TEST_PROGRAM_MISSING)
//                                     naming the package when `name` is not on PATH; peers.mjs
//                                     calls it before every launch
//   missingPrograms(names = Object.keys(PACKAGES)) -> [{ program, pkg }]
//   pathWithout(names) -> { dir, PATH, cleanup() }
//                                     a directory of symlinks to every executable on PATH except
//                                     `names`: a PATH on which those programs are missing
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const PACKAGES = Object.freeze({
  openssl: 'openssl',
  'gnutls-cli': 'gnutls-bin',
  'gnutls-serv': 'gnutls-bin',
  socat: 'socat',
  iperf3: 'iperf3',
  ip: 'iproute2',
  ss: 'iproute2',
  ping: 'iputils-ping',
  unshare: 'util-linux',
  python3: 'python3',
  curl: 'curl',
  h2load: 'nghttp2-client',
  wrk: 'wrk',
  haproxy: 'haproxy',
  chromium: 'chromium',
  clang: 'clang',
  make: 'make',
});

// gnutls-serv runs in a private network namespace (unshare -n, ip link set lo up) behind two
// socats, and every server peer is awaited with `ss`.
export const PEER_PROGRAMS = Object.freeze({
  openssl: ['openssl', 'ss'],
  gnutls: ['gnutls-cli', 'gnutls-serv', 'socat', 'unshare', 'ip', 'ss'],
  node: [],
});

export function peersRequired() {
  const flag = process.env.TLS_SPLICE_REQUIRE_PEERS;
  if (flag === '0') return false;
  if (flag === '1') return true;
  return process.env.CI === 'true' || process.env.CI === '1';
}

export function findProgram(name) {
  if (name.includes('/')) return isExecutable(name) ? name : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function packageOf(name, pkg) {
  const p = pkg ?? PACKAGES[name];
  if (!p) throw new Error(`programs.mjs: no Debian package known for ${name}; add it to PACKAGES`);
  return p;
}

function missingMessage(name, pkg) {
  return `${name} is not installed: apt-get install ${pkg}`;
}

export function requireProgram(name, pkg) {
  const p = packageOf(name, pkg);
  if (findProgram(name)) return false;
  if (peersRequired()) return false;   // run it: the launch fails with assertProgram's error
  return `${missingMessage(name, p)} (skipped; CI=true or TLS_SPLICE_REQUIRE_PEERS=1 makes this a failure)`;
}

export function requirePrograms(...names) {
  for (const name of names) {
    const reason = requireProgram(name);
    if (reason) return reason;
  }
  return false;
}

export function requirePeer(kind) {
  const programs = PEER_PROGRAMS[kind];
  if (!programs) throw new Error(`programs.mjs: unknown peer kind ${kind}`);
  return requirePrograms(...programs);
}

export class ProgramMissingError extends Error {
  constructor(name, pkg) {
    super(`${missingMessage(name, pkg)} (this test needs it${peersRequired()
      ? '; CI=true or TLS_SPLICE_REQUIRE_PEERS=1 fails instead of skipping' : ''})`);
    this.name = 'ProgramMissingError';
    this.code = 'ERR_TEST_PROGRAM_MISSING';
    this.program = name;
    this.pkg = pkg;
  }
}

export function assertProgram(name, pkg) {
  const p = packageOf(name, pkg);
  if (!findProgram(name)) throw new ProgramMissingError(name, p);
}

export function missingPrograms(names = Object.keys(PACKAGES)) {
  return names.filter((name) => !findProgram(name)).map((program) => ({ program, pkg: PACKAGES[program] }));
}

export function pathWithout(names) {
  const hidden = new Set(names);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-path-'));
  for (const from of (process.env.PATH ?? '').split(path.delimiter)) {
    let entries;
    try {
      entries = fs.readdirSync(from);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (hidden.has(entry)) continue;
      const link = path.join(dir, entry);
      if (fs.existsSync(link)) continue;       // the first one on PATH wins, as for spawn()
      const target = path.join(from, entry);
      if (!isExecutable(target)) continue;
      fs.symlinkSync(target, link);
    }
  }
  return {
    dir,
    PATH: dir,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
