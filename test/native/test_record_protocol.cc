// The protocol the record layer speaks after handover: empty-record and KeyUpdate floods,
// KeyUpdate validation and answers, our own KeyUpdate, NewSessionTicket reassembly and
// skipping, alerts, TLS 1.2 renegotiation refusal, TLS 1.3 post-handshake auth refusal,
// max_fragment_length and sequence-number exhaustion, the cap on our own KeyUpdate interval, and
// the TLS 1.2 AES-GCM explicit nonce after handover.
#include <string>

#include "record_harness.h"

using namespace tls_splice;
using test::Bytes;

namespace {

constexpr TlsVersion k13 = TlsVersion::kTls13;
constexpr TlsVersion k12 = TlsVersion::kTls12;

void expect_error(test::Session& s, const test::FeedResult& fr, RecordError error,
                  AlertDescription alert, const std::string& what) {
  const bool ok = fr.last == ReadOutcome::kError && s.client.error() == error &&
                  s.client.alert_to_send() == alert;
  test::report(ok, __FILE__, __LINE__,
               what + ": outcome " + std::to_string(static_cast<int>(fr.last)) + " error " +
                   record_error_code(s.client.error()) + " alert " +
                   alert_name(static_cast<uint8_t>(s.client.alert_to_send())) + ", want " +
                   record_error_code(error) + " / " + alert_name(static_cast<uint8_t>(alert)));
}

// The records `layer` seals for `length` bytes of data (and any control records before them).
Bytes seal_data(RecordLayer& layer, const Bytes& data) {
  Bytes out(layer.max_sealed_length(data.size()));
  const size_t n = layer.seal_application_data(data.data(), data.size(), out.data(), out.size());
  out.resize(n);
  return out;
}

void test_empty_records() {
  for (const test::SuiteCase& sc : test::all_suites()) {
    test::begin_case(std::string("empty records ") + sc.label);
    {
      // RFC 8446 5.1 allows zero-length application data; 32 in a row are skipped...
      test::Session s(sc.version, sc.id);
      Bytes in;
      for (uint32_t i = 0; i < kMaxEmptyRecordsInARow; i++) {
        const Bytes r = s.seal_data({});
        in.insert(in.end(), r.begin(), r.end());
      }
      test::FeedResult fr = test::feed(s.client, in);
      CHECK(fr.last == ReadOutcome::kControl);
      CHECK_EQ(fr.controls, kMaxEmptyRecordsInARow);
      // ... data resets the count ...
      const Bytes data = s.seal_data(Bytes{1, 2, 3});
      fr = test::feed(s.client, data);
      CHECK(fr.last == ReadOutcome::kApplicationData);
      // ... and the 33rd in a row is a flood.
      in.clear();
      for (uint32_t i = 0; i <= kMaxEmptyRecordsInARow; i++) {
        const Bytes r = s.seal_data({});
        in.insert(in.end(), r.begin(), r.end());
      }
      fr = test::feed(s.client, in);
      expect_error(s, fr, RecordError::kEmptyRecordFlood, AlertDescription::kUnexpectedMessage,
                   "33 empty records");
      CHECK_EQ(fr.controls, kMaxEmptyRecordsInARow);
    }
    {
      // 10,000 empty records (the hostile-peer case of issue 6): refused at the 33rd.
      test::Session s(sc.version, sc.id);
      Bytes in;
      for (int i = 0; i < 10000; i++) {
        const Bytes r = s.seal_data({});
        in.insert(in.end(), r.begin(), r.end());
      }
      const test::FeedResult fr = test::feed(s.client, in, 4096);
      expect_error(s, fr, RecordError::kEmptyRecordFlood, AlertDescription::kUnexpectedMessage,
                   "10000 empty records");
    }
  }
}

void test_key_update_from_peer() {
  for (const uint16_t suite : {0x1301, 0x1302, 0x1303}) {
    test::begin_case("peer KeyUpdate " + std::to_string(suite));
    {
      // update_not_requested: follow the new key; nothing owed.
      test::Session s(k13, suite, 0, 5);
      const Bytes in = test::concat({s.seal_data(Bytes{1}), s.seal_key_update(0),
                                     s.seal_data(Bytes{2, 3})});
      const test::FeedResult fr = test::feed(s.client, in);
      CHECK(fr.last == ReadOutcome::kApplicationData);
      CHECK(fr.data == Bytes({1, 2, 3}));
      CHECK_U64(s.client.stats().key_updates_in, 1);
      CHECK_U64(s.client.read_seq(), 1);  // restarted at 0 under the new key
      CHECK(!s.client.has_pending_control());
    }
    {
      // RFC 8446 4.6.3: "If the request_update field is set to "update_requested", then the
      // receiver MUST send a KeyUpdate of its own with request_update set to
      // "update_not_requested" prior to sending its next Application Data record."
      test::Session s(k13, suite, 3, 0);
      const test::FeedResult fr = test::feed(s.client, s.seal_key_update(1));
      CHECK(fr.last == ReadOutcome::kControl);
      CHECK(s.client.has_pending_control());
      const Bytes out = seal_data(s.client, Bytes{'h', 'i'});
      // The server side (a second record layer with the keys swapped) follows it.
      const test::FeedResult srv = test::feed(s.server, out);
      CHECK(srv.last == ReadOutcome::kApplicationData);
      CHECK_EQ(srv.records, 2u);
      CHECK(srv.data == Bytes({'h', 'i'}));
      CHECK_U64(s.server.stats().key_updates_in, 1);
      CHECK_U64(s.client.stats().key_updates_out, 1);
      CHECK(!s.client.has_pending_control());
      // The answer is update_not_requested: the server owes nothing back.
      CHECK(!s.server.has_pending_control());
      // seal_pending_control sends the answer on its own, too.
      test::Session s2(k13, suite);
      test::feed(s2.client, s2.seal_key_update(1));
      Bytes ctl(2 * kMaxControlRecordLength);
      const size_t n = s2.client.seal_pending_control(ctl.data(), ctl.size());
      CHECK(n > 0);
      CHECK_EQ(s2.client.seal_pending_control(ctl.data(), ctl.size()), 0u);  // owed once
      ctl.resize(n);
      const test::FeedResult fr2 = test::feed(s2.server, ctl);
      CHECK(fr2.last == ReadOutcome::kControl);
      CHECK_U64(s2.server.stats().key_updates_in, 1);
      const test::FeedResult fr3 = test::feed(s2.server, seal_data(s2.client, Bytes{9}));
      CHECK(fr3.data == Bytes({9}));
    }
    {
      // Two update_requested in a row are answered with one KeyUpdate.
      test::Session s(k13, suite);
      test::feed(s.client, test::concat({s.seal_key_update(1), s.seal_key_update(1)}));
      const Bytes out = seal_data(s.client, Bytes{7});
      const test::FeedResult fr = test::feed(s.server, out);
      CHECK(fr.data == Bytes({7}));
      CHECK_U64(s.client.stats().key_updates_out, 1);
    }
    {
      // RFC 8446 4.6.3: request_update other than 0 or 1: "MUST ... terminate the connection
      // with an "illegal_parameter" alert" (the enum has no other value).
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{24, 0, 0, 1, 2})),
                   RecordError::kIllegalParameter, AlertDescription::kIllegalParameter,
                   "KeyUpdate value 2");
    }
    for (const Bytes& bad : {Bytes{24, 0, 0, 0}, Bytes{24, 0, 0, 2, 0, 0}}) {
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(bad)), RecordError::kDecodeError,
                   AlertDescription::kDecodeError, "KeyUpdate length " + std::to_string(bad[3]));
    }
    {
      // RFC 8446 5.1: "Because the ServerHello, Finished, EndOfEarlyData, and KeyUpdate
      // messages can immediately precede a key change, implementations MUST enforce that these
      // messages align with a record boundary"; otherwise unexpected_message.
      test::Session s(k13, suite);
      Bytes msg = {24, 0, 0, 1, 0};
      const Bytes ticket = test::new_session_ticket();
      msg.insert(msg.end(), ticket.begin(), ticket.begin() + 10);
      expect_error(s, test::feed(s.client, s.seal_handshake(msg)),
                   RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage,
                   "KeyUpdate followed by more in its record");
    }
    {
      // A whole message before the KeyUpdate in the same record is fine: the KeyUpdate ends it.
      test::Session s(k13, suite);
      const Bytes msg = test::concat({test::new_session_ticket(), Bytes{24, 0, 0, 1, 0}});
      Bytes rec = s.seal_handshake(msg);
      s.peer.protection().update_traffic_secret();
      const test::FeedResult fr = test::feed(s.client, test::concat({rec, s.seal_data({5})}));
      CHECK(fr.data == Bytes({5}));
      CHECK_U64(s.client.stats().tickets_in, 1);
      CHECK_U64(s.client.stats().key_updates_in, 1);
    }
    {
      // A KeyUpdate split over two records still ends on a boundary.
      test::Session s(k13, suite);
      Bytes a = s.seal_handshake(Bytes{24, 0});
      Bytes b = s.seal_handshake(Bytes{0, 1, 1});
      s.peer.protection().update_traffic_secret();
      const test::FeedResult fr = test::feed(s.client, test::concat({a, b, s.seal_data({6})}));
      CHECK(fr.data == Bytes({6}));
      CHECK(s.client.has_pending_control());
    }
    {
      // A peer that sends only KeyUpdates is burning our CPU: 32 in a row are followed, the
      // 33rd is refused. Data in between resets the count.
      test::Session s(k13, suite);
      Bytes in;
      for (uint32_t i = 0; i < kMaxKeyUpdatesInARow; i++) {
        const Bytes r = s.seal_key_update(i % 2);
        in.insert(in.end(), r.begin(), r.end());
      }
      const Bytes d = s.seal_data({1});
      in.insert(in.end(), d.begin(), d.end());
      test::FeedResult fr = test::feed(s.client, in);
      CHECK(fr.last == ReadOutcome::kApplicationData);
      CHECK_U64(s.client.stats().key_updates_in, kMaxKeyUpdatesInARow);
      in.clear();
      for (uint32_t i = 0; i <= kMaxKeyUpdatesInARow; i++) {
        const Bytes r = s.seal_key_update(0);
        in.insert(in.end(), r.begin(), r.end());
      }
      fr = test::feed(s.client, in);
      expect_error(s, fr, RecordError::kKeyUpdateFlood, AlertDescription::kUnexpectedMessage,
                   "33 KeyUpdates");
    }
  }
  {
    // KeyUpdate does not exist in TLS 1.2.
    test::Session s(k12, 0xC02F);
    expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{24, 0, 0, 1, 0})),
                 RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage,
                 "tls12 KeyUpdate");
  }
}

