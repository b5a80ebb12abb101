// Session resumption through `tls-splice terminate`, measured with OpenSSL's client: a session
// saved by `s_client -sess_out` is offered again with `-sess_in`. With --workers 2 every
// reconnection resumes (one keyring for all workers), also after SIGHUP; a client that always
// offers its latest session (as wrk and browsers do) resumes every time in TLS 1.3 (a resumed
// handshake issues a new ticket); two terminate processes given one --ticket-keys file resume
// each other's sessions; tls_splice_handshakes_total counts them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FIXTURES } from './helpers/peers.mjs';
import { runCli, startCli, stopAllClis } from './helpers/cli.mjs';

const run = promisify(execFile);
const CERT_ARGS = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-resume-'));
const closers = [() => fs.rmSync(dir, { recursive: true, force: true })];
after(async () => {
  stopAllClis();
  for (const close of closers.reverse()) await close();
});

// A backend that says hello and closes: s_client -ign_eof then exits once the server has ended,
// after it has read the TLS 1.3 tickets that follow the handshake.
async function hello() {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.end('hello\n');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return `127.0.0.1:${server.address().port}`;
}

const VERSIONS = { 'TLSv1.2': '-tls1_2', 'TLSv1.3': '-tls1_3' };

/** One s_client connection: 'New' or 'Reused' (and the session saved with sessOut). */
async function connect(port, version, { sessIn, sessOut } = {}) {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, VERSIONS[version], '-ign_eof'];
  if (sessIn) args.push('-sess_in', sessIn);
  if (sessOut) args.push('-sess_out', sessOut);
  const { stdout } = await run('sh', ['-c', `openssl ${args.join(' ')} </dev/null 2>/dev/null`],
    { timeout: 20000 });
  const m = /^(New|Reused), (TLSv1\.[23])/m.exec(stdout);
  assert.ok(m, `no handshake line in s_client's output:\n${stdout}`);
  assert.equal(m[2], version);
  assert.match(stdout, /^hello$/m);
  return m[1];
}

// `times` connections offering one saved session, at most PARALLEL s_client at once (one
// s_client is some 50 ms of process start and handshake: 100 in a row would be slow).
const PARALLEL = 4;

async function resumedCount(port, version, session, times) {
  const results = [];
  let started = 0;
  const lane = async () => {
    while (started < times) {
      started += 1;
      results.push(await connect(port, version, { sessIn: session }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, times) }, lane));
  assert.equal(results.length, times);
  return results.filter((r) => r === 'Reused').length;
}

const RECONNECTIONS = 100;

for (const version of Object.keys(VERSIONS)) {
  test(`${version}, --workers 2: ${RECONNECTIONS} reconnections with one saved session all resume, ` +
    `and ${RECONNECTIONS} more after SIGHUP; handshakes_total counts them`, { timeout: 180000 }, async () => {
    const backend = await hello();
    const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend, '--workers', '2', '--metrics', '127.0.0.1:0'],
    { ready: /^listening / });
    const session = path.join(dir, `workers-${version}.sess`);
    assert.equal(await connect(cli.port, version, { sessOut: session }), 'New');
    assert.equal(await resumedCount(cli.port, version, session, RECONNECTIONS), RECONNECTIONS);
    cli.signal('SIGHUP');
    await cli.waitForStderr(/reloaded certificates[^]*reloaded certificates/, 20000);
    assert.equal(await resumedCount(cli.port, version, session, RECONNECTIONS), RECONNECTIONS);
    const metricsAddr = cli.lines.map((l) => /^metrics (\S+)$/.exec(l)).find(Boolean)[1];
    const text = await (await fetch(`http://${metricsAddr}/metrics`)).text();
    assert.match(text, new RegExp(`tls_splice_handshakes_total\\{resumed="true"[^}]*\\} ${2 * RECONNECTIONS}\\b`));
    assert.match(text, /tls_splice_handshakes_total\{resumed="false"[^}]*\} 1\b/);
  });
}

test('TLSv1.3: a client offering its latest session each time (like wrk) resumes every time: ' +
  'a resumed handshake issues a fresh ticket', { timeout: 90000 }, async () => {
  const backend = await hello();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend]);
  let previous = path.join(dir, 'chain-0.sess');
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessOut: previous }), 'New');
  for (let i = 1; i <= 10; i++) {
    const next = path.join(dir, `chain-${i}.sess`);
    assert.equal(await connect(cli.port, 'TLSv1.3', { sessIn: previous, sessOut: next }),
      'Reused', `connection ${i} of the chain`);
    previous = next;
  }
});

