// CONNECT: resolve and check the destination, dial the checked address, answer 200, and splice
// the TLS session natively to it with the bytes the client pipelined behind the head as `head`.
import type * as tls from 'node:tls';

import { formatAddr, spliceConnection } from '../common';
import type { Addr } from '../common';
import { answerAndClose } from './answers';
import { connectDestination, isConnected } from './destination';
import { logRefusal } from './context';
import type { ProxyContext } from './context';

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

export async function tunnel(ctx: ProxyContext, tlsSocket: tls.TLSSocket, addr: Addr,
  head: Buffer, startedAt: number, client: string): Promise<void> {
  const backendName = formatAddr(addr.host, addr.port);
  let clientGone = false;
  const onClose = () => { clientGone = true; };
  tlsSocket.once('close', onClose);
  tlsSocket.on('error', () => {});
  ctx.pending.add(tlsSocket);
  const outcome = await connectDestination(ctx.config.connectAllow, addr,
    ctx.config.dialTimeoutMs).finally(() => ctx.pending.delete(tlsSocket));
  if (!isConnected(outcome)) {
    logRefusal(ctx, client, startedAt, outcome, backendName, { method: 'CONNECT' });
    answerAndClose(tlsSocket, outcome);
    return;
  }
  const { backend, address } = outcome;
  if (clientGone || ctx.group.closing) {
    backend.destroy();
    tlsSocket.destroy();
    logRefusal(ctx, client, startedAt, { status: 0,
      code: ctx.group.closing ? 'ERR_TLS_SPLICE_STOPPING' : 'ECONNRESET',
      why: 'the client left while the destination was dialled' }, backendName,
    { method: 'CONNECT' });
    return;
  }
  tlsSocket.off('close', onClose);
  // The 200 must be on the wire before the session is captured.
  await new Promise<void>((resolve) => { tlsSocket.write(ESTABLISHED, () => resolve()); });
  const { idleTimeoutMs, finTimeoutMs } = ctx.config.limits;
  try {
    await spliceConnection(tlsSocket, backend, {
      command: 'proxy', group: ctx.group, logger: ctx.logger, client, backend: backendName,
      startedAt, head, extra: { method: 'CONNECT', address },
      splice: { idleTimeout: idleTimeoutMs, finTimeout: finTimeoutMs },
    });
  } catch {
    // Logged by spliceConnection from the handle's end.
  }
}