void test_own_key_update() {
  for (const uint16_t suite : {0x1301, 0x1302, 0x1303}) {
    test::begin_case("own KeyUpdate " + std::to_string(suite));
    // RFC 8446 5.5: rekey before the usage limit. Forced down to 3 records per key: before the
    // 4th, 7th and 10th data records a KeyUpdate goes out, and the peer reads them all.
    test::Session s(k13, suite, 0, 0, /*key_update_after=*/3);
    Bytes all;
    Bytes want;
    for (int i = 0; i < 10; i++) {
      const Bytes msg(100 + i, static_cast<uint8_t>(i));
      want.insert(want.end(), msg.begin(), msg.end());
      const Bytes rec = seal_data(s.client, msg);
      all.insert(all.end(), rec.begin(), rec.end());
    }
    CHECK_U64(s.client.stats().key_updates_out, 3);
    CHECK_U64(s.client.stats().records_out, 13);
    CHECK_U64(s.client.write_seq(), 1);
    const test::FeedResult fr = test::feed(s.server, all);
    CHECK(fr.data == want);
    CHECK_EQ(fr.records, 13u);
    CHECK_U64(s.server.stats().key_updates_in, 3);
    // Our own KeyUpdates do not request one back.
    CHECK(!s.server.has_pending_control());
  }
  {
    // A handover at a sequence number already past the limit rekeys at once.
    test::begin_case("own KeyUpdate past the limit");
    test::Session s(k13, 0x1301, (uint64_t{1} << 24) + 5, 0);
    const Bytes rec = seal_data(s.client, Bytes{1});
    CHECK_U64(s.client.stats().key_updates_out, 1);
    CHECK(test::feed(s.server, rec).data == Bytes({1}));
  }
}

