// `tls-splice terminate --user nobody`: it binds a port below 1024 as root, then the cluster
// primary and every worker run as nobody (read from /proc/PID/status) before `listening`;
// connections still flow, and SIGHUP reloads certificates the user can read (and, for one it
// cannot read, fails, logs why and keeps serving the old one).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { startCli, stopAllClis } from './helpers/cli.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { issue, makeCa, pkiDir } from './helpers/terminate-pki.mjs';

const closers = [];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

const isRoot = process.getuid?.() === 0;

// A port in 600-1000 that nothing listens on now.
async function lowPort() {
  for (let port = 600 + Math.floor(Math.random() * 300); port < 1000; port++) {
    const free = await new Promise((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 600-1000');
}

function ids(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)[1].split(/\s+/)
    .map(Number);
  return { uid: field('Uid'), gid: field('Gid'), groups: /^Groups:\s*(.*)$/m.exec(status)[1]
    .trim(), ppid: field('PPid')[0] };
}

function childrenOf(pid) {
  return fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).filter((name) => {
    try { return ids(name).ppid === pid; } catch { return false; }
  }).map(Number);
}

test('--user nobody --workers 2: binds a port below 1024, then the primary and both workers ' +
  'run as nobody; traffic flows; SIGHUP reloads readable files and keeps the old certificate ' +
  'when the new one is unreadable', { timeout: 90000, skip: isRoot ? false : 'needs root' },
async () => {
  const nobody = { uid: Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' })) };
  const dir = pkiDir();
  closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir, 'priv');
  const first = issue(dir, ca, 'first.test', ['first.test']);
  const cert = path.join(dir, 'site.pem');
  const key = path.join(dir, 'site.key');
  fs.copyFileSync(first.cert, cert);
  fs.copyFileSync(first.key, key);
  fs.chmodSync(cert, 0o644);
  fs.chmodSync(key, 0o644);

  const sockets = new Set();
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    backend.close(() => resolve());
  }));

  const port = await lowPort();
  const cli = await startCli(['terminate', '--listen', `127.0.0.1:${port}`, '--cert', cert,
    '--key', key, '--to', `127.0.0.1:${backend.address().port}`, '--workers', '2',
    '--user', 'nobody']);
  assert.equal(cli.port, port);
  const primary = cli.child.pid;
  const workers = childrenOf(primary);
  assert.equal(workers.length, 2);
  for (const pid of [primary, ...workers]) {
    const id = ids(pid);
    assert.deepEqual(id.uid, [nobody.uid, nobody.uid, nobody.uid, nobody.uid], `uid of ${pid}`);
    assert.deepEqual(id.gid, [nobody.gid, nobody.gid, nobody.gid, nobody.gid], `gid of ${pid}`);
    assert.ok(!id.groups.split(/\s+/).includes('0'), `root's group left in ${pid}`);
  }

  const cnNow = () => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'x.test',
      rejectUnauthorized: false }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.destroy();
      resolve(cn);
    });
    s.once('error', reject);
  });
  // A transfer through the dropped workers, checked both ways.
  const data = prngBytes(21, 512 * 1024);
  const back = await new Promise((resolve, reject) => {
    const chunks = [];
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'first.test',
      ca: fs.readFileSync(ca.cert) }, () => s.end(data));
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => { s.destroy(); resolve(Buffer.concat(chunks)); });
    s.on('error', reject);
  });
  assert.equal(back.length, data.length);
  assert.equal(sha256(back), sha256(data));

  // Readable new files: reloaded in both workers (running as nobody).
  const second = issue(dir, ca, 'second.test', ['second.test']);
  fs.copyFileSync(second.cert, cert);
  fs.copyFileSync(second.key, key);
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reloaded certificates[^]*reloaded certificates/, 20000);
  assert.equal(await cnNow(), 'second.test');

  // An unreadable key: each worker says why and keeps serving second.test.
  const third = issue(dir, ca, 'third.test', ['third.test']);
  fs.copyFileSync(third.cert, cert);
  fs.copyFileSync(third.key, key);
  fs.chmodSync(key, 0o600);
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reload failed[^\n]*EACCES[^]*reload failed[^\n]*EACCES/, 20000);
  assert.equal(await cnNow(), 'second.test');
});

test('--user with an unknown name exits 1 before listening (ERR_TLS_SPLICE_NO_USER); --group ' +
  'without --user is a usage error', { timeout: 30000 }, async () => {
  const { runCli } = await import('./helpers/cli.mjs');
  const base = ['terminate', '--listen', '127.0.0.1:0', '--cert', FIXTURES.serverCert,
    '--key', FIXTURES.serverKey, '--to', '127.0.0.1:9'];
  const unknown = await runCli([...base, '--user', 'no-such-user-tls-splice']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no such user \(ERR_TLS_SPLICE_NO_USER\)/);
  assert.doesNotMatch(unknown.stdout, /listening/);
  const groupOnly = await runCli([...base, '--group', 'nogroup']);
  assert.equal(groupOnly.code, 2);
  assert.match(groupOnly.stderr, /--group needs --user/);
});
