#include "cbc.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>

namespace tls_splice {
namespace {

constexpr size_t kAadLength = 13;  // EVP_AEAD_TLS1_AAD_LEN: seq, type, version, length
constexpr size_t kMaxMacLength = 48;

const char* stitched_name(const CbcParams& params) {
  const bool aes128 = params.cipher == CbcCipher::kAes128;
  switch (params.mac) {
    case CbcMac::kSha1: return aes128 ? "AES-128-CBC-HMAC-SHA1" : "AES-256-CBC-HMAC-SHA1";
    case CbcMac::kSha256: return aes128 ? "AES-128-CBC-HMAC-SHA256" : "AES-256-CBC-HMAC-SHA256";
    case CbcMac::kSha384: return nullptr;  // OpenSSL has no stitched SHA-384 cipher
  }
  return nullptr;
}

const char* digest_name(CbcMac mac) {
  switch (mac) {
    case CbcMac::kSha1: return "SHA1";
    case CbcMac::kSha256: return "SHA256";
    case CbcMac::kSha384: return "SHA384";
  }
  return nullptr;
}

void put_aad(uint64_t seq, ContentType type, size_t length, uint8_t aad[kAadLength]) {
  for (int i = 7; i >= 0; i--, seq >>= 8) aad[i] = static_cast<uint8_t>(seq);
  aad[8] = static_cast<uint8_t>(type);
  aad[9] = static_cast<uint8_t>(kRecordVersion >> 8);
  aad[10] = static_cast<uint8_t>(kRecordVersion);
  aad[11] = static_cast<uint8_t>(length >> 8);
  aad[12] = static_cast<uint8_t>(length);
}

}  // namespace

size_t cbc_key_length(CbcCipher cipher) { return cipher == CbcCipher::kAes128 ? 16 : 32; }

size_t cbc_mac_length(CbcMac mac) {
  switch (mac) {
    case CbcMac::kSha1: return 20;
    case CbcMac::kSha256: return 32;
    case CbcMac::kSha384: return 48;
  }
  return 0;
}

CbcProtection::~CbcProtection() { reset(); }

void CbcProtection::reset() {
  EVP_CIPHER_CTX_free(cipher_);
  cipher_ = nullptr;
  EVP_MAC_CTX_free(mac_);
  mac_ = nullptr;
}

CbcInitStatus CbcProtection::init(const CbcParams& params, const uint8_t* enc_key,
                                  const uint8_t* mac_key, bool sealing) {
  reset();
  params_ = params;
  sealing_ = sealing;
  const size_t mac_length = cbc_mac_length(params.mac);
  EVP_CIPHER* fetched = nullptr;
  if (!params.encrypt_then_mac) {
    const char* name = stitched_name(params);
    fetched = name ? EVP_CIPHER_fetch(nullptr, name, nullptr) : nullptr;
    if (fetched == nullptr) {
      ERR_clear_error();
      return CbcInitStatus::kNoConstantTimeCipher;
    }
  }
  const EVP_CIPHER* cipher = fetched;
  if (cipher == nullptr) {
    cipher = params.cipher == CbcCipher::kAes128 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
  }
  const uint8_t zero_iv[kCbcBlockLength] = {};
  cipher_ = EVP_CIPHER_CTX_new();
  bool ok = cipher_ != nullptr &&
            EVP_CipherInit_ex(cipher_, cipher, nullptr, enc_key, zero_iv, sealing ? 1 : 0) == 1;
  EVP_CIPHER_free(fetched);
  if (ok && params.encrypt_then_mac) {
    ok = EVP_CIPHER_CTX_set_padding(cipher_, 0) == 1;
    EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    mac_ = hmac ? EVP_MAC_CTX_new(hmac) : nullptr;
    EVP_MAC_free(hmac);
    OSSL_PARAM digest[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                         const_cast<char*>(digest_name(params.mac)), 0),
        OSSL_PARAM_construct_end()};
    ok = ok && mac_ != nullptr && EVP_MAC_init(mac_, mac_key, mac_length, digest) == 1;
  } else if (ok) {
    ok = EVP_CIPHER_CTX_ctrl(cipher_, EVP_CTRL_AEAD_SET_MAC_KEY, static_cast<int>(mac_length),
                             const_cast<uint8_t*>(mac_key)) > 0;
  }
  if (!ok) {
    ERR_clear_error();
    reset();
    return CbcInitStatus::kFailed;
  }
  return CbcInitStatus::kOk;
}