for (const [format, write] of [
  ['raw 48-byte keys', (file, keys) => fs.writeFileSync(file, Buffer.concat(keys))],
  ['HAProxy base64 lines', (file, keys) => fs.writeFileSync(file, keys.map((k) =>
    // HAProxy lays a key out name, AES, HMAC; Node (and the raw format) name, HMAC, AES.
    Buffer.concat([k.subarray(0, 16), k.subarray(32, 48), k.subarray(16, 32)])
      .toString('base64')).join('\n') + '\n')],
]) {
  test(`--ticket-keys (${format}): two separate terminate processes resume each other's ` +
    'sessions, TLS 1.2 and 1.3; a key only in the second place still decrypts',
  { timeout: 120000 }, async () => {
    const backend = await hello();
    const [current, older] = [crypto.randomBytes(48), crypto.randomBytes(48)];
    const both = path.join(dir, `keys-${format.length}-both`);
    write(both, [current, older]);
    const oldOnly = path.join(dir, `keys-${format.length}-old`);
    write(oldOnly, [older]);
    const one = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend, '--ticket-keys', both]);
    const two = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend, '--ticket-keys', both]);
    const retired = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
      '--to', backend, '--ticket-keys', oldOnly]);
    for (const version of Object.keys(VERSIONS)) {
      const fromOne = path.join(dir, `from-one-${format.length}-${version}.sess`);
      assert.equal(await connect(one.port, version, { sessOut: fromOne }), 'New');
      assert.equal(await resumedCount(two.port, version, fromOne, 3), 3);
      // A ticket made under the old key (the only one `retired` has) opens on `one` and `two`.
      const fromRetired = path.join(dir, `from-retired-${format.length}-${version}.sess`);
      assert.equal(await connect(retired.port, version, { sessOut: fromRetired }), 'New');
      assert.equal(await resumedCount(one.port, version, fromRetired, 2), 2);
    }
  });
}

test('--ticket-keys refuses 80-byte HAProxy keys and odd sizes with ERR_TLS_SPLICE_TICKET_KEYS',
  { timeout: 30000 }, async () => {
    const aes256 = path.join(dir, 'keys-80');
    fs.writeFileSync(aes256, `${crypto.randomBytes(80).toString('base64')}\n`);
    const odd = path.join(dir, 'keys-odd');
    fs.writeFileSync(odd, Buffer.concat([crypto.randomBytes(50), Buffer.from([0])]));
    for (const [file, why] of [[aes256, /80-byte/], [odd, /51 bytes/]]) {
      const result = await runCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
        '--to', '127.0.0.1:9', '--ticket-keys', file]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, why);
      assert.match(result.stderr, /ERR_TLS_SPLICE_TICKET_KEYS/);
    }
  });

test('--ticket-rotate with --workers 2: after one rotation the previous key still resumes, ' +
  'after two the session is refused (a full handshake)', { timeout: 120000 }, async () => {
  const backend = await hello();
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend, '--workers', '2', '--ticket-rotate', '3']);
  // Each worker logs the keys it was handed; wait for both workers' n-th rotation.
  const rotated = (n) => cli.waitForStderr(new RegExp(`(ticket keys rotated[^]*){${2 * n}}`),
    30000);
  await rotated(1);
  const session = path.join(dir, 'rotate.sess');
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessOut: session }), 'New');
  await rotated(2);
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessIn: session }), 'Reused');
  await rotated(3);
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessIn: session }), 'New');
});

test('--ticket-keys is re-read on SIGHUP: a prepended key takes over, the old one still ' +
  'decrypts; an unusable file keeps the keys in use and says why', { timeout: 90000 },
async () => {
  const backend = await hello();
  const [oldKey, newKey] = [crypto.randomBytes(48), crypto.randomBytes(48)];
  const file = path.join(dir, 'keys-reload');
  fs.writeFileSync(file, oldKey);
  const cli = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend, '--ticket-keys', file]);
  const underOld = path.join(dir, 'reload-old.sess');
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessOut: underOld }), 'New');
  // Only the new key: a process with it alone cannot open tickets made under the old one.
  const newOnly = path.join(dir, 'keys-new-only');
  fs.writeFileSync(newOnly, newKey);
  const other = await startCli(['terminate', '--listen', '127.0.0.1:0', ...CERT_ARGS,
    '--to', backend, '--ticket-keys', newOnly]);
  assert.equal(await connect(other.port, 'TLSv1.3', { sessIn: underOld }), 'New');

  fs.writeFileSync(file, Buffer.concat([newKey, oldKey]));
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reloaded certificates/, 20000);
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessIn: underOld }), 'Reused');
  // Tickets it issues now are under the new key: `other` opens them.
  const underNew = path.join(dir, 'reload-new.sess');
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessOut: underNew }), 'New');
  assert.equal(await connect(other.port, 'TLSv1.3', { sessIn: underNew }), 'Reused');

  fs.writeFileSync(file, Buffer.alloc(47));
  cli.signal('SIGHUP');
  await cli.waitForStderr(/reload failed[^\n]*47 bytes/, 20000);
  assert.equal(await connect(cli.port, 'TLSv1.3', { sessIn: underOld }), 'Reused');
});
