#include "cipher_suite.h"

#include <cstdint>

namespace tls_splice {
namespace {

constexpr TlsVersion k12 = TlsVersion::kTls12;
constexpr TlsVersion k13 = TlsVersion::kTls13;
constexpr AeadAlgorithm kAes128 = AeadAlgorithm::kAes128Gcm;
constexpr AeadAlgorithm kAes256 = AeadAlgorithm::kAes256Gcm;
constexpr AeadAlgorithm kChaCha = AeadAlgorithm::kChaCha20Poly1305;
constexpr HashAlgorithm kSha256 = HashAlgorithm::kSha256;
constexpr HashAlgorithm kSha384 = HashAlgorithm::kSha384;
constexpr CbcMac kSha1 = CbcMac::kSha1;
constexpr CbcMac kMacSha256 = CbcMac::kSha256;
constexpr CbcMac kMacSha384 = CbcMac::kSha384;

// TLS 1.2 GCM carries a 4-byte salt (RFC 5288 3); every other nonce is a 12-byte IV.
constexpr CipherSuite kSuites[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256", k13, kAes128, kSha256, 16, 12},
    {0x1302, "TLS_AES_256_GCM_SHA384", k13, kAes256, kSha384, 32, 12},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", k13, kChaCha, kSha256, 32, 12},

    {0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0x00A8, "TLS_PSK_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0x00A9, "TLS_PSK_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0x00AA, "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0x00AB, "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},
    {0x00AC, "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", k12, kAes128, kSha256, 16, 4},
    {0x00AD, "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384", k12, kAes256, kSha384, 32, 4},

    {0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCAB, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCAC, "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCAD, "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},
    {0xCCAE, "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256", k12, kChaCha, kSha256, 32, 12},

    // RFC 5246 5: TLS 1.2's PRF is SHA-256 for every suite but the SHA-384 ones.
    {0x008C, "TLS_PSK_WITH_AES_128_CBC_SHA", k12, kAes128, kSha256, 16, 0, true, kSha1},
    {0x008D, "TLS_PSK_WITH_AES_256_CBC_SHA", k12, kAes256, kSha256, 32, 0, true, kSha1},
    {0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", k12, kAes128, kSha256, 16, 0, true, kSha1},
    {0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", k12, kAes256, kSha256, 32, 0, true, kSha1},
    {0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", k12, kAes128, kSha256, 16, 0, true, kSha1},
    {0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", k12, kAes256, kSha256, 32, 0, true, kSha1},
    {0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", k12, kAes128, kSha256, 16, 0, true,
     kMacSha256},
    {0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", k12, kAes128, kSha256, 16, 0, true,
     kMacSha256},
    // No stitched AES-CBC-HMAC-SHA384 exists: native with encrypt-then-MAC only.
    {0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", k12, kAes256, kSha384, 32, 0, true,
     kMacSha384},
    {0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", k12, kAes256, kSha384, 32, 0, true,
     kMacSha384},
};

}  // namespace

const CipherSuite* find_cipher_suite(TlsVersion version, uint16_t id) {
  for (const CipherSuite& suite : kSuites) {
    if (suite.id == id && suite.version == version) return &suite;
  }
  return nullptr;
}

size_t hash_length(HashAlgorithm hash) {
  return hash == HashAlgorithm::kSha384 ? 48 : 32;
}

CbcParams cbc_params(const CipherSuite& suite, bool encrypt_then_mac) {
  return {suite.key_length == 16 ? CbcCipher::kAes128 : CbcCipher::kAes256, suite.mac,
          encrypt_then_mac};
}

const char* cbc_refusal(const CipherSuite& suite, bool encrypt_then_mac) {
  if (!suite.cbc) return nullptr;
  // init() with throwaway keys tells whether the constant-time cipher exists here.
  const uint8_t zeros[kMaxKeyLength + kMaxSecretLength] = {};
  CbcProtection probe;
  switch (probe.init(cbc_params(suite, encrypt_then_mac), zeros, zeros, false)) {
    case CbcInitStatus::kOk: return nullptr;
    case CbcInitStatus::kNoConstantTimeCipher:
      return suite.mac == CbcMac::kSha384
                 ? "MAC-then-encrypt with HMAC-SHA384 has no constant-time implementation in "
                   "OpenSSL (the peer did not negotiate encrypt_then_mac)"
                 : "MAC-then-encrypt needs OpenSSL's stitched AES-CBC-HMAC cipher for a "
                   "constant-time check, and this CPU or OpenSSL build has none (the peer did "
                   "not negotiate encrypt_then_mac)";
    case CbcInitStatus::kFailed: break;
  }
  return "OpenSSL failed to set up AES-CBC";
}

bool uses_xor_nonce(const CipherSuite& suite) {
  return suite.version == TlsVersion::kTls13 || suite.aead == AeadAlgorithm::kChaCha20Poly1305;
}

uint64_t record_limit_per_key(const CipherSuite& suite) {
  if (suite.aead == AeadAlgorithm::kChaCha20Poly1305) return UINT64_MAX;
  // RFC 8446 5.5: "For AES-GCM, up to 2^24.5 full-size records (about 24 million) may be
  // encrypted on a given connection while keeping a safety margin of approximately 2^-57".
  // 2^24 keeps well inside it.
  return uint64_t{1} << 24;
}

}  // namespace tls_splice
