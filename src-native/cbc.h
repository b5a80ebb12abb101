// One direction of TLS 1.2 CBC record protection (RFC 5246 6.2.3.2): AES-128/256-CBC with a
// per-record explicit IV from the CSPRNG, and an HMAC, either MAC-then-encrypt (RFC 5246) or
// encrypt-then-MAC (RFC 7366). Opens or seals one record body; it knows nothing of framing.
//
// Constant time (Lucky Thirteen): with MAC-then-encrypt the padding and the MAC are checked by
// OpenSSL's stitched ciphers (AES-*-CBC-HMAC-SHA1/SHA256, driven with EVP_CTRL_AEAD_SET_MAC_KEY
// and EVP_CTRL_AEAD_TLS1_AAD as libssl does), whose check does not depend on the padding. They
// exist only where the CPU has AES-NI; elsewhere, and for SHA-384, init() refuses with
// kNoConstantTimeCipher rather than fall back to a variable-time check. With encrypt-then-MAC the
// MAC covers the ciphertext and is compared (CRYPTO_memcmp) before anything is decrypted.
//
// Every bad record (length, IV, padding, MAC) is the same failure: open() returns false, and the
// caller answers bad_record_mac and uses nothing of `out`.
#ifndef TLS_SPLICE_CBC_H_
#define TLS_SPLICE_CBC_H_

#include <cstddef>
#include <cstdint>

#include "tls_constants.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace tls_splice {

enum class CbcCipher : uint8_t { kAes128, kAes256 };
enum class CbcMac : uint8_t { kSha1, kSha256, kSha384 };

struct CbcParams {
  CbcCipher cipher;
  CbcMac mac;
  bool encrypt_then_mac;  // RFC 7366, as the ServerHello's encrypt_then_mac extension said
};

constexpr size_t kCbcBlockLength = 16;

size_t cbc_key_length(CbcCipher cipher);
size_t cbc_mac_length(CbcMac mac);

enum class CbcInitStatus : uint8_t {
  kOk,
  // MAC-then-encrypt without a stitched cipher (no AES-NI, or SHA-384): the caller falls back to
  // an engine whose check is constant time, with this reason.
  kNoConstantTimeCipher,
  kFailed,  // OpenSSL failed
};

class CbcProtection {
 public:
  CbcProtection() = default;
  ~CbcProtection();
  CbcProtection(const CbcProtection&) = delete;
  CbcProtection& operator=(const CbcProtection&) = delete;

  // enc_key: cbc_key_length(params.cipher) bytes; mac_key: cbc_mac_length(params.mac) bytes.
  CbcInitStatus init(const CbcParams& params, const uint8_t* enc_key, const uint8_t* mac_key,
                     bool sealing);
  // Frees the contexts (OpenSSL cleanses their keys).
  void reset();

  // Opens the body (explicit IV, ciphertext, and the MAC with encrypt-then-MAC) of a record of
  // `type` at sequence number `seq`. `out` needs body_length bytes and must not overlap `body`.
  // On true the plaintext is out[0 .. *plaintext_length).
  bool open(uint64_t seq, ContentType type, const uint8_t* body, size_t body_length, uint8_t* out,
            size_t* plaintext_length);

  // The body length sealing `plaintext_length` bytes produces.
  size_t sealed_body_length(size_t plaintext_length) const;
  // Seals into `out` (sealed_body_length() bytes, not overlapping `plaintext`); returns the body
  // length, or 0 when the CSPRNG or OpenSSL fails.
  size_t seal(uint64_t seq, ContentType type, const uint8_t* plaintext, size_t plaintext_length,
              uint8_t* out);

 private:
  bool open_mte(const uint8_t aad[13], const uint8_t* body, size_t body_length, uint8_t* out,
                size_t* plaintext_length);
  bool open_etm(uint64_t seq, ContentType type, const uint8_t* body, size_t body_length,
                uint8_t* out, size_t* plaintext_length);
  size_t seal_mte(uint64_t seq, ContentType type, const uint8_t* plaintext, size_t length,
                  uint8_t* out);
  size_t seal_etm(uint64_t seq, ContentType type, const uint8_t* plaintext, size_t length,
                  uint8_t* out);
  // HMAC over seq || type || version || length || data (RFC 5246 6.2.3.1, RFC 7366 3).
  bool mac(uint64_t seq, ContentType type, const uint8_t* data, size_t length, uint8_t* out);

  CbcParams params_{};
  bool sealing_ = false;
  EVP_CIPHER_CTX* cipher_ = nullptr;
  EVP_MAC_CTX* mac_ = nullptr;  // encrypt-then-MAC only
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_CBC_H_
