#include "framing.h"

namespace tls_splice {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86DD;
// macOS <sys/socket.h>: AF_INET 2, AF_INET6 30. The utun header carries them big-endian.
constexpr uint32_t kUtunFamilyIpv4 = 2;
constexpr uint32_t kUtunFamilyIpv6 = 30;
constexpr size_t kIpv6NextHeaderOffset = 6;
constexpr uint8_t kIpv6HopByHop = 0;

struct IpLength {
  size_t length;        // whole packet, 0 when the header is not yet complete
  const char* problem;  // non-null when malformed
};

// The length an IP packet declares in its header.
IpLength ip_packet_length(const uint8_t* data, size_t available, size_t max_packet_size) {
  if (available < 1) return {0, nullptr};
  const uint8_t version = data[0] >> 4;
  if (version == 4) {
    if (available < 4) return {0, nullptr};
    const size_t header_length = static_cast<size_t>(data[0] & 0x0f) * 4;
    const size_t total_length = (size_t{data[2]} << 8) | data[3];
    if (header_length < kIpv4MinHeaderLength) {
      return {0, "IPv4 header length (IHL) below 5 words"};
    }
    if (total_length < header_length) {
      return {0, "IPv4 total length below its header length"};
    }
    if (total_length > max_packet_size) {
      return {0, "IPv4 total length above maxPacketSize"};
    }
    return {total_length, nullptr};
  }
  if (version == 6) {
    if (available < 6) return {0, nullptr};
    const size_t payload_length = (size_t{data[4]} << 8) | data[5];
    // RFC 2675 3: "The Payload Length field in the IPv6 header must be set to zero in every
    // packet that carries the Jumbo Payload option", which lives in a Hop-by-Hop Options header
    // (next header 0); tunnels do not carry jumbograms. Any other next header with a payload
    // length of 0 is a whole 40-byte packet (e.g. next header 59, "no next header").
    if (payload_length == 0) {
      if (available < kIpv6NextHeaderOffset + 1) return {0, nullptr};
      if (data[kIpv6NextHeaderOffset] == kIpv6HopByHop) {
        return {0, "IPv6 payload length 0 with a Hop-by-Hop header (jumbogram) is not supported"};
      }
    }
    if (payload_length + kIpv6HeaderLength > max_packet_size) {
      return {0, "IPv6 payload length + 40 above maxPacketSize"};
    }
    return {payload_length + kIpv6HeaderLength, nullptr};
  }
  return {0, "IP version is neither 4 nor 6"};
}

}  // namespace

PacketCut cut_packet(const FramingConfig& config, const uint8_t* data, size_t length) {
  if (config.framing == Framing::kU16be) {
    if (length < kU16PrefixLength) return {CutStatus::kNeedMore, 0, 0, nullptr};
    const size_t packet_length = (size_t{data[0]} << 8) | data[1];
    if (packet_length == 0) {
      return {CutStatus::kMalformed, 0, 0, "u16be length prefix of 0"};
    }
    if (packet_length > config.max_packet_size) {
      return {CutStatus::kMalformed, 0, 0, "u16be length prefix above maxPacketSize"};
    }
    if (length - kU16PrefixLength < packet_length) return {CutStatus::kNeedMore, 0, 0, nullptr};
    return {CutStatus::kPacket, kU16PrefixLength, packet_length, nullptr};
  }
  const IpLength ip = ip_packet_length(data, length, config.max_packet_size);
  if (ip.problem) return {CutStatus::kMalformed, 0, 0, ip.problem};
  if (ip.length == 0 || length < ip.length) return {CutStatus::kNeedMore, 0, 0, nullptr};
  return {CutStatus::kPacket, 0, ip.length, nullptr};
}

const char* check_outgoing_packet(const FramingConfig& config, const uint8_t* packet,
                                  size_t length) {
  if (length == 0) return "empty packet read from the fd";
  if (length > config.max_packet_size) return "packet read from the fd is above maxPacketSize";
  if (config.framing != Framing::kIp) return nullptr;
  const IpLength ip = ip_packet_length(packet, length, config.max_packet_size);
  if (ip.problem) return ip.problem;
  if (ip.length == 0) return "packet read from the fd is shorter than its IP header";
  if (ip.length != length) {
    return "IP length in the header differs from the size of the packet read from the fd";
  }
  return nullptr;
}

bool make_packet_info(PacketInfo kind, const uint8_t* packet, size_t length,
                      uint8_t out_header[kPacketInfoLength]) {
  if (length < 1) return false;
  const uint8_t version = packet[0] >> 4;
  if (version != 4 && version != 6) return false;
  if (kind == PacketInfo::kLinux) {
    // struct tun_pi { __u16 flags; __be16 proto; }
    const uint16_t proto = version == 4 ? kEtherTypeIpv4 : kEtherTypeIpv6;
    out_header[0] = 0;
    out_header[1] = 0;
    out_header[2] = static_cast<uint8_t>(proto >> 8);
    out_header[3] = static_cast<uint8_t>(proto);
    return true;
  }
  const uint32_t family = version == 4 ? kUtunFamilyIpv4 : kUtunFamilyIpv6;
  out_header[0] = static_cast<uint8_t>(family >> 24);
  out_header[1] = static_cast<uint8_t>(family >> 16);
  out_header[2] = static_cast<uint8_t>(family >> 8);
  out_header[3] = static_cast<uint8_t>(family);
  return true;
}

}  // namespace tls_splice
