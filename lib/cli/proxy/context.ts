// What every part of one running proxy shares: its configuration, log, live splices, and the
// sockets not yet spliced (destroyed at shutdown).
import type * as net from 'node:net';

import type { SpliceGroup } from '../../index';
import { Logger, formatAddr } from '../common';
import type { Refusal } from './answers';
import type { Config } from './config';

export interface ProxyContext {
  config: Config;
  logger: Logger;
  group: SpliceGroup;
  pending: Set<net.Socket>;
}

export function clientOf(socket: net.Socket): string {
  return formatAddr(socket.remoteAddress, socket.remotePort);
}

/** The log line of a request the proxy answered itself (status 0: closed without an answer). */
export function logRefusal(ctx: ProxyContext, client: string, startedAt: number,
  refusal: Refusal, backend?: string, extra: Record<string, unknown> = {}): void {
  ctx.logger.connection({ command: 'proxy', client, backend, bytesFromClient: 0,
    bytesToClient: 0, durationMs: Date.now() - startedAt, engine: null, reason: 'refused',
    code: refusal.code, status: refusal.status, error: refusal.why, ...extra });
}
