#include "aead.h"

#include <openssl/evp.h>

#include <climits>

namespace tls_splice {
namespace {

const EVP_CIPHER* evp_cipher_for(AeadAlgorithm algorithm) {
  switch (algorithm) {
    case AeadAlgorithm::kAes128Gcm:
      return EVP_aes_128_gcm();
    case AeadAlgorithm::kAes256Gcm:
      return EVP_aes_256_gcm();
    case AeadAlgorithm::kChaCha20Poly1305:
      return EVP_chacha20_poly1305();
  }
  return nullptr;
}

}  // namespace

Aead::~Aead() { reset(); }

void Aead::reset() {
  // EVP_CIPHER_CTX_free cleanses the key schedule.
  EVP_CIPHER_CTX_free(ctx_);
  ctx_ = nullptr;
}

bool Aead::init(AeadAlgorithm algorithm, const uint8_t* key, size_t key_length, bool encrypt) {
  const EVP_CIPHER* cipher = evp_cipher_for(algorithm);
  if (cipher == nullptr || static_cast<size_t>(EVP_CIPHER_key_length(cipher)) != key_length) {
    return false;
  }
  if (ctx_ == nullptr) {
    ctx_ = EVP_CIPHER_CTX_new();
    if (ctx_ == nullptr) return false;
  } else {
    EVP_CIPHER_CTX_reset(ctx_);
  }
  encrypt_ = encrypt;
  // The nonce length is set once here; per record only the nonce itself changes.
  if (EVP_CipherInit_ex(ctx_, cipher, nullptr, nullptr, nullptr, encrypt ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_IVLEN, kAeadNonceLength, nullptr) != 1 ||
      EVP_CipherInit_ex(ctx_, nullptr, nullptr, key, nullptr, encrypt ? 1 : 0) != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = nullptr;
    return false;
  }
  return true;
}

bool Aead::seal(const uint8_t nonce[kAeadNonceLength], const uint8_t* aad, size_t aad_length,
                const uint8_t* in, size_t length, const uint8_t* in2, size_t length2,
                uint8_t* out, uint8_t* out_tag) {
  if (ctx_ == nullptr || !encrypt_ || length > INT_MAX || length2 > INT_MAX ||
      aad_length > INT_MAX) {
    return false;
  }
  int n = 0;
  if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (aad_length && EVP_EncryptUpdate(ctx_, nullptr, &n, aad, static_cast<int>(aad_length)) != 1)
    return false;
  size_t written = 0;
  if (length) {
    if (EVP_EncryptUpdate(ctx_, out, &n, in, static_cast<int>(length)) != 1) return false;
    written += static_cast<size_t>(n);
  }
  if (length2) {
    if (EVP_EncryptUpdate(ctx_, out + written, &n, in2, static_cast<int>(length2)) != 1)
      return false;
    written += static_cast<size_t>(n);
  }
  if (EVP_EncryptFinal_ex(ctx_, out + written, &n) != 1) return false;
  written += static_cast<size_t>(n);
  if (written != length + length2) return false;
  return EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kAeadTagLength, out_tag) == 1;
}

bool Aead::open(const uint8_t nonce[kAeadNonceLength], const uint8_t* aad, size_t aad_length,
                const uint8_t* in, size_t length, const uint8_t tag[kAeadTagLength],
                uint8_t* out) {
  if (ctx_ == nullptr || encrypt_ || length > INT_MAX || aad_length > INT_MAX) return false;
  int n = 0;
  if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kAeadTagLength,
                          const_cast<uint8_t*>(tag)) != 1) {
    return false;
  }
  if (aad_length && EVP_DecryptUpdate(ctx_, nullptr, &n, aad, static_cast<int>(aad_length)) != 1)
    return false;
  size_t written = 0;
  if (length) {
    if (EVP_DecryptUpdate(ctx_, out, &n, in, static_cast<int>(length)) != 1) return false;
    written = static_cast<size_t>(n);
  }
  if (EVP_DecryptFinal_ex(ctx_, out + written, &n) != 1) return false;
  return written + static_cast<size_t>(n) == length;
}

}  // namespace tls_splice
