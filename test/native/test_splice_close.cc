// Pump integration, how a splice ends, against OpenSSL:
//  - the peer closes first (close_notify): the user's fd sees EOF after every byte, while the
//    user's data keeps flowing to the peer (half-close), then ends with our close_notify;
//  - the user closes first (fd EOF): the peer's SSL_read returns 0 (close_notify) after every
//    byte, and the peer's data keeps flowing to the user;
//  - the peer's TCP ends without close_notify; the peer's TCP ends inside a record; the peer
//    sends a record that does not authenticate (we send bad_record_mac); bytes after the
//    peer's close_notify are ignored;
//  - stop(true) and stop(false) mid-transfer, stop twice, stop after the end; what the
//    observer's SpliceEnd says (reason, code, close_notify flags, undelivered counts), and that
//    every byte is accounted for: delivered (a prefix of the stream, by hash) or reported.
#include "splice_harness.h"

using namespace tls_splice;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

void peer_closes_first(harness::TlsParams p) {
  test::begin_case("peer closes first " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 1 * kMiB + 1;
  harness::UserPlan user;
  user.send_bytes = 3 * kMiB;
  user.send_after_eof = true;  // every byte of ours goes after the peer's close_notify
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(r.user.got_eof);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  // RFC 8446 6.1: close_notify closes one direction; ours stays open until we close it.
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(r.peer.got_close_notify);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK(e.close_notify_received && e.close_notify_sent);
  CHECK_EQ(h.observer->peer_end_count, 1);
}

void user_closes_first(harness::TlsParams p) {
  test::begin_case("user closes first " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 3 * kMiB;
  peer.send_after_close_notify = true;  // the peer sends only after our close_notify
  harness::UserPlan user;
  user.send_bytes = 1 * kMiB + 7;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(r.peer.got_close_notify);
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK(e.close_notify_received && e.close_notify_sent);
  CHECK_U64(e.undelivered_in + e.undelivered_out + e.unread_ciphertext, 0);
}

void peer_eof_without_close_notify(harness::TlsParams p) {
  test::begin_case("peer TCP EOF without close_notify " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 512 * 1024;
  peer.shutdown_after_send = false;
  peer.raw_eof_after_send = true;
  harness::UserPlan user;
  user.send_bytes = 256 * 1024;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK_U64(r.peer.received, user.send_bytes);
  const SpliceEnd& e = h.observer->end;
  // Reported, not an error: the application decides whether a truncation matters.
  CHECK(e.peer_eof_without_close_notify);
  CHECK(!e.close_notify_received);
  CHECK(e.reason == EndReason::kEnd);
}

void peer_truncated_record(harness::TlsParams p) {
  test::begin_case("peer EOF inside a record " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 100000;
  peer.shutdown_after_send = false;
  std::thread t([&] {
    harness::run_peer(h.peer_ssl, h.peer_fd, peer);
  });
  // Let the peer's data through, then a record header and 3 bytes of body, then EOF.
  harness::UserPlan user;
  user.send_bytes = 0;
  user.close_after_send = false;
  bool sent = false;
  user.on_read = [&](uint64_t got) {
    if (got == peer.send_bytes && !sent) {
      sent = true;
      const uint8_t partial[] = {23, 3, 3, 0, 40, 1, 2, 3};
      (void)!write(h.peer_fd, partial, sizeof(partial));
      shutdown(h.peer_fd, SHUT_WR);
    }
  };
  harness::UserResult u = harness::run_user(h.user_write_fd, h.user_read_fd, user);
  t.join();
  CHECK(h.observer->wait_closed(30));
  CHECK_U64(u.received, peer.send_bytes);
  CHECK_STR(u.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kError);
  CHECK_STR(e.code, "ERR_TLS_SPLICE_TRUNCATED_RECORD");
  CHECK_U64(e.unread_ciphertext, 8);
}

void peer_bad_record(harness::TlsParams p) {
  test::begin_case("peer sends a bad record " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  // A record that does not authenticate, then keep reading: OpenSSL must receive our
  // bad_record_mac alert (RFC 8446 5.2 / RFC 5246 7.2.2).
  uint8_t bogus[5 + 40] = {23, 3, 3, 0, 40};
  for (size_t i = 5; i < sizeof(bogus); i++) bogus[i] = static_cast<uint8_t>(i);
  REQUIRE(write(h.peer_fd, bogus, sizeof(bogus)) == static_cast<ssize_t>(sizeof(bogus)));
  harness::PeerPlan peer;
  peer.send_bytes = 0;
  peer.shutdown_after_send = false;
  harness::UserPlan user;
  user.send_bytes = 0;
  user.close_after_send = false;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kError);
  CHECK_STR(e.code, "ERR_TLS_SPLICE_BAD_RECORD_MAC");
  CHECK_EQ(e.alert_sent, 20);
  CHECK(r.peer.got_error);
  CHECK_STR(r.peer.error, "sslv3 alert bad record mac");
  CHECK(r.user.got_eof);
}

void data_after_close_notify(harness::TlsParams p) {
  test::begin_case("bytes after close_notify " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  // close_notify and junk in one write: RFC 8446 6.1 "Any data received after a closure alert
  // has been received MUST be ignored."
  REQUIRE(SSL_shutdown(h.peer_ssl) == 0);
  const uint8_t junk[100] = {23, 3, 3, 0, 95};
  REQUIRE(write(h.peer_fd, junk, sizeof(junk)) == 100);
  harness::PeerPlan peer;
  peer.shutdown_after_send = false;
  harness::UserPlan user;
  user.send_bytes = 1000;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK(r.user.got_eof);
  CHECK_U64(r.peer.received, 1000);
  CHECK(r.peer.got_close_notify);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK_STR(e.code, "");
  CHECK(e.close_notify_received);
  CHECK(e.ignored_after_close <= 100);
}

// stop(true) while the user streams: what the splice read from the fd reaches the peer, then
// close_notify.
void graceful_stop_out(harness::TlsParams p) {
  test::begin_case("stop(true) mid-stream out " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  std::atomic<bool> stopped{false};
  harness::PeerPlan peer;
  peer.shutdown_after_send = false;
  peer.on_read = [&](uint64_t got) {
    if (got >= 2 * kMiB && !stopped.exchange(true)) h.stop(true);
  };
  harness::UserPlan user;
  user.send_bytes = 256 * kMiB;  // far more than will go
  user.close_after_send = false;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kStopped);
  CHECK_STR(e.code, "");
  CHECK(e.close_notify_sent);
  CHECK(r.peer.got_close_notify);
  CHECK_U64(e.undelivered_out, 0);
  const uint64_t out = h.splice->stats().bytes_out.load();
  CHECK_U64(r.peer.received, out);
  CHECK(out >= 2 * kMiB && out < user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, r.peer.received));
  CHECK(r.user.got_eof);  // the splice closed its end of the socketpair
  CHECK_EQ(r.user.write_errno, EPIPE);
}

// stop(true) while the peer streams: what was opened reaches the user.
void graceful_stop_in(harness::TlsParams p) {
  test::begin_case("stop(true) mid-stream in " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  std::atomic<bool> stopped{false};
  harness::PeerPlan peer;
  peer.send_bytes = 64 * kMiB;
  peer.shutdown_after_send = false;
  peer.timeout_seconds = 20;
  harness::UserPlan user;
  user.close_after_send = false;
  user.on_read = [&](uint64_t got) {
    if (got >= 2 * kMiB && !stopped.exchange(true)) h.stop(true);
  };
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kStopped);
  CHECK(e.close_notify_sent);
  CHECK_U64(e.undelivered_in, 0);
  const uint64_t in = h.splice->stats().bytes_in.load();
  CHECK_U64(r.user.received, in);
  CHECK(in >= 2 * kMiB);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, r.user.received));
  CHECK(r.user.got_eof);
}

void abort_stop(harness::TlsParams p) {
  test::begin_case("stop(false) mid-stream " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  std::atomic<bool> stopped{false};
  harness::PeerPlan peer;
  peer.send_bytes = 64 * kMiB;
  peer.shutdown_after_send = false;
  peer.timeout_seconds = 20;
  harness::UserPlan user;
  user.send_bytes = 64 * kMiB;
  user.close_after_send = false;
  user.on_read = [&](uint64_t got) {
    if (got >= 3 * kMiB && !stopped.exchange(true)) h.stop(false);
  };
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kAborted);
  CHECK_STR(e.code, "");
  CHECK(!e.close_notify_sent);
  CHECK(!r.peer.got_close_notify);
  CHECK(r.peer.got_error);
  // Delivered bytes are an exact prefix of each stream; the rest is reported or still in TCP.
  const SpliceStats& s = h.splice->stats();
  CHECK_U64(r.user.received, s.bytes_in.load());
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, r.user.received));
  CHECK(r.peer.received <= s.ciphertext_out.load());
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, r.peer.received));
  CHECK(r.peer.received + e.undelivered_out <= r.user.sent);
}