void test_tickets() {
  for (const uint16_t suite : {0x1301, 0x1302, 0x1303}) {
    test::begin_case("tickets " + std::to_string(suite));
    const Bytes ticket = test::new_session_ticket(200);
    {
      // Two tickets, each in its own record (what OpenSSL and GnuTLS send), then data.
      test::Session s(k13, suite);
      const test::FeedResult fr = test::feed(
          s.client, test::concat({s.seal_handshake(ticket), s.seal_handshake(ticket),
                                  s.seal_data({1, 2})}));
      CHECK(fr.data == Bytes({1, 2}));
      CHECK_EQ(fr.controls, 2u);
      CHECK_U64(s.client.stats().tickets_in, 2);
    }
    {
      // One ticket in three records, reassembled (RFC 8446 5.1: handshake messages may be
      // fragmented across records), fed one byte at a time.
      test::Session s(k13, suite);
      const size_t a = 3, b = 100;
      const Bytes in = test::concat(
          {s.seal_handshake(Bytes(ticket.begin(), ticket.begin() + a)),
           s.seal_handshake(Bytes(ticket.begin() + a, ticket.begin() + b)),
           s.seal_handshake(Bytes(ticket.begin() + b, ticket.end())), s.seal_data({3})});
      const test::FeedResult fr = test::feed(s.client, in, 1);
      CHECK(fr.data == Bytes({3}));
      CHECK_U64(s.client.stats().tickets_in, 1);
      CHECK_EQ(fr.consumed, in.size());
    }
    {
      // Two tickets in one record.
      test::Session s(k13, suite);
      const test::FeedResult fr =
          test::feed(s.client, s.seal_handshake(test::concat({ticket, ticket})));
      CHECK(fr.last == ReadOutcome::kControl);
      CHECK_U64(s.client.stats().tickets_in, 2);
    }
    {
      // RFC 8446 5.1: "Handshake messages MUST NOT be interleaved with other record types.
      // That is, if a handshake message is split over two or more records, there MUST NOT be
      // any other records between them." Application data, or an alert, in between:
      for (int other = 0; other < 2; other++) {
        test::Session s(k13, suite);
        const Bytes in = test::concat({s.seal_handshake(Bytes(ticket.begin(), ticket.begin() + 50)),
                                       other == 0 ? s.seal_data({1}) : s.seal_alert(1, 0),
                                       s.seal_handshake(Bytes(ticket.begin() + 50, ticket.end()))});
        expect_error(s, test::feed(s.client, in), RecordError::kUnexpectedMessage,
                     AlertDescription::kUnexpectedMessage, "ticket interleaved");
        CHECK_U64(s.client.stats().tickets_in, 0);
      }
    }
    // Malformed tickets: RFC 8446 4.6.1 ticket<1..2^16-1>, exact lengths.
    const std::vector<std::pair<std::string, Bytes>> bad = {
        {"empty ticket", test::new_session_ticket(0)},
        {"body too short", Bytes{4, 0, 0, 3, 0, 0, 0}},
        {"empty body", Bytes{4, 0, 0, 0}},
        {"trailing byte", [&] {
           Bytes t = ticket;
           t.push_back(0);
           t[3]++;
           return t;
         }()},
        {"extensions overrun", [&] {
           Bytes t = ticket;
           t[t.size() - 9] = 0x20;  // extensions length low byte (8 -> 32)
           return t;
         }()},
        {"nonce overrun", Bytes{4, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 2, 200, 0}},
    };
    for (const auto& [name, msg] : bad) {
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(msg)), RecordError::kDecodeError,
                   AlertDescription::kDecodeError, "malformed ticket: " + name);
    }
    {
      // A message longer than any post-handshake message may be is refused from its header.
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{4, 0x7f, 0xff, 0xff})),
                   RecordError::kMessageTooLarge, AlertDescription::kIllegalParameter,
                   "ticket of 8 MiB");
    }
    {
      // A zero-length handshake record. RFC 8446 5.1: "Implementations MUST NOT send
      // zero-length fragments of Handshake types".
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake({})), RecordError::kUnexpectedRecord,
                   AlertDescription::kUnexpectedMessage, "empty handshake record");
    }
    {
      // The largest legitimate ticket (65535 bytes of ticket) in 5 records is accepted.
      test::Session s(k13, suite);
      const Bytes big = test::new_session_ticket(65535, 255);
      Bytes in;
      for (size_t off = 0; off < big.size(); off += kMaxPlaintextLength) {
        const size_t n = std::min(kMaxPlaintextLength, big.size() - off);
        const Bytes r = s.seal_handshake(Bytes(big.begin() + off, big.begin() + off + n));
        in.insert(in.end(), r.begin(), r.end());
      }
      const test::FeedResult fr = test::feed(s.client, in);
      CHECK(fr.last == ReadOutcome::kControl);
      CHECK_U64(s.client.stats().tickets_in, 1);
    }
    {
      // Handshake messages the client does not accept after the handshake.
      for (uint8_t type : {uint8_t{1}, uint8_t{2}, uint8_t{8}, uint8_t{11}, uint8_t{20}, uint8_t{0}}) {
        test::Session s(k13, suite);
        expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{type, 0, 0, 1, 0})),
                     RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage,
                     "handshake type " + std::to_string(type));
      }
    }
    {
      // RFC 8446 4.6.2: "A client that receives a CertificateRequest message without having
      // sent the "post_handshake_auth" extension MUST send an "unexpected_message" fatal alert."
      test::Session s(k13, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{13, 0, 0, 4, 0, 0, 0, 0})),
                   RecordError::kPostHandshakeAuth, AlertDescription::kUnexpectedMessage,
                   "CertificateRequest");
    }
  }
}

