// What every tls-splice command shares: address parsing, exit codes and messages (bad flags 2 with
// a usage line, an unreadable certificate 1 naming the file), --help, and the PROXY protocol
// header the terminator writes (the bytes here; HAProxy parses them in cli-terminate).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { proxyProtocolHeader } from '../esm/index.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { runCli, startCli, stopAllClis } from './helpers/cli.mjs';

const require = createRequire(import.meta.url);
const { parseAddr, formatAddr, parseMappings, parseSeconds } = require('../dist/cli/common.js');
after(stopAllClis);

test('parseAddr: HOST:PORT and [IPv6]:PORT; anything else is a usage error', () => {
  assert.deepEqual(parseAddr('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  assert.deepEqual(parseAddr('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(parseAddr('example.test:0'), { host: 'example.test', port: 0 });
  for (const bad of ['8443', ':8443', '::1:443', '[::1]', 'host:', 'host:65536', 'host:-1',
    'host:80x']) {
    assert.throws(() => parseAddr(bad, '--listen'), (err) => {
      assert.equal(err.code, 'ERR_TLS_SPLICE_USAGE', bad);
      assert.match(err.message, /^--listen/);
      return true;
    });
  }
  assert.equal(formatAddr('::1', 443), '[::1]:443');
  assert.equal(formatAddr('127.0.0.1', 80), '127.0.0.1:80');
  assert.deepEqual(parseMappings(['h2=127.0.0.1:1', 'http/1.1=[::1]:2'], '--alpn'),
    [['h2', { host: '127.0.0.1', port: 1 }], ['http/1.1', { host: '::1', port: 2 }]]);
  assert.throws(() => parseMappings(['=127.0.0.1:1'], '--sni'), { code: 'ERR_TLS_SPLICE_USAGE' });
  assert.equal(parseSeconds('0.5', '--drain-timeout', 1), 500);
  assert.equal(parseSeconds(undefined, '--drain-timeout', 1234), 1234);
  assert.throws(() => parseSeconds('-1', '--drain-timeout', 1), { code: 'ERR_TLS_SPLICE_USAGE' });
});

test('proxyProtocolHeader v1: the text line; mixed or missing families are UNKNOWN', () => {
  const v1 = (source, destination) => proxyProtocolHeader('v1', { source, destination })
    .toString('latin1');
  assert.equal(v1({ address: '192.0.2.1', port: 56324 }, { address: '198.51.100.7', port: 443 }),
    'PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n');
  assert.equal(v1({ address: '::ffff:192.0.2.1', port: 1 }, { address: '198.51.100.7', port: 2 }),
    'PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n');
  assert.equal(v1({ address: '2001:db8::1', port: 1 }, { address: '::1', port: 2 }),
    'PROXY TCP6 2001:db8::1 ::1 1 2\r\n');
  assert.equal(v1({ address: '2001:db8::1', port: 1 }, { address: '192.0.2.1', port: 2 }),
    'PROXY UNKNOWN\r\n');
  assert.equal(v1(undefined, undefined), 'PROXY UNKNOWN\r\n');
});

test('proxyProtocolHeader v2: signature, family, addresses, ports and TLVs byte for byte', () => {
  const sig = '0d0a0d0a000d0a515549540a';
  const v4 = proxyProtocolHeader(2, { source: { address: '192.0.2.1', port: 0x1234 },
    destination: { address: '198.51.100.7', port: 443 } });
  assert.equal(v4.toString('hex'), `${sig}2111000c` + 'c0000201' + 'c6336407' + '1234' + '01bb');
  const v6 = proxyProtocolHeader('v2', {
    source: { address: '2001:db8::2:1', port: 1 }, destination: { address: '::ffff:10.0.0.1', port: 2 },
    alpn: 'h2', authority: 'a.test',
  });
  assert.equal(v6.toString('hex'), `${sig}2121${(36 + 5 + 9).toString(16).padStart(4, '0')}` +
    '20010db8000000000000000000020001' + '00000000000000000000ffff0a000001' + '0001' + '0002' +
    '010002' + Buffer.from('h2').toString('hex') + '020006' + Buffer.from('a.test').toString('hex'));
  const unspec = proxyProtocolHeader(2, { source: { address: '::1', port: 1 },
    destination: { address: '127.0.0.1', port: 2 } });
  assert.equal(unspec.toString('hex'), `${sig}21000000`);
  assert.throws(() => proxyProtocolHeader(3, {}), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => proxyProtocolHeader(1, { source: { address: '1.2.3.4', port: 70000 } }),
    { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
});

test('tls-splice --help lists the commands; <command> --help shows its usage; both exit 0',
  async () => {
    const global = await runCli(['--help']);
    assert.equal(global.code, 0);
    for (const name of ['terminate', 'originate']) assert.match(global.stdout, new RegExp(`^  ${name} `, 'm'));
    for (const name of ['terminate', 'originate']) {
      const help = await runCli([name, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^Usage: tls-splice ${name} --listen ADDR`));
      assert.match(help.stdout, /--drain-timeout/);
    }
  });

test('bad command lines exit 2 with the message and a usage line', async () => {
  const cert = ['--cert', FIXTURES.serverCert, '--key', FIXTURES.serverKey];
  for (const [args, message] of [
    [['terminate', '--listen', '127.0.0.1:0', ...cert, '--to', '127.0.0.1:1', '--bogus'],
      /Unknown option '--bogus'/],
    [['terminate', ...cert, '--to', '127.0.0.1:1'], /missing --listen/],
    [['terminate', '--listen', '127.0.0.1:0', ...cert], /no backend/],
    [['terminate', '--listen', 'localhost', ...cert, '--to', '127.0.0.1:1'],
      /--listen: "localhost" is not HOST:PORT/],
    [['terminate', '--listen', '127.0.0.1:0', ...cert, '--to', '127.0.0.1:1',
      '--proxy-protocol', 'v3'], /--proxy-protocol/],
    [['terminate', '--listen', '127.0.0.1:0', ...cert, '--to', '127.0.0.1:1', '--workers', '0'],
      /--workers/],
    [['originate', '--listen', '127.0.0.1:0', '--connect', '127.0.0.1:1', '--insecure',
      '--ca', FIXTURES.ca], /contradict/],
    [['originate', '--listen', '127.0.0.1:0', '--connect', '127.0.0.1:1', '--log', 'xml'],
      /--log/],
    [['no-such-command'], /unknown command/],
  ]) {
    const { code, stderr } = await runCli(args);
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, message);
    if (args[0] !== 'no-such-command') assert.match(stderr, new RegExp(`Usage: tls-splice ${args[0]}`));
  }
});

test('an unreadable or unusable certificate exits 1 with a message naming the file', async () => {
  const missing = path.join(os.tmpdir(), 'tls-splice-no-such-cert.pem');
  const gone = await runCli(['terminate', '--listen', '127.0.0.1:0', '--cert', missing,
    '--key', FIXTURES.serverKey, '--to', '127.0.0.1:1']);
  assert.equal(gone.code, 1);
  assert.ok(gone.stderr.includes(missing), gone.stderr);
  assert.match(gone.stderr, /ENOENT/);
  const ca = await runCli(['originate', '--listen', '127.0.0.1:0', '--connect', '127.0.0.1:1',
    '--ca', missing]);
  assert.equal(ca.code, 1);
  assert.ok(ca.stderr.includes(missing), ca.stderr);
  // A key that does not belong to the certificate.
  const mismatch = await runCli(['terminate', '--listen', '127.0.0.1:0', '--cert',
    FIXTURES.serverCert, '--key', FIXTURES.clientKey, '--to', '127.0.0.1:1']);
  assert.equal(mismatch.code, 1);
  assert.ok(mismatch.stderr.includes(FIXTURES.clientKey), mismatch.stderr);
  assert.match(mismatch.stderr, /KEY_VALUES_MISMATCH|key/i);
  if (process.getuid?.() !== 0) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-perm-'));
    const key = path.join(dir, 'key.pem');
    fs.copyFileSync(FIXTURES.serverKey, key);
    fs.chmodSync(key, 0);
    const denied = await runCli(['terminate', '--listen', '127.0.0.1:0', '--cert',
      FIXTURES.serverCert, '--key', key, '--to', '127.0.0.1:1']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /EACCES/);
    fs.rmSync(dir, { recursive: true });
  }
});

test('an address in use exits 1 naming it', async () => {
  const busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const addr = `127.0.0.1:${busy.address().port}`;
  try {
    const { code, stderr } = await runCli(['originate', '--listen', addr, '--connect',
      '127.0.0.1:1']);
    assert.equal(code, 1);
    assert.ok(stderr.includes(addr), stderr);
    assert.match(stderr, /EADDRINUSE/);
  } finally {
    busy.close();
  }
});

test('text log: one line per connection end with client, backend, bytes, duration, engine, end',
  async () => {
    const cli = await startCli(['originate', '--listen', '127.0.0.1:0', '--connect',
      '127.0.0.1:1', '--insecure']);
    const socket = net.connect(cli.port, '127.0.0.1');
    socket.on('error', () => {});
    const local = await new Promise((resolve) => socket.on('connect', () => resolve(socket.localPort)));
    const m = await cli.waitForStderr(/^originate: (\S+) -> (\S+) in=(\d+) out=(\d+) ms=(\d+) engine=(\S+) end=(\S+) code=(\S+)/m);
    assert.equal(m[1], `127.0.0.1:${local}`);
    assert.equal(m[2], '127.0.0.1:1');
    assert.equal(m[7], 'failed');
    assert.equal(m[8], 'ECONNREFUSED');
    assert.deepEqual(await cli.stop('SIGINT'), { code: 0, signal: null });
  });