void abort_with_undelivered() {
  harness::TlsParams p = harness::all_params()[0];
  test::begin_case("stop(false) with a full sink " + harness::suite_label(p));
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 8 * kMiB;
  peer.shutdown_after_send = false;
  peer.timeout_seconds = 3;  // it will stall: nobody reads the user side
  std::thread t([&] { harness::run_peer(h.peer_ssl, h.peer_fd, peer); });
  // Wait until the splice has filled the socketpair and holds cleartext it cannot deliver.
  const SpliceStats& s = h.splice->stats();
  uint64_t last = UINT64_MAX;
  for (int i = 0; i < 200; i++) {
    usleep(20000);
    const uint64_t now = s.bytes_in.load();
    if (now == last && now > 0) break;
    last = now;
  }
  h.stop(false);
  CHECK(h.observer->wait_closed(10));
  t.join();
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kAborted);
  CHECK(e.undelivered_in > 0);
  // What the fd holds is exactly what the splice says it delivered, and a prefix.
  harness::set_nonblocking(h.user_read_fd, false);
  test::Sha256 sha;
  uint64_t got = 0;
  uint8_t buf[65536];
  for (;;) {
    const ssize_t n = read(h.user_read_fd, buf, sizeof(buf));
    if (n <= 0) break;
    sha.update(buf, static_cast<size_t>(n));
    got += static_cast<uint64_t>(n);
  }
  CHECK_U64(got, s.bytes_in.load());
  CHECK_STR(sha.hex_digest(), test::prng_digest(peer.seed, got));
  // Nothing is double-counted: delivered + undelivered is at most what was decrypted.
  CHECK(got + e.undelivered_in <= s.ciphertext_in.load());
}