bool CbcProtection::open(uint64_t seq, ContentType type, const uint8_t* body, size_t body_length,
                         uint8_t* out, size_t* plaintext_length) {
  if (cipher_ == nullptr || sealing_ || body_length > kMaxTls12CiphertextLength) return false;
  if (params_.encrypt_then_mac) return open_etm(seq, type, body, body_length, out, plaintext_length);
  uint8_t aad[kAadLength];
  put_aad(seq, type, body_length, aad);
  return open_mte(aad, body, body_length, out, plaintext_length);
}

bool CbcProtection::open_mte(const uint8_t aad[kAadLength], const uint8_t* body,
                             size_t body_length, uint8_t* out, size_t* plaintext_length) {
  const size_t mac_length = cbc_mac_length(params_.mac);
  // Public facts only: whole blocks, and room for an IV, a MAC and a padding length byte.
  if (body_length % kCbcBlockLength != 0 ||
      body_length < kCbcBlockLength + ((mac_length + 1 + kCbcBlockLength - 1) &
                                       ~(kCbcBlockLength - 1))) {
    return false;
  }
  uint8_t aad_copy[kAadLength];
  std::memcpy(aad_copy, aad, kAadLength);
  // Opening: the cipher keeps the AAD and checks padding and MAC together in constant time; its
  // result is the only thing that depends on them.
  if (EVP_CIPHER_CTX_ctrl(cipher_, EVP_CTRL_AEAD_TLS1_AAD, kAadLength, aad_copy) <= 0 ||
      EVP_Cipher(cipher_, out, body, static_cast<unsigned int>(body_length)) <= 0) {
    ERR_clear_error();
    return false;
  }
  // Authentic: the padding length byte may be read now. The cipher wrote the plaintext after the
  // (decrypted, meaningless) explicit IV block.
  const size_t pad = out[body_length - 1];
  const size_t length = body_length - kCbcBlockLength - mac_length - pad - 1;
  std::memmove(out, out + kCbcBlockLength, length);
  *plaintext_length = length;
  return true;
}

bool CbcProtection::open_etm(uint64_t seq, ContentType type, const uint8_t* body,
                             size_t body_length, uint8_t* out, size_t* plaintext_length) {
  const size_t mac_length = cbc_mac_length(params_.mac);
  if (body_length < 2 * kCbcBlockLength + mac_length) return false;
  const size_t encrypted_length = body_length - mac_length;  // IV and ciphertext
  if (encrypted_length % kCbcBlockLength != 0) return false;
  uint8_t expected[kMaxMacLength];
  if (!mac(seq, type, body, encrypted_length, expected)) return false;
  // RFC 7366 3: the MAC is checked before anything is decrypted.
  if (CRYPTO_memcmp(expected, body + encrypted_length, mac_length) != 0) return false;
  const size_t ciphertext_length = encrypted_length - kCbcBlockLength;
  int n = 0;
  if (EVP_CipherInit_ex(cipher_, nullptr, nullptr, nullptr, body, 0) != 1 ||
      EVP_CipherUpdate(cipher_, out, &n, body + kCbcBlockLength,
                       static_cast<int>(ciphertext_length)) != 1 ||
      static_cast<size_t>(n) != ciphertext_length) {
    ERR_clear_error();
    return false;
  }
  // Authentic, so no secret depends on how the padding is checked.
  const size_t pad = out[ciphertext_length - 1];
  if (pad + 1 > ciphertext_length) return false;
  for (size_t i = ciphertext_length - 1 - pad; i < ciphertext_length; i++) {
    if (out[i] != pad) return false;
  }
  *plaintext_length = ciphertext_length - pad - 1;
  return true;
}

