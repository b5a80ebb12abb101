// Reaching a destination a client named: resolve and check it (address-policy.ts), then dial the
// checked addresses in turn, all within --dial-timeout.
import type * as net from 'node:net';

import { dial, formatAddr } from '../common';
import type { Addr } from '../common';
import type { Refusal } from './answers';
import type { AllowPattern } from './allow';
import { resolveDestination } from './address-policy';

export interface Connected {
  backend: net.Socket;
  /** The address dialled, for the log. */
  address: string;
}

/** A connected socket to `dest`, or a refusal (403 not allowed, 502 unresolvable/unreachable). */
export async function connectDestination(patterns: AllowPattern[], dest: Addr,
  dialTimeoutMs: number): Promise<Connected | Refusal> {
  const deadline = Date.now() + dialTimeoutMs;
  const resolution = await resolveDestination(patterns, dest, dialTimeoutMs);
  if (!resolution.ok) return resolution;
  let last: NodeJS.ErrnoException | undefined;
  for (const address of resolution.addresses) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      return { backend: await dial({ host: address, port: dest.port }, left), address };
    } catch (err) {
      last = err as NodeJS.ErrnoException;
    }
  }
  const code = last?.code ?? 'ETIMEDOUT';
  return { status: 502, code, why: `cannot reach ${formatAddr(dest.host, dest.port)}: ` +
    `${last?.message ?? `no answer within ${dialTimeoutMs} ms`}` };
}

export function isConnected(outcome: Connected | Refusal): outcome is Connected {
  return 'backend' in outcome;
}
