// ESM entry point: one instance of the library, shared with require() users.
import cjs from '../dist/index.js';

export const {
  connect,
  createServer,
  spliceTo,
  pipeToNative,
  captureSession,
  SpliceServer,
  SpliceError,
} = cjs;
export default cjs;
