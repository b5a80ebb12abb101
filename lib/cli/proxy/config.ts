// The proxy's command line as one Config.
import * as crypto from 'node:crypto';

import {
  Addr, DEFAULT_DRAIN_TIMEOUT_MS, Limits, ParsedValues, UsageError, parseAddr, parseLimits,
  parseLogFormat, parseSeconds, requireFlags, stringFlag, stringsFlag,
} from '../common';
import { AllowPattern, parseAllow } from './allow';

export const DEFAULT_HEAD_TIMEOUT_MS = 30_000;
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

export interface Config {
  listen: Addr;
  certFile: string;
  keyFile: string;
  connectAllow: AllowPattern[];
  forwardAllow: AllowPattern[];
  auth?: Buffer;        // SHA-256 of "user:pass"
  logFormat: 'text' | 'json';
  drainTimeoutMs: number;
  dialTimeoutMs: number;
  headTimeoutMs: number;
  limits: Limits;
}

export function parseConfig(values: ParsedValues): Config {
  requireFlags(values, ['listen', 'cert', 'key']);
  const allow = stringsFlag(values, 'allow').map(parseAllow);
  const auth = stringFlag(values, 'auth');
  if (auth !== undefined && auth.indexOf(':') <= 0) {
    throw new UsageError('--auth: give USER:PASS');
  }
  const headTimeoutMs = parseSeconds(stringFlag(values, 'head-timeout'), '--head-timeout',
    DEFAULT_HEAD_TIMEOUT_MS);
  if (headTimeoutMs < 1) throw new UsageError('--head-timeout: must be more than 0 seconds');
  return {
    listen: parseAddr(stringFlag(values, 'listen')!, '--listen'),
    certFile: stringFlag(values, 'cert')!,
    keyFile: stringFlag(values, 'key')!,
    // Without --allow: Squid's defaults, CONNECT to the TLS port and plain HTTP to port 80.
    connectAllow: allow.length > 0 ? allow : [parseAllow('*:443')],
    forwardAllow: allow.length > 0 ? allow : [parseAllow('*:80')],
    auth: auth === undefined ? undefined : crypto.createHash('sha256').update(auth).digest(),
    logFormat: parseLogFormat(stringFlag(values, 'log')),
    drainTimeoutMs: parseSeconds(stringFlag(values, 'drain-timeout'), '--drain-timeout',
      DEFAULT_DRAIN_TIMEOUT_MS),
    dialTimeoutMs: parseSeconds(stringFlag(values, 'dial-timeout'), '--dial-timeout',
      DEFAULT_DIAL_TIMEOUT_MS),
    headTimeoutMs,
    limits: parseLimits(values),
  };
}
