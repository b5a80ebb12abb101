// Runs an ES module given as text in a child Node process, for tests that need a process of their
// own (exit behaviour, no error listener, unref()ed handles). Resolves once the child exits, or
// after `timeout` ms, when it is killed (then `signal` is 'SIGKILL').
import { spawn } from 'node:child_process';

export async function runScript(script, { timeout = 15000, env = process.env } = {}) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script],
    { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => { stdout += c; });
  child.stderr.on('data', (c) => { stderr += c; });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
  const [code, signal] = await new Promise((resolve) => child.once('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}
