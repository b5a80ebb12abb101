// Splice options that act on the fds, against OpenSSL over loopback TCP:
//  - no_delay: TCP_NODELAY on the TLS connection and on a TCP target (not on a Unix socket);
//    off, the fds are left as they were;
//  - on_truncation: the peer's TCP ends without close_notify. kEnd passes it on as an end (the
//    target reads EOF); kReset ends the splice and the target's last close sends a reset (the
//    target reads ECONNRESET after every byte that came before the cut).
#include <netinet/tcp.h>

#include "splice_harness.h"

using namespace tls_splice;

namespace {

bool tcp_nodelay(int fd) {
  int on = 0;
  socklen_t length = sizeof(on);
  if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &length) != 0) return false;
  return on != 0;
}

void no_delay(harness::TlsParams p, bool on, bool tcp_target) {
  test::begin_case(std::string("no_delay ") + (on ? "on " : "off ") +
                   (tcp_target ? "TCP target " : "socketpair target ") + harness::suite_label(p));
  p.harness_nodelay = false;
  p.keep_fd_copies = true;
  p.no_delay = on;
  p.tcp_target = tcp_target;
  harness::Harness h(p);
  REQUIRE(h.start());
  REQUIRE(h.tcp_fd_copy >= 0 && h.target_fd_copy >= 0);
  harness::PeerPlan peer;
  peer.send_bytes = 64 * 1024;
  harness::UserPlan user;
  user.send_bytes = 32 * 1024;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(tcp_nodelay(h.tcp_fd_copy) == on);
  if (tcp_target) CHECK(tcp_nodelay(h.target_fd_copy) == on);
}

struct TargetRead {
  uint64_t received = 0;
  std::string sha;
  bool eof = false;
  int error = 0;  // the errno that ended reading, 0 for EOF
};

// Reads the target's other end until EOF or an error (bounded).
TargetRead read_target(int fd) {
  TargetRead r;
  test::Sha256 sha;
  std::vector<uint8_t> buffer(65536);
  const auto deadline = harness::Clock::now() + std::chrono::seconds(30);
  while (harness::Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 50);
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n > 0) {
      sha.update(buffer.data(), static_cast<size_t>(n));
      r.received += static_cast<uint64_t>(n);
    } else if (n == 0) {
      r.eof = true;
      break;
    } else if (errno != EAGAIN && errno != EINTR) {
      r.error = errno;
      break;
    }
  }
  r.sha = sha.hex_digest();
  return r;
}

void truncation(harness::TlsParams p, Truncation policy) {
  const bool reset = policy == Truncation::kReset;
  test::begin_case(std::string("peer EOF without close_notify, on_truncation ") +
                   (reset ? "reset " : "end ") + harness::suite_label(p));
  p.tcp_target = true;
  p.on_truncation = policy;
  harness::Harness h(p);
  REQUIRE(h.start());
  harness::set_nonblocking(h.user_read_fd, true);
  harness::PeerPlan peer;
  // Small enough to sit in the loopback socket buffers: a reset discards what was not yet read.
  peer.send_bytes = 40000;
  peer.shutdown_after_send = false;
  peer.raw_eof_after_send = true;
  harness::PeerResult peer_result;
  std::thread t([&] { peer_result = harness::run_peer(h.peer_ssl, h.peer_fd, peer); });
  TargetRead got;
  if (reset) {
    // The splice ends at the cut and closes its fd, the last one of the socket: a reset.
    got = read_target(h.user_read_fd);
  } else {
    // The end is passed on as a FIN; the splice goes on until our side closes too.
    got = read_target(h.user_read_fd);
    shutdown(h.user_write_fd, SHUT_WR);
  }
  t.join();
  CHECK(h.observer->wait_closed(30));
  CHECK_U64(got.received, peer.send_bytes);
  CHECK_STR(got.sha, test::prng_digest(peer.seed, peer.send_bytes));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK(e.peer_eof_without_close_notify);
  if (reset) {
    CHECK(!got.eof);
    CHECK_EQ(got.error, ECONNRESET);
    // Not passed on as an end: the JS layer would shut the target's write side.
    CHECK_EQ(h.observer->peer_end_count, 0);
  } else {
    CHECK(got.eof);
    CHECK_EQ(got.error, 0);
    CHECK_EQ(h.observer->peer_end_count, 1);
  }
}

}  // namespace

int main() {
  harness::init_openssl();
  for (const harness::TlsParams& base : {harness::all_params()[0], harness::all_params()[3]}) {
    for (bool server : {false, true}) {
      harness::TlsParams p = base;
      p.spliced_is_server = server;
      for (bool on : {true, false}) {
        no_delay(p, on, true);
        no_delay(p, on, false);
      }
      truncation(p, Truncation::kEnd);
      truncation(p, Truncation::kReset);
    }
  }
  return test::finish("test_splice_options");
}