void test_alerts() {
  for (const test::SuiteCase& sc : test::all_suites()) {
    test::begin_case(std::string("alerts ") + sc.label);
    const bool tls13 = sc.version == k13;
    {
      test::Session s(sc.version, sc.id);
      const test::FeedResult fr = test::feed(
          s.client, test::concat({s.seal_data({1, 2}), s.seal_alert(1, 0), s.seal_data({3})}));
      CHECK(fr.close_notify);
      CHECK(fr.last == ReadOutcome::kCloseNotify);
      CHECK(fr.data == Bytes({1, 2}));
    }
    {
      // A fatal alert ends the session with it; none is sent back (RFC 8446 6.2).
      test::Session s(sc.version, sc.id);
      const test::FeedResult fr = test::feed(s.client, s.seal_alert(2, 20));
      expect_error(s, fr, RecordError::kPeerAlert, AlertDescription::kNone, "fatal bad_record_mac");
      CHECK_EQ(s.client.peer_alert(), 20);
      CHECK_STR(record_error_code(RecordError::kPeerAlert), "ERR_TLS_ALERT");
    }
    {
      // RFC 8446 5.1: "a record with an Alert type MUST contain exactly one message."
      for (const Bytes& bad : {Bytes{}, Bytes{2}, Bytes{2, 40, 2}, Bytes{1, 0, 1, 0}}) {
        test::Session s(sc.version, sc.id);
        expect_error(s, test::feed(s.client, s.peer.seal(ContentType::kAlert, bad)),
                     RecordError::kDecodeError, AlertDescription::kDecodeError,
                     "alert of " + std::to_string(bad.size()) + " bytes");
      }
    }
    if (tls13) {
      // RFC 8446 6: "Unknown Alert types MUST be treated as error alerts" and 6.2: error
      // alerts are fatal "regardless of the AlertLevel".
      test::Session s(sc.version, sc.id);
      expect_error(s, test::feed(s.client, s.seal_alert(1, 40)), RecordError::kPeerAlert,
                   AlertDescription::kNone, "1.3 warning-level handshake_failure");
      CHECK_EQ(s.client.peer_alert(), 40);
      // user_canceled is a closure alert; tolerated.
      test::Session u(sc.version, sc.id);
      const test::FeedResult fr =
          test::feed(u.client, test::concat({u.seal_alert(1, 90), u.seal_data({4})}));
      CHECK(fr.data == Bytes({4}));
      CHECK_U64(u.client.stats().warning_alerts_in, 1);
    } else {
      // RFC 5246 7.2: warning alerts do not end the connection; 4 in a row are tolerated,
      // the 5th is refused.
      test::Session s(sc.version, sc.id);
      Bytes in;
      for (int i = 0; i < 4; i++) {
        const Bytes r = s.seal_alert(1, 112);
        in.insert(in.end(), r.begin(), r.end());
      }
      const Bytes d = s.seal_data({8});
      in.insert(in.end(), d.begin(), d.end());
      test::FeedResult fr = test::feed(s.client, in);
      CHECK(fr.data == Bytes({8}));
      CHECK_U64(s.client.stats().warning_alerts_in, 4);
      in.clear();
      for (int i = 0; i < 5; i++) {
        const Bytes r = s.seal_alert(1, 112);
        in.insert(in.end(), r.begin(), r.end());
      }
      fr = test::feed(s.client, in);
      expect_error(s, fr, RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage,
                   "5 warnings in a row");
      // The two limits are separate: empty records do not count as warnings (found by the
      // post_handshake fuzzer: 1 empty record + 4 no_renegotiation warnings was a "flood").
      for (const int empties : {1, 30}) {
        test::Session m(sc.version, sc.id);
        Bytes mixed;
        for (int i = 0; i < empties; i++) {
          const Bytes r = m.seal_data({});
          mixed.insert(mixed.end(), r.begin(), r.end());
        }
        for (int i = 0; i < 4; i++) {
          const Bytes r = m.seal_alert(1, 100);
          mixed.insert(mixed.end(), r.begin(), r.end());
        }
        const Bytes d2 = m.seal_data({9});
        mixed.insert(mixed.end(), d2.begin(), d2.end());
        const test::FeedResult mf = test::feed(m.client, mixed);
        CHECK(mf.data == Bytes({9}));
        CHECK(m.client.error() == RecordError::kNone);
      }
      // An alert level that is neither warning nor fatal.
      test::Session l(sc.version, sc.id);
      expect_error(l, test::feed(l.client, l.seal_alert(3, 40)), RecordError::kIllegalParameter,
                   AlertDescription::kIllegalParameter, "alert level 3");
      // A warning-level close_notify and a fatal one both close.
      test::Session c(sc.version, sc.id);
      CHECK(test::feed(c.client, c.seal_alert(2, 0)).close_notify);
    }
    {
      // We seal close_notify as a warning (RFC 5246 7.2.1, RFC 8446 6.1) and fatal alerts as fatal.
      test::Session s(sc.version, sc.id);
      Bytes out(kMaxControlRecordLength);
      size_t n = s.client.seal_alert(AlertDescription::kCloseNotify, out.data(), out.size());
      CHECK(test::feed(s.server, Bytes(out.begin(), out.begin() + n)).close_notify);
      n = s.client.seal_alert(AlertDescription::kBadRecordMac, out.data(), out.size());
      test::feed(s.server, Bytes(out.begin(), out.begin() + n));
      CHECK(s.server.error() == RecordError::kPeerAlert);
      CHECK_EQ(s.server.peer_alert(), 20);
      CHECK_EQ(s.client.seal_alert(AlertDescription::kCloseNotify, out.data(),
                                   kMaxControlRecordLength - 1), 0u);
    }
  }
}

