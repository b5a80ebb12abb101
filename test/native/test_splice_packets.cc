// Pump integration with packet framing, against OpenSSL: the user side is a SOCK_SEQPACKET
// socketpair (every read() one packet, every write() one packet, like a TUN device).
//   TLS -> fd: the peer sends a stream of packets in arbitrary SSL_write chunks (so packets
//              straddle records); each must come out as exactly one write, byte for byte, with
//              the 4-byte packet-info header made from its IP version when asked.
//   fd -> TLS: each packet the user writes becomes one record's worth of the stream ('ip': the
//              packet itself; 'u16be': a 2-byte length then the packet), packet info removed.
// Also: a malformed packet from the peer ends the splice with ERR_TLS_SPLICE_FRAMING.
#include "../../src-native/framing.h"
#include "splice_harness.h"

using namespace tls_splice;
using test::Bytes;

namespace {

// Random IPv4 / IPv6 packets with valid length fields.
std::vector<Bytes> make_packets(uint64_t seed, size_t count, size_t max_size) {
  test::Prng prng(seed);
  std::vector<Bytes> packets;
  for (size_t i = 0; i < count; i++) {
    const bool v6 = prng.next() % 3 == 0;
    const size_t min = v6 ? 41 : 20;
    const size_t size = min + prng.next() % (max_size - min + 1);
    Bytes p(size);
    prng.fill(p.data(), size);
    if (v6) {
      p[0] = 0x60 | (p[0] & 0x0f);
      p[4] = static_cast<uint8_t>((size - 40) >> 8);
      p[5] = static_cast<uint8_t>(size - 40);
    } else {
      p[0] = 0x45;
      p[2] = static_cast<uint8_t>(size >> 8);
      p[3] = static_cast<uint8_t>(size);
    }
    packets.push_back(std::move(p));
  }
  return packets;
}

Bytes tls_stream(const std::vector<Bytes>& packets, Framing framing) {
  Bytes s;
  for (const Bytes& p : packets) {
    if (framing == Framing::kU16be) {
      s.push_back(static_cast<uint8_t>(p.size() >> 8));
      s.push_back(static_cast<uint8_t>(p.size()));
    }
    s.insert(s.end(), p.begin(), p.end());
  }
  return s;
}

Bytes with_info(const Bytes& p, PacketInfo info) {
  if (info == PacketInfo::kNone) return p;
  uint8_t h[4];
  make_packet_info(info, p.data(), p.size(), h);
  Bytes out(h, h + 4);
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

void packets(harness::TlsParams params, Framing framing, PacketInfo info) {
  params.framing.framing = framing;
  params.framing.packet_info = info;
  params.framing.max_packet_size = 1500;
  test::begin_case(std::string("packets ") + (framing == Framing::kIp ? "ip" : "u16be") +
                   (info == PacketInfo::kNone ? "" : " +pi") + " " + harness::suite_label(params));
  harness::Harness h(params);
  REQUIRE(h.start());
  const std::vector<Bytes> in_packets = make_packets(11, 3000, 1500);
  const std::vector<Bytes> out_packets = make_packets(12, 2000, 1500);
  const Bytes in_stream = tls_stream(in_packets, framing);
  harness::PeerPlan peer;
  peer.stream = &in_stream;
  peer.send_bytes = in_stream.size();
  std::thread t([&] {
    const harness::PeerResult r = harness::run_peer(h.peer_ssl, h.peer_fd, peer);
    const Bytes want = tls_stream(out_packets, framing);
    test::Sha256 sha;
    sha.update(want.data(), want.size());
    CHECK_U64(r.received, want.size());
    CHECK_STR(r.received_sha, sha.hex_digest());
    CHECK(r.got_close_notify);
  });
  // The user: writes its packets (one write each), reads packets until EOF.
  const int fd = h.user_read_fd;
  std::thread writer([&] {
    for (const Bytes& p : out_packets) {
      const Bytes unit = with_info(p, info);
      CHECK_EQ(write(fd, unit.data(), unit.size()), static_cast<ssize_t>(unit.size()));
    }
    shutdown(fd, SHUT_WR);
  });
  size_t index = 0;
  size_t mismatches = 0;
  uint8_t buf[70000];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    if (index < in_packets.size()) {
      const Bytes want = with_info(in_packets[index], info);
      if (static_cast<size_t>(n) != want.size() || std::memcmp(buf, want.data(), want.size()) != 0) {
        mismatches++;
      }
    }
    index++;
  }
  writer.join();
  t.join();
  CHECK_EQ(index, in_packets.size());
  CHECK_EQ(mismatches, 0u);
  CHECK(h.observer->wait_closed(30));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK_STR(e.code, "");
  const SpliceStats& s = h.splice->stats();
  CHECK_U64(s.packets_in.load(), in_packets.size());
  CHECK_U64(s.packets_out.load(), out_packets.size());
  // Each packet read from the fd is sealed on its own: at least one record per packet.
  CHECK(s.records_out.load() >= out_packets.size());
}

void malformed_from_peer(harness::TlsParams params) {
  params.framing.framing = Framing::kIp;
  params.framing.max_packet_size = 1500;
  test::begin_case("malformed packet from the peer " + harness::suite_label(params));
  harness::Harness h(params);
  REQUIRE(h.start());
  std::vector<Bytes> good = make_packets(5, 10, 600);
  Bytes stream = tls_stream(good, Framing::kIp);
  const Bytes bad = {0x45, 0, 0x10, 0x00};  // IPv4 total length 4096 > maxPacketSize 1500
  stream.insert(stream.end(), bad.begin(), bad.end());
  stream.resize(stream.size() + 100, 0);
  harness::PeerPlan peer;
  peer.stream = &stream;
  peer.send_bytes = stream.size();
  peer.shutdown_after_send = false;
  std::thread t([&] { harness::run_peer(h.peer_ssl, h.peer_fd, peer); });
  size_t count = 0;
  uint8_t buf[70000];
  for (;;) {
    const ssize_t n = read(h.user_read_fd, buf, sizeof(buf));
    if (n <= 0) break;
    count++;
  }
  t.join();
  CHECK(h.observer->wait_closed(30));
  CHECK_EQ(count, good.size());  // every whole packet before the bad one was delivered
  CHECK_STR(h.observer->end.code, "ERR_TLS_SPLICE_FRAMING");
  CHECK(h.observer->end.reason == EndReason::kError);
}

}  // namespace

int main() {
  harness::init_openssl();
  const auto all = harness::all_params();
  for (const harness::TlsParams& p : {all[0], all[5]}) {
    for (Framing f : {Framing::kIp, Framing::kU16be}) {
      for (PacketInfo i : {PacketInfo::kNone, PacketInfo::kLinux}) packets(p, f, i);
    }
  }
  harness::TlsParams server = all[2];
  server.spliced_is_server = true;
  packets(server, Framing::kU16be, PacketInfo::kUtun);
  malformed_from_peer(all[0]);
  return test::finish("test_splice_packets");
}
