export { SpliceError } from './errors';
export type { SpliceErrorCode } from './errors';
export { connect } from './connect';
export type { ConnectOptions } from './connect';
export { createServer, SpliceServer } from './server';
export { captureSession, isSpliceCapable, releaseSpentSocket } from './capture';
export type { CapturedSession, CaptureOptions } from './capture';
