// Known-answer tests of the key schedule and record protection.
//
// TLS 1.3: RFC 8448 section 3 ("Simple 1-RTT Handshake", TLS_AES_128_GCM_SHA256). From the
// trace's traffic secrets we derive the keys and IVs and compare them with the trace; we open the
// trace's encrypted records at their sequence numbers and compare the plaintext; we seal that
// plaintext again and compare with the trace's ciphertext byte for byte.
//
// TLS 1.2: the PRF (RFC 5246 5) against the two widely published P_SHA256 / P_SHA384 vectors,
// and the key block (RFC 5246 6.3) against OpenSSL's own TLS1-PRF (`openssl kdf ... TLS1-PRF`,
// an independent implementation; the exact commands are next to each vector).
//
// Then round trips for every suite and version, with the wire format checked (TLS 1.3 outer type
// and length; TLS 1.2 GCM explicit nonce = sequence number, RFC 5288 3).
#include <openssl/kdf.h>

#include <string>

#include "../../src-native/key_schedule.h"
#include "../../src-native/record_layer.h"
#include "../../src-native/record_protection.h"
#include "test_util.h"

using namespace tls_splice;
using test::Bytes;
using test::hex;

namespace {

// --- RFC 8448 section 3 -----------------------------------------------------------------------
const char* kClientHsSecret =
    "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21";
const char* kServerHsSecret =
    "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38";
const char* kClientApSecret =
    "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5";
const char* kServerApSecret =
    "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43";
const char* kServerHsKey = "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc";
const char* kServerHsIv = "5d 31 3e b2 67 12 76 ee 13 00 0b 30";
const char* kClientHsKey = "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01";
const char* kClientHsIv = "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f";
const char* kServerApKey = "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56";
const char* kServerApIv = "cf 78 2b 88 dd 83 54 9a ad f1 e9 84";
const char* kClientApKey = "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51";
const char* kClientApIv = "5b 78 92 3d ee 08 57 90 33 e5 23 d9";

// {server} send handshake record: EncryptedExtensions, Certificate, CertificateVerify, Finished
// under the server handshake traffic key, sequence 0 (679 octets).
const char* kServerFlightRecord =
    "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f"
    "45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca"
    "07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd"
    "05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b"
    "d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e"
    "f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c"
    "7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8"
    "bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92"
    "8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70"
    "a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8"
    "94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea"
    "52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f"
    "44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89"
    "f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3"
    "6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1"
    "00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e"
    "1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84"
    "c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c"
    "f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f"
    "c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be"
    "5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6"
    "fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb"
    "56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10"
    "dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38"
    "eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f"
    "60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78"
    "40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3"
    "79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e"
    "75 0e dc 53 37 0d 2b";
// {server} construct an EncryptedExtensions handshake message (40 octets).
const char* kEncryptedExtensions =
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04"
    "00 1c 00 02 40 01 00 00 00 00";
// {client} send handshake record: the client Finished under the client handshake key, seq 0.
const char* kClientFinishedRecord =
    "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0"
    "51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c"
    "ae ac ab 68 67 d7 26 c4 05 46";
// {server} send handshake record: NewSessionTicket under the server application key, seq 0.
const char* kTicketRecord =
    "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24"
    "0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a"
    "01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1"
    "70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0"
    "9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15"
    "13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77"
    "f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3"
    "47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74"
    "bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b"
    "3b 6c 67 79 b3 7b f1 59 85 68 4f";
// {client} send application_data record (client application key, seq 0): 00 01 .. 31.
const char* kClientAppRecord =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea"
    "42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b"
    "62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4";
// {server} send application_data record (server application key, seq 1): the same 50 bytes.
const char* kServerAppRecord =
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc"
    "32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8"
    "fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d";
// {client} send alert record (seq 1) and {server} send alert record (seq 2): close_notify.
const char* kClientAlertRecord =
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";
const char* kServerAlertRecord =
    "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9";

Bytes app_payload() {
  Bytes b(50);
  for (size_t i = 0; i < b.size(); i++) b[i] = static_cast<uint8_t>(i);
  return b;
}

const CipherSuite& aes128_13() { return *find_cipher_suite(TlsVersion::kTls13, 0x1301); }

void test_tls13_traffic_keys() {
  test::begin_case("rfc8448 traffic keys");
  struct {
    const char* secret;
    const char* key;
    const char* iv;
  } cases[] = {{kServerHsSecret, kServerHsKey, kServerHsIv},
               {kClientHsSecret, kClientHsKey, kClientHsIv},
               {kServerApSecret, kServerApKey, kServerApIv},
               {kClientApSecret, kClientApKey, kClientApIv}};
  for (const auto& c : cases) {
    uint8_t key[kMaxKeyLength], iv[kAeadNonceLength];
    const Bytes secret = hex(c.secret);
    CHECK(derive_tls13_traffic_keys(aes128_13(), secret.data(), key, iv));
    CHECK_BYTES(key, 16, hex(c.key));
    CHECK_BYTES(iv, 12, hex(c.iv));
  }
  // RFC 8448 shows the HkdfLabel itself: "key info (13 octets): 00 10 09 74 6c 73 31 33 20 6b 65
  // 79 00" -- a label longer than the RFC allows must be refused, not truncated.
  uint8_t out[32];
  const Bytes secret = hex(kServerHsSecret);
  const std::string long_label(250, 'x');  // "tls13 " + 250 > 255
  CHECK(!hkdf_expand_label(HashAlgorithm::kSha256, secret.data(), 32, long_label.c_str(),
                           nullptr, 0, out, 32));
  CHECK(!hkdf_expand_label(HashAlgorithm::kSha256, secret.data(), 32, "key", nullptr, 0, out,
                           255 * 32 + 1));
}

// Opens `record` with a fresh RecordProtection for `secret` at `seq`, checks the plaintext's
// type, then seals the plaintext again and checks the result is the trace's record.
Bytes open_and_reseal(const char* name, const char* secret_hex, uint64_t seq,
                      const char* record_hex, ContentType want_type) {
  test::begin_case(std::string("rfc8448 ") + name);
  const Bytes secret = hex(secret_hex);
  const Bytes record = hex(record_hex);
  RecordProtection opener;
  REQUIRE(opener.init_tls13(aes128_13(), secret.data(), seq, false));
  Bytes out(record.size());
  OpenedRecord opened{};
  const OpenStatus st = opener.open(record.data(), record.data() + 5, record.size() - 5,
                                    out.data(), &opened);
  CHECK(st == OpenStatus::kOk);
  CHECK(opened.type == want_type);
  CHECK_U64(opener.seq(), seq + 1);
  // The trace uses no padding: plaintext = record - header - tag - inner type.
  CHECK_EQ(opened.plaintext_length, record.size() - 5 - 16 - 1);
  out.resize(opened.plaintext_length);

  RecordProtection sealer;
  REQUIRE(sealer.init_tls13(aes128_13(), secret.data(), seq, true));
  Bytes sealed(sealer.sealed_length(out.size()));
  CHECK_EQ(sealed.size(), record.size());
  const size_t n = sealer.seal(want_type, out.data(), out.size(), sealed.data());
  CHECK_EQ(n, record.size());
  CHECK_BYTES(sealed.data(), n, record);
  CHECK_U64(sealer.seq(), seq + 1);

  // The same record one sequence number off must not open (the nonce depends on it).
  RecordProtection wrong_seq;
  REQUIRE(wrong_seq.init_tls13(aes128_13(), secret.data(), seq + 1, false));
  Bytes scratch(record.size());
  CHECK(wrong_seq.open(record.data(), record.data() + 5, record.size() - 5, scratch.data(),
                       &opened) == OpenStatus::kBadRecordMac);
  return out;
}

void test_rfc8448_records() {
  // RFC 8446 5.2: additional_data = TLSCiphertext.opaque_type || legacy_record_version ||
  // length; nonce = iv XOR seq (5.3). The trace's records check both.
  Bytes flight = open_and_reseal("server flight", kServerHsSecret, 0, kServerFlightRecord,
                                 ContentType::kHandshake);
  CHECK_EQ(flight.size(), 657u);
  if (flight.size() == 657) {
    const Bytes ee = hex(kEncryptedExtensions);
    CHECK_BYTES(flight.data(), ee.size(), ee);
    // Certificate (11), 0x1b9 bytes of body, follows EncryptedExtensions.
    CHECK_BYTES(flight.data() + 40, 4, hex("0b 00 01 b9"));
    // ... and the flight ends with Finished (20) carrying 32 bytes of verify_data.
    CHECK_BYTES(flight.data() + 657 - 36, 4, hex("14 00 00 20"));
  }
  Bytes fin = open_and_reseal("client finished", kClientHsSecret, 0, kClientFinishedRecord,
                              ContentType::kHandshake);
  CHECK_BYTES(fin.data(), fin.size(),
              hex("14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa"
                  "c6 e9 85 27 b6 42 f2 ed d5 ce 61"));
  Bytes ticket = open_and_reseal("new session ticket", kServerApSecret, 0, kTicketRecord,
                                 ContentType::kHandshake);
  // NewSessionTicket (4), 0xc9 bytes, ticket_lifetime 30 seconds.
  CHECK_BYTES(ticket.data(), 8, hex("04 00 00 c9 00 00 00 1e"));
  Bytes c_app = open_and_reseal("client application data", kClientApSecret, 0, kClientAppRecord,
                                ContentType::kApplicationData);
  CHECK_BYTES(c_app.data(), c_app.size(), app_payload());
  Bytes s_app = open_and_reseal("server application data", kServerApSecret, 1, kServerAppRecord,
                                ContentType::kApplicationData);
  CHECK_BYTES(s_app.data(), s_app.size(), app_payload());
  Bytes c_alert = open_and_reseal("client close_notify", kClientApSecret, 1, kClientAlertRecord,
                                  ContentType::kAlert);
  CHECK_BYTES(c_alert.data(), c_alert.size(), hex("01 00"));
  Bytes s_alert = open_and_reseal("server close_notify", kServerApSecret, 2, kServerAlertRecord,
                                  ContentType::kAlert);
  CHECK_BYTES(s_alert.data(), s_alert.size(), hex("01 00"));
}

// The trace's application phase through the whole record layer, both roles.
void test_rfc8448_record_layer() {
  test::begin_case("rfc8448 record layer, client role");
  SessionKeys client;
  client.version = TlsVersion::kTls13;
  client.cipher_suite = 0x1301;
  Bytes s_ap = hex(kServerApSecret), c_ap = hex(kClientApSecret);
  std::memcpy(client.read_secret, s_ap.data(), 32);
  std::memcpy(client.write_secret, c_ap.data(), 32);
  RecordLayer layer;
  REQUIRE(layer.init(client, /*is_server=*/false));
  const Bytes input = test::concat({hex(kTicketRecord), hex(kServerAppRecord),
                                    hex(kServerAlertRecord)});
  Bytes out(kMaxOpenedLength);
  size_t offset = 0;
  ReadResult r = layer.read_record(input.data(), input.size(), out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kControl);  // the ticket: skipped and counted
  CHECK_EQ(r.consumed, 227u);
  CHECK_U64(layer.stats().tickets_in, 1);
  offset += r.consumed;
  r = layer.read_record(input.data() + offset, input.size() - offset, out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kApplicationData);
  CHECK_BYTES(out.data(), r.plaintext_length, app_payload());
  offset += r.consumed;
  r = layer.read_record(input.data() + offset, input.size() - offset, out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kCloseNotify);
  CHECK_EQ(offset + r.consumed, input.size());
  CHECK_U64(layer.read_seq(), 3);

  // Sealing the client's data and close_notify reproduces the trace.
  Bytes sealed(layer.max_sealed_length(50));
  const Bytes payload = app_payload();
  size_t n = layer.seal_application_data(payload.data(), payload.size(), sealed.data(),
                                         sealed.size());
  CHECK_BYTES(sealed.data(), n, hex(kClientAppRecord));
  n = layer.seal_alert(AlertDescription::kCloseNotify, sealed.data(), sealed.size());
  CHECK_BYTES(sealed.data(), n, hex(kClientAlertRecord));
  CHECK_U64(layer.stats().records_out, 2);

  test::begin_case("rfc8448 record layer, server role");
  SessionKeys server;
  server.version = TlsVersion::kTls13;
  server.cipher_suite = 0x1301;
  std::memcpy(server.read_secret, c_ap.data(), 32);
  std::memcpy(server.write_secret, s_ap.data(), 32);
  server.write_seq = 1;  // the ticket went out at sequence 0
  RecordLayer srv;
  REQUIRE(srv.init(server, /*is_server=*/true));
  n = srv.seal_application_data(payload.data(), payload.size(), sealed.data(), sealed.size());
  CHECK_BYTES(sealed.data(), n, hex(kServerAppRecord));
  n = srv.seal_alert(AlertDescription::kCloseNotify, sealed.data(), sealed.size());
  CHECK_BYTES(sealed.data(), n, hex(kServerAlertRecord));
  const Bytes c_in = test::concat({hex(kClientAppRecord), hex(kClientAlertRecord)});
  r = srv.read_record(c_in.data(), c_in.size(), out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kApplicationData);
  CHECK_BYTES(out.data(), r.plaintext_length, app_payload());
  r = srv.read_record(c_in.data() + 72, c_in.size() - 72, out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kCloseNotify);

  // A server that receives a NewSessionTicket is being sent something only servers send.
  RecordLayer srv2;
  SessionKeys swapped = server;
  std::memcpy(swapped.read_secret, s_ap.data(), 32);
  REQUIRE(srv2.init(swapped, /*is_server=*/true));
  const Bytes ticket = hex(kTicketRecord);
  r = srv2.read_record(ticket.data(), ticket.size(), out.data(), out.size());
  CHECK(r.outcome == ReadOutcome::kError);
  CHECK(srv2.error() == RecordError::kUnexpectedMessage);
  CHECK(srv2.alert_to_send() == AlertDescription::kUnexpectedMessage);
}

// RFC 8446 7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "",
// Hash.length). Checked against OpenSSL's own HKDF (EVP_PKEY_HKDF, expand-only mode).
void test_traffic_update() {
  test::begin_case("traffic upd");
  const Bytes secret = hex(kClientApSecret);
  uint8_t next[kMaxSecretLength];
  CHECK(next_tls13_traffic_secret(aes128_13(), secret.data(), next));
  // HkdfLabel = 00 20 | 12 "tls13 traffic upd" | 00
  Bytes info = hex("00 20 11");
  const char* label = "tls13 traffic upd";
  info.insert(info.end(), label, label + std::strlen(label));
  info.push_back(0);
  uint8_t want[32];
  size_t want_len = sizeof(want);
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  REQUIRE(pctx != nullptr);
  REQUIRE(EVP_PKEY_derive_init(pctx) == 1);
  REQUIRE(EVP_PKEY_CTX_set_hkdf_mode(pctx, EVP_PKEY_HKDEF_MODE_EXPAND_ONLY) == 1);
  REQUIRE(EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) == 1);
  REQUIRE(EVP_PKEY_CTX_set1_hkdf_key(pctx, secret.data(), 32) == 1);
  REQUIRE(EVP_PKEY_CTX_add1_hkdf_info(pctx, info.data(), static_cast<int>(info.size())) == 1);
  REQUIRE(EVP_PKEY_derive(pctx, want, &want_len) == 1);
  EVP_PKEY_CTX_free(pctx);
  CHECK_BYTES(next, 32, Bytes(want, want + 32));

