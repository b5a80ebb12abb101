#include "record_protection.h"

#include <cstdint>
#include <cstring>

#include "key_schedule.h"

namespace tls_splice {
namespace {

void put_u16(uint8_t* out, size_t value) {
  out[0] = static_cast<uint8_t>(value >> 8);
  out[1] = static_cast<uint8_t>(value);
}

void put_u64(uint8_t* out, uint64_t value) {
  for (int i = 7; i >= 0; i--) {
    out[i] = static_cast<uint8_t>(value);
    value >>= 8;
  }
}

// RFC 5246 6.2.3.3: additional_data = seq_num + TLSCompressed.type + TLSCompressed.version +
// TLSCompressed.length.
constexpr size_t kTls12AadLength = 13;

void make_tls12_aad(uint64_t seq, uint8_t type, size_t plaintext_length,
                    uint8_t out_aad[kTls12AadLength]) {
  put_u64(out_aad, seq);
  out_aad[8] = type;
  put_u16(out_aad + 9, kRecordVersion);
  put_u16(out_aad + 11, plaintext_length);
}

}  // namespace

RecordProtection::~RecordProtection() { wipe_keys(); }

void RecordProtection::wipe() {
  wipe_keys();
  aead_.reset();
  cbc_.reset();
  suite_ = nullptr;
}

void RecordProtection::wipe_keys() {
  tls_splice::wipe(traffic_secret_, sizeof(traffic_secret_));
  tls_splice::wipe(key_, sizeof(key_));
  tls_splice::wipe(iv_, sizeof(iv_));
}

bool RecordProtection::install_tls13_keys() {
  return derive_tls13_traffic_keys(*suite_, traffic_secret_, key_, iv_) &&
         aead_.init(suite_->aead, key_, suite_->key_length, sealing_);
}

bool RecordProtection::init_tls13(const CipherSuite& suite, const uint8_t* traffic_secret,
                                  uint64_t seq, bool sealing) {
  if (suite.version != TlsVersion::kTls13) return false;
  wipe_keys();
  suite_ = &suite;
  sealing_ = sealing;
  seq_ = seq;
  std::memcpy(traffic_secret_, traffic_secret, hash_length(suite.hash));
  return install_tls13_keys();
}

bool RecordProtection::init_tls12(const CipherSuite& suite, const uint8_t* key,
                                  const uint8_t* fixed_iv, uint64_t seq, bool sealing) {
  return init_tls12(suite, key, fixed_iv, seq, sealing, seq);
}

bool RecordProtection::init_tls12(const CipherSuite& suite, const uint8_t* key,
                                  const uint8_t* fixed_iv, uint64_t seq, bool sealing,
                                  uint64_t explicit_nonce) {
  if (suite.version != TlsVersion::kTls12) return false;
  wipe_keys();
  suite_ = &suite;
  sealing_ = sealing;
  seq_ = seq;
  explicit_nonce_ = explicit_nonce;
  std::memcpy(key_, key, suite.key_length);
  std::memcpy(iv_, fixed_iv, suite.fixed_iv_length);
  return aead_.init(suite.aead, key_, suite.key_length, sealing);
}

CbcInitStatus RecordProtection::init_tls12_cbc(const CipherSuite& suite, const uint8_t* key,
                                               const uint8_t* mac_key, bool encrypt_then_mac,
                                               uint64_t seq, bool sealing) {
  if (suite.version != TlsVersion::kTls12 || !suite.cbc) return CbcInitStatus::kFailed;
  wipe_keys();
  aead_.reset();
  suite_ = &suite;
  sealing_ = sealing;
  seq_ = seq;
  return cbc_.init(cbc_params(suite, encrypt_then_mac), key, mac_key, sealing);
}

OpenStatus RecordProtection::open_cbc(const uint8_t* header, const uint8_t* body,
                                      size_t body_length, uint8_t* out,
                                      OpenedRecord* out_record) {
  const uintptr_t in_at = reinterpret_cast<uintptr_t>(body);
  const uintptr_t out_at = reinterpret_cast<uintptr_t>(out);
  if (out_at < in_at + body_length && in_at < out_at + body_length) {
    return OpenStatus::kInternalError;  // cbc.h: out must not overlap body
  }
  const ContentType type = static_cast<ContentType>(header[0]);
  size_t length = 0;
  // Length, IV, padding and MAC failures are one answer, so none can be told from another.
  if (!cbc_.open(seq_, type, body, body_length, out, &length)) return OpenStatus::kBadRecordMac;
  // RFC 5246 6.2.1: the plaintext "MUST NOT exceed 2^14"; known only once it is authentic.
  if (length > kMaxPlaintextLength) return OpenStatus::kRecordOverflow;
  seq_++;
  out_record->type = type;
  out_record->plaintext_length = length;
  return OpenStatus::kOk;
}

bool RecordProtection::update_traffic_secret() {
  if (!is_tls13()) return false;
  uint8_t next[kMaxSecretLength];
  const bool ok = next_tls13_traffic_secret(*suite_, traffic_secret_, next);
  if (ok) std::memcpy(traffic_secret_, next, hash_length(suite_->hash));
  tls_splice::wipe(next, sizeof(next));
  seq_ = 0;
  return ok && install_tls13_keys();
}

void RecordProtection::make_xor_nonce(uint8_t out_nonce[kAeadNonceLength]) const {
  // RFC 8446 5.3: the 64-bit sequence number, in network byte order, left-padded with zeros to
  // iv_length, XORed with the static IV.
  std::memcpy(out_nonce, iv_, kAeadNonceLength);
  for (int i = 0; i < 8; i++) {
    out_nonce[kAeadNonceLength - 1 - i] ^= static_cast<uint8_t>(seq_ >> (8 * i));
  }
}

OpenStatus RecordProtection::open(const uint8_t* header, const uint8_t* body, size_t body_length,
                                  uint8_t* out, OpenedRecord* out_record) {
  if (suite_ == nullptr || sealing_) return OpenStatus::kInternalError;
  // The sequence number must not wrap (RFC 8446 5.3, RFC 5246 6.1); checked before decrypting.
  if (seq_ == UINT64_MAX) return OpenStatus::kSequenceExhausted;
  if (suite_->cbc) return open_cbc(header, body, body_length, out, out_record);
  uint8_t nonce[kAeadNonceLength];

  if (is_tls13()) {
    // At least the inner content type and the tag.
    if (body_length < kAeadTagLength + 1) return OpenStatus::kBadRecordMac;
    const size_t inner_length = body_length - kAeadTagLength;
    // RFC 8446 5.4: "The presence of padding does not change the overall record size
    // limitations: the full encoded TLSInnerPlaintext MUST NOT exceed 2^14 + 1 octets."
    // The length is known before decrypting, so a hostile one costs no AEAD work.
    if (inner_length > kMaxPlaintextLength + 1) return OpenStatus::kRecordOverflow;
    make_xor_nonce(nonce);
    if (!aead_.open(nonce, header, kRecordHeaderLength, body, inner_length, body + inner_length,
                    out)) {
      return OpenStatus::kBadRecordMac;
    }
    seq_++;
    // RFC 8446 5.4: the content type is the last non-zero byte; zeros after it are padding.
    size_t i = inner_length;
    while (i > 0 && out[i - 1] == 0) i--;
    // RFC 8446 5.4: "If a receiving implementation does not find a non-zero octet in the
    // cleartext, it MUST terminate the connection with an "unexpected_message" alert."
    if (i == 0) return OpenStatus::kNoContentType;
    out_record->type = static_cast<ContentType>(out[i - 1]);
    out_record->plaintext_length = i - 1;
    return OpenStatus::kOk;
  }

  const uint8_t type = header[0];
  const uint8_t* ciphertext = body;
  size_t ciphertext_length = 0;
  if (uses_xor_nonce(*suite_)) {
    if (body_length < kAeadTagLength) return OpenStatus::kBadRecordMac;
    ciphertext_length = body_length - kAeadTagLength;
    make_xor_nonce(nonce);
  } else {
    if (body_length < kTls12GcmExplicitNonceLength + kAeadTagLength)
      return OpenStatus::kBadRecordMac;
    ciphertext_length = body_length - kTls12GcmExplicitNonceLength - kAeadTagLength;
    std::memcpy(nonce, iv_, suite_->fixed_iv_length);
    std::memcpy(nonce + suite_->fixed_iv_length, body, kTls12GcmExplicitNonceLength);
    ciphertext = body + kTls12GcmExplicitNonceLength;
  }
  // RFC 5246 6.2.3: "The length (in bytes) of the following TLSCompressed.fragment. The length
  // MUST NOT exceed 2^14 + 1024." With no compression that is the plaintext, bounded by 2^14.
  if (ciphertext_length > kMaxPlaintextLength) return OpenStatus::kRecordOverflow;
  uint8_t aad[kTls12AadLength];
  make_tls12_aad(seq_, type, ciphertext_length, aad);
  if (!aead_.open(nonce, aad, sizeof(aad), ciphertext, ciphertext_length,
                  ciphertext + ciphertext_length, out)) {
    return OpenStatus::kBadRecordMac;
  }
  seq_++;
  out_record->type = static_cast<ContentType>(type);
  out_record->plaintext_length = ciphertext_length;
  return OpenStatus::kOk;
}

size_t RecordProtection::sealed_length(size_t plaintext_length) const {
  if (suite_->cbc) return kRecordHeaderLength + cbc_.sealed_body_length(plaintext_length);
  size_t length = kRecordHeaderLength + plaintext_length + kAeadTagLength;
  if (is_tls13()) {
    length += 1;  // inner content type; no padding is added
  } else if (!uses_xor_nonce(*suite_)) {
    length += kTls12GcmExplicitNonceLength;
  }
  return length;
}

size_t RecordProtection::seal(ContentType type, const uint8_t* plaintext, size_t plaintext_length,
                              uint8_t* out) {
  if (suite_ == nullptr || !sealing_ || plaintext_length > kMaxPlaintextLength) return 0;
  if (seq_ == UINT64_MAX) return 0;
  const size_t total = sealed_length(plaintext_length);
  uint8_t* header = out;
  uint8_t* body = out + kRecordHeaderLength;
  put_u16(header + 1, kRecordVersion);
  put_u16(header + 3, total - kRecordHeaderLength);
  if (suite_->cbc) {
    header[0] = static_cast<uint8_t>(type);
    if (cbc_.seal(seq_, type, plaintext, plaintext_length, body) != total - kRecordHeaderLength)
      return 0;
    seq_++;
    return total;
  }
  uint8_t nonce[kAeadNonceLength];

  if (is_tls13()) {
    // RFC 8446 5.2: the outer opaque_type is always application_data.
    header[0] = static_cast<uint8_t>(ContentType::kApplicationData);
    const uint8_t inner_type = static_cast<uint8_t>(type);
    make_xor_nonce(nonce);
    if (!aead_.seal(nonce, header, kRecordHeaderLength, plaintext, plaintext_length, &inner_type,
                    1, body, body + plaintext_length + 1)) {
      return 0;
    }
  } else {
    header[0] = static_cast<uint8_t>(type);
    uint8_t aad[kTls12AadLength];
    make_tls12_aad(seq_, header[0], plaintext_length, aad);
    uint8_t* ciphertext = body;
    if (uses_xor_nonce(*suite_)) {
      make_xor_nonce(nonce);
    } else {
      // RFC 5288 3: "each value of the nonce_explicit MUST be distinct for each distinct
      // invocation of the GCM encrypt function for any fixed key". OpenSSL started this key's
      // at a random value and counted up; we go on counting from where it stopped (capture
      // passes the last one + 1), so no value repeats before 2^64 records.
      std::memcpy(nonce, iv_, suite_->fixed_iv_length);
      put_u64(nonce + suite_->fixed_iv_length, explicit_nonce_);
      std::memcpy(body, nonce + suite_->fixed_iv_length, kTls12GcmExplicitNonceLength);
      ciphertext = body + kTls12GcmExplicitNonceLength;
    }
    if (!aead_.seal(nonce, aad, sizeof(aad), plaintext, plaintext_length, nullptr, 0, ciphertext,
                    ciphertext + plaintext_length)) {
      return 0;
    }
  }
  seq_++;
  explicit_nonce_++;  // unsigned: wraps mod 2^64, as OpenSSL's counter does
  return total;
}

}  // namespace tls_splice
