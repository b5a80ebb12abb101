#include "key_schedule.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

namespace tls_splice {
namespace {

constexpr size_t kMaxHashLength = 48;
constexpr char kTls13LabelPrefix[] = "tls13 ";
// RFC 8446 7.1: opaque label<7..255> = "tls13 " + Label.
constexpr size_t kMaxFullLabelLength = 255;
constexpr size_t kMaxContextLength = 255;

const EVP_MD* md_for(HashAlgorithm hash) {
  return hash == HashAlgorithm::kSha384 ? EVP_sha384() : EVP_sha256();
}

// One HMAC over up to three concatenated inputs.
bool hmac3(HashAlgorithm hash, const uint8_t* key, size_t key_length,
           const uint8_t* a, size_t a_length, const uint8_t* b, size_t b_length,
           const uint8_t* c, size_t c_length, uint8_t* out) {
  // HMAC() takes one contiguous input; the inputs here are all small (<= 600 bytes).
  uint8_t input[kMaxHashLength + 2 + kMaxFullLabelLength + 1 + kMaxContextLength + 1 + 256];
  if (a_length + b_length + c_length > sizeof(input)) return false;
  size_t n = 0;
  if (a_length) std::memcpy(input + n, a, a_length), n += a_length;
  if (b_length) std::memcpy(input + n, b, b_length), n += b_length;
  if (c_length) std::memcpy(input + n, c, c_length), n += c_length;
  unsigned int out_length = 0;
  const bool ok = HMAC(md_for(hash), key, static_cast<int>(key_length), input, n, out,
                       &out_length) != nullptr;
  OPENSSL_cleanse(input, n);
  return ok && out_length == hash_length(hash);
}

}  // namespace

void wipe(void* data, size_t length) {
  if (length) OPENSSL_cleanse(data, length);
}

bool hkdf_expand_label(HashAlgorithm hash, const uint8_t* secret, size_t secret_length,
                       const char* label, const uint8_t* context, size_t context_length,
                       uint8_t* out, size_t out_length) {
  const size_t hash_len = hash_length(hash);
  const size_t label_length = std::strlen(label);
  const size_t full_label_length = sizeof(kTls13LabelPrefix) - 1 + label_length;
  if (full_label_length > kMaxFullLabelLength || context_length > kMaxContextLength ||
      out_length > 255 * hash_len || out_length > 0xffff) {
    return false;
  }
  // HkdfLabel: uint16 length, opaque label<7..255>, opaque context<0..255>.
  uint8_t info[2 + 1 + kMaxFullLabelLength + 1 + kMaxContextLength];
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out_length >> 8);
  info[n++] = static_cast<uint8_t>(out_length);
  info[n++] = static_cast<uint8_t>(full_label_length);
  std::memcpy(info + n, kTls13LabelPrefix, sizeof(kTls13LabelPrefix) - 1);
  n += sizeof(kTls13LabelPrefix) - 1;
  std::memcpy(info + n, label, label_length);
  n += label_length;
  info[n++] = static_cast<uint8_t>(context_length);
  if (context_length) std::memcpy(info + n, context, context_length);
  n += context_length;

  // RFC 5869 2.3: T(i) = HMAC(PRK, T(i-1) | info | i).
  uint8_t t[kMaxHashLength];
  size_t t_length = 0;
  size_t done = 0;
  bool ok = true;
  for (uint8_t i = 1; done < out_length; i++) {
    if (!hmac3(hash, secret, secret_length, t, t_length, info, n, &i, 1, t)) {
      ok = false;
      break;
    }
    t_length = hash_len;
    const size_t take = out_length - done < hash_len ? out_length - done : hash_len;
    std::memcpy(out + done, t, take);
    done += take;
  }
  wipe(t, sizeof(t));
  return ok;
}

