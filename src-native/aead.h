// One direction's AEAD cipher (AES-GCM or ChaCha20-Poly1305) over OpenSSL EVP. The key is set
// once; each record supplies its 12-byte nonce. Knows nothing of TLS framing.
#ifndef TLS_SPLICE_AEAD_H_
#define TLS_SPLICE_AEAD_H_

#include <cstddef>
#include <cstdint>

#include "cipher_suite.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace tls_splice {

class Aead {
 public:
  Aead() = default;
  ~Aead();
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;

  // Sets the key for sealing (encrypt = true) or opening. May be called again to rekey.
  // Returns false when OpenSSL fails; the object is then unusable until init succeeds.
  bool init(AeadAlgorithm algorithm, const uint8_t* key, size_t key_length, bool encrypt);
  // Frees the cipher context (OpenSSL cleanses its key schedule); init() may be called again.
  void reset();

  // Encrypts `length` bytes of `in` to `out` (which may equal `in`) as the concatenation of
  // parts, and writes the 16-byte tag to `out_tag`. Two parts let TLS 1.3 append its inner
  // content type without a copy.
  bool seal(const uint8_t nonce[kAeadNonceLength], const uint8_t* aad, size_t aad_length,
            const uint8_t* in, size_t length, const uint8_t* in2, size_t length2,
            uint8_t* out, uint8_t* out_tag);

  // Decrypts `length` bytes of `in` into `out` (which may equal `in`) and checks `tag`.
  // Returns false when the tag does not verify (or OpenSSL fails): `out` then holds
  // unauthenticated bytes the caller must not use.
  bool open(const uint8_t nonce[kAeadNonceLength], const uint8_t* aad, size_t aad_length,
            const uint8_t* in, size_t length, const uint8_t tag[kAeadTagLength], uint8_t* out);

 private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool encrypt_ = false;
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_AEAD_H_
