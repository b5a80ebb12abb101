// Fuzz target: record deframing and open, through RecordLayer::read_record, for TLS 1.2 and 1.3
// and every suite, both roles. The input after the setup byte is the raw TCP byte stream from
// the peer, fed the way the pump feeds it (a growing window of `chunk` bytes). Keys are the
// fixed test keys (test_util.h make_keys), so corpus seeds sealed with them decrypt and the
// mutator can reach past authentication from them.
//
// Invariants: kNeedMore consumes nothing; other outcomes consume one whole record within the
// input; plaintext fits in what was consumed and in 2^14; once kError, always kError; whatever
// is owed (control records, the alert) can be sealed and the peer opens it.
#include "fuzz_common.h"

using namespace tls_splice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::Setup setup = fuzz::setup_from(data[0]);
  data++;
  size--;
  test::KeyPair kp = test::make_keys(setup.suite->version, setup.suite->id, 0, 0);
  RecordLayer layer, peer;
  const SessionKeys& mine = setup.is_server ? kp.server : kp.client;
  const SessionKeys& theirs = setup.is_server ? kp.client : kp.server;
  if (!layer.init(mine, setup.is_server) || !peer.init(theirs, !setup.is_server)) __builtin_trap();

  static uint8_t out[kMaxOpenedLength];
  static uint8_t sealed[4 * kMaxControlRecordLength + kMaxRecordLength];
  size_t consumed = 0;
  size_t window = setup.chunk == 0 ? size : std::min(size, setup.chunk);
  bool dead = false;
  for (int guard = 0; guard < 1 << 20; guard++) {
    const ReadResult r = layer.read_record(data + consumed, window - consumed, out, sizeof(out));
    if (dead) FUZZ_INVARIANT(r.outcome == ReadOutcome::kError);
    if (r.outcome == ReadOutcome::kError) {
      FUZZ_INVARIANT(r.consumed == 0);
      FUZZ_INVARIANT(layer.error() != RecordError::kNone);
      FUZZ_INVARIANT(!layer.has_pending_control() ||
                     layer.seal_pending_control(sealed, sizeof(sealed)) == 0);
      if (dead) break;
      dead = true;
      if (layer.alert_to_send() != AlertDescription::kNone) {
        const size_t n = layer.seal_alert(layer.alert_to_send(), sealed, sizeof(sealed));
        FUZZ_INVARIANT(n > 0);
        const ReadResult pr = peer.read_record(sealed, n, out, sizeof(out));
        FUZZ_INVARIANT(pr.outcome == ReadOutcome::kError && peer.error() == RecordError::kPeerAlert);
      }
      continue;  // one more call must say kError again
    }
    if (r.outcome == ReadOutcome::kNeedMore) {
      FUZZ_INVARIANT(r.consumed == 0);
      if (window == size) break;
      window = setup.chunk == 0 ? size : std::min(size, window + setup.chunk);
      continue;
    }
    FUZZ_INVARIANT(r.consumed >= kRecordHeaderLength + kAeadTagLength);
    FUZZ_INVARIANT(r.consumed <= window - consumed);
    if (r.outcome == ReadOutcome::kApplicationData) {
      FUZZ_INVARIANT(r.plaintext_length > 0);
      FUZZ_INVARIANT(r.plaintext_length <= kMaxPlaintextLength);
      FUZZ_INVARIANT(r.plaintext_length < r.consumed);
    }
    consumed += r.consumed;
    if (layer.has_pending_control()) {
      const size_t n = layer.seal_pending_control(sealed, sizeof(sealed));
      FUZZ_INVARIANT(n > 0);
      size_t off = 0;
      while (off < n) {
        const ReadResult pr = peer.read_record(sealed + off, n - off, out, sizeof(out));
        FUZZ_INVARIANT(pr.outcome == ReadOutcome::kControl);
        off += pr.consumed;
      }
    }
    if (r.outcome == ReadOutcome::kCloseNotify) break;
  }
  layer.wipe();
  return 0;
}