void test_renegotiation() {
  for (const uint16_t suite : {0xC02F, 0xC030, 0xCCA8}) {
    test::begin_case("tls12 renegotiation " + std::to_string(suite));
    {
      // RFC 5246 7.4.1.1 / RFC 5746 4.2: a client that will not renegotiate answers
      // HelloRequest with a no_renegotiation warning alert.
      test::Session s(k12, suite);
      const test::FeedResult fr = test::feed(
          s.client, test::concat({s.seal_handshake(Bytes{0, 0, 0, 0}), s.seal_data({1})}));
      CHECK(fr.data == Bytes({1}));
      CHECK(s.client.has_pending_control());
      CHECK_U64(s.client.stats().renegotiations_refused, 1);
      Bytes ctl(2 * kMaxControlRecordLength);
      const size_t n = s.client.seal_pending_control(ctl.data(), ctl.size());
      CHECK(n > 0);
      CHECK(!s.client.has_pending_control());
      // The peer's reader sees a warning alert no_renegotiation(100).
      test::FeedResult srv = test::feed(s.server, Bytes(ctl.begin(), ctl.begin() + n));
      CHECK(srv.last == ReadOutcome::kControl);
      CHECK_U64(s.server.stats().warning_alerts_in, 1);
      // Data after it still flows, and the refusal precedes the next data record otherwise.
      test::feed(s.client, s.seal_handshake(Bytes{0, 0, 0, 0}));
      const Bytes out = seal_data(s.client, Bytes{2});
      srv = test::feed(s.server, out);
      CHECK(srv.data == Bytes({2}));
      CHECK_U64(s.server.stats().warning_alerts_in, 2);
    }
    {
      // Four refusals; the fifth HelloRequest ends the session.
      test::Session s(k12, suite);
      Bytes in;
      for (int i = 0; i < 5; i++) {
        const Bytes r = s.seal_handshake(Bytes{0, 0, 0, 0});
        in.insert(in.end(), r.begin(), r.end());
      }
      expect_error(s, test::feed(s.client, in), RecordError::kRenegotiation,
                   AlertDescription::kUnexpectedMessage, "5 HelloRequests");
    }
    {
      // The count runs until data WE send, as the peer counts our warnings until it gets data
      // from us: the peer's own data between its requests does not reset it (else a fifth
      // no_renegotiation warning would be a warning flood to the peer; found by fuzzing).
      test::Session s(k12, suite);
      Bytes in;
      for (int i = 0; i < 5; i++) {
        for (const Bytes& r : {s.seal_handshake(Bytes{0, 0, 0, 0}), s.seal_data({7})}) {
          in.insert(in.end(), r.begin(), r.end());
        }
      }
      expect_error(s, test::feed(s.client, in), RecordError::kRenegotiation,
                   AlertDescription::kUnexpectedMessage, "5 HelloRequests between peer data");
    }
    {
      // Our data between requests resets it: a session whose server asks now and then lives on.
      test::Session s(k12, suite);
      for (int i = 0; i < 10; i++) {
        const test::FeedResult fr = test::feed(s.client, s.seal_handshake(Bytes{0, 0, 0, 0}));
        CHECK(fr.last == ReadOutcome::kControl);
        const Bytes out = seal_data(s.client, Bytes{static_cast<uint8_t>(i)});
        const test::FeedResult srv = test::feed(s.server, out);
        CHECK(srv.data == Bytes({static_cast<uint8_t>(i)}));
      }
      CHECK(s.client.error() == RecordError::kNone);
      CHECK_U64(s.client.stats().renegotiations_refused, 10);
    }
    {
      test::Session s(k12, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(Bytes{0, 0, 0, 1, 0})),
                   RecordError::kDecodeError, AlertDescription::kDecodeError,
                   "HelloRequest with a body");
    }
    {
      // A server refuses a ClientHello the same way; a client receiving one is confused.
      test::KeyPair kp = test::make_keys(k12, suite);
      RecordLayer server;
      REQUIRE(server.init(kp.server, true));
      RecordLayer client_as_peer;
      test::PeerSealer client_sealer;
      REQUIRE(client_sealer.init(kp.client));
      const Bytes hello = {1, 0, 0, 4, 3, 3, 0, 0};
      const test::FeedResult fr = test::feed(server, client_sealer.seal(ContentType::kHandshake, hello));
      CHECK(fr.last == ReadOutcome::kControl);
      CHECK(server.has_pending_control());
      test::Session s(k12, suite);
      expect_error(s, test::feed(s.client, s.seal_handshake(hello)),
                   RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage,
                   "ClientHello to a client");
    }
  }
}

