// One table of error codes: the ERR_TLS_SPLICE_* strings the C++ code produces (src-native/), the
// TypeScript `SpliceErrorCode` union (lib/errors.ts), the codes lib/ produces itself, and the
// hints that turn an engine's end code into a message saying what to do (HINTS, in
// lib/error-hints.ts) must agree:
//   - every code native can produce is in the union and has a hint;
//   - every code lib/ and the commands (lib/cli/) produce is in the union;
//   - the union is closed: no `| string` that would let any code through;
//   - every code in the union is produced somewhere (native or lib/), and every hint is for a
//     code that something produces.
// Read from the sources, so a code added on one side only fails here with its name.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CODE = /ERR_TLS_SPLICE_[A-Z0-9_]*[A-Z0-9]/g;

function sourceFiles(dir, extensions) {
  return fs.readdirSync(path.join(ROOT, dir))
    .filter((name) => extensions.some((ext) => name.endsWith(ext)))
    .map((name) => path.join(ROOT, dir, name));
}

// Every source file under dir, its subfolders included (lib/cli/proxy/...).
function sourceTree(dir, extensions) {
  const subdirs = fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })
    .filter((entry) => entry.isDirectory()).map((entry) => path.join(dir, entry.name));
  return [...sourceFiles(dir, extensions), ...subdirs.flatMap((d) => sourceTree(d, extensions))];
}

