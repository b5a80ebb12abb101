// Pump integration, flow control and partial I/O, against OpenSSL:
//  - a slow sink (the user reads slowly): the splice stops reading TCP, and the bytes held
//    inside it stay bounded by its fixed buffers; RSS does not grow with the transfer;
//  - a slow peer reader: backpressure the other way;
//  - a sink that takes a few bytes and then EAGAIN (a 4 KiB pipe read 100 bytes at a time);
//  - a peer that trickles one byte per send() through a proxy, both directions;
//  - max_fragment_length (RFC 6066) honoured when sealing, and OpenSSL's record_overflow
//    alert when it is not (the negative control that shows the check is real).
#include <fstream>

#include "splice_harness.h"

using namespace tls_splice;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

void check_transfer(const harness::RunResult& r, const harness::PeerPlan& peer,
                    const harness::UserPlan& user) {
  CHECK(r.closed);
  CHECK(!r.peer.timed_out && !r.user.timed_out);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(r.peer.got_close_notify);
}

void slow_sink(harness::TlsParams p) {
  test::begin_case("slow sink " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 24 * kMiB;
  harness::UserPlan user;
  user.send_bytes = 1000;
  user.read_chunk = 16384;
  user.read_delay_us = 300;
  uint64_t max_inside = 0;
  const SpliceStats& s = h.splice->stats();
  const uint64_t rss_before = rss_bytes();
  uint64_t rss_max = rss_before;
  user.on_read = [&](uint64_t got) {
    // Ciphertext read from TCP but not yet written to the fd as cleartext (record overhead
    // included: at most 0.2% of the transfer).
    // Generous on overhead: 29 bytes per record (TLS 1.2 GCM), at least one record.
    const uint64_t in = s.ciphertext_in.load(), out = s.bytes_in.load();
    const uint64_t overhead = (in / 16384 + 1) * 29;
    if (in > out + overhead) max_inside = std::max(max_inside, in - out - overhead);
    if ((got & 0xfffff) < 16384) rss_max = std::max(rss_max, rss_bytes());
  };
  const harness::RunResult r = harness::run(h, peer, user);
  check_transfer(r, peer, user);
  // The splice's in-direction buffers at their largest: a chunk + one record of ciphertext, a
  // chunk + one record of cleartext. Nothing else may pile up.
  CHECK(max_inside <= 2 * (kMaxStreamChunk + kMaxRecordLength));
  CHECK(max_inside > kMinStreamChunk);  // the slow reader did make the splice hold data
  // A TCP read filled all it asked for, so the window grew past its first size.
  CHECK(max_inside > 2 * (kMinStreamChunk + kMaxRecordLength));
  CHECK(rss_max - rss_before < 16 * kMiB);
  if (max_inside > 2 * (kMaxStreamChunk + kMaxRecordLength)) {
    std::fprintf(stderr, "max bytes inside the splice: %llu\n",
                 static_cast<unsigned long long>(max_inside));
  }
}

void slow_peer_reader(harness::TlsParams p) {
  test::begin_case("slow peer reader " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 1000;
  peer.read_chunk = 16384;
  peer.read_delay_us = 300;
  const uint64_t rss_before = rss_bytes();
  uint64_t rss_max = rss_before;
  peer.on_read = [&](uint64_t got) {
    if ((got & 0xfffff) < 16384) rss_max = std::max(rss_max, rss_bytes());
  };
  harness::UserPlan user;
  user.send_bytes = 24 * kMiB;
  const harness::RunResult r = harness::run(h, peer, user);
  check_transfer(r, peer, user);
  CHECK(rss_max - rss_before < 16 * kMiB);
}

void partial_write_sink(harness::TlsParams p) {
  p.pipes = true;
  p.sink_pipe_size = 4096;
  test::begin_case("sink takes a few bytes then EAGAIN " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 2 * kMiB + 333;
  harness::UserPlan user;
  user.send_bytes = 2 * kMiB;
  user.read_chunk = 100;
  const harness::RunResult r = harness::run(h, peer, user);
  check_transfer(r, peer, user);
}

void trickle(harness::TlsParams p) {
  p.trickle_proxy = true;
  test::begin_case("one byte per send " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  h.proxy->set_trickle(true);
  harness::PeerPlan peer;
  peer.send_bytes = 96 * 1024 + 5;
  peer.key_update_at = p.tls13 ? std::vector<uint64_t>{40000} : std::vector<uint64_t>{};
  harness::UserPlan user;
  user.send_bytes = 64 * 1024 + 9;
  const harness::RunResult r = harness::run(h, peer, user, 120);
  check_transfer(r, peer, user);
  // Every byte of ciphertext crossed the proxy in its own send().
  CHECK(h.proxy->trickled_sends() >= peer.send_bytes + user.send_bytes);
  CHECK(h.observer->end.reason == EndReason::kEnd);
  if (p.tls13) CHECK_U64(h.splice->stats().key_updates_in.load(), 1);
}

void max_fragment_length(harness::TlsParams p, bool honour) {
  p.max_fragment_length_mode = TLSEXT_max_fragment_length_512;
  if (!honour) p.splice_max_fragment_length = 16384;
  test::begin_case(std::string("max_fragment_length 512 ") + (honour ? "honoured " : "ignored ") +
                   harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 256 * 1024;
  if (!honour) {
    // The peer keeps its write side open: an alert after its own close_notify would be
    // ignored (RFC 8446 6.1), and the point here is to see the alert.
    peer.send_bytes = 0;
    peer.shutdown_after_send = false;
  }
  harness::UserPlan user;
  user.send_bytes = 256 * 1024 + 1;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  if (honour) {
    check_transfer(r, peer, user);
    CHECK(h.splice->stats().records_out.load() >= user.send_bytes / 512);
  } else {
    // RFC 6066 4: a peer that negotiated 512 rejects longer records with record_overflow;
    // OpenSSL does, and the splice ends with the alert it received.
    CHECK(r.peer.got_error);
    CHECK_STR(h.observer->end.code, "ERR_TLS_ALERT_RECORD_OVERFLOW");
    CHECK_EQ(h.observer->end.alert_received, 22);
    CHECK(h.observer->end.reason == EndReason::kError);
  }
}

}  // namespace

int main() {
  harness::init_openssl();
  const auto all = harness::all_params();
  slow_sink(all[0]);
  slow_sink(all[5]);
  slow_peer_reader(all[1]);
  slow_peer_reader(all[3]);
  for (const auto& p : {all[0], all[4]}) partial_write_sink(p);
  for (bool server : {false, true}) {
    for (const auto& base : {all[2], all[3]}) {
      harness::TlsParams p = base;
      p.spliced_is_server = server;
      trickle(p);
    }
  }
  for (bool server : {false, true}) {
    for (const auto& base : {all[0], all[3]}) {
      harness::TlsParams p = base;
      p.spliced_is_server = server;
      max_fragment_length(p, true);
      max_fragment_length(p, false);
    }
  }
  return test::finish("test_splice_flow");
}