void test_max_fragment_length() {
  for (const test::SuiteCase& sc : test::all_suites()) {
    test::begin_case(std::string("max_fragment_length ") + sc.label);
    for (size_t mfl : {512, 1024, 2048, 4096}) {
      test::Session s(sc.version, sc.id, 0, 0, 0, mfl);
      REQUIRE(s.ok);
      CHECK_EQ(s.client.max_fragment_length(), mfl);
      Bytes data(mfl, 0x42);
      const Bytes rec = seal_data(s.client, data);
      CHECK(!rec.empty());
      CHECK(test::feed(s.server, rec).data == data);
      // RFC 6066 4: no fragment larger than the negotiated length is sent.
      data.push_back(0);
      Bytes out(s.client.max_sealed_length(data.size()));
      CHECK_EQ(s.client.seal_application_data(data.data(), data.size(), out.data(), out.size()), 0u);
    }
    // Not one of 2^9..2^12 or 2^14: a capture bug, refused.
    for (size_t mfl : {0, 511, 16385}) {
      test::Session s(sc.version, sc.id, 0, 0, 0, mfl);
      CHECK(!s.ok);
    }
  }
}

void test_sequence_exhaustion() {
  for (const test::SuiteCase& sc : test::all_suites()) {
    test::begin_case(std::string("sequence exhaustion ") + sc.label);
    const bool tls13 = sc.version == k13;
    const bool chacha = sc.id == 0x1303 || sc.id == 0xCCA8;
    {
      // Writing: the last sequence numbers of the space.
      test::Session s(sc.version, sc.id, UINT64_MAX - 2, 0);
      const Bytes a = seal_data(s.client, Bytes{1});
      CHECK(!a.empty());
      const Bytes b = seal_data(s.client, Bytes{2});
      if (tls13) {
        // RFC 8446 5.3: "If a TLS implementation would need to wrap a sequence number, it MUST
        // either rekey (Section 4.6.3) or terminate the connection." TLS 1.3 rekeys: AES-GCM
        // already at the first record (far past its usage limit), ChaCha20 before the space
        // runs out -- the KeyUpdate itself needs one last sequence number.
        CHECK(!b.empty());
        const Bytes c = seal_data(s.client, Bytes{3});
        CHECK(!c.empty());
        CHECK(s.client.stats().key_updates_out >= 1);
        const test::FeedResult fr = test::feed(s.server, test::concat({a, b, c}));
        CHECK(fr.data == Bytes({1, 2, 3}));
        (void)chacha;
      } else {
        // TLS 1.2 cannot rekey: it terminates. RFC 5246 6.1: "Sequence numbers are of type
        // uint64 and may not exceed 2^64-1."
        CHECK(!b.empty());
        const Bytes c = seal_data(s.client, Bytes{3});
        CHECK(c.empty());
        CHECK(s.client.error() == RecordError::kSequenceExhausted);
        CHECK(test::feed(s.server, test::concat({a, b})).data == Bytes({1, 2}));
      }
    }
    {
      // Reading at the end of the space: checked before decrypting.
      test::Session s(sc.version, sc.id, 0, UINT64_MAX - 1);
      const Bytes a = s.seal_data({1});
      CHECK(!a.empty());
      test::FeedResult fr = test::feed(s.client, a);
      CHECK(fr.data == Bytes({1}));
      // The peer cannot seal another record; any bytes now are refused without decrypting.
      Bytes next = a;
      fr = test::feed(s.client, next);
      expect_error(s, fr, RecordError::kSequenceExhausted, AlertDescription::kInternalError,
                   "read past 2^64-1");
    }
  }
}

