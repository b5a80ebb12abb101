// Small self-contained helpers for the native unit tests: assertions that count, hex parsing,
// SHA-256, a seeded PRNG, and the keys every record-layer test derives from a fixed secret.
// Header-only; no external test framework.
//
// Every CHECK counts one assertion; a failing one prints where and what, and the program goes on
// so that one run shows every failure. test_main() prints "<name>: N passed, N failed" last and
// returns non-zero when anything failed.
#ifndef TLS_SPLICE_TEST_UTIL_H_
#define TLS_SPLICE_TEST_UTIL_H_

#include <openssl/evp.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../src-native/aead.h"
#include "../../src-native/cipher_suite.h"
#include "../../src-native/key_schedule.h"
#include "../../src-native/record_layer.h"

namespace test {

using Bytes = std::vector<uint8_t>;

inline int& passed() { static int n = 0; return n; }
inline int& failed() { static int n = 0; return n; }
inline std::string& current_case() { static std::string s; return s; }

inline void report(bool ok, const char* file, int line, const std::string& what) {
  if (ok) {
    passed()++;
    return;
  }
  failed()++;
  std::fprintf(stderr, "FAIL %s:%d [%s] %s\n", file, line, current_case().c_str(), what.c_str());
}

inline std::string to_hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}
inline std::string to_hex(const Bytes& b) { return to_hex(b.data(), b.size()); }

// Parses hex, ignoring spaces, colons and newlines (so RFC text can be pasted as is).
inline Bytes hex(const char* text) {
  Bytes out;
  int nibble = -1;
  for (const char* p = text; *p; p++) {
    int v;
    if (*p >= '0' && *p <= '9') v = *p - '0';
    else if (*p >= 'a' && *p <= 'f') v = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F') v = *p - 'A' + 10;
    else continue;
    if (nibble < 0) {
      nibble = v;
    } else {
      out.push_back(static_cast<uint8_t>(nibble << 4 | v));
      nibble = -1;
    }
  }
  if (nibble >= 0) {
    std::fprintf(stderr, "odd hex string: %s\n", text);
    std::abort();
  }
  return out;
}

