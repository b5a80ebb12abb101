// Fuzz target: packet framing. Byte 0 picks the framing (ip / u16be) and packet info, bytes
// 1-2 the maxPacketSize; the rest is the decrypted TLS stream cut into packets the way the
// TLS -> fd pump cuts it.
//
// Invariants: a packet lies inside the input and is at most maxPacketSize; kNeedMore never
// turns into a packet by removing bytes; a packet cut from an 'ip' stream is one the fd -> TLS
// direction accepts (the two directions agree); packet info can be made for every ip packet.
#include "../../src-native/framing.h"
#include "fuzz_common.h"

using namespace tls_splice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  FramingConfig config;
  config.framing = (data[0] & 1) ? Framing::kU16be : Framing::kIp;
  config.packet_info = static_cast<PacketInfo>((data[0] >> 1) % 3);
  config.max_packet_size = std::max<size_t>(20, (size_t{data[1]} << 8) | data[2]);
  data += 3;
  size -= 3;

  // Whole-input checks of the fd -> TLS side.
  const char* whole = check_outgoing_packet(config, data, size);
  if (whole == nullptr) FUZZ_INVARIANT(size > 0 && size <= config.max_packet_size);
  uint8_t info[kPacketInfoLength];
  (void)make_packet_info(config.packet_info == PacketInfo::kNone ? PacketInfo::kLinux
                                                                 : config.packet_info,
                         data, size, info);

  size_t off = 0;
  while (off <= size) {
    const PacketCut cut = cut_packet(config, data + off, size - off);
    if (cut.status == CutStatus::kMalformed) {
      FUZZ_INVARIANT(cut.problem != nullptr);
      break;
    }
    if (cut.status == CutStatus::kNeedMore) {
      // Fewer bytes cannot make a whole packet either.
      for (size_t n : {size_t{0}, (size - off) / 2}) {
        FUZZ_INVARIANT(cut_packet(config, data + off, n).status != CutStatus::kPacket);
      }
      break;
    }
    FUZZ_INVARIANT(cut.packet_length > 0);
    FUZZ_INVARIANT(cut.packet_length <= config.max_packet_size);
    FUZZ_INVARIANT(cut.prefix_length + cut.packet_length <= size - off);
    const uint8_t* packet = data + off + cut.prefix_length;
    // The same bytes and nothing more cut the same packet.
    const PacketCut again = cut_packet(config, data + off, cut.prefix_length + cut.packet_length);
    FUZZ_INVARIANT(again.status == CutStatus::kPacket && again.packet_length == cut.packet_length);
    if (config.framing == Framing::kIp) {
      FUZZ_INVARIANT(check_outgoing_packet(config, packet, cut.packet_length) == nullptr);
      FUZZ_INVARIANT(make_packet_info(PacketInfo::kLinux, packet, cut.packet_length, info));
      FUZZ_INVARIANT(make_packet_info(PacketInfo::kUtun, packet, cut.packet_length, info));
    } else {
      FUZZ_INVARIANT(check_outgoing_packet(config, packet, cut.packet_length) == nullptr);
    }
    off += cut.prefix_length + cut.packet_length;
  }
  return 0;
}
