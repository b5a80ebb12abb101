#!/usr/bin/env node
// The `commands` scenario's reference programs: what the `tls-splice` commands do, written the
// way a user would with a plain Node pipe (tls.createServer / tls.connect / net.connect +
// pipe()), no tls-splice. Also the scenario's HTTPS origin. One process per program:
//
//   node bench/plain-commands.mjs '{"mode":"terminate","port":P,"to":B,"cert":F,"key":F,"statsPort":S}'
//   node bench/plain-commands.mjs '{"mode":"proxy","port":P,"cert":F,"key":F}'            CONNECT only
//   node bench/plain-commands.mjs '{"mode":"relay","agentsPort":A,"port":P,"cert":F,"key":F,"ca":F}'
//   node bench/plain-commands.mjs '{"mode":"agent","relayPort":A,"to":B,"cert":F,"key":F,"ca":F,"pool":4}'
//   node bench/plain-commands.mjs '{"mode":"origin","port":P,"cert":F,"key":F,"bytes":N}'  HTTPS, N zero bytes
//
// Prints "listening" (the agent: "connected") once ready, like the commands.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

const spec = JSON.parse(process.argv[2]);
const HOST = '127.0.0.1';
const read = (f) => fs.readFileSync(f);

// Both ways, each side's end carried to the other (half-close), errors close both.
function join(a, b) {
  a.setNoDelay?.(true);
  b.setNoDelay?.(true);
  const destroy = () => { a.destroy(); b.destroy(); };
  a.on('error', destroy);
  b.on('error', destroy);
  a.pipe(b);
  b.pipe(a);
}

// Reads up to the first `sep` and hands (head, rest) to fn; gives up after 64 KiB.
function readHead(sock, sep, fn) {
  let buf = Buffer.alloc(0);
  const onData = (d) => {
    buf = Buffer.concat([buf, d]);
    const at = buf.indexOf(sep);
    if (at < 0) {
      if (buf.length > 65536) sock.destroy();
      return;
    }
    sock.removeListener('data', onData);
    sock.pause();
    fn(buf.subarray(0, at).toString('latin1'), buf.subarray(at + sep.length));
  };
  sock.on('data', onData);
  sock.on('error', () => sock.destroy());
}

if (spec.mode === 'terminate') {
  // Handshakes by kind, for the bench's share of sessions resumed: GET on statsPort (if given)
  // answers {"full":N,"resumed":N}.
  const handshakes = { full: 0, resumed: 0 };
  const server = tls.createServer({ cert: read(spec.cert), key: read(spec.key) }, (client) => {
    handshakes[client.isSessionReused() ? 'resumed' : 'full'] += 1;
    const backend = net.connect(spec.to, HOST);
    join(client, backend);
  });
  server.on('tlsClientError', () => {});
  if (spec.statsPort) http.createServer((req, res) => res.end(JSON.stringify(handshakes))).listen(spec.statsPort, HOST);
  server.listen(spec.port, HOST, () => console.log('listening'));
} else if (spec.mode === 'proxy') {
  const server = tls.createServer({ cert: read(spec.cert), key: read(spec.key), ALPNProtocols: ['http/1.1'] }, (client) => {
    readHead(client, '\r\n\r\n', (head, rest) => {
      const m = /^CONNECT ([^\s:]+):(\d+) HTTP\/1\.[01]$/.exec(head.split('\r\n')[0]);
      if (!m) {
        client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const up = net.connect(Number(m[2]), m[1], () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (rest.length) up.write(rest);
        join(client, up);
        client.resume();
      });
      up.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n'));
    });
  });
  server.on('tlsClientError', () => {});
  server.listen(spec.port, HOST, () => console.log('listening'));
} else if (spec.mode === 'relay') {
  // Agents keep idle mTLS links; a public client takes one, announced with one JSON line.
  const idle = [];
  const waiting = [];
  const hand = (link, client) => {
    link.write(`${JSON.stringify({ client: `${client.remoteAddress}:${client.remotePort}` })}\n`);
    join(client, link);
  };
  const agents = tls.createServer({
    cert: read(spec.cert), key: read(spec.key), ca: read(spec.ca), requestCert: true, rejectUnauthorized: true,
  }, (link) => {
    link.on('error', () => {});
    link.once('close', () => { const i = idle.indexOf(link); if (i >= 0) idle.splice(i, 1); });
    if (waiting.length) hand(link, waiting.shift());
    else idle.push(link);
  });
  agents.on('tlsClientError', () => {});
  const pub = net.createServer((client) => {
    client.on('error', () => {});
    const link = idle.shift();
    if (link) hand(link, client);
    else waiting.push(client);
  });
  agents.listen(spec.agentsPort, HOST, () => pub.listen(spec.port, HOST, () => console.log('listening')));
} else if (spec.mode === 'agent') {
  let announced = false;
  const open = () => {
    const link = tls.connect({
      host: HOST, port: spec.relayPort, servername: 'localhost', cert: read(spec.cert), key: read(spec.key),
      ca: read(spec.ca),
    }, () => {
      if (!announced) { announced = true; console.log('connected'); }
    });
    link.on('error', () => {});
    let used = false;
    link.once('close', () => { if (!used) setTimeout(open, 100); });
    readHead(link, '\n', (line, rest) => {
      used = true;
      open();                       // keep the pool full
      const backend = net.connect(spec.to, HOST, () => {
        if (rest.length) backend.write(rest);
        join(link, backend);
        link.resume();
      });
      backend.on('error', () => link.destroy());
    });
  };
  for (let i = 0; i < (spec.pool ?? 4); i++) open();
} else if (spec.mode === 'origin') {
  const chunk = Buffer.alloc(1 << 20);
  const server = https.createServer({ cert: read(spec.cert), key: read(spec.key) }, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(spec.bytes) });
    let left = spec.bytes;
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', more); return; }
      }
      res.end();
    };
    more();
  });
  server.listen(spec.port, HOST, () => console.log('listening'));
} else {
  throw new Error(`unknown mode ${spec.mode}`);
}
