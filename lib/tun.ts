// openTun(): a Linux TUN device for a splice with packet framing. Node has no TUN API.
//
// Elsewhere, bring your own fd: on macOS a utun control socket (opened by your process or passed
// by a privileged helper over a Unix socket) carries each packet with a 4-byte address-family
// header, so splice it with { framing: 'ip', packetInfo: 'utun' }.
import { binding } from './binding';
import { SpliceError, invalidArg } from './errors';

export interface OpenTunOptions {
  /** Interface name (at most 15 bytes); the kernel picks tunN when absent. */
  name?: string;
  /** Interface MTU; the kernel default (1500) when absent. */
  mtu?: number;
  /** Keep the 4-byte packet-info header (no IFF_NO_PI); splice with packetInfo: 'linux'. */
  packetInfo?: boolean;
}

export interface TunDevice {
  fd: number;
  name: string;
}

interface TunBinding {
  openTun(name: string, packetInfo: boolean, mtu: number): TunDevice;
}

export function openTun(options: OpenTunOptions = {}): TunDevice {
  if (process.platform !== 'linux') {
    throw new SpliceError('ERR_TLS_SPLICE_UNSUPPORTED_PLATFORM',
      `openTun() works on Linux only; on ${process.platform}, open the tunnel device yourself ` +
      'and pass its fd to spliceTo().');
  }
  const name = options.name ?? '';
  if (typeof name !== 'string' || Buffer.byteLength(name) > 15 || name.includes('\0')) {
    throw invalidArg('options.name', 'an interface name of at most 15 bytes', name);
  }
  const mtu = options.mtu ?? 0;
  if (!Number.isInteger(mtu) || mtu < 0 || mtu > 65535) {
    throw invalidArg('options.mtu', 'an integer from 68 to 65535', mtu);
  }
  try {
    return (binding as unknown as TunBinding).openTun(name, options.packetInfo === true, mtu);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'EPERM' || e.code === 'EACCES'
      ? ' Opening a TUN device needs CAP_NET_ADMIN (run as root, or grant the capability).'
      : e.code === 'ENOENT' ? ' /dev/net/tun is missing: load the tun module (modprobe tun).' : '';
    throw new SpliceError(e.code ?? 'ERR_TLS_SPLICE_INTERNAL',
      `openTun() failed at ${e.syscall ?? 'open'}: ${e.message}.${hint}`, { cause: err });
  }
}
