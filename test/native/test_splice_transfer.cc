// Pump integration: 16 MiB each way at once between an OpenSSL peer and the user's fd, through
// a Splice on an IoThread, for the three TLS 1.3 suites and three TLS 1.2 AEAD suites, in both
// roles, with a socketpair and with pipes as the user side. Both ends close with close_notify.
// Also: TLS 1.3 tickets the OpenSSL server sends after the handshake are skipped and counted.
#include "../../src-native/buffer_arena.h"
#include "splice_harness.h"

using namespace tls_splice;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

void transfer(harness::TlsParams params, uint64_t bytes, const std::string& extra = "") {
  test::begin_case("transfer " + harness::suite_label(params) + extra);
  harness::Harness h(params);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = bytes;
  peer.seed = 0x1000 + bytes;
  harness::UserPlan user;
  user.send_bytes = bytes + 12345;  // not a multiple of anything
  user.seed = 0x2000 + bytes;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(!r.peer.timed_out && !r.user.timed_out);
  // peer -> splice -> user
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK(r.user.got_eof);
  // user -> splice -> peer, ended by our close_notify after the last byte
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(r.peer.got_close_notify);
  CHECK_STR(r.peer.error, "");
  // How the splice ended.
  const SpliceEnd& e = h.observer->end;
  CHECK_EQ(h.observer->close_count, 1);
  CHECK_EQ(h.observer->peer_end_count, 1);
  CHECK(e.reason == EndReason::kEnd);
  CHECK_STR(e.code, "");
  CHECK(e.close_notify_received);
  CHECK(e.close_notify_sent);
  CHECK(!e.peer_eof_without_close_notify);
  CHECK_U64(e.undelivered_in, 0);
  CHECK_U64(e.undelivered_out, 0);
  CHECK_U64(e.unread_ciphertext, 0);
  CHECK_EQ(e.alert_sent, 255);
  CHECK_EQ(e.alert_received, 255);
  const SpliceStats& s = h.splice->stats();
  CHECK_U64(s.bytes_in.load(), peer.send_bytes);
  CHECK_U64(s.bytes_out.load(), user.send_bytes);
  CHECK(s.records_in.load() >= peer.send_bytes / 16384);
  CHECK(s.records_out.load() >= user.send_bytes / 16384);
  CHECK_U64(s.tickets_in.load(), params.tls13 && !params.spliced_is_server
                                     ? static_cast<uint64_t>(params.num_tickets) : 0);
  CHECK(h.splice->closed());
}

// A short splice's buffer arena goes to the cache when it ends and the next splice of the same
// shape takes it (wiped), moving its bytes intact; a bulk splice's goes back to the kernel.
void arena_reuse() {
  buffer_arena::trim();
  const ArenaCacheStats s0 = buffer_arena::stats();
  transfer(harness::all_params()[0], 3000, " short, fresh arena");
  const ArenaCacheStats s1 = buffer_arena::stats();
  test::begin_case("a short splice's arena is kept");
  CHECK_U64(s1.mapped, s0.mapped + 1);
  CHECK_EQ(s1.entries, size_t{1});
  transfer(harness::all_params()[0], 5000, " short, reused arena");
  const ArenaCacheStats s2 = buffer_arena::stats();
  test::begin_case("the next splice reuses it");
  CHECK_U64(s2.reused, s1.reused + 1);
  CHECK_U64(s2.mapped, s1.mapped);
  CHECK_EQ(s2.entries, size_t{1});
  transfer(harness::all_params()[0], 4 * kMiB, " bulk, reused arena");
  const ArenaCacheStats s3 = buffer_arena::stats();
  test::begin_case("a bulk splice's arena goes back to the kernel");
  CHECK_U64(s3.reused, s2.reused + 1);
  CHECK_U64(s3.unmapped, s2.unmapped + 1);
  CHECK_EQ(s3.entries, size_t{0});
}

}  // namespace

int main() {
  harness::init_openssl();
  const uint64_t big = std::getenv("TRANSFER_MIB") ? std::strtoull(std::getenv("TRANSFER_MIB"), nullptr, 10) * kMiB
                                                   : 16 * kMiB;
  for (harness::TlsParams p : harness::all_params()) {
    for (bool server : {false, true}) {
      p.spliced_is_server = server;
      transfer(p, big);
    }
  }
  // Pipes as the user side (the sink pipe is closed at the peer's end).
  for (harness::TlsParams p : {harness::all_params()[0], harness::all_params()[5]}) {
    p.pipes = true;
    transfer(p, 4 * kMiB, " pipes");
  }
  // TLS 1.3 tickets after the handshake: a spliced client skips and counts them; a spliced
  // server's write sequence starts after the tickets its OpenSSL half already sent.
  for (bool server : {false, true}) {
    harness::TlsParams p = harness::all_params()[0];
    p.num_tickets = 2;
    p.spliced_is_server = server;
    transfer(p, 1 * kMiB, " 2 tickets");
  }
  // Small and empty transfers.
  transfer(harness::all_params()[1], 0, " empty");
  transfer(harness::all_params()[4], 1, " one byte");
  arena_reuse();
  return test::finish("test_splice_transfer");
}
