// Throwaway PKIs for terminate's certificate tests, made with the openssl CLI at test time: CAs,
// server certificates with chosen subjectAltNames, and real OCSP responses (`openssl ocsp`).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh directory under the system's temp dir, readable by everyone (for --user tests). */
export function pkiDir(prefix = 'tls-splice-pki-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** A self-signed CA (EC P-256): { cert, key } file paths. */
export function makeCa(dir, name) {
  const cert = path.join(dir, `${name}-ca.pem`);
  const key = path.join(dir, `${name}-ca.key`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-sha256', '-days', '2', '-subj', `/CN=${name} test CA`, '-keyout', key, '-out', cert,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], dir);
  return { cert, key, name };
}

/**
 * A server certificate for `dnsNames` signed by `ca`: { cert, key, serial, subject } (cert is
 * the leaf alone; key is its own file).
 */
export function issue(dir, ca, name, dnsNames) {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.keyfile`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' +
    `extendedKeyUsage=serverAuth\nsubjectAltName=${dnsNames.map((n) => `DNS:${n}`).join(',')}\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256',
    '-subj', `/CN=${name}`, '-keyout', key, '-out', csr], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial',
    `0x${Buffer.from(name).toString('hex').slice(0, 16)}`, '-days', '2', '-sha256',
    '-extfile', ext, '-out', cert], dir);
  fs.chmodSync(key, 0o644);
  return { cert, key, name };
}

/** `site`'s certificate and key concatenated in one PEM file at `file`. */
export function combined(site, file) {
  fs.writeFileSync(file, Buffer.concat([fs.readFileSync(site.cert), fs.readFileSync(site.key)]));
  return file;
}

/** A DER OCSP response saying `site` is good, signed by its CA (openssl ocsp as a responder). */
export function ocspResponse(dir, ca, site, out) {
  const index = path.join(dir, `${site.name}-index.txt`);
  const serial = execFileSync('openssl', ['x509', '-in', site.cert, '-noout', '-serial'],
    { encoding: 'utf8' }).trim().replace(/^serial=/, '');
  const expiry = new Date(Date.now() + 86_400_000).toISOString()
    .replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  fs.writeFileSync(index, `V\t${expiry}\t\t${serial}\tunknown\t/CN=${site.name}\n`);
  const request = path.join(dir, `${site.name}-ocsp.req`);
  openssl(['ocsp', '-issuer', ca.cert, '-cert', site.cert, '-reqout', request, '-no_nonce'], dir);
  openssl(['ocsp', '-index', index, '-rsigner', ca.cert, '-rkey', ca.key, '-CA', ca.cert,
    '-reqin', request, '-respout', out, '-ndays', '1'], dir);
  return out;
}
