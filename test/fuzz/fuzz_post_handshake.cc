// Fuzz target: post-handshake message parsing (HandshakeAssembler and the record layer's
// dispatch of tickets, KeyUpdate, alerts, HelloRequest, CertificateRequest, messages split
// across records). Authentication is not the obstacle here: the input is a script of records
// that the target seals with the peer's keys, so every one of them decrypts.
//
// Input: setup byte (fuzz_common.h), then ops, each `op len_hi len_lo payload[len]`:
//   op % 8 == 0  a handshake record carrying payload (a KeyUpdate message switches the peer's
//                keys after it, as a real peer would)
//   op % 8 == 1  an application_data record
//   op % 8 == 2  an alert record
//   op % 8 == 3  raw bytes, unsealed (garbage, partial headers)
//   op % 8 == 4  TLS 1.3: a record with inner type op >> 3 (and the payload as content +
//                padding); TLS 1.2: a record of outer type op >> 3
//   op % 8 == 5  the peer moves to its next traffic secret without telling us
//   op % 8 == 6  we seal application data (payload, non-empty) back to the peer, which must open it
//   op % 8 == 7  a standalone HandshakeAssembler gets payload as one append()
// Everything the layer under test seals (KeyUpdate answers, refusals, alerts, data) is opened
// by a second record layer holding the peer's keys: it must always authenticate.
#include "../../src-native/post_handshake.h"
#include "fuzz_common.h"

using namespace tls_splice;

