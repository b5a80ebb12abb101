// Packet framing: cut_packet (TLS -> fd), check_outgoing_packet (fd -> TLS) and
// make_packet_info, for IPv4, IPv6 and u16be, with every malformed header the code names and
// every prefix length of a partial header.
#include <string>

#include "../../src-native/framing.h"
#include "test_util.h"

using namespace tls_splice;
using test::Bytes;

namespace {

Bytes ipv4(size_t total, uint8_t ihl = 5) {
  Bytes p(total < 20 ? 20 : total, 0);
  p[0] = static_cast<uint8_t>(0x40 | ihl);
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  for (size_t i = 20; i < p.size(); i++) p[i] = static_cast<uint8_t>(i);
  return p;
}

Bytes ipv6(size_t payload) {
  Bytes p(40 + payload, 0);
  p[0] = 0x60;
  p[4] = static_cast<uint8_t>(payload >> 8);
  p[5] = static_cast<uint8_t>(payload);
  for (size_t i = 40; i < p.size(); i++) p[i] = static_cast<uint8_t>(i * 3);
  return p;
}

FramingConfig config(Framing f, size_t max = 65535) {
  FramingConfig c;
  c.framing = f;
  c.max_packet_size = max;
  return c;
}

void expect_cut(const FramingConfig& c, const Bytes& data, CutStatus status, size_t prefix,
                size_t length, const std::string& what) {
  const PacketCut cut = cut_packet(c, data.data(), data.size());
  const bool ok = cut.status == status && (status != CutStatus::kPacket ||
                                           (cut.prefix_length == prefix && cut.packet_length == length)) &&
                  ((status == CutStatus::kMalformed) == (cut.problem != nullptr));
  test::report(ok, __FILE__, __LINE__,
               what + ": status " + std::to_string(static_cast<int>(cut.status)) + " prefix " +
                   std::to_string(cut.prefix_length) + " length " + std::to_string(cut.packet_length) +
                   (cut.problem ? std::string(" problem ") + cut.problem : ""));
}

void test_ip_cut() {
  test::begin_case("ip cut");
  const FramingConfig c = config(Framing::kIp);
  // Whole packets, with bytes of the next one behind them.
  for (size_t total : {20, 21, 60, 1500, 65535}) {
    Bytes p = ipv4(total);
    expect_cut(c, p, CutStatus::kPacket, 0, total, "ipv4 " + std::to_string(total));
    Bytes two = test::concat({p, ipv4(40)});
    expect_cut(c, two, CutStatus::kPacket, 0, total, "ipv4 + next");
  }
  for (size_t payload : {1, 1460, 65535 - 40}) {
    expect_cut(c, ipv6(payload), CutStatus::kPacket, 0, 40 + payload,
               "ipv6 payload " + std::to_string(payload));
  }
  // Partial headers and bodies: every prefix of a packet is kNeedMore (never malformed).
  for (const Bytes& p : {ipv4(100), ipv6(100), ipv4(20)}) {
    for (size_t n = 0; n < p.size(); n++) {
      expect_cut(c, Bytes(p.begin(), p.begin() + n), CutStatus::kNeedMore, 0, 0,
                 "prefix of " + std::to_string(n));
    }
  }
  // IHL with options: 24-byte header.
  expect_cut(c, ipv4(64, 6), CutStatus::kPacket, 0, 64, "ihl 6");
  // Malformed.
  for (uint8_t ihl = 0; ihl < 5; ihl++) {
    expect_cut(c, ipv4(100, ihl), CutStatus::kMalformed, 0, 0, "ihl " + std::to_string(ihl));
  }
  expect_cut(c, ipv4(19), CutStatus::kMalformed, 0, 0, "total length 19");
  expect_cut(c, ipv4(40, 15), CutStatus::kMalformed, 0, 0, "total 40 below 60-byte header");
  expect_cut(c, ipv4(0), CutStatus::kMalformed, 0, 0, "total length 0");
  for (uint8_t v : {0, 1, 5, 7, 15}) {
    Bytes p = ipv4(100);
    p[0] = static_cast<uint8_t>(v << 4 | 5);
    expect_cut(c, p, CutStatus::kMalformed, 0, 0, "version " + std::to_string(v));
    // The version is known from one byte: no need to wait.
    expect_cut(c, Bytes(p.begin(), p.begin() + 1), CutStatus::kMalformed, 0, 0,
               "version from 1 byte " + std::to_string(v));
  }
  // RFC 2675 jumbogram (payload length 0): refused.
  expect_cut(c, ipv6(0), CutStatus::kMalformed, 0, 0, "ipv6 jumbogram");
  // Above maxPacketSize, known from the header before the body arrives.
  const FramingConfig small = config(Framing::kIp, 1280);
  expect_cut(small, ipv4(1280), CutStatus::kPacket, 0, 1280, "ipv4 at max");
  const Bytes big4 = ipv4(1281);
  expect_cut(small, Bytes(big4.begin(), big4.begin() + 4), CutStatus::kMalformed, 0, 0,
             "ipv4 above max from 4 bytes");
  expect_cut(small, ipv6(1240), CutStatus::kPacket, 0, 1280, "ipv6 at max");
  const Bytes big6 = ipv6(1241);
  expect_cut(small, Bytes(big6.begin(), big6.begin() + 6), CutStatus::kMalformed, 0, 0,
             "ipv6 above max from 6 bytes");
}

void test_u16be_cut() {
  test::begin_case("u16be cut");
  const FramingConfig c = config(Framing::kU16be, 2000);
  Bytes p = {0x01, 0x00};
  p.resize(2 + 256, 0xee);
  expect_cut(c, p, CutStatus::kPacket, 2, 256, "256");
  for (size_t n = 0; n < p.size(); n++) {
    expect_cut(c, Bytes(p.begin(), p.begin() + n), CutStatus::kNeedMore, 0, 0,
               "u16be prefix " + std::to_string(n));
  }
  expect_cut(c, Bytes{0, 0}, CutStatus::kMalformed, 0, 0, "u16be 0");
  expect_cut(c, Bytes{0x07, 0xd1}, CutStatus::kMalformed, 0, 0, "u16be 2001 > max");
  Bytes at_max = {0x07, 0xd0};
  at_max.resize(2 + 2000, 1);
  expect_cut(c, at_max, CutStatus::kPacket, 2, 2000, "u16be at max");
  // u16be carries any bytes: no IP header check.
  expect_cut(c, Bytes{0, 1, 0xff}, CutStatus::kPacket, 2, 1, "u16be non-IP");
}

void test_outgoing() {
  test::begin_case("outgoing");
  const FramingConfig ip = config(Framing::kIp, 1500);
  CHECK(check_outgoing_packet(ip, ipv4(1500).data(), 1500) == nullptr);
  CHECK(check_outgoing_packet(ip, ipv6(100).data(), 140) == nullptr);
  CHECK(check_outgoing_packet(ip, ipv4(100).data(), 0) != nullptr);          // empty
  CHECK(check_outgoing_packet(ip, ipv4(1501).data(), 1501) != nullptr);      // above max
  CHECK(check_outgoing_packet(ip, ipv4(100).data(), 99) != nullptr);         // shorter than header says
  CHECK(check_outgoing_packet(ip, ipv4(100).data(), 19) != nullptr);         // shorter than a header
  CHECK(check_outgoing_packet(ip, ipv6(100).data(), 5) != nullptr);          // partial ipv6 header
  Bytes longer = test::concat({ipv4(100), Bytes(4, 0)});
  CHECK(check_outgoing_packet(ip, longer.data(), longer.size()) != nullptr);  // trailing bytes
  Bytes v5 = ipv4(100);
  v5[0] = 0x55;
  CHECK(check_outgoing_packet(ip, v5.data(), v5.size()) != nullptr);
  CHECK(check_outgoing_packet(ip, ipv6(0).data(), 40) != nullptr);           // jumbogram
  Bytes ihl4 = ipv4(100, 4);
  CHECK(check_outgoing_packet(ip, ihl4.data(), ihl4.size()) != nullptr);
  // u16be / stream: any non-empty packet up to the maximum.
  const FramingConfig u = config(Framing::kU16be, 1500);
  const Bytes junk(1500, 0x99);
  CHECK(check_outgoing_packet(u, junk.data(), 1500) == nullptr);
  CHECK(check_outgoing_packet(u, junk.data(), 1) == nullptr);
  CHECK(check_outgoing_packet(u, junk.data(), 0) != nullptr);
  Bytes over(1501, 0);
  CHECK(check_outgoing_packet(u, over.data(), over.size()) != nullptr);
}

void test_packet_info() {
  test::begin_case("packet info");
  uint8_t h[kPacketInfoLength];
  // Linux struct tun_pi: flags 0, EtherType big-endian.
  CHECK(make_packet_info(PacketInfo::kLinux, ipv4(20).data(), 20, h));
  CHECK_BYTES(h, 4, Bytes({0, 0, 0x08, 0x00}));
  CHECK(make_packet_info(PacketInfo::kLinux, ipv6(1).data(), 41, h));
  CHECK_BYTES(h, 4, Bytes({0, 0, 0x86, 0xdd}));
  // macOS utun: the address family, big-endian (AF_INET 2, AF_INET6 30).
  CHECK(make_packet_info(PacketInfo::kUtun, ipv4(20).data(), 20, h));
  CHECK_BYTES(h, 4, Bytes({0, 0, 0, 2}));
  CHECK(make_packet_info(PacketInfo::kUtun, ipv6(1).data(), 41, h));
  CHECK_BYTES(h, 4, Bytes({0, 0, 0, 30}));
  const Bytes v5 = {0x50, 0, 0, 20};
  CHECK(!make_packet_info(PacketInfo::kLinux, v5.data(), v5.size(), h));
  CHECK(!make_packet_info(PacketInfo::kUtun, v5.data(), 0, h));
}

}  // namespace

int main() {
  test_ip_cut();
  test_u16be_cut();
  test_outgoing();
  test_packet_info();
  return test::finish("test_framing");
}
