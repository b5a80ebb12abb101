// Packet framing between a packet fd (a TUN device, a utun socket) and the TLS byte stream.
//
//   stream : bytes; no packets.
//   ip     : the TLS stream is IP packets back to back; each is cut by its own header
//            (IPv4 total length, IPv6 payload length + 40).
//   u16be  : the TLS stream is packets each preceded by a 2-byte big-endian length.
//
// On the fd side every read() is one packet and every write() must be one packet. With packet
// info, each packet on the fd side carries a 4-byte header (Linux tun without IFF_NO_PI:
// flags + EtherType; macOS utun: the address family, big-endian) that never crosses TLS.
#ifndef TLS_SPLICE_FRAMING_H_
#define TLS_SPLICE_FRAMING_H_

#include <cstddef>
#include <cstdint>

namespace tls_splice {

enum class Framing : uint8_t { kStream, kIp, kU16be };
enum class PacketInfo : uint8_t { kNone, kLinux, kUtun };

constexpr size_t kPacketInfoLength = 4;
constexpr size_t kU16PrefixLength = 2;
constexpr size_t kMaxU16PacketSize = 65535;
constexpr size_t kIpv4MinHeaderLength = 20;
constexpr size_t kIpv6HeaderLength = 40;

struct FramingConfig {
  Framing framing = Framing::kStream;
  PacketInfo packet_info = PacketInfo::kNone;
  size_t max_packet_size = 65535;  // the IP packet itself, without prefix or packet info
};

inline size_t packet_info_length(const FramingConfig& config) {
  return config.packet_info == PacketInfo::kNone ? 0 : kPacketInfoLength;
}

enum class CutStatus : uint8_t {
  kPacket,     // a whole packet: skip `prefix_length` bytes, then `packet_length` bytes
  kNeedMore,   // the stream ends inside the next packet (or is empty)
  kMalformed,  // `problem` says what is wrong with the bytes at the start of the stream
};

struct PacketCut {
  CutStatus status;
  size_t prefix_length;  // u16be: 2; ip: 0
  size_t packet_length;
  const char* problem;   // static text, for kMalformed
};

// TLS -> fd: the next packet at the start of the decrypted stream. Looks at most at the first
// 7 bytes before knowing the length, so a hostile length is rejected before it is buffered.
PacketCut cut_packet(const FramingConfig& config, const uint8_t* data, size_t length);

// fd -> TLS: checks one packet read from the fd (packet info already removed). Returns nullptr
// when it is acceptable, or what is wrong with it.
const char* check_outgoing_packet(const FramingConfig& config, const uint8_t* packet,
                                  size_t length);

// TLS -> fd: the 4-byte packet-info header for a packet, from its IP version. Returns false
// when the packet is neither IPv4 nor IPv6, so no header can be built.
bool make_packet_info(PacketInfo kind, const uint8_t* packet, size_t length,
                      uint8_t out_header[kPacketInfoLength]);

}  // namespace tls_splice

#endif  // TLS_SPLICE_FRAMING_H_