bool derive_tls13_traffic_keys(const CipherSuite& suite, const uint8_t* traffic_secret,
                               uint8_t* out_key, uint8_t* out_iv) {
  const size_t secret_length = hash_length(suite.hash);
  return hkdf_expand_label(suite.hash, traffic_secret, secret_length, "key", nullptr, 0, out_key,
                           suite.key_length) &&
         hkdf_expand_label(suite.hash, traffic_secret, secret_length, "iv", nullptr, 0, out_iv,
                           kAeadNonceLength);
}

bool next_tls13_traffic_secret(const CipherSuite& suite, const uint8_t* traffic_secret,
                               uint8_t* out_secret) {
  const size_t secret_length = hash_length(suite.hash);
  return hkdf_expand_label(suite.hash, traffic_secret, secret_length, "traffic upd", nullptr, 0,
                           out_secret, secret_length);
}

bool tls12_prf(HashAlgorithm hash, const uint8_t* secret, size_t secret_length,
               const char* label, const uint8_t* seed, size_t seed_length,
               uint8_t* out, size_t out_length) {
  const size_t hash_len = hash_length(hash);
  const size_t label_length = std::strlen(label);
  if (label_length + seed_length > 256) return false;
  // P_hash: A(0) = label + seed; A(i) = HMAC(secret, A(i-1));
  // output = HMAC(secret, A(1) + label + seed) + HMAC(secret, A(2) + label + seed) + ...
  uint8_t label_seed[256];
  std::memcpy(label_seed, label, label_length);
  std::memcpy(label_seed + label_length, seed, seed_length);
  const size_t label_seed_length = label_length + seed_length;

  uint8_t a[kMaxHashLength];
  uint8_t block[kMaxHashLength];
  bool ok = hmac3(hash, secret, secret_length, label_seed, label_seed_length, nullptr, 0,
                  nullptr, 0, a);
  size_t done = 0;
  while (ok && done < out_length) {
    ok = hmac3(hash, secret, secret_length, a, hash_len, label_seed, label_seed_length,
               nullptr, 0, block);
    if (!ok) break;
    const size_t take = out_length - done < hash_len ? out_length - done : hash_len;
    std::memcpy(out + done, block, take);
    done += take;
    ok = hmac3(hash, secret, secret_length, a, hash_len, nullptr, 0, nullptr, 0, a);
  }
  wipe(a, sizeof(a));
  wipe(block, sizeof(block));
  return ok;
}

bool derive_tls12_key_block(const CipherSuite& suite, const uint8_t* master_secret,
                            const uint8_t* client_random, const uint8_t* server_random,
                            Tls12KeyBlock* out_block) {
  uint8_t seed[2 * kRandomLength];
  std::memcpy(seed, server_random, kRandomLength);
  std::memcpy(seed + kRandomLength, client_random, kRandomLength);
  const size_t mac = suite.cbc ? cbc_mac_length(suite.mac) : 0;
  const size_t key = suite.key_length;
  const size_t iv = suite.fixed_iv_length;
  uint8_t block[2 * kMaxMacKeyLength + 2 * kMaxKeyLength + 2 * kAeadNonceLength];
  const bool ok = tls12_prf(suite.hash, master_secret, kTls12MasterSecretLength,
                            "key expansion", seed, sizeof(seed), block,
                            2 * mac + 2 * key + 2 * iv);
  if (ok) {
    // RFC 5246 6.3: client_write_MAC_key, server_write_MAC_key, client_write_key,
    // server_write_key, client_write_IV, server_write_IV.
    std::memset(out_block, 0, sizeof(*out_block));
    const uint8_t* p = block;
    std::memcpy(out_block->client_write_mac_key, p, mac), p += mac;
    std::memcpy(out_block->server_write_mac_key, p, mac), p += mac;
    std::memcpy(out_block->client_write_key, p, key), p += key;
    std::memcpy(out_block->server_write_key, p, key), p += key;
    std::memcpy(out_block->client_write_iv, p, iv), p += iv;
    std::memcpy(out_block->server_write_iv, p, iv);
  }
  wipe(block, sizeof(block));
  return ok;
}

}  // namespace tls_splice
