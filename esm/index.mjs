// ESM entry point: one instance of the library, shared with require() users.
import cjs from '../dist/index.js';

export const {
  connect,
  createServer,
  SpliceServer,
  spliceTo,
  pipeToNative,
  SpliceHandle,
  captureSession,
  isSpliceCapable,
  releaseSpentSocket,
  openTun,
  SpliceGroup,
  proxyProtocolHeader,
  SpliceError,
  readPreamble,
  parseHttpRequestHead,
} = cjs;
export default cjs;
