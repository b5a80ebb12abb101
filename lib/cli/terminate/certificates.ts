// terminate's server certificates: which files (--cert/--key/--ocsp in order, --cert-dir), how
// they load into one SecureContext each, and which one a client's SNI picks (its
// subjectAltName DNS names, RFC 6125 wildcards). The whole set is loaded again on SIGHUP; a set
// that fails to load leaves the previous one in place.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';

import { ArgToken, CliError, UsageError, readPem } from '../common';

/** One certificate's files: a chain and its key (possibly the same file), and an OCSP response. */
export interface CertSource {
  cert: string;
  key: string;
  ocsp?: string;
}

export interface CertEntry {
  source: CertSource;
  /** subjectAltName DNS names (lower case), or the subject CN if there are none. */
  names: string[];
  context: tls.SecureContext;
  /** The leaf certificate (DER), to find the entry an 'OCSPRequest' is about. */
  leaf: Buffer;
  ocsp?: Buffer;
  pem: { cert: Buffer; key: Buffer };
}

/** Every certificate; the first is the default (no SNI, or a name none of them holds). */
export type CertSet = CertEntry[];

/**
 * --cert/--key/--ocsp pairs in command-line order: each --key and --ocsp belongs to the --cert
 * before it. parseArgs' values lose that order, its tokens keep it.
 */
export function pairsFromTokens(tokens: ArgToken[]): CertSource[] {
  const pairs: Partial<CertSource>[] = [];
  for (const token of tokens) {
    if (token.kind !== 'option' || token.value === undefined) continue;
    const last = pairs[pairs.length - 1];
    if (token.name === 'cert') {
      pairs.push({ cert: token.value });
    } else if (token.name === 'key' || token.name === 'ocsp') {
      const field = token.name;
      if (last === undefined || last[field] !== undefined) {
        throw new UsageError(`--${field} ${token.value}: give it after the --cert it belongs to`);
      }
      last[field] = token.value;
    }
  }
  for (const pair of pairs) {
    if (pair.key === undefined) throw new UsageError(`--cert ${pair.cert}: no --key after it`);
  }
  return pairs as CertSource[];
}

/**
 * --cert-dir: every NAME.pem in name order, with NAME.key as its key if there is one (else the
 * .pem holds the key too) and NAME.ocsp as its OCSP response if there is one.
 */
export function dirSources(dir: string): CertSource[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    throw new CliError((err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_CERT_DIR',
      `cannot read --cert-dir ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const present = new Set(names);
  return names.filter((name) => name.endsWith('.pem')).sort().map((name) => {
    const base = name.slice(0, -'.pem'.length);
    const cert = path.join(dir, name);
    return {
      cert,
      key: present.has(`${base}.key`) ? path.join(dir, `${base}.key`) : cert,
      ocsp: present.has(`${base}.ocsp`) ? path.join(dir, `${base}.ocsp`) : undefined,
    };
  });
}

export interface ContextOptions {
  ca?: Buffer;
  /** The same in every context and process, so that tickets from one resume on another. */
  sessionIdContext: string;
}

/** Loads every source; throws a CliError naming the file at the first one that is unusable. */
export function loadCertSet(sources: CertSource[], options: ContextOptions): CertSet {
  if (sources.length === 0) {
    throw new CliError('ERR_TLS_SPLICE_NO_CERTIFICATE',
      'no certificate: give --cert FILE --key FILE, or a --cert-dir holding NAME.pem files');
  }
  return sources.map((source) => loadEntry(source, options));
}

function loadEntry(source: CertSource, options: ContextOptions): CertEntry {
  const cert = readPem(source.cert, 'certificate');
  const key = source.key === source.cert ? cert : readPem(source.key, 'key');
  const named = source.key === source.cert ? source.cert : `${source.cert}, ${source.key}`;
  let context: tls.SecureContext;
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(cert);
    context = tls.createSecureContext({ cert, key, ca: options.ca,
      sessionIdContext: options.sessionIdContext } as tls.SecureContextOptions);
  } catch (err) {
    throw new CliError((err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_BAD_CERTIFICATE',
      `cannot use ${named}: ${(err as Error).message} (is it PEM, a chain with its key, and ` +
      'does the key belong to the certificate?)', { cause: err });
  }
  let ocsp: Buffer | undefined;
  if (source.ocsp !== undefined) {
    try {
      ocsp = fs.readFileSync(source.ocsp);
    } catch (err) {
      throw new CliError((err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_OCSP',
        `cannot read OCSP response ${source.ocsp}: ${(err as Error).message}`, { cause: err });
    }
  }
  return { source, names: dnsNames(x509), context, leaf: x509.raw, ocsp, pem: { cert, key } };
}

/** The certificate's DNS names: subjectAltName DNS entries, or the CN when it has none. */
export function dnsNames(x509: crypto.X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san !== undefined) {
    const names = san.split(/,\s*/).filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4).toLowerCase());
    if (names.length > 0) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
  return cn === null ? [] : [cn[1].toLowerCase()];
}

/** RFC 6125 6.4.3: a wildcard is the whole left-most label and stands for exactly one label. */
export function nameMatches(pattern: string, servername: string): boolean {
  const name = servername.toLowerCase().replace(/\.$/, '');
  if (pattern.startsWith('*.')) {
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
  }
  return pattern === name;
}

/** The entry for a client's SNI: an exact name first, then a wildcard, then the default. */
export function chooseCert(set: CertSet, servername: string | undefined): CertEntry {
  if (servername) {
    const exact = set.find((e) => e.names.some((n) => !n.startsWith('*.') &&
      nameMatches(n, servername)));
    if (exact !== undefined) return exact;
    const wild = set.find((e) => e.names.some((n) => nameMatches(n, servername)));
    if (wild !== undefined) return wild;
  }
  return set[0];
}

/** The entry whose leaf certificate is `der` (what Node's 'OCSPRequest' hands over). */
export function entryOfLeaf(set: CertSet, der: Buffer): CertEntry | undefined {
  return set.find((e) => e.leaf.equals(der));
}
