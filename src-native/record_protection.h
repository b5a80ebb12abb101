// One direction of record protection: the keys, the sequence number, and the per-version rules
// for nonce and additional data. Opens or seals exactly one record; it does not parse
// post-handshake messages or decide what a record means (record_layer.h does).
//
// TLS 1.3 (RFC 8446 5.2, 5.3): nonce = iv XOR seq; AAD = the record header; the plaintext ends
//   with the real content type and optional zero padding.
// TLS 1.2 GCM (RFC 5288 3): nonce = 4-byte salt || 8-byte explicit nonce carried in the record;
//   AAD = seq || type || version || plaintext length (RFC 5246 6.2.3.3).
// TLS 1.2 ChaCha20-Poly1305 (RFC 7905 2): nonce = iv XOR seq; AAD as for GCM.
// TLS 1.2 AES-CBC (RFC 5246 6.2.3.2, RFC 7366): explicit IV, HMAC and padding; cbc.h.
#ifndef TLS_SPLICE_RECORD_PROTECTION_H_
#define TLS_SPLICE_RECORD_PROTECTION_H_

#include <cstddef>
#include <cstdint>

#include "aead.h"
#include "cbc.h"
#include "cipher_suite.h"
#include "tls_constants.h"

namespace tls_splice {

enum class OpenStatus : uint8_t {
  kOk,
  kBadRecordMac,     // authentication failed, or the record is too short to be authentic
  kRecordOverflow,   // the plaintext is longer than 2^14
  kNoContentType,    // TLS 1.3: the inner plaintext is all zeros
  kSequenceExhausted,
  kInternalError,    // OpenSSL failed
};

struct OpenedRecord {
  ContentType type;         // the real type (TLS 1.3: the inner content type)
  size_t plaintext_length;  // bytes of plaintext at the start of the output buffer
};

class RecordProtection {
 public:
  RecordProtection() = default;
  ~RecordProtection();
  RecordProtection(const RecordProtection&) = delete;
  RecordProtection& operator=(const RecordProtection&) = delete;

  // TLS 1.3: keys from a traffic secret (hash_length(suite.hash) bytes), which is kept for
  // KeyUpdate. `sealing` chooses encryption or decryption.
  bool init_tls13(const CipherSuite& suite, const uint8_t* traffic_secret, uint64_t seq,
                  bool sealing);
  // TLS 1.2: a write key and its fixed IV (suite.key_length and suite.fixed_iv_length bytes).
  // AES-GCM sealing: `explicit_nonce` is the nonce_explicit of the first record sealed, and
  // counts up by one per record from there (wrapping mod 2^64); it defaults to `seq`.
  bool init_tls12(const CipherSuite& suite, const uint8_t* key, const uint8_t* fixed_iv,
                  uint64_t seq, bool sealing);
  bool init_tls12(const CipherSuite& suite, const uint8_t* key, const uint8_t* fixed_iv,
                  uint64_t seq, bool sealing, uint64_t explicit_nonce);
  // TLS 1.2 AES-CBC: a write key and a MAC key (suite.key_length and cbc_mac_length(suite.mac)
  // bytes), MAC-then-encrypt or, when the session negotiated it, encrypt-then-MAC (RFC 7366).
  // kNoConstantTimeCipher: see cbc.h; the caller must not use this session natively.
  CbcInitStatus init_tls12_cbc(const CipherSuite& suite, const uint8_t* key,
                               const uint8_t* mac_key, bool encrypt_then_mac, uint64_t seq,
                               bool sealing);
  // RFC 8446 4.6.3: move to the next traffic secret and restart the sequence at 0.
  bool update_traffic_secret();
  // Sets the sequence number of the next record: trial decryption at capture opens records at
  // positions of its choosing under one set of keys, derived once.
  void set_seq(uint64_t seq) { seq_ = seq; }

  // Opens one record. `header` is its 5-byte header and `body` its `body_length` bytes.
  // `out` must have room for body_length bytes; it may equal `body` (in-place), except with
  // AES-CBC, where it must not overlap `body`.
  // The sequence number advances only when kOk is returned.
  OpenStatus open(const uint8_t* header, const uint8_t* body, size_t body_length, uint8_t* out,
                  OpenedRecord* out_record);

  // The whole record (header included) that sealing `plaintext_length` bytes produces.
  size_t sealed_length(size_t plaintext_length) const;

  // Seals one record of `type` into `out` (which needs sealed_length() bytes; it must not
  // overlap `plaintext`) and returns its length, or 0 when the sequence space is exhausted or
  // OpenSSL fails. plaintext_length is at most 2^14.
  size_t seal(ContentType type, const uint8_t* plaintext, size_t plaintext_length, uint8_t* out);

  // Wipes the secret, key and IV and releases the cipher context; the object is unusable after.
  void wipe();

  const CipherSuite* suite() const { return suite_; }
  uint64_t seq() const { return seq_; }
  bool is_tls13() const { return suite_ && suite_->version == TlsVersion::kTls13; }

 private:
  OpenStatus open_cbc(const uint8_t* header, const uint8_t* body, size_t body_length,
                      uint8_t* out, OpenedRecord* out_record);
  void make_xor_nonce(uint8_t out_nonce[kAeadNonceLength]) const;
  bool install_tls13_keys();
  void wipe_keys();

  const CipherSuite* suite_ = nullptr;
  bool sealing_ = false;
  uint64_t seq_ = 0;
  uint64_t explicit_nonce_ = 0;  // TLS 1.2 AES-GCM sealing: the next record's nonce_explicit
  uint8_t traffic_secret_[kMaxSecretLength] = {};
  uint8_t key_[kMaxKeyLength] = {};
  uint8_t iv_[kAeadNonceLength] = {};
  Aead aead_;
  CbcProtection cbc_;  // TLS 1.2 AES-CBC suites; it holds their keys
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_RECORD_PROTECTION_H_
