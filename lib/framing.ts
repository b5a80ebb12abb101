// Packet framing for the JS engine, with the same rules as the native one (src-native/framing.h):
// 'ip' cuts the TLS stream by IPv4 total length / IPv6 payload length + 40; 'u16be' by a
// 2-byte big-endian length prefix; packet info is a 4-byte header on the fd side only.

export type Framing = 'stream' | 'ip' | 'u16be';
export type PacketInfoKind = 'none' | 'linux' | 'utun';

export interface FramingOptions {
  framing: Framing;
  packetInfo: PacketInfoKind;
  maxPacketSize: number;
}

export const PACKET_INFO_LENGTH = 4;

export type PacketCut =
  | { status: 'packet'; prefixLength: number; packetLength: number }
  | { status: 'need-more' }
  | { status: 'malformed'; problem: string };

const NEED_MORE: PacketCut = { status: 'need-more' };

function ipLength(data: Buffer, maxPacketSize: number): number | string | null {
  if (data.length < 1) return null;
  const version = data[0] >> 4;
  if (version === 4) {
    if (data.length < 4) return null;
    const headerLength = (data[0] & 0x0f) * 4;
    const totalLength = data.readUInt16BE(2);
    if (headerLength < 20) return 'IPv4 header length (IHL) below 5 words';
    if (totalLength < headerLength) return 'IPv4 total length below its header length';
    if (totalLength > maxPacketSize) return 'IPv4 total length above maxPacketSize';
    return totalLength;
  }
  if (version === 6) {
    if (data.length < 6) return null;
    const payloadLength = data.readUInt16BE(4);
    // RFC 2675: a jumbogram has payload length 0 and a Hop-by-Hop header (next header 0); any
    // other next header with payload length 0 is a whole 40-byte packet.
    if (payloadLength === 0) {
      if (data.length < 7) return null;
      if (data[6] === 0) {
        return 'IPv6 payload length 0 with a Hop-by-Hop header (jumbogram) is not supported';
      }
    }
    if (payloadLength + 40 > maxPacketSize) return 'IPv6 payload length + 40 above maxPacketSize';
    return payloadLength + 40;
  }
  return 'IP version is neither 4 nor 6';
}

// TLS -> fd: the packet at the start of the decrypted stream.
export function cutPacket(options: FramingOptions, data: Buffer): PacketCut {
  if (options.framing === 'u16be') {
    if (data.length < 2) return NEED_MORE;
    const length = data.readUInt16BE(0);
    if (length === 0) return { status: 'malformed', problem: 'u16be length prefix of 0' };
    if (length > options.maxPacketSize) {
      return { status: 'malformed', problem: 'u16be length prefix above maxPacketSize' };
    }
    if (data.length - 2 < length) return NEED_MORE;
    return { status: 'packet', prefixLength: 2, packetLength: length };
  }
  const length = ipLength(data, options.maxPacketSize);
  if (typeof length === 'string') return { status: 'malformed', problem: length };
  if (length === null || data.length < length) return NEED_MORE;
  return { status: 'packet', prefixLength: 0, packetLength: length };
}

// fd -> TLS: what is wrong with one packet read from the fd (packet info removed), or null.
export function checkOutgoingPacket(options: FramingOptions, packet: Buffer): string | null {
  if (packet.length === 0) return 'empty packet read from the fd';
  if (packet.length > options.maxPacketSize) return 'packet read from the fd is above maxPacketSize';
  if (options.framing !== 'ip') return null;
  const length = ipLength(packet, options.maxPacketSize);
  if (typeof length === 'string') return length;
  if (length === null) return 'packet read from the fd is shorter than its IP header';
  if (length !== packet.length) {
    return 'IP length in the header differs from the size of the packet read from the fd';
  }
  return null;
}

// TLS -> fd: the 4-byte packet-info header for an IP packet, or null if it is not IPv4/IPv6.
export function packetInfoHeader(kind: PacketInfoKind, packet: Buffer): Buffer | null {
  const version = packet.length > 0 ? packet[0] >> 4 : 0;
  if (version !== 4 && version !== 6) return null;
  const header = Buffer.alloc(PACKET_INFO_LENGTH);
  if (kind === 'linux') {
    header.writeUInt16BE(version === 4 ? 0x0800 : 0x86dd, 2);  // struct tun_pi: flags, proto
  } else {
    header.writeUInt32BE(version === 4 ? 2 : 30, 0);            // macOS AF_INET / AF_INET6
  }
  return header;
}