  // RecordProtection follows it and restarts the sequence at 0 (RFC 8446 4.6.3, 5.3).
  RecordProtection a, b;
  REQUIRE(a.init_tls13(aes128_13(), secret.data(), 7, true));
  REQUIRE(b.init_tls13(aes128_13(), next, 0, false));
  CHECK(a.update_traffic_secret());
  CHECK_U64(a.seq(), 0);
  const Bytes msg = hex("68656c6c6f");
  Bytes rec(a.sealed_length(msg.size())), out(rec.size());
  REQUIRE(a.seal(ContentType::kApplicationData, msg.data(), msg.size(), rec.data()) == rec.size());
  OpenedRecord o{};
  CHECK(b.open(rec.data(), rec.data() + 5, rec.size() - 5, out.data(), &o) == OpenStatus::kOk);
  CHECK_BYTES(out.data(), o.plaintext_length, msg);
}

// --- TLS 1.2 ----------------------------------------------------------------------------------

void test_tls12_prf() {
  test::begin_case("tls12 prf sha256");
  // The P_SHA256 vector published for RFC 5246 implementations (secret 9bbe43..., label
  // "test label"); OpenSSL's TLS1-PRF gives the same 100 bytes.
  const Bytes secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
  const Bytes seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
  uint8_t out[148];
  CHECK(tls12_prf(HashAlgorithm::kSha256, secret.data(), secret.size(), "test label",
                  seed.data(), seed.size(), out, 100));
  CHECK_BYTES(out, 100,
              hex("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b"
                  "52 d4 e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7"
                  "07 7d ef 17 ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67"
                  "89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66"));
  test::begin_case("tls12 prf sha384");
  const Bytes secret384 = hex("b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df");
  const Bytes seed384 = hex("cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65");
  CHECK(tls12_prf(HashAlgorithm::kSha384, secret384.data(), secret384.size(), "test label",
                  seed384.data(), seed384.size(), out, 148));
  CHECK_BYTES(out, 148,
              hex("7b 0c 18 e9 ce d4 10 ed 18 04 f2 cf a3 4a 33 6a 1c 14 df fb 49 00 bb 5f d7 94"
                  "21 07 e8 1c 83 cd e9 ca 0f aa 60 be 9f e3 4f 82 b1 23 3c 91 46 a0 e5 34 cb 40"
                  "0f ed 27 00 88 4f 9d c2 36 f8 0e dd 8b fa 96 11 44 c9 e8 d7 92 ec a7 22 a7 b3"
                  "2f c3 d4 16 d4 73 eb c2 c5 fd 4a bf da d0 5d 91 84 25 9b 5b f8 cd 4d 90 fa 0d"
                  "31 e2 de c4 79 e4 f1 a2 60 66 f2 ee a9 a6 92 36 a3 e5 26 55 c9 e9 ae e6 91 c8"
                  "f3 a2 68 54 30 8d 5e aa 3b e8 5e 09 90 70 3d 73 e5 6f"));
}