void test_key_update_limit_cap() {
  // RFC 8446 5.5: "Implementations MUST NOT exceed these limits". A keyUpdateAfterRecords
  // above the suite's limit (2^24 records for AES-GCM here) is capped to it: a handover at
  // sequence 2^24 with the setting at 2^40 rekeys before its first record.
  for (const uint16_t suite : {0x1301, 0x1302}) {
    test::begin_case("keyUpdateAfterRecords capped " + std::to_string(suite));
    test::Session s(k13, suite, uint64_t{1} << 24, 0, /*key_update_after=*/uint64_t{1} << 40);
    CHECK(s.ok);
    CHECK_U64(s.client.key_update_after_records(), uint64_t{1} << 24);
    const Bytes rec = seal_data(s.client, Bytes{7});
    CHECK_U64(s.client.stats().key_updates_out, 1);
    CHECK(test::feed(s.server, rec).data == Bytes({7}));
  }
  {
    // A setting below the limit is kept; ChaCha20-Poly1305's limit is the sequence space.
    test::begin_case("keyUpdateAfterRecords kept below the limit");
    test::Session gcm(k13, 0x1301, 0, 0, 1000);
    CHECK_U64(gcm.client.key_update_after_records(), 1000);
    test::Session chacha(k13, 0x1303, 0, 0, uint64_t{1} << 40);
    CHECK_U64(chacha.client.key_update_after_records(), uint64_t{1} << 40);
  }
}