#define CHECK(cond) ::test::report(static_cast<bool>(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ(a, b)                                                                        \
  do {                                                                                        \
    const auto va_ = (a);                                                                     \
    const auto vb_ = (b);                                                                     \
    ::test::report(va_ == vb_, __FILE__, __LINE__,                                            \
                   std::string(#a " == " #b " (") + std::to_string(static_cast<long long>(va_)) + \
                       " vs " + std::to_string(static_cast<long long>(vb_)) + ")");           \
  } while (0)
#define CHECK_U64(a, b)                                                                       \
  do {                                                                                        \
    const uint64_t va_ = (a);                                                                 \
    const uint64_t vb_ = (b);                                                                 \
    ::test::report(va_ == vb_, __FILE__, __LINE__,                                            \
                   std::string(#a " == " #b " (") + std::to_string(va_) + " vs " +            \
                       std::to_string(vb_) + ")");                                            \
  } while (0)
#define CHECK_BYTES(p, n, expected)                                                           \
  do {                                                                                        \
    const ::test::Bytes e_ = (expected);                                                      \
    const uint8_t* p_ = (p);                                                                  \
    const size_t n_ = (n);                                                                    \
    const bool ok_ = n_ == e_.size() && (n_ == 0 || std::memcmp(p_, e_.data(), n_) == 0);     \
    ::test::report(ok_, __FILE__, __LINE__,                                                   \
                   std::string(#p " == " #expected ": got ") + ::test::to_hex(p_, n_) +       \
                       " want " + ::test::to_hex(e_));                                        \
  } while (0)
#define CHECK_STR(a, b)                                                                       \
  do {                                                                                        \
    const std::string va_ = (a);                                                              \
    const std::string vb_ = (b);                                                              \
    ::test::report(va_ == vb_, __FILE__, __LINE__,                                            \
                   std::string(#a " == " #b " (\"") + va_ + "\" vs \"" + vb_ + "\")");        \
  } while (0)
// A precondition the rest of a case depends on: counted, and aborts the program if false.
#define REQUIRE(cond)                                                                         \
  do {                                                                                        \
    const bool ok_ = static_cast<bool>(cond);                                                 \
    ::test::report(ok_, __FILE__, __LINE__, "REQUIRE " #cond);                                \
    if (!ok_) {                                                                               \
      std::fprintf(stderr, "aborting: a required condition failed\n");                        \
      std::exit(2);                                                                           \
    }                                                                                         \
  } while (0)

inline void begin_case(const std::string& name) {
  current_case() = name;
  if (std::getenv("TEST_VERBOSE")) std::fprintf(stderr, "-- %s\n", name.c_str());
}

inline int finish(const char* program) {
  std::printf("%s: %d passed, %d failed\n", program, passed(), failed());
  std::fflush(stdout);
  return failed() == 0 && passed() > 0 ? 0 : 1;
}

// SHA-256 over a stream, for transfer checks.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex_digest() {
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    return to_hex(md, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// A deterministic byte stream (xorshift64*), so a sender and a checker agree without sharing a
// buffer and any lost, doubled or reordered byte changes the digest.
class Prng {
 public:
  explicit Prng(uint64_t seed) : state_(seed ? seed : 0x9e3779b97f4a7c15ull) {}
  uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dull;
  }
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i++) {
      if (have_ == 0) {
        word_ = next();
        have_ = 8;
      }
      p[i] = static_cast<uint8_t>(word_);
      word_ >>= 8;
      have_--;
    }
  }

 private:
  uint64_t state_;
  uint64_t word_ = 0;
  int have_ = 0;
};

// The digest of the first `n` bytes of Prng(seed).
inline std::string prng_digest(uint64_t seed, size_t n) {
  Prng prng(seed);
  Sha256 sha;
  uint8_t buf[65536];
  while (n > 0) {
    const size_t take = n < sizeof(buf) ? n : sizeof(buf);
    prng.fill(buf, take);
    sha.update(buf, take);
    n -= take;
  }
  return sha.hex_digest();
}

// --- record-layer fixtures ------------------------------------------------------------------

// Every suite the native layer claims, one per (version, AEAD), for tests that loop over them.
struct SuiteCase {
  tls_splice::TlsVersion version;
  uint16_t id;
  const char* label;
};
inline const std::vector<SuiteCase>& all_suites() {
  static const std::vector<SuiteCase> v = {
      {tls_splice::TlsVersion::kTls13, 0x1301, "tls13-aes128gcm"},
      {tls_splice::TlsVersion::kTls13, 0x1302, "tls13-aes256gcm"},
      {tls_splice::TlsVersion::kTls13, 0x1303, "tls13-chacha20"},
      {tls_splice::TlsVersion::kTls12, 0xC02F, "tls12-aes128gcm"},
      {tls_splice::TlsVersion::kTls12, 0xC030, "tls12-aes256gcm"},
      {tls_splice::TlsVersion::kTls12, 0xCCA8, "tls12-chacha20"},
  };
  return v;
}

// Session keys for both ends of one connection, derived deterministically: `client` is what the
// client's RecordLayer gets, `server` the same session seen from the server (read and write
// swapped). TLS 1.3 secrets and TLS 1.2 keys come from fixed byte patterns.
struct KeyPair {
  tls_splice::SessionKeys client;
  tls_splice::SessionKeys server;
};

inline KeyPair make_keys(tls_splice::TlsVersion version, uint16_t suite_id, uint64_t c2s_seq = 0,
                         uint64_t s2c_seq = 0) {
  using namespace tls_splice;
  KeyPair kp;
  const CipherSuite* suite = find_cipher_suite(version, suite_id);
  if (suite == nullptr) {
    std::fprintf(stderr, "no suite %04x\n", suite_id);
    std::abort();
  }
  uint8_t c_secret[kMaxSecretLength], s_secret[kMaxSecretLength];
  uint8_t c_key[kMaxKeyLength], s_key[kMaxKeyLength];
  uint8_t c_iv[kAeadNonceLength], s_iv[kAeadNonceLength];
  for (size_t i = 0; i < sizeof(c_secret); i++) {
    c_secret[i] = static_cast<uint8_t>(0xc0 + i);
    s_secret[i] = static_cast<uint8_t>(0x50 + 3 * i);
  }
  for (size_t i = 0; i < sizeof(c_key); i++) {
    c_key[i] = static_cast<uint8_t>(0x11 * (i + 1));
    s_key[i] = static_cast<uint8_t>(0x77 ^ i);
  }
  for (size_t i = 0; i < sizeof(c_iv); i++) {
    c_iv[i] = static_cast<uint8_t>(0xa0 + i);
    s_iv[i] = static_cast<uint8_t>(0x0f + 7 * i);
  }
  for (SessionKeys* k : {&kp.client, &kp.server}) {
    k->version = version;
    k->cipher_suite = suite_id;
  }
  const size_t hl = hash_length(suite->hash);
  std::memcpy(kp.client.write_secret, c_secret, hl);
  std::memcpy(kp.client.read_secret, s_secret, hl);
  std::memcpy(kp.server.write_secret, s_secret, hl);
  std::memcpy(kp.server.read_secret, c_secret, hl);
  std::memcpy(kp.client.write_key, c_key, suite->key_length);
  std::memcpy(kp.client.read_key, s_key, suite->key_length);
  std::memcpy(kp.server.write_key, s_key, suite->key_length);
  std::memcpy(kp.server.read_key, c_key, suite->key_length);
  std::memcpy(kp.client.write_iv, c_iv, suite->fixed_iv_length);
  std::memcpy(kp.client.read_iv, s_iv, suite->fixed_iv_length);
  std::memcpy(kp.server.write_iv, s_iv, suite->fixed_iv_length);
  std::memcpy(kp.server.read_iv, c_iv, suite->fixed_iv_length);
  // TLS 1.2 CBC MAC keys (unused by the other suites).
  for (size_t i = 0; i < kMaxMacKeyLength; i++) {
    kp.client.write_mac_key[i] = kp.server.read_mac_key[i] = static_cast<uint8_t>(0x3c + 5 * i);
    kp.server.write_mac_key[i] = kp.client.read_mac_key[i] = static_cast<uint8_t>(0xe1 ^ i);
  }
  kp.client.write_seq = kp.server.read_seq = c2s_seq;
  kp.client.read_seq = kp.server.write_seq = s2c_seq;
  return kp;
}

// A peer's sealing half: seals records of any content type with the keys `keys` writes with,
// so tests and fuzzers can craft records a real peer would never send.
class PeerSealer {
 public:
  bool init(const tls_splice::SessionKeys& keys) {
    using namespace tls_splice;
    const CipherSuite* suite = find_cipher_suite(keys.version, keys.cipher_suite);
    if (suite == nullptr) return false;
    if (keys.version == TlsVersion::kTls13) {
      return prot_.init_tls13(*suite, keys.write_secret, keys.write_seq, true);
    }
    if (suite->cbc) {
      return prot_.init_tls12_cbc(*suite, keys.write_key, keys.write_mac_key,
                                  keys.encrypt_then_mac, keys.write_seq,
                                  true) == CbcInitStatus::kOk;
    }
    return prot_.init_tls12(*suite, keys.write_key, keys.write_iv, keys.write_seq, true);
  }
  Bytes seal(tls_splice::ContentType type, const Bytes& plaintext) {
    Bytes out(prot_.sealed_length(plaintext.size()));
    const size_t n = prot_.seal(type, plaintext.data(), plaintext.size(), out.data());
    out.resize(n);
    return out;
  }
  Bytes seal(uint8_t type, const Bytes& plaintext) {
    return seal(static_cast<tls_splice::ContentType>(type), plaintext);
  }
  tls_splice::RecordProtection& protection() { return prot_; }

 private:
  tls_splice::RecordProtection prot_;
};

// Seals a TLS 1.3 record around an arbitrary TLSInnerPlaintext (content, type and padding as
// given), which RecordProtection::seal would refuse to build: all-zero plaintexts, oversize
// ones, unknown types. nonce = iv XOR seq, AAD = the header (RFC 8446 5.2, 5.3).
inline Bytes seal_tls13_inner(const tls_splice::SessionKeys& keys, uint64_t seq,
                              const Bytes& inner, size_t header_length_adjust = 0) {
  using namespace tls_splice;
  const CipherSuite* suite = find_cipher_suite(keys.version, keys.cipher_suite);
  uint8_t key[kMaxKeyLength], iv[kAeadNonceLength];
  derive_tls13_traffic_keys(*suite, keys.write_secret, key, iv);
  Aead aead;
  aead.init(suite->aead, key, suite->key_length, true);
  for (int i = 0; i < 8; i++) iv[11 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
  const size_t body = inner.size() + kAeadTagLength + header_length_adjust;
  Bytes out(5 + inner.size() + kAeadTagLength);
  out[0] = 23;
  out[1] = 3;
  out[2] = 3;
  out[3] = static_cast<uint8_t>(body >> 8);
  out[4] = static_cast<uint8_t>(body);
  aead.seal(iv, out.data(), 5, inner.data(), inner.size(), nullptr, 0, out.data() + 5,
            out.data() + 5 + inner.size());
  return out;
}

inline Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace test

#endif  // TLS_SPLICE_TEST_UTIL_H_
