// Tamper tests: one bit of a valid record flipped -- in the header (type, version, length), the
// body (TLS 1.2 explicit nonce, ciphertext) and the tag -- for every suite and both versions.
// Each must end the session with the error and alert the RFCs name, and leave the layer dead.
// Also: records shorter than a tag, lengths over the limit rejected from the header alone, and
// TLS 1.3 inner plaintexts that are all zeros, too long, or of an unknown type.
#include <algorithm>
#include <string>

#include "record_harness.h"

using namespace tls_splice;
using test::Bytes;

namespace {

struct Expect {
  ReadOutcome outcome;
  RecordError error;
  AlertDescription alert;
};

void expect_error(test::Session& s, const Bytes& input, RecordError error, AlertDescription alert,
                  const std::string& what) {
  const test::FeedResult fr = test::feed(s.client, input);
  const bool ok = fr.last == ReadOutcome::kError && s.client.error() == error &&
                  s.client.alert_to_send() == alert;
  test::report(ok, __FILE__, __LINE__,
               what + ": outcome " + std::to_string(static_cast<int>(fr.last)) + " error " +
                   record_error_code(s.client.error()) + " alert " +
                   alert_name(static_cast<uint8_t>(s.client.alert_to_send())) + ", want " +
                   record_error_code(error) + " / " + alert_name(static_cast<uint8_t>(alert)));
}

void test_bit_flips(const test::SuiteCase& sc) {
  test::begin_case(std::string("bit flips ") + sc.label);
  Bytes payload(300);
  test::Prng(7).fill(payload.data(), payload.size());
  const bool tls13 = sc.version == TlsVersion::kTls13;
  const size_t max_body = tls13 ? kMaxTls13CiphertextLength : kMaxTls12CiphertextLength;

  // The untouched record opens.
  {
    test::Session s(sc.version, sc.id);
    REQUIRE(s.ok);
    const test::FeedResult fr = test::feed(s.client, s.seal_data(payload));
    CHECK(fr.last == ReadOutcome::kApplicationData);
    CHECK(fr.data == payload);
  }
  size_t record_size = 0;
  {
    test::Session s(sc.version, sc.id);
    record_size = s.seal_data(payload).size();
  }
  for (size_t byte = 0; byte < record_size; byte++) {
    // Header bytes: all 8 bits. Body: one bit per byte, rotating, plus every bit of the first
    // and last bytes of the tag.
    const bool header = byte < 5;
    const bool edge = byte >= record_size - 16 && (byte == record_size - 16 || byte == record_size - 1);
    for (int bit = 0; bit < 8; bit++) {
      if (!header && !edge && bit != static_cast<int>(byte % 8)) continue;
      test::Session s(sc.version, sc.id);
      Bytes rec = s.seal_data(payload);
      rec[byte] ^= static_cast<uint8_t>(1 << bit);
      const std::string what = std::string(sc.label) + " byte " + std::to_string(byte) +
                               " bit " + std::to_string(bit);
      if (byte == 0) {
        const uint8_t type = rec[0];
        // RFC 8446 5: "If a TLS implementation receives an unexpected record type, it MUST
        // terminate the connection with an "unexpected_message" alert." In TLS 1.3 every
        // protected record is application_data outside. In TLS 1.2 an alert or handshake
        // type is allowed, but the type is in the AAD: bad_record_mac.
        if (!tls13 && (type == 21 || type == 22)) {
          expect_error(s, rec, RecordError::kBadRecordMac, AlertDescription::kBadRecordMac, what);
        } else {
          expect_error(s, rec, RecordError::kUnexpectedRecord,
                       AlertDescription::kUnexpectedMessage, what);
        }
      } else if (byte == 1 || byte == 2) {
        // legacy_record_version other than 0x0303: protocol_version, from the header alone.
        expect_error(s, Bytes(rec.begin(), rec.begin() + 5), RecordError::kBadRecordVersion,
                     AlertDescription::kProtocolVersion, what + " (header only)");
      } else if (byte == 3 || byte == 4) {
        const size_t length = (size_t{rec[3]} << 8) | rec[4];
        if (length > max_body) {
          // RFC 8446 5.2: "An endpoint that receives a record that exceeds this length MUST
          // terminate the connection with a "record_overflow" alert." Known from the header.
          expect_error(s, Bytes(rec.begin(), rec.begin() + 5), RecordError::kRecordOverflow,
                       AlertDescription::kRecordOverflow, what + " (header only)");
        } else if (length > rec.size() - 5) {
          // A longer record than was sent: wait for the rest, consuming nothing.
          const test::FeedResult fr = test::feed(s.client, rec);
          CHECK(fr.last == ReadOutcome::kNeedMore && fr.ended_need_more);
          CHECK_EQ(fr.consumed, 0u);
          // ... and when more bytes come, they do not authenticate -- or, in TLS 1.2, cannot
          // hold a legal plaintext (RFC 5246 6.2.1: at most 2^14 bytes): record_overflow.
          Bytes more = rec;
          more.resize(5 + length, 0);
          const CipherSuite* suite = find_cipher_suite(sc.version, sc.id);
          const size_t overhead = 16 + (uses_xor_nonce(*suite) ? 0 : 8);
          if (!tls13 && length - overhead > kMaxPlaintextLength) {
            expect_error(s, more, RecordError::kRecordOverflow, AlertDescription::kRecordOverflow,
                         what + " (padded)");
          } else {
            expect_error(s, more, RecordError::kBadRecordMac, AlertDescription::kBadRecordMac,
                         what + " (padded)");
          }
        } else {
          // A shorter record: the tag is taken from the wrong bytes.
          expect_error(s, rec, RecordError::kBadRecordMac, AlertDescription::kBadRecordMac, what);
        }
      } else {
        // RFC 8446 5.2: "If the decryption fails, the receiver MUST terminate the connection
        // with a "bad_record_mac" alert." RFC 5246 7.2.2 says the same for TLS 1.2.
        expect_error(s, rec, RecordError::kBadRecordMac, AlertDescription::kBadRecordMac, what);
      }
      // After an error the layer is dead: the next (valid) record is refused too.
      test::Session fresh(sc.version, sc.id);
      const Bytes valid = fresh.seal_data(payload);
      Bytes out(kMaxOpenedLength);
      const ReadResult r = s.client.read_record(valid.data(), valid.size(), out.data(), out.size());
      CHECK(r.outcome == ReadOutcome::kError);
      CHECK(s.client.has_pending_control() == false);
      Bytes sealed(s.client.max_sealed_length(10));
      CHECK_EQ(s.client.seal_application_data(payload.data(), 10, sealed.data(), sealed.size()),
               0u);
      // ... but it can still seal the alert it owes.
      if (s.client.alert_to_send() != AlertDescription::kNone) {
        const size_t n = s.client.seal_alert(s.client.alert_to_send(), sealed.data(), sealed.size());
        CHECK(n > 0);
        const test::FeedResult fr = test::feed(s.server, Bytes(sealed.begin(), sealed.begin() + n));
        CHECK(fr.last == ReadOutcome::kError);
        CHECK(s.server.error() == RecordError::kPeerAlert);
        CHECK_EQ(s.server.peer_alert(), static_cast<uint8_t>(s.client.alert_to_send()));
      }
    }
  }
}

void test_short_and_long(const test::SuiteCase& sc) {
  test::begin_case(std::string("short and long ") + sc.label);
  const bool tls13 = sc.version == TlsVersion::kTls13;
  const CipherSuite* suite = find_cipher_suite(sc.version, sc.id);
  // The smallest authentic body: TLS 1.3 tag + inner type; TLS 1.2 GCM explicit nonce + tag;
  // TLS 1.2 ChaCha20 the tag alone.
  const size_t min_body = tls13 ? 17 : (uses_xor_nonce(*suite) ? 16 : 24);
  for (size_t body = 0; body < min_body; body++) {
    test::Session s(sc.version, sc.id);
    Bytes rec = {23, 3, 3, 0, static_cast<uint8_t>(body)};
    rec.resize(5 + body, 0x5a);
    expect_error(s, rec, RecordError::kBadRecordMac, AlertDescription::kBadRecordMac,
                 "body of " + std::to_string(body) + " bytes");
  }
  // Lengths over the limit are refused from the 5-byte header, before any body arrives.
  const size_t max_body = tls13 ? kMaxTls13CiphertextLength : kMaxTls12CiphertextLength;
  for (size_t length : {max_body + 1, max_body + 2, size_t{0xffff}}) {
    test::Session s(sc.version, sc.id);
    const Bytes header = {23, 3, 3, static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
    expect_error(s, header, RecordError::kRecordOverflow, AlertDescription::kRecordOverflow,
                 "length " + std::to_string(length));
  }
  {
    // Exactly the limit is legal framing: the reader waits for the body.
    test::Session s(sc.version, sc.id);
    const Bytes header = {23, 3, 3, static_cast<uint8_t>(max_body >> 8),
                          static_cast<uint8_t>(max_body)};
    CHECK(test::feed(s.client, header).last == ReadOutcome::kNeedMore);
    // A whole garbage body of that length does not authenticate (or is already too long).
    Bytes rec = header;
    rec.resize(5 + max_body, 0x33);
    const test::FeedResult fr = test::feed(s.client, rec);
    CHECK(fr.last == ReadOutcome::kError);
    CHECK(s.client.error() == RecordError::kBadRecordMac ||
          s.client.error() == RecordError::kRecordOverflow);
  }
  if (!tls13) {
    // RFC 5246 6.2.1: "The length MUST NOT exceed 2^14" for the plaintext; an AEAD record whose
    // ciphertext is longer cannot hold a legal plaintext: record_overflow, without decrypting.
    test::Session s(sc.version, sc.id);
    const size_t body = (uses_xor_nonce(*suite) ? 0 : 8) + kMaxPlaintextLength + 1 + 16;
    Bytes rec = {23, 3, 3, static_cast<uint8_t>(body >> 8), static_cast<uint8_t>(body)};
    rec.resize(5 + body, 0);
    expect_error(s, rec, RecordError::kRecordOverflow, AlertDescription::kRecordOverflow,
                 "tls12 plaintext 2^14+1");
  }
  // The other outer types a TLS 1.2 peer could send after the handshake.
  for (uint8_t type : {uint8_t{20}, uint8_t{24}, uint8_t{0}, uint8_t{255}}) {
    test::Session s(sc.version, sc.id);
    Bytes rec = s.seal_data(Bytes(10, 1));
    rec[0] = type;
    expect_error(s, Bytes(rec.begin(), rec.begin() + 5), RecordError::kUnexpectedRecord,
                 AlertDescription::kUnexpectedMessage, "outer type " + std::to_string(type));
  }
}

void test_tls13_inner_plaintext(const test::SuiteCase& sc) {
  if (sc.version != TlsVersion::kTls13) return;
  test::begin_case(std::string("inner plaintext ") + sc.label);
  {
    // RFC 8446 5.4: "If a receiving implementation does not find a non-zero octet in the
    // cleartext, it MUST terminate the connection with an "unexpected_message" alert."
    for (size_t zeros : {1, 2, 100}) {
      test::Session s(sc.version, sc.id);
      const Bytes rec = test::seal_tls13_inner(s.keys.server, 0, Bytes(zeros, 0));
      expect_error(s, rec, RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage,
                   "all-zero inner plaintext of " + std::to_string(zeros));
    }
  }
  {
    // Padding is legal and removed: "hello" + type 23 + 200 zeros.
    test::Session s(sc.version, sc.id);
    Bytes inner = {'h', 'e', 'l', 'l', 'o', 23};
    inner.resize(inner.size() + 200, 0);
    const test::FeedResult fr = test::feed(s.client, test::seal_tls13_inner(s.keys.server, 0, inner));
    CHECK(fr.last == ReadOutcome::kApplicationData);
    CHECK(fr.data == Bytes({'h', 'e', 'l', 'l', 'o'}));
  }
  {
    // A padded empty application record counts as an empty record, not data.
    test::Session s(sc.version, sc.id);
    Bytes inner = {23, 0, 0, 0};
    const test::FeedResult fr = test::feed(s.client, test::seal_tls13_inner(s.keys.server, 0, inner));
    CHECK(fr.last == ReadOutcome::kControl);
    CHECK(fr.data.empty());
  }
  // Inner content types a TLS 1.3 peer must not use after the handshake: change_cipher_spec
  // (only tolerated unprotected, during the handshake), heartbeat, and values no RFC assigns.
  for (uint8_t type : {uint8_t{20}, uint8_t{24}, uint8_t{1}, uint8_t{0xff}}) {
    test::Session s(sc.version, sc.id);
    const Bytes rec = test::seal_tls13_inner(s.keys.server, 0, Bytes{1, 2, 3, type});
    expect_error(s, rec, RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage,
                 "inner type " + std::to_string(type));
  }
  {
    // 2^14 bytes of content + type is the most a record may hold.
    test::Session s(sc.version, sc.id);
    Bytes inner(kMaxPlaintextLength, 0x41);
    inner.push_back(23);
    const test::FeedResult fr = test::feed(s.client, test::seal_tls13_inner(s.keys.server, 0, inner));
    CHECK(fr.last == ReadOutcome::kApplicationData);
    CHECK_EQ(fr.data.size(), kMaxPlaintextLength);
  }
  {
    // RFC 8446 5.4: "The length (in bytes) of TLSInnerPlaintext MUST NOT exceed 2^14 + 1
    // octets" and 5.2: "The length MUST NOT exceed 2^14 + 256 bytes. An endpoint that receives
    // a record that exceeds this length MUST terminate the connection with a "record_overflow"
    // alert." Content of 2^14 + 1 bytes:
    test::Session s(sc.version, sc.id);
    Bytes inner(kMaxPlaintextLength + 1, 0x41);
    inner.push_back(23);
    expect_error(s, test::seal_tls13_inner(s.keys.server, 0, inner), RecordError::kRecordOverflow,
                 AlertDescription::kRecordOverflow, "content 2^14+1");
  }
  {
    // RFC 8446 5.4: "The presence of padding does not change the overall record size
    // limitations: the full encoded TLSInnerPlaintext MUST NOT exceed 2^14 + 1 octets."
    // Content of 2^14 bytes, its type, and one byte of padding:
    test::Session s(sc.version, sc.id);
    Bytes inner(kMaxPlaintextLength, 0x41);
    inner.push_back(23);
    inner.push_back(0);
    expect_error(s, test::seal_tls13_inner(s.keys.server, 0, inner), RecordError::kRecordOverflow,
                 AlertDescription::kRecordOverflow, "content 2^14 + type + 1 byte of padding");
  }
  {
    // Padding up to the ciphertext limit with tiny content is still over 2^14 + 1 in all.
    test::Session s(sc.version, sc.id);
    Bytes inner = {'x', 23};
    inner.resize(kMaxTls13CiphertextLength - kAeadTagLength, 0);
    expect_error(s, test::seal_tls13_inner(s.keys.server, 0, inner), RecordError::kRecordOverflow,
                 AlertDescription::kRecordOverflow, "padding to the ciphertext limit");
  }
}

// TLS 1.2 AES-CBC (cbc.h): records round-trip at every size, and every bad record -- a bit
// flipped in the IV, the ciphertext, the MAC or the padding, a body cut short or not a whole
// number of blocks -- is the same bad_record_mac, with nothing of it delivered.
struct CbcCase {
  uint16_t id;
  bool encrypt_then_mac;
  const char* label;
};

struct CbcSession {
  test::KeyPair keys;
  RecordLayer client;
  test::PeerSealer peer;
  bool ok = false;

  explicit CbcSession(const CbcCase& c) : keys(test::make_keys(TlsVersion::kTls12, c.id, 3, 5)) {
    keys.client.encrypt_then_mac = keys.server.encrypt_then_mac = c.encrypt_then_mac;
    ok = client.init(keys.client, false) && peer.init(keys.server);
  }
  Bytes seal_data(const Bytes& b) { return peer.seal(ContentType::kApplicationData, b); }
};

// `rec` ends the session with bad_record_mac, and nothing of it comes out.
void expect_bad_record_mac(const CbcCase& c, const Bytes& rec, const std::string& what) {
  CbcSession s(c);
  REQUIRE(s.ok);
  const test::FeedResult fr = test::feed(s.client, rec);
  const bool ok = fr.last == ReadOutcome::kError && fr.data.empty() &&
                  s.client.error() == RecordError::kBadRecordMac &&
                  s.client.alert_to_send() == AlertDescription::kBadRecordMac;
  test::report(ok, __FILE__, __LINE__,
               std::string(c.label) + " " + what + ": error " + record_error_code(s.client.error()));
}

Bytes with_body(const Bytes& rec, size_t body_length) {
  Bytes out(rec.begin(), rec.begin() + 5 + std::min(body_length, rec.size() - 5));
  out.resize(5 + body_length, 0);
  out[3] = static_cast<uint8_t>(body_length >> 8);
  out[4] = static_cast<uint8_t>(body_length);
  return out;
}

void test_cbc(const CbcCase& c) {
  test::begin_case(std::string("cbc ") + c.label);
  const CipherSuite* suite = find_cipher_suite(TlsVersion::kTls12, c.id);
  REQUIRE(suite != nullptr && suite->cbc);
  const size_t mac = cbc_mac_length(suite->mac);
  {
    CbcSession s(c);
    REQUIRE(s.ok);
    test::Prng prng(c.id);
    for (size_t size : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000},
                        size_t{16383}, size_t{16384}}) {
      Bytes msg(size);
      prng.fill(msg.data(), size);
      const Bytes rec = s.seal_data(msg);
      // IV + data + MAC + 1..16 bytes of padding; whole blocks but for an encrypt-then-MAC MAC.
      const size_t body = rec.size() - 5;
      CHECK((c.encrypt_then_mac ? body - mac : body) % 16 == 0);
      CHECK(body >= 16 + size + mac + 1 && body <= 16 + size + mac + 16);
      const test::FeedResult fr = test::feed(s.client, rec);
      CHECK(fr.last == ReadOutcome::kApplicationData);
      CHECK(fr.data == msg);
    }
    // What the layer seals, the other end opens.
    RecordLayer server;
    REQUIRE(server.init(s.keys.server, true));
    Bytes msg(777, 0x5a);
    Bytes sealed(s.client.max_sealed_length(msg.size()));
    const size_t n = s.client.seal_application_data(msg.data(), msg.size(), sealed.data(),
                                                    sealed.size());
    REQUIRE(n > 0);
    const test::FeedResult fr = test::feed(server, Bytes(sealed.begin(), sealed.begin() + n));
    CHECK(fr.last == ReadOutcome::kApplicationData);
    CHECK(fr.data == msg);
  }
  Bytes payload(300);
  test::Prng(9).fill(payload.data(), payload.size());
  Bytes good;
  {
    CbcSession s(c);
    good = s.seal_data(payload);
  }
  const size_t body = good.size() - 5;
  // One bit of every body byte: IV, ciphertext, padding and MAC (encrypted with MtE).
  for (size_t byte = 5; byte < good.size(); byte++) {
    Bytes rec = good;
    rec[byte] ^= static_cast<uint8_t>(1 << (byte % 8));
    expect_bad_record_mac(c, rec, "byte " + std::to_string(byte));
  }
  // Wrong lengths: cut short, not whole blocks, too short for an IV and a MAC, empty.
  for (size_t length : {body - 1, body - 16, body + 1, body + 16, size_t{16}, size_t{32},
                        16 + mac, size_t{0}}) {
    expect_bad_record_mac(c, with_body(good, length), "body length " + std::to_string(length));
  }
}

}  // namespace

int main() {
  for (const test::SuiteCase& sc : test::all_suites()) {
    test_bit_flips(sc);
    test_short_and_long(sc);
    test_tls13_inner_plaintext(sc);
  }
  const CbcCase cbc_cases[] = {
      {0xC013, false, "ecdhe-rsa-aes128-sha mte"},   {0xC013, true, "ecdhe-rsa-aes128-sha etm"},
      {0x008D, false, "psk-aes256-sha mte"},         {0xC027, false, "ecdhe-rsa-aes128-sha256 mte"},
      {0xC027, true, "ecdhe-rsa-aes128-sha256 etm"}, {0xC028, true, "ecdhe-rsa-aes256-sha384 etm"},
  };
  for (const CbcCase& c : cbc_cases) test_cbc(c);
  return test::finish("test_record_tamper");
}