size_t CbcProtection::sealed_body_length(size_t plaintext_length) const {
  const size_t mac_length = cbc_mac_length(params_.mac);
  // The shortest padding: 1 to 16 bytes (padding_length byte included).
  if (params_.encrypt_then_mac) {
    return kCbcBlockLength + (plaintext_length / kCbcBlockLength + 1) * kCbcBlockLength +
           mac_length;
  }
  return kCbcBlockLength +
         ((plaintext_length + mac_length) / kCbcBlockLength + 1) * kCbcBlockLength;
}

size_t CbcProtection::seal(uint64_t seq, ContentType type, const uint8_t* plaintext,
                           size_t plaintext_length, uint8_t* out) {
  if (cipher_ == nullptr || !sealing_ || plaintext_length > kMaxPlaintextLength) return 0;
  // RFC 5246 6.2.3.2: "The Initialization Vector (IV) SHOULD be chosen at random, and MUST be
  // unpredictable."
  if (RAND_bytes(out, kCbcBlockLength) != 1) {
    ERR_clear_error();
    return 0;
  }
  return params_.encrypt_then_mac ? seal_etm(seq, type, plaintext, plaintext_length, out)
                                  : seal_mte(seq, type, plaintext, plaintext_length, out);
}

size_t CbcProtection::seal_mte(uint64_t seq, ContentType type, const uint8_t* plaintext,
                               size_t length, uint8_t* out) {
  if (length > 0) std::memcpy(out + kCbcBlockLength, plaintext, length);  // plaintext may be null
  // As libssl does: the AAD's length counts the explicit IV; the cipher answers how many bytes
  // of MAC and padding it appends. It encrypts the random block first, so what goes on the wire
  // as the IV is that block's encryption: unpredictable as well.
  uint8_t aad[kAadLength];
  put_aad(seq, type, kCbcBlockLength + length, aad);
  const int extra = EVP_CIPHER_CTX_ctrl(cipher_, EVP_CTRL_AEAD_TLS1_AAD, kAadLength, aad);
  const size_t total = kCbcBlockLength + length + static_cast<size_t>(extra > 0 ? extra : 0);
  if (extra <= 0 || total != sealed_body_length(length) ||
      EVP_Cipher(cipher_, out, out, static_cast<unsigned int>(total)) <= 0) {
    ERR_clear_error();
    return 0;
  }
  return total;
}

size_t CbcProtection::seal_etm(uint64_t seq, ContentType type, const uint8_t* plaintext,
                               size_t length, uint8_t* out) {
  const size_t padded = (length / kCbcBlockLength + 1) * kCbcBlockLength;
  uint8_t* text = out + kCbcBlockLength;
  if (length > 0) std::memcpy(text, plaintext, length);  // plaintext may be null when empty
  std::memset(text + length, static_cast<int>(padded - length - 1), padded - length);
  int n = 0;
  if (EVP_CipherInit_ex(cipher_, nullptr, nullptr, nullptr, out, 1) != 1 ||
      EVP_CipherUpdate(cipher_, text, &n, text, static_cast<int>(padded)) != 1 ||
      static_cast<size_t>(n) != padded) {
    ERR_clear_error();
    return 0;
  }
  const size_t encrypted_length = kCbcBlockLength + padded;
  if (!mac(seq, type, out, encrypted_length, out + encrypted_length)) return 0;
  return encrypted_length + cbc_mac_length(params_.mac);
}

bool CbcProtection::mac(uint64_t seq, ContentType type, const uint8_t* data, size_t length,
                        uint8_t* out) {
  uint8_t header[kAadLength];
  put_aad(seq, type, length, header);
  size_t written = 0;
  // A null key re-keys with the key given to init().
  if (EVP_MAC_init(mac_, nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(mac_, header, sizeof(header)) != 1 ||
      EVP_MAC_update(mac_, data, length) != 1 ||
      EVP_MAC_final(mac_, out, &written, kMaxMacLength) != 1 ||
      written != cbc_mac_length(params_.mac)) {
    ERR_clear_error();
    return false;
  }
  return true;
}

}  // namespace tls_splice