void test_tls12_key_block() {
  // master_secret = 10 11 .. 3f, client_random = 40 .. 5f, server_random = 60 .. 7f. Expected
  // blocks from OpenSSL:
  //   openssl kdf -keylen L -kdfopt digest:SHAxxx -kdfopt hexsecret:<ms>
  //     -kdfopt hexseed:<"key expansion" || server_random || client_random> TLS1-PRF
  uint8_t ms[48], cr[32], sr[32];
  for (int i = 0; i < 48; i++) ms[i] = static_cast<uint8_t>(0x10 + i);
  for (int i = 0; i < 32; i++) cr[i] = static_cast<uint8_t>(0x40 + i);
  for (int i = 0; i < 32; i++) sr[i] = static_cast<uint8_t>(0x60 + i);
  struct {
    uint16_t suite;
    const char* block;
  } cases[] = {
      // AES-128-GCM, SHA-256: 16 + 16 + 4 + 4 bytes.
      {0xC02F,
       "39 DA 05 E4 00 05 78 2B 46 E6 E6 F3 13 46 5A 54 FD D4 84 A5 12 86 1E 19 10 82 74 00 2B 7F"
       "7E 6C 45 E4 69 D5 BB 1C 49 08"},
      // AES-256-GCM, SHA-384: 32 + 32 + 4 + 4 bytes.
      {0xC030,
       "E7 1C D3 AD B5 C7 27 7A 21 0C 39 BA 2A 55 B2 68 E5 2C E1 86 04 1D 89 D7 65 05 99 5E C1 9E"
       "7E 91 B0 83 87 F0 CD B5 16 D2 63 2C 08 62 1D 50 D5 F0 4A A1 00 36 8D 78 21 20 92 34 28 7C"
       "78 39 60 14 F5 3C 44 07 A1 EC F5 B8"},
      // ChaCha20-Poly1305, SHA-256: 32 + 32 + 12 + 12 bytes (RFC 7905: a 12-byte fixed IV).
      {0xCCA8,
       "39 DA 05 E4 00 05 78 2B 46 E6 E6 F3 13 46 5A 54 FD D4 84 A5 12 86 1E 19 10 82 74 00 2B 7F"
       "7E 6C 45 E4 69 D5 BB 1C 49 08 F3 31 E8 C6 F2 9C 69 EE A8 40 FE BD 1E 80 C6 74 CD E2 A8 81"
       "B5 4B 9F 9B 5D 8B 77 7E B0 F9 6B 74 CD 0B 4B E5 7E EE BA AF 91 28 FC C3 0E EB B5 C1"},
      // AES-128-CBC, HMAC-SHA1, PRF SHA-256: MAC keys first (RFC 5246 6.3), 20 + 20 + 16 + 16
      // bytes, no fixed IV.
      {0xC013,
       "39 DA 05 E4 00 05 78 2B 46 E6 E6 F3 13 46 5A 54 FD D4 84 A5 12 86 1E 19 10 82 74 00 2B 7F"
       "7E 6C 45 E4 69 D5 BB 1C 49 08 F3 31 E8 C6 F2 9C 69 EE A8 40 FE BD 1E 80 C6 74 CD E2 A8 81"
       "B5 4B 9F 9B 5D 8B 77 7E B0 F9 6B 74"},
      // AES-256-CBC, HMAC-SHA384, PRF SHA-384: 48 + 48 + 32 + 32 bytes.
      {0xC028,
       "E7 1C D3 AD B5 C7 27 7A 21 0C 39 BA 2A 55 B2 68 E5 2C E1 86 04 1D 89 D7 65 05 99 5E C1 9E"
       "7E 91 B0 83 87 F0 CD B5 16 D2 63 2C 08 62 1D 50 D5 F0 4A A1 00 36 8D 78 21 20 92 34 28 7C"
       "78 39 60 14 F5 3C 44 07 A1 EC F5 B8 C3 38 1F 96 02 16 AD 36 B6 90 4A 33 6F 7D 31 9F F3 0B"
       "B9 20 FF FD 46 E0 00 2D 05 34 04 88 E4 0A 1E 0E 9F 10 AA 8A 8E 37 6A 57 E1 FD CB 58 F9 0A"
       "84 2C AC 32 E9 9F A8 E3 AC 36 F4 D2 7C BF E3 A9 82 B5 79 56 C1 FD 45 32 8B D4 2D D9 C5 C5"
       "56 84 5E C9 18 59 13 3B 5B B1"},
  };
  for (const auto& c : cases) {
    const CipherSuite* suite = find_cipher_suite(TlsVersion::kTls12, c.suite);
    test::begin_case(std::string("tls12 key block ") + suite->name);
    Tls12KeyBlock kb;
    CHECK(derive_tls12_key_block(*suite, ms, cr, sr, &kb));
    const Bytes block = hex(c.block);
    const size_t k = suite->key_length, iv = suite->fixed_iv_length;
    const size_t mac = suite->cbc ? cbc_mac_length(suite->mac) : 0;
    REQUIRE(block.size() == 2 * mac + 2 * k + 2 * iv);
    auto part = [&](size_t at, size_t n) { return Bytes(block.begin() + at, block.begin() + at + n); };
    CHECK_BYTES(kb.client_write_mac_key, mac, part(0, mac));
    CHECK_BYTES(kb.server_write_mac_key, mac, part(mac, mac));
    CHECK_BYTES(kb.client_write_key, k, part(2 * mac, k));
    CHECK_BYTES(kb.server_write_key, k, part(2 * mac + k, k));
    CHECK_BYTES(kb.client_write_iv, iv, part(2 * mac + 2 * k, iv));
    CHECK_BYTES(kb.server_write_iv, iv, part(2 * mac + 2 * k + iv, iv));
  }
}

