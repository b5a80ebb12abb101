// The cipher suites the native record layer implements: TLS 1.3's three AEAD suites, the
// TLS 1.2 AEAD suites (AES-GCM, ChaCha20-Poly1305) with any key exchange, and the TLS 1.2
// ECDHE and PSK AES-CBC suites (cbc.h). The key exchange is over by the time a session reaches
// native code, so a TLS 1.2 suite matters here only for its record protection and PRF hash.
#ifndef TLS_SPLICE_CIPHER_SUITE_H_
#define TLS_SPLICE_CIPHER_SUITE_H_

#include <cstddef>
#include <cstdint>

#include "cbc.h"
#include "tls_constants.h"

namespace tls_splice {

enum class AeadAlgorithm : uint8_t {
  kAes128Gcm,
  kAes256Gcm,
  kChaCha20Poly1305,
};

enum class HashAlgorithm : uint8_t {
  kSha256,
  kSha384,
};

struct CipherSuite {
  uint16_t id;           // IANA value, e.g. 0x1301
  const char* name;      // IANA name, e.g. "TLS_AES_128_GCM_SHA256"
  TlsVersion version;
  AeadAlgorithm aead;
  HashAlgorithm hash;    // HKDF hash (1.3) or PRF hash (1.2)
  size_t key_length;
  // TLS 1.3 and TLS 1.2 ChaCha20: the 12-byte per-direction IV XORed with the sequence number.
  // TLS 1.2 GCM: the 4-byte implicit salt (RFC 5288 3).
  size_t fixed_iv_length;
  // TLS 1.2 AES-CBC (RFC 5246 6.2.3.2): records carry an explicit IV and an HMAC of `mac`
  // (fixed_iv_length is 0, and `aead` only names the AES key size). Whether the MAC comes
  // before or after encryption is the session's (RFC 7366), not the suite's.
  bool cbc = false;
  CbcMac mac = CbcMac::kSha1;
};

// The suite with this IANA id for this version, or nullptr when the native record layer does
// not implement it (RSA key exchange CBC suites, TLS 1.3 CCM, a 1.3 suite asked for with 1.2,
// ...). A CBC suite found here may still be refused for a session: see cbc_refusal().
const CipherSuite* find_cipher_suite(TlsVersion version, uint16_t id);

size_t hash_length(HashAlgorithm hash);

// The CBC parameters of a CBC suite in a session that did (or did not) negotiate
// encrypt_then_mac.
CbcParams cbc_params(const CipherSuite& suite, bool encrypt_then_mac);

// Why this session cannot use the native record layer even though its suite is listed: a CBC
// suite with MAC-then-encrypt and no constant-time stitched cipher here (cbc.h). nullptr when it
// can.
const char* cbc_refusal(const CipherSuite& suite, bool encrypt_then_mac);

// True when nonces are the fixed IV XOR the sequence number (TLS 1.3, and ChaCha20 in 1.2,
// RFC 7905 2); false for TLS 1.2 GCM, whose records carry an explicit nonce.
bool uses_xor_nonce(const CipherSuite& suite);

// RFC 8446 5.5 usage limits, as a count of records sealed under one key: past it, a TLS 1.3
// sender must update its key. AES-GCM: 2^24.5 full-size records; ChaCha20-Poly1305 has no
// practical limit below the 2^64 sequence space.
uint64_t record_limit_per_key(const CipherSuite& suite);

}  // namespace tls_splice

#endif  // TLS_SPLICE_CIPHER_SUITE_H_
