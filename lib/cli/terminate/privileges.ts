// --user NAME [--group NAME]: a process binds its ports as root, then runs as NAME. Supplementary
// groups go first (root's must not survive), then the group, then the user (after setuid the
// process could no longer change its groups).
import { execFileSync } from 'node:child_process';

import { CliError } from '../common';

export interface Identity {
  user: string;
  group?: string;
}

/**
 * The user's and group's ids, checked before anything is bound: an unknown name, or a process
 * that is not root and not that user already, is an error at start (exit 1).
 */
export function resolveIdentity(identity: Identity): { uid: number; gid: number } {
  const uid = numericId(identity.user, '-u');
  const gid = identity.group === undefined ? numericId(identity.user, '-g')
    : groupId(identity.group);
  if (process.getuid!() !== 0 && process.getuid!() !== uid) {
    throw new CliError('EPERM', `--user ${identity.user}: only root can change user; start ` +
      'the command as root (it binds first, then drops to the user)');
  }
  return { uid, gid };
}

/** Drops to `identity`; a process already running as that user (a restarted worker) is left be. */
export function dropPrivileges(identity: Identity): void {
  const { uid, gid } = resolveIdentity(identity);
  if (process.getuid!() === uid) return;
  try {
    // The user's own supplementary groups, as login(1) would set them (not root's).
    (process as unknown as { initgroups(user: string, group: number): void })
      .initgroups(identity.user, gid);
    process.setgid!(gid);
    process.setuid!(uid);
  } catch (err) {
    throw new CliError((err as NodeJS.ErrnoException).code ?? 'ERR_TLS_SPLICE_PRIVILEGES',
      `cannot run as user ${identity.user}: ${(err as Error).message} (--user needs the ` +
      'command to start as root)', { cause: err });
  }
}

// getpwnam through id(1), which asks NSS as the C library would (Node has no getpwnam).
function numericId(user: string, flag: '-u' | '-g'): number {
  try {
    return Number(execFileSync('id', [flag, '--', user], { encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'] }).trim());
  } catch {
    throw new CliError('ERR_TLS_SPLICE_NO_USER', `--user ${user}: no such user`);
  }
}

function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  try {
    const line = execFileSync('getent', ['group', '--', group], { encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    return Number(line.split(':')[2]);
  } catch {
    throw new CliError('ERR_TLS_SPLICE_NO_GROUP', `--group ${group}: no such group`);
  }
}