void stop_twice() {
  harness::TlsParams p = harness::all_params()[3];
  test::begin_case("stop twice, and after the end " + harness::suite_label(p));
  {
    harness::Harness h(p);
    REQUIRE(h.start());
    h.stop(true);
    h.stop(true);
    h.stop(false);
    CHECK(h.observer->wait_closed(10));
    usleep(100000);
    h.stop(true);
    h.stop(false);
    usleep(100000);
    CHECK_EQ(h.observer->close_count, 1);
    CHECK(h.observer->end.reason == EndReason::kStopped ||
          h.observer->end.reason == EndReason::kAborted);
  }
  {
    // A normal end, then stop(): a no-op.
    harness::Harness h(p);
    REQUIRE(h.start());
    harness::PeerPlan peer;
    peer.send_bytes = 1000;
    harness::UserPlan user;
    user.send_bytes = 1000;
    const harness::RunResult r = harness::run(h, peer, user);
    CHECK(r.closed);
    h.stop(false);
    usleep(100000);
    CHECK_EQ(h.observer->close_count, 1);
    CHECK(h.observer->end.reason == EndReason::kEnd);
  }
}

}  // namespace

int main() {
  harness::init_openssl();
  for (const harness::TlsParams& base : {harness::all_params()[0], harness::all_params()[2],
                                         harness::all_params()[3], harness::all_params()[5]}) {
    for (bool server : {false, true}) {
      harness::TlsParams p = base;
      p.spliced_is_server = server;
      peer_closes_first(p);
      user_closes_first(p);
      peer_eof_without_close_notify(p);
      peer_truncated_record(p);
      peer_bad_record(p);
      data_after_close_notify(p);
      graceful_stop_out(p);
      graceful_stop_in(p);
      abort_stop(p);
    }
    harness::TlsParams pipes = base;
    pipes.pipes = true;
    peer_closes_first(pipes);
    user_closes_first(pipes);
  }
  abort_with_undelivered();
  stop_twice();
  return test::finish("test_splice_close");
}
