// A local origin for the proxy tests, run as a child process (a heavy peer stays out of the
// process under test): an HTTPS server (the test PKI's localhost / 127.0.0.1 certificate) and a
// plain HTTP server, both on 127.0.0.1 with ephemeral ports.
//
//   node test/helpers/origin-server.mjs   -> prints "origin https=PORT http=PORT" on stdout
//
// Routes (both servers):
//   GET  /bytes/<n>/<seed>  n bytes of PrngStream(seed) (helpers/data.mjs), Content-Length set
//   GET  /page/<marker>     a small HTML page whose body is the marker
//   POST /hash              answers "<length> <sha256>" of the request body
//   anything else           "origin <method> <url> host=<Host>"
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PrngStream } from './data.mjs';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const CHUNK = 1024 * 1024;

function handler(req, res) {
  const bytes = /^\/bytes\/(\d+)\/([\w.-]+)$/.exec(req.url);
  const page = /^\/page\/([\w.-]+)$/.exec(req.url);
  if (req.method === 'GET' && bytes) {
    let left = Number(bytes[1]);
    const prng = new PrngStream(bytes[2]);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(CHUNK, left);
        left -= n;
        if (!res.write(prng.next(n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  } else if (req.method === 'GET' && page) {
    const body = `<!DOCTYPE html><html><head><title>origin</title></head>` +
      `<body><p id="marker">${page[1]}</p></body></html>`;
    res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  } else if (req.method === 'POST' && req.url === '/hash') {
    const hash = crypto.createHash('sha256');
    let length = 0;
    req.on('data', (c) => { hash.update(c); length += c.length; });
    req.on('end', () => res.end(`${length} ${hash.digest('hex')}`));
  } else {
    req.resume();
    res.end(`origin ${req.method} ${req.url} host=${req.headers.host}`);
  }
}

const secure = https.createServer({
  key: fs.readFileSync(path.join(fixtures, 'server-key.pem')),
  cert: fs.readFileSync(path.join(fixtures, 'server.pem')),
}, handler);
const plain = http.createServer(handler);
await Promise.all([secure, plain].map((s) => new Promise((r) => s.listen(0, '127.0.0.1', r))));
process.stdout.write(`origin https=${secure.address().port} http=${plain.address().port}\n`);
process.on('SIGTERM', () => process.exit(0));