namespace {

void check_assembler(HandshakeAssembler& assembler, const uint8_t* p, size_t n) {
  const bool appended = assembler.append(p, n);
  for (int i = 0; i < 100000; i++) {
    HandshakeMessage m{};
    const NextMessageStatus st = assembler.next(&m);
    if (st == NextMessageStatus::kNeedMore) break;
    if (st == NextMessageStatus::kTooLarge) {
      assembler.clear();
      break;
    }
    FUZZ_INVARIANT(appended);
    FUZZ_INVARIANT(m.body_length <= kMaxPostHandshakeMessageLength);
    if (m.body_length) {
      volatile uint8_t sink = m.body[0] ^ m.body[m.body_length - 1];  // ASan checks the bounds
      (void)sink;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::Setup setup = fuzz::setup_from(data[0]);
  const bool tls13 = setup.suite->version == TlsVersion::kTls13;
  test::KeyPair kp = test::make_keys(setup.suite->version, setup.suite->id, 0, 0);
  const SessionKeys& mine = setup.is_server ? kp.server : kp.client;
  const SessionKeys& theirs = setup.is_server ? kp.client : kp.server;
  RecordLayer layer, peer_reader;
  test::PeerSealer peer;
  if (!layer.init(mine, setup.is_server) || !peer_reader.init(theirs, !setup.is_server) ||
      !peer.init(theirs)) {
    __builtin_trap();
  }
  HandshakeAssembler assembler;
  test::Bytes stream;    // what the peer sent us, in order
  test::Bytes to_peer;   // what we sealed for the peer
  size_t pos = 1;
  while (pos + 3 <= size && stream.size() < (1 << 20)) {
    const uint8_t op = data[pos];
    size_t len = (size_t{data[pos + 1]} << 8) | data[pos + 2];
    pos += 3;
    len = std::min(len, size - pos);
    const test::Bytes payload(data + pos, data + pos + len);
    pos += len;
    test::Bytes rec;
    switch (op % 8) {
      case 0:
        rec = peer.seal(ContentType::kHandshake, test::Bytes(payload.begin(),
                        payload.begin() + std::min(len, kMaxPlaintextLength)));
        if (tls13 && len >= 5 && payload[0] == 24 && payload[1] == 0 && payload[2] == 0 &&
            payload[3] == 1) {
          peer.protection().update_traffic_secret();
        }
        break;
      case 1:
        rec = peer.seal(ContentType::kApplicationData,
                        test::Bytes(payload.begin(), payload.begin() + std::min(len, kMaxPlaintextLength)));
        break;
      case 2:
        rec = peer.seal(ContentType::kAlert,
                        test::Bytes(payload.begin(), payload.begin() + std::min(len, kMaxPlaintextLength)));
        break;
      case 3:
        rec = payload;
        break;
      case 4:
        if (tls13) {
          test::Bytes inner = payload;
          inner.insert(inner.begin() + std::min<size_t>(inner.size(), len / 2), op >> 3);
          rec = test::seal_tls13_inner(theirs, peer.protection().seq(), inner);
          // Keep the peer's sequence in step with the record we made by hand.
          test::Bytes scratch(peer.protection().sealed_length(0));
          peer.protection().seal(ContentType::kApplicationData, nullptr, 0, scratch.data());
        } else {
          rec = peer.seal(op >> 3, test::Bytes(payload.begin(),
                          payload.begin() + std::min(len, kMaxPlaintextLength)));
        }
        break;
      case 5:
        if (tls13) peer.protection().update_traffic_secret();
        break;
      case 6: {
        // The pump only seals what a read() returned (> 0 bytes): no empty records, which a
        // peer may rightly count as a flood (kMaxEmptyRecordsInARow).
        if (len == 0) break;
        const size_t n = std::min(len, layer.max_fragment_length());
        test::Bytes out(layer.max_sealed_length(n));
        const size_t w = layer.seal_application_data(payload.data(), n, out.data(), out.size());
        if (w == 0) {
          FUZZ_INVARIANT(layer.error() != RecordError::kNone);
        } else {
          to_peer.insert(to_peer.end(), out.begin(), out.begin() + w);
        }
        break;
      }
      case 7:
        check_assembler(assembler, payload.data(), payload.size());
        break;
    }
    stream.insert(stream.end(), rec.begin(), rec.end());
  }

  // Feed the whole script to the layer under test.
  static uint8_t out[kMaxOpenedLength];
  static uint8_t sealed[4 * kMaxControlRecordLength];
  size_t consumed = 0;
  size_t window = setup.chunk == 0 ? stream.size() : std::min(stream.size(), setup.chunk);
  for (;;) {
    const ReadResult r = layer.read_record(stream.data() + consumed, window - consumed, out,
                                           sizeof(out));
    if (r.outcome == ReadOutcome::kError) {
      FUZZ_INVARIANT(layer.error() != RecordError::kNone);
      if (layer.alert_to_send() != AlertDescription::kNone) {
        const size_t n = layer.seal_alert(layer.alert_to_send(), sealed, sizeof(sealed));
        FUZZ_INVARIANT(n > 0);
        to_peer.insert(to_peer.end(), sealed, sealed + n);
      }
      break;
    }
    if (r.outcome == ReadOutcome::kNeedMore) {
      FUZZ_INVARIANT(r.consumed == 0);
      if (window == stream.size()) break;
      window = setup.chunk == 0 ? stream.size() : std::min(stream.size(), window + setup.chunk);
      continue;
    }
    FUZZ_INVARIANT(r.consumed > 0 && r.consumed <= window - consumed);
    if (r.outcome == ReadOutcome::kApplicationData) {
      FUZZ_INVARIANT(r.plaintext_length > 0 && r.plaintext_length <= kMaxPlaintextLength);
    }
    consumed += r.consumed;
    if (layer.has_pending_control()) {
      const size_t n = layer.seal_pending_control(sealed, sizeof(sealed));
      FUZZ_INVARIANT(n > 0);
      to_peer.insert(to_peer.end(), sealed, sealed + n);
    }
    if (r.outcome == ReadOutcome::kCloseNotify) break;
  }

  // Whatever we sealed, the peer opens (data, KeyUpdates, refusals, and at most one alert last).
  size_t off = 0;
  while (off < to_peer.size()) {
    const ReadResult pr = peer_reader.read_record(to_peer.data() + off, to_peer.size() - off, out,
                                                  sizeof(out));
    if (pr.outcome == ReadOutcome::kError) {
      // Only the closing alert may end it: a fatal alert from us, at the very end.
      if (peer_reader.error() != RecordError::kPeerAlert &&
          peer_reader.error() != RecordError::kKeyUpdateFlood) {
        std::fprintf(stderr, "peer refused our record at %zu of %zu: %s; layer under test: %s\n",
                     off, to_peer.size(), record_error_code(peer_reader.error()),
                     record_error_code(layer.error()));
      }
      // Or: the peer asked for more than kMaxKeyUpdatesInARow updates while we sent no data,
      // and its own flood rule (the same as BoringSSL's kMaxKeyUpdates) counts our answers.
      FUZZ_INVARIANT(peer_reader.error() == RecordError::kPeerAlert ||
                     (peer_reader.error() == RecordError::kKeyUpdateFlood &&
                      layer.stats().key_updates_out > kMaxKeyUpdatesInARow));
      break;
    }
    FUZZ_INVARIANT(pr.outcome != ReadOutcome::kNeedMore);
    off += pr.consumed;
    if (pr.outcome == ReadOutcome::kCloseNotify) break;
  }
  layer.wipe();
  return 0;
}
