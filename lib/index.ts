export { SpliceError } from './errors';
export type { SpliceErrorCode } from './errors';
export { connect } from './connect';
export type { ConnectOptions } from './connect';
export { createServer, SpliceServer } from './server';
export { captureSession, isSpliceCapable, releaseSpentSocket } from './capture';
export type { CapturedSession, CaptureOptions } from './capture';
export { spliceTo, pipeToNative, SpliceHandle } from './splice';
export type {
  SpliceOptions, SpliceEnd, SpliceStats, StopOptions, SpliceTarget, SpliceDirection,
  SpliceEngineOption, TruncationMode,
} from './splice';
export { openTun } from './tun';
export { SpliceGroup } from './splice-group';
export type { CloseAllOptions } from './splice-group';
export { proxyProtocolHeader } from './proxy-protocol';
export type { ProxyProtocolAddress, ProxyProtocolOptions } from './proxy-protocol';
export type { OpenTunOptions, TunDevice } from './tun';
export { readPreamble, parseHttpRequestHead } from './preamble';
export type {
  ReadPreambleOptions, Preamble, PreambleKind, LinePreamble, HttpPreamble, HttpRequestHead,
} from './preamble';
