export { SpliceError } from './errors';
