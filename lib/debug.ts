// NODE_DEBUG=tls-splice traces capture decisions (refusals with their code, the peer's end,
// sequence numbers, byte counts), fallback reasons and ends. Never key material: only codes,
// numbers and names may be passed here.
import { debuglog } from 'node:util';

export const debug = debuglog('tls-splice');
