// Key derivation shared by session setup and KeyUpdate: TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1)
// and the TLS 1.2 PRF key block (RFC 5246 5, 6.3).
//
// Every function returns false only when OpenSSL fails or a length is out of range; outputs are
// then unspecified and must not be used. Callers own all buffers and wipe secrets themselves.
#ifndef TLS_SPLICE_KEY_SCHEDULE_H_
#define TLS_SPLICE_KEY_SCHEDULE_H_

#include <cstddef>
#include <cstdint>

#include "cipher_suite.h"

namespace tls_splice {

// RFC 8446 7.1: HKDF-Expand-Label(Secret, Label, Context, Length); `label` is given without the
// "tls13 " prefix. out_len is at most 255 * hash length, and the label at most 249 bytes.
bool hkdf_expand_label(HashAlgorithm hash, const uint8_t* secret, size_t secret_length,
                       const char* label, const uint8_t* context, size_t context_length,
                       uint8_t* out, size_t out_length);

// RFC 8446 7.3: the traffic key (suite.key_length bytes) and the 12-byte IV of a traffic secret
// (hash_length(suite.hash) bytes).
bool derive_tls13_traffic_keys(const CipherSuite& suite, const uint8_t* traffic_secret,
                               uint8_t* out_key, uint8_t* out_iv);

// RFC 8446 7.2: application_traffic_secret_N+1 =
//   HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length).
bool next_tls13_traffic_secret(const CipherSuite& suite, const uint8_t* traffic_secret,
                               uint8_t* out_secret);

// RFC 5246 5: PRF(secret, label, seed) = P_<hash>(secret, label + seed), any output length.
bool tls12_prf(HashAlgorithm hash, const uint8_t* secret, size_t secret_length,
               const char* label, const uint8_t* seed, size_t seed_length,
               uint8_t* out, size_t out_length);

struct Tls12KeyBlock {
  uint8_t client_write_mac_key[kMaxMacKeyLength];  // CBC: cbc_mac_length(suite.mac) bytes
  uint8_t server_write_mac_key[kMaxMacKeyLength];
  uint8_t client_write_key[kMaxKeyLength];
  uint8_t server_write_key[kMaxKeyLength];
  uint8_t client_write_iv[kAeadNonceLength];  // suite.fixed_iv_length bytes are used
  uint8_t server_write_iv[kAeadNonceLength];
};

// RFC 5246 6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random).
// The block is two MAC keys (CBC suites only; AEAD suites have none), two keys, then two fixed
// IVs (AEAD suites only: TLS 1.2 CBC records carry their IV).
bool derive_tls12_key_block(const CipherSuite& suite, const uint8_t* master_secret,
                            const uint8_t* client_random, const uint8_t* server_random,
                            Tls12KeyBlock* out_block);

// Overwrites n bytes in a way the compiler cannot elide (OPENSSL_cleanse).
void wipe(void* data, size_t length);

}  // namespace tls_splice

#endif  // TLS_SPLICE_KEY_SCHEDULE_H_
