// A peer and a reader for record-layer tests: the "peer" seals whatever records a test wants
// (PeerSealer, with the server's write keys), and `feed` runs them through a client RecordLayer
// the way the pump does: read_record in a loop over a buffer, consuming what it says it used.
#ifndef TLS_SPLICE_RECORD_HARNESS_H_
#define TLS_SPLICE_RECORD_HARNESS_H_

#include <string>
#include <vector>

#include "test_util.h"

namespace test {

struct FeedResult {
  // The last outcome other than kNeedMore (kNeedMore when no record was complete).
  tls_splice::ReadOutcome last = tls_splice::ReadOutcome::kNeedMore;
  bool ended_need_more = false;  // the input ended inside (or before) a record
  size_t consumed = 0;     // input bytes consumed in total
  size_t records = 0;      // records that returned something other than kNeedMore / kError
  size_t controls = 0;     // kControl outcomes
  Bytes data;              // application data, concatenated
  bool close_notify = false;
};

// Feeds `input` to `layer` as the pump would, `chunk` bytes at a time (0 = all at once), until
// the input is used up, an error, or close_notify.
// The outcome's name in the fixture manifest: make_fixtures writes it, test_fixtures reads it.
inline const char* outcome_name(tls_splice::ReadOutcome o) {
  using tls_splice::ReadOutcome;
  switch (o) {
    case ReadOutcome::kNeedMore: return "need_more";
    case ReadOutcome::kApplicationData: return "data";
    case ReadOutcome::kControl: return "control";
    case ReadOutcome::kCloseNotify: return "close_notify";
    case ReadOutcome::kError: return "error";
  }
  return "?";
}

inline FeedResult feed(tls_splice::RecordLayer& layer, const Bytes& input, size_t chunk = 0) {
  using namespace tls_splice;
  FeedResult fr;
  Bytes out(kMaxOpenedLength);
  size_t available = chunk == 0 ? input.size() : std::min(chunk, input.size());
  for (;;) {
    const ReadResult r = layer.read_record(input.data() + fr.consumed, available - fr.consumed,
                                           out.data(), out.size());
    if (r.outcome == ReadOutcome::kError) {
      fr.last = r.outcome;
      return fr;
    }
    if (r.outcome == ReadOutcome::kNeedMore) {
      fr.ended_need_more = true;
      if (r.consumed != 0) {
        std::fprintf(stderr, "kNeedMore consumed %zu bytes\n", r.consumed);
        std::abort();
      }
      if (available == input.size()) return fr;
      available = chunk == 0 ? input.size() : std::min(available + chunk, input.size());
      continue;
    }
    fr.last = r.outcome;
    fr.ended_need_more = false;
    fr.consumed += r.consumed;
    fr.records++;
    if (r.outcome == ReadOutcome::kControl) fr.controls++;
    if (r.outcome == ReadOutcome::kApplicationData) {
      fr.data.insert(fr.data.end(), out.data(), out.data() + r.plaintext_length);
    }
    if (r.outcome == ReadOutcome::kCloseNotify) {
      fr.close_notify = true;
      return fr;
    }
  }
}

// One TLS session's two ends for a suite: `client` is the RecordLayer under test, `server` a
// RecordLayer reading what the client seals, `peer` seals records as the server would.
struct Session {
  KeyPair keys;
  tls_splice::RecordLayer client;
  tls_splice::RecordLayer server;
  PeerSealer peer;

  Session(tls_splice::TlsVersion version, uint16_t suite, uint64_t c2s_seq = 0,
          uint64_t s2c_seq = 0, uint64_t key_update_after = 0, size_t mfl = 16384)
      : keys(make_keys(version, suite, c2s_seq, s2c_seq)) {
    keys.client.key_update_after_records = key_update_after;
    keys.client.max_fragment_length = mfl;
    ok = client.init(keys.client, false) && server.init(keys.server, true) &&
         peer.init(keys.server);
  }
  bool ok = false;

  Bytes seal_data(const Bytes& b) { return peer.seal(tls_splice::ContentType::kApplicationData, b); }
  Bytes seal_handshake(const Bytes& b) { return peer.seal(tls_splice::ContentType::kHandshake, b); }
  Bytes seal_alert(uint8_t level, uint8_t description) {
    return peer.seal(tls_splice::ContentType::kAlert, Bytes{level, description});
  }
  // A TLS 1.3 KeyUpdate from the peer, after which the peer writes with the next secret.
  Bytes seal_key_update(uint8_t request_update) {
    Bytes rec = seal_handshake(Bytes{24, 0, 0, 1, request_update});
    peer.protection().update_traffic_secret();
    return rec;
  }
  bool tls13() const { return keys.client.version == tls_splice::TlsVersion::kTls13; }
};

// A well-formed RFC 8446 4.6.1 NewSessionTicket message (header included).
inline Bytes new_session_ticket(size_t ticket_length = 100, size_t nonce_length = 8) {
  Bytes body = {0, 0, 0x1c, 0x20,  /*lifetime*/ 1, 2, 3, 4 /*age_add*/};
  body.push_back(static_cast<uint8_t>(nonce_length));
  for (size_t i = 0; i < nonce_length; i++) body.push_back(static_cast<uint8_t>(i));
  body.push_back(static_cast<uint8_t>(ticket_length >> 8));
  body.push_back(static_cast<uint8_t>(ticket_length));
  for (size_t i = 0; i < ticket_length; i++) body.push_back(static_cast<uint8_t>(0xa5 ^ i));
  // extensions: early_data(42) with max_early_data_size
  body.insert(body.end(), {0, 8, 0, 42, 0, 4, 0, 0, 0x40, 0});
  Bytes msg = {4, static_cast<uint8_t>(body.size() >> 16), static_cast<uint8_t>(body.size() >> 8),
               static_cast<uint8_t>(body.size())};
  msg.insert(msg.end(), body.begin(), body.end());
  return msg;
}

}  // namespace test

#endif  // TLS_SPLICE_RECORD_HARNESS_H_