// C/C++/TypeScript without its comments (strings kept), so a code named in a comment does not
// count as produced.
function withoutComments(text) {
  let out = '';
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

// Codes in string literals: "ERR_TLS_SPLICE_X" in C++, 'ERR_TLS_SPLICE_X' in TypeScript.
function quotedCodes(text, quote) {
  const re = new RegExp(`${quote}(ERR_TLS_SPLICE_[A-Z0-9_]+)${quote}`, 'g');
  return new Set([...withoutComments(text).matchAll(re)].map((m) => m[1]));
}

function nativeCodes() {
  const where = new Map();
  for (const file of sourceFiles('src-native', ['.cc', '.h'])) {
    for (const code of quotedCodes(fs.readFileSync(file, 'utf8'), '"')) {
      if (!where.has(code)) where.set(code, path.relative(ROOT, file));
    }
  }
  return where;
}

// The body of `type SpliceErrorCode = | '...' | ...;`
function unionCodes() {
  const text = withoutComments(fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8'));
  const m = /type\s+SpliceErrorCode\s*=([^;]*);/.exec(text);
  assert.ok(m, 'lib/errors.ts declares type SpliceErrorCode');
  return new Set(m[1].match(CODE) ?? []);
}

// The keys of the `HINTS` object literal, wherever it lives now.
function hints() {
  for (const file of ['error-hints.ts', 'splice.ts', 'errors.ts']) {
    const text = withoutComments(fs.readFileSync(path.join(ROOT, 'lib', file), 'utf8'));
    const m = /\bHINTS\b[^=]*=\s*(?:Object\.freeze\()?\{/.exec(text);
    if (!m) continue;
    let depth = 1;
    let i = m.index + m[0].length;
    const start = i;
    for (; i < text.length && depth > 0; i++) {
      if (text[i] === '{') depth++;
      else if (text[i] === '}') depth--;
      else if (text[i] === "'" || text[i] === '"' || text[i] === '`') {
        const q = text[i];
        for (i++; i < text.length && text[i] !== q; i += text[i] === '\\' ? 2 : 1);
      }
    }
    const body = text.slice(start, i - 1);
    const keys = [...body.matchAll(/(?:^|,)\s*['"]?([A-Z][A-Z0-9_]+)['"]?\s*:/g)].map((k) => k[1]);
    return { file: `lib/${file}`, keys: new Set(keys) };
  }
  assert.fail('no HINTS object in lib/error-hints.ts, lib/splice.ts or lib/errors.ts');
}

// Codes lib/ and lib/cli/ produce: literals outside the union's declaration and the hints table.
function libCodes() {
  const where = new Map();
  const files = sourceTree('lib', ['.ts']);
  for (const file of files) {
    let text = withoutComments(fs.readFileSync(file, 'utf8'));
    text = text.replace(/type\s+SpliceErrorCode\s*=[^;]*;/, '');
    text = text.replace(/\bHINTS\b[^=]*=\s*(?:Object\.freeze\()?\{[^]*?\n\}/, '');
    for (const code of quotedCodes(text, "'")) {
      if (!where.has(code)) where.set(code, path.relative(ROOT, file));
    }
  }
  return where;
}

const missing = (want, have) => [...want].filter((code) => !have.has(code)).sort();

test('the sources are found and read (the checks below are not vacuous)', () => {
  const native = nativeCodes();
  assert.ok(native.has('ERR_TLS_SPLICE_BAD_RECORD_MAC'), 'record_layer.cc codes are read');
  assert.ok(native.has('ERR_TLS_SPLICE_INVALID_ARG'), 'binding codes are read');
  assert.ok(unionCodes().has('ERR_TLS_SPLICE_NOT_TAPPED'));
  assert.ok(hints().keys.has('EPIPE'));
  assert.ok(libCodes().has('ERR_TLS_SPLICE_NOT_TAPPED'));
  assert.ok(libCodes().has('ERR_TLS_SPLICE_USAGE'), 'lib/cli/ codes are read');
  assert.ok(libCodes().has('ERR_TLS_SPLICE_NO_ROUTE'), 'lib/cli/terminate.ts codes are read');
  // A code that appears only in a comment is not produced.
  assert.deepEqual([...quotedCodes('// "ERR_TLS_SPLICE_IN_A_COMMENT"\nx = "ERR_TLS_SPLICE_REAL";', '"')],
    ['ERR_TLS_SPLICE_REAL']);
});

test('every code native can produce is in the SpliceErrorCode union', () => {
  const native = nativeCodes();
  const absent = missing(native.keys(), unionCodes());
  assert.deepEqual(absent, [], `add to SpliceErrorCode in lib/errors.ts: ${
    absent.map((code) => `${code} (${native.get(code)})`).join(', ')}`);
});

test('every code native can produce has a hint', () => {
  const { file, keys } = hints();
  const native = nativeCodes();
  const absent = missing(native.keys(), keys);
  assert.deepEqual(absent, [], `add a hint to HINTS in ${file} for: ${
    absent.map((code) => `${code} (${native.get(code)})`).join(', ')}`);
});

test('every code lib/ and lib/cli/ produce is in the SpliceErrorCode union', () => {
  const lib = libCodes();
  const absent = missing(lib.keys(), unionCodes());
  assert.deepEqual(absent, [], `add to SpliceErrorCode in lib/errors.ts: ${
    absent.map((code) => `${code} (${lib.get(code)})`).join(', ')}`);
});

test('the SpliceErrorCode union is closed: string literals only', () => {
  const text = withoutComments(fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8'));
  const body = /type\s+SpliceErrorCode\s*=([^;]*);/.exec(text)[1];
  const members = body.split('|').map((m) => m.trim()).filter(Boolean);
  const open = members.filter((m) => !/^'ERR_TLS_SPLICE_[A-Z0-9_]+'$/.test(m));
  assert.deepEqual(open, [], 'every member of SpliceErrorCode is one quoted ERR_TLS_SPLICE_* code');
});

test('every code in the union is produced by native or lib/', () => {
  const produced = new Set([...nativeCodes().keys(), ...libCodes().keys()]);
  const absent = missing(unionCodes(), produced);
  assert.deepEqual(absent, [], `nothing produces (remove from SpliceErrorCode, or produce it): ${absent.join(', ')}`);
});

test('every ERR_TLS_SPLICE_* hint is for a code an engine can report', () => {
  const { file, keys } = hints();
  const produced = new Set([...nativeCodes().keys(), ...libCodes().keys()]);
  const spliceKeys = [...keys].filter((k) => k.startsWith('ERR_TLS_SPLICE_'));
  const absent = missing(spliceKeys, produced);
  assert.deepEqual(absent, [], `hints in ${file} for codes nothing produces: ${absent.join(', ')}`);
});
