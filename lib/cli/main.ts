// tls-splice <command> [flags]: dispatch, --help, and exit codes.
//
// `tls-splice --version` prints the package's version; `tls-splice help [COMMAND]` is the same as
// `tls-splice --help` / `tls-splice COMMAND --help`.
//
// Exit codes: 0 after a signal-driven shutdown (and after --version or help); 1 when the command cannot run (an unreadable
// certificate, an address in use: the message names the file or address); 2 for a bad command
// line (a usage line follows the message).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import {
  ArgToken, COMMON_HELP, COMMON_OPTIONS, CliError, Command, EXIT_FAILURE, EXIT_USAGE, ParsedValues,
  UsageError,
} from './common';

// Loaded lazily: `tls-splice relay` does not pay for terminate's prom-client.
const COMMANDS: Record<string, () => Command> = {
  terminate: () => (require('./terminate') as { command: Command }).command,
  originate: () => (require('./originate') as { command: Command }).command,
  proxy: () => (require('./proxy') as { command: Command }).command,
  relay: () => (require('./relay') as { command: Command }).command,
  agent: () => (require('./agent') as { command: Command }).command,
};

function loadCommand(name: string): Command | undefined {
  const load = COMMANDS[name];
  if (load === undefined) return undefined;
  try {
    return load();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' &&
        String((err as Error).message).includes(`'./${name}'`)) {
      return undefined;
    }
    throw err;
  }
}

// The version in the package's own package.json (dist/cli/ -> the package root).
function packageVersion(): string {
  const file = path.join(__dirname, '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

function globalHelp(): string {
  const lines = ['Usage: tls-splice <command> [flags]   (tls-splice <command> --help for more)',
    '       tls-splice help [<command>] | --version', '', 'Commands:'];
  for (const name of Object.keys(COMMANDS)) {
    const command = loadCommand(name);
    if (command !== undefined) lines.push(`  ${name.padEnd(10)} ${command.summary}`);
  }
  lines.push('',
    'Every command prints `listening ADDR` on stdout once it accepts connections and ' +
    'logs one line', 'per connection end on stderr. ADDR is HOST:PORT, [IPv6]:PORT for IPv6.');
  return `${lines.join('\n')}\n`;
}

function usageLine(name: string, command: Command): string {
  return `${command.usage.trim()}\n(tls-splice ${name} --help for every flag)\n`;
}

/** Runs the command line; resolves with an exit code only when the command failed to start. */
export async function main(argv: string[]): Promise<number | undefined> {
  if (argv[0] === '--version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  // `help COMMAND` is `COMMAND --help`.
  if (argv[0] === 'help' && argv.length > 1) return main([argv[1], '--help']);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(globalHelp());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = loadCommand(name);
  if (command === undefined) {
    process.stderr.write(`tls-splice: unknown command "${name}"\n${globalHelp()}`);
    return EXIT_USAGE;
  }
  let values: ParsedValues;
  let positionals: string[];
  let tokens: ArgToken[];
  try {
    ({ values, positionals, tokens } = parseArgs({
      args: rest, options: { ...COMMON_OPTIONS, ...command.options }, strict: true,
      allowPositionals: false, tokens: true,
    }) as { values: ParsedValues; positionals: string[]; tokens: ArgToken[] });
  } catch (err) {
    process.stderr.write(`tls-splice ${name}: ${(err as Error).message}\n` +
      usageLine(name, command));
    return EXIT_USAGE;
  }
  if (values.help === true) {
    process.stdout.write(`${command.usage.trim()}\n\n${command.help.trim()}\n\n${COMMON_HELP}\n`);
    return 0;
  }
  try {
    await command.run(values, positionals, tokens);
    return undefined;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tls-splice ${name}: ${err.message}\n${usageLine(name, command)}`);
      return EXIT_USAGE;
    }
    if (err instanceof CliError) {
      process.stderr.write(`tls-splice ${name}: ${err.message} (${err.code})\n`);
      return EXIT_FAILURE;
    }
    const code = (err as { code?: string }).code;
    process.stderr.write(`tls-splice ${name}: ${(err as Error).stack ?? String(err)}` +
      `${code ? ` (${code})` : ''}\n`);
    return EXIT_FAILURE;
  }
}

/** The bin entry: exits with main's code if the command did not start serving. */
export function runMain(argv = process.argv.slice(2)): void {
  main(argv).then((code) => {
    if (code !== undefined) process.exitCode = code;
    if (code !== undefined) process.stdout.write('', () => process.exit(code));
  }, (err) => {
    process.stderr.write(`tls-splice: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(EXIT_FAILURE);
  });
}