uint64_t explicit_nonce_of(const Bytes& record) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; i++) v = (v << 8) | record[kRecordHeaderLength + i];
  return v;
}

void test_tls12_explicit_nonce() {
  // RFC 5288 3: "each value of the nonce_explicit MUST be distinct for each distinct invocation
  // of the GCM encrypt function for any fixed key". OpenSSL's counter starts at a random value;
  // after handover we continue from the value capture passes (here the last two before the
  // 64-bit counter wraps, which it does mod 2^64 as OpenSSL's does).
  for (const uint16_t suite : {0xC02F, 0xC030}) {
    test::begin_case("TLS 1.2 explicit nonce continues " + std::to_string(suite));
    test::Session s(k12, suite, 1, 1);
    s.keys.client.has_write_explicit_nonce = true;
    s.keys.client.write_explicit_nonce = UINT64_MAX - 1;
    REQUIRE(s.client.init(s.keys.client, false));
    const Bytes a = seal_data(s.client, Bytes{1});
    const Bytes b = seal_data(s.client, Bytes{2});
    const Bytes c = seal_data(s.client, Bytes{3});
    REQUIRE(!a.empty() && !b.empty() && !c.empty());
    CHECK_U64(explicit_nonce_of(a), UINT64_MAX - 1);
    CHECK_U64(explicit_nonce_of(b), UINT64_MAX);
    CHECK_U64(explicit_nonce_of(c), 0);
    // The sequence number (in the AAD) is unchanged by it: the peer opens all three.
    CHECK_U64(s.client.write_seq(), 4);
    CHECK(test::feed(s.server, test::concat({a, b, c})).data == Bytes({1, 2, 3}));
  }
  {
    // Absent, the explicit nonce is the sequence number, as before.
    test::begin_case("TLS 1.2 explicit nonce defaults to the sequence number");
    test::Session s(k12, 0xC02F, 5, 1);
    const Bytes a = seal_data(s.client, Bytes{1});
    const Bytes b = seal_data(s.client, Bytes{2});
    CHECK_U64(explicit_nonce_of(a), 5);
    CHECK_U64(explicit_nonce_of(b), 6);
    CHECK(test::feed(s.server, test::concat({a, b})).data == Bytes({1, 2}));
  }
  {
    // ChaCha20-Poly1305 has no explicit nonce (RFC 7905 2): the setting changes nothing.
    test::begin_case("TLS 1.2 ChaCha20 ignores the explicit nonce");
    test::Session s(k12, 0xCCA8, 1, 1);
    s.keys.client.has_write_explicit_nonce = true;
    s.keys.client.write_explicit_nonce = 12345;
    REQUIRE(s.client.init(s.keys.client, false));
    const Bytes a = seal_data(s.client, Bytes{9});
    CHECK_EQ(a.size(), kRecordHeaderLength + 1 + kAeadTagLength);
    CHECK(test::feed(s.server, a).data == Bytes({9}));
  }
}

}  // namespace

int main() {
  test_empty_records();
  test_key_update_from_peer();
  test_own_key_update();
  test_tickets();
  test_alerts();
  test_renegotiation();
  test_max_fragment_length();
  test_sequence_exhaustion();
  test_key_update_limit_cap();
  test_tls12_explicit_nonce();
  return test::finish("test_record_protocol");
}
