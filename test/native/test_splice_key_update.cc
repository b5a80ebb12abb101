// Pump integration, TLS 1.3 KeyUpdate after handover, against OpenSSL:
//  - the OpenSSL peer calls SSL_key_update(SSL_KEY_UPDATE_REQUESTED) several times mid-transfer:
//    the splice must follow the peer's new read key and answer with a KeyUpdate of its own
//    before its next application data (RFC 8446 4.6.3), which OpenSSL then follows;
//  - the splice sends its own KeyUpdates at a forced low key_update_after_records: OpenSSL must
//    keep reading correctly through every one of them;
//  - both at once.
#include "splice_harness.h"

using namespace tls_splice;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

void run_case(harness::TlsParams params, const std::vector<uint64_t>& peer_updates,
              uint64_t own_after, const std::string& what) {
  params.key_update_after_records = own_after;
  test::begin_case(what + " " + harness::suite_label(params));
  harness::Harness h(params);
  REQUIRE(h.start());
  harness::PeerPlan peer;
  peer.send_bytes = 16 * kMiB;
  peer.seed = 77;
  peer.key_update_at = peer_updates;
  harness::UserPlan user;
  user.send_bytes = 16 * kMiB + 3;
  user.seed = 78;
  const harness::RunResult r = harness::run(h, peer, user);
  CHECK(r.closed);
  CHECK_U64(r.user.received, peer.send_bytes);
  CHECK_STR(r.user.received_sha, test::prng_digest(peer.seed, peer.send_bytes));
  CHECK_U64(r.peer.received, user.send_bytes);
  CHECK_STR(r.peer.received_sha, test::prng_digest(user.seed, user.send_bytes));
  CHECK(r.peer.got_close_notify);
  CHECK_STR(r.peer.error, "");
  CHECK_EQ(r.peer.key_updates_sent, static_cast<int>(peer_updates.size()));
  const SpliceEnd& e = h.observer->end;
  CHECK(e.reason == EndReason::kEnd);
  CHECK_STR(e.code, "");
  const SpliceStats& s = h.splice->stats();
  CHECK_U64(s.key_updates_in.load(), peer_updates.size());
  if (own_after) {
    // Our own: one per own_after records sealed under a key (KeyUpdate records included).
    const uint64_t records = s.records_out.load();
    CHECK(s.key_updates_out.load() >= records / (own_after + 1) - 1);
    CHECK(s.key_updates_out.load() >= peer_updates.size());
  } else {
    // Only the answers: one per update_requested the peer sent while we still had data to
    // send (all of them here: the peer's updates come well before our stream ends).
    CHECK_U64(s.key_updates_out.load(), peer_updates.size());
  }
}

}  // namespace

int main() {
  harness::init_openssl();
  const auto params = harness::all_params();
  for (int i = 0; i < 3; i++) {
    for (bool server : {false, true}) {
      harness::TlsParams p = params[i];
      p.spliced_is_server = server;
      run_case(p, {1 * kMiB, 4 * kMiB + 100, 9 * kMiB}, 0, "peer KeyUpdate(update_requested)");
      run_case(p, {}, 37, "own KeyUpdate every 37 records");
    }
    run_case(params[i], {2 * kMiB, 3 * kMiB}, 11, "both");
  }
  return test::finish("test_splice_key_update");
}