// --- round trips ------------------------------------------------------------------------------

void test_round_trips() {
  const size_t sizes[] = {0, 1, 15, 16, 17, 255, 1000, 4096, 16383, 16384};
  for (const test::SuiteCase& sc : test::all_suites()) {
    test::begin_case(std::string("round trip ") + sc.label);
    const test::KeyPair kp = test::make_keys(sc.version, sc.id, 5, 9);
    RecordLayer client, server;
    REQUIRE(client.init(kp.client, false));
    REQUIRE(server.init(kp.server, true));
    const CipherSuite* suite = find_cipher_suite(sc.version, sc.id);
    const bool tls13 = sc.version == TlsVersion::kTls13;
    test::Prng prng(sc.id);
    Bytes out(kMaxOpenedLength);
    for (int dir = 0; dir < 2; dir++) {
      RecordLayer& tx = dir == 0 ? client : server;
      RecordLayer& rx = dir == 0 ? server : client;
      for (size_t size : sizes) {
        Bytes msg(size);
        prng.fill(msg.data(), size);
        const uint64_t seq = tx.write_seq();
        Bytes rec(tx.max_sealed_length(size));
        const size_t n = tx.seal_application_data(msg.data(), size, rec.data(), rec.size());
        // TLS 1.3 record: 23, 0x0303, length = size + 1 (inner type) + 16 (tag).
        // TLS 1.2 GCM: type 23, explicit nonce (8) + size + tag; ChaCha20: size + tag.
        const size_t body = size + 16 + (tls13 ? 1 : (uses_xor_nonce(*suite) ? 0 : 8));
        CHECK_EQ(n, 5 + body);
        CHECK_BYTES(rec.data(), 5,
                    Bytes({23, 3, 3, static_cast<uint8_t>(body >> 8), static_cast<uint8_t>(body)}));
        if (!tls13 && !uses_xor_nonce(*suite)) {
          // RFC 5288 3: the explicit nonce; the sequence number is what we (and OpenSSL) use.
          Bytes want(8);
          for (int i = 0; i < 8; i++) want[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
          CHECK_BYTES(rec.data() + 5, 8, want);
        }
        if (size == 0) {
          // RFC 8446 5.4 allows zero-length application data; the reader skips it.
          const ReadResult r = rx.read_record(rec.data(), n, out.data(), out.size());
          CHECK(r.outcome == ReadOutcome::kControl);
          CHECK_EQ(r.consumed, n);
          continue;
        }
        // Fed in two pieces: the first never completes a record.
        ReadResult r = rx.read_record(rec.data(), n - 1, out.data(), out.size());
        CHECK(r.outcome == ReadOutcome::kNeedMore);
        CHECK_EQ(r.consumed, 0u);
        r = rx.read_record(rec.data(), n, out.data(), out.size());
        CHECK(r.outcome == ReadOutcome::kApplicationData);
        CHECK_EQ(r.consumed, n);
        CHECK_BYTES(out.data(), r.plaintext_length, msg);
      }
    }
    CHECK_U64(client.write_seq(), 5 + 10);
    CHECK_U64(server.read_seq(), 5 + 10);
    CHECK_U64(server.write_seq(), 9 + 10);
    CHECK_U64(client.read_seq(), 9 + 10);
    // RecordLayer refuses more than max_fragment_length per record.
    Bytes big(kMaxPlaintextLength + 1);
    Bytes rec(client.max_sealed_length(big.size()));
    CHECK_EQ(client.seal_application_data(big.data(), big.size(), rec.data(), rec.size()), 0u);
  }
}

void test_unsupported_suites() {
  test::begin_case("unsupported suites");
  CHECK(find_cipher_suite(TlsVersion::kTls13, 0x1304) == nullptr);  // TLS_AES_128_CCM_SHA256
  CHECK(find_cipher_suite(TlsVersion::kTls12, 0x1301) == nullptr);  // a 1.3 suite in 1.2
  CHECK(find_cipher_suite(TlsVersion::kTls13, 0xC02F) == nullptr);
  CHECK(find_cipher_suite(TlsVersion::kTls12, 0x003C) == nullptr);  // CBC, RSA key exchange
  SessionKeys keys;
  keys.version = TlsVersion::kTls12;
  keys.cipher_suite = 0x002F;  // TLS_RSA_WITH_AES_128_CBC_SHA
  RecordLayer rsa_cbc;
  CHECK(!rsa_cbc.init(keys, false));
  // RFC 7366 absent and HMAC-SHA384: no constant-time check exists, so no native session.
  keys.cipher_suite = 0xC028;
  keys.encrypt_then_mac = false;
  RecordLayer sha384_mte;
  CHECK(!sha384_mte.init(keys, false));
  CHECK(cbc_refusal(*find_cipher_suite(TlsVersion::kTls12, 0xC028), false) != nullptr);
  CHECK(cbc_refusal(*find_cipher_suite(TlsVersion::kTls12, 0xC028), true) == nullptr);
  keys.encrypt_then_mac = true;
  RecordLayer sha384_etm;
  CHECK(sha384_etm.init(keys, false));
  RecordLayer layer;
  keys.cipher_suite = 0xC02F;
  keys.max_fragment_length = 100;
  CHECK(!layer.init(keys, false));
}

}  // namespace

int main() {
  test_tls13_traffic_keys();
  test_rfc8448_records();
  test_rfc8448_record_layer();
  test_traffic_update();
  test_tls12_prf();
  test_tls12_key_block();
  test_round_trips();
  test_unsupported_suites();
  return test::finish("test_kat");
}
