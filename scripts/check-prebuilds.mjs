// Checks that prebuilds/ holds a binary for each platform a release ships, built for the right
// machine (the ELF header's e_machine), so a release never packs a missing or mislabelled one.
// Usage: node scripts/check-prebuilds.mjs [package-root]   (exit status 1 and a reason if not)
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

// The platforms README.md ("Platforms") promises binaries for, with their ELF e_machine.
export const RELEASE_PLATFORMS = [
  { dir: 'linux-x64', machine: 62, machineName: 'x86-64' },
  { dir: 'linux-arm64', machine: 183, machineName: 'AArch64' },
];
const BINARY = 'tls-splice.node';

function elfMachine(file) {
  const header = readFileSync(file).subarray(0, 20);
  if (header.length < 20 || header.toString('latin1', 0, 4) !== '\x7fELF') return null;
  // EI_DATA 1 = little endian; e_machine is the 16-bit field at offset 18.
  return header[5] === 1 ? header.readUInt16LE(18) : header.readUInt16BE(18);
}

export function checkPrebuilds(root) {
  const problems = [];
  for (const { dir, machine, machineName } of RELEASE_PLATFORMS) {
    const file = path.join(root, 'prebuilds', dir, BINARY);
    if (!existsSync(file)) {
      problems.push(`${path.relative(root, file)} is missing`);
      continue;
    }
    const found = elfMachine(file);
    if (found !== machine) {
      problems.push(`${path.relative(root, file)} is not an ${machineName} ELF file (e_machine ${found})`);
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(process.argv[1]), '..'));
  const problems = checkPrebuilds(root);
  if (problems.length > 0) {
    console.error(`check-prebuilds: ${problems.join('; ')}. Build them with: npm run prebuild`);
    process.exit(1);
  }
  console.log(`check-prebuilds: ${RELEASE_PLATFORMS.map((p) => p.dir).join(', ')} present`);
}
