// Inactivity limits (SpliceConfig::idle_timeout_ms / fin_timeout_ms, splice_idle.cc), against
// OpenSSL over loopback TCP:
//  - quiet both ways: the splice ends with kIdle, the peer reads our close_notify and the user
//    EOF, after every byte that came before (by hash);
//  - both sides stalled (the peer keeps sending, the user never reads): the idle end cannot
//    flush and still ends, bounded, reporting what it held;
//  - the user's side ended (EOF) and the peer stays silent without ending: fin_timeout_ms ends
//    it, the user gets EOF after the peer's bytes.
#include "splice_harness.h"

using namespace tls_splice;

namespace {

constexpr uint64_t kLimitMs = 300;

void quiet_both_ways(harness::TlsParams p) {
  test::begin_case("idle: quiet both ways " + harness::suite_label(p));
  p.idle_timeout_ms = kLimitMs;
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 64 * 1024 + 7;
  peer.shutdown_after_send = false;
  harness::UserPlan user;
  user.send_bytes = 32 * 1024 + 3;
  user.close_after_send = false;
  const auto started = harness::Clock::now();
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(harness::Clock::now() - started >= std::chrono::milliseconds(kLimitMs));
  CHECK(!r.peer.timed_out && !r.user.timed_out);
  CHECK(r.user.got_eof);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK(r.peer.got_close_notify);
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kIdle);
  CHECK(e.code.empty());
  CHECK(e.close_notify_sent);
  CHECK(!e.close_notify_received);
  CHECK_U64(e.undelivered_in, 0);
  CHECK_U64(e.undelivered_out, 0);
  // The end was the splice's, not the peer's: not reported as one.
  CHECK_EQ(h.observer->peer_end_count, 0);
}

void stalled_both_ways(harness::TlsParams p) {
  test::begin_case("idle: peer sending, user never reading " + harness::suite_label(p));
  p.idle_timeout_ms = kLimitMs;
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  // Far more than the user's socket takes: the splice's own buffers fill up behind it.
  peer.send_bytes = 64ull * 1024 * 1024;
  peer.timeout_seconds = 30;
  harness::PeerResult peer_result;
  std::thread t([&] { peer_result = harness::run_peer(h.peer_ssl, h.peer_fd, peer); });
  // The user end is never read: the idle end cannot deliver, and must end anyway.
  const bool closed = h.observer->wait_closed(30);
  t.join();
  CHECK(closed);
  CHECK(!peer_result.timed_out);
  CHECK(peer_result.sent < peer.send_bytes);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kIdle);
  CHECK(e.undelivered_in + e.unread_ciphertext > 0);
}

void fin_after_user_end(harness::TlsParams p) {
  test::begin_case("fin: user ended, peer silent " + harness::suite_label(p));
  p.fin_timeout_ms = kLimitMs;
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 48 * 1024 + 1;
  peer.shutdown_after_send = false;  // never ends its side
  harness::UserPlan user;
  user.send_bytes = 16 * 1024 + 5;  // then shutdown(SHUT_WR): our close_notify
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(r.peer.got_close_notify);
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(r.user.got_eof);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kIdle);
  CHECK(e.close_notify_sent);
  CHECK(!e.close_notify_received);
}

}  // namespace

int main() {
  harness::init_openssl();
  for (const harness::TlsParams& p : {harness::all_params()[0], harness::all_params()[3]}) {
    quiet_both_ways(p);
    stalled_both_ways(p);
    fin_after_user_end(p);
  }
  return test::finish("test_splice_idle");
}
