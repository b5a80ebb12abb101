// cbc_timing: does opening a TLS 1.2 AES-CBC record take longer or shorter depending on why it
// fails? (Lucky Thirteen, CVE-2013-0169: a padding check whose time depends on the padding length
// byte lets an attacker decrypt byte by byte.) A benchmark, not a test: it prints figures, the
// reader judges them against the noise.
//
//   cbc_timing [--samples N] [--size 64,1400] [--suite 0x008C]
//
// For each plaintext size and each mode (MAC-then-encrypt, encrypt-then-MAC) it builds three
// records of the same length under one key, through the record layer's own open path
// (RecordProtection::open, the call RecordLayer::read_record makes):
//   valid        sealed by RecordProtection::seal;
//   bad-padding  the same, re-encrypted with the padding length byte set to 255 and the padding
//                bytes left as they were: a variable-time check would strip up to 256 bytes and
//                MAC fewer blocks (the Lucky Thirteen case); with EtM its MAC is made valid, so
//                the padding is really checked;
//   bad-mac      valid padding, one MAC byte flipped.
// It opens them N times each, interleaved in a shuffled order per round, at the same sequence
// number, timing each open on its own (CLOCK_MONOTONIC, ns). Prints one JSON line per
// (size, mode, variant pair): medians, means and trimmed means, the difference of medians in ns,
// Welch's t on the samples below the pooled 99th percentile, and the two-sample
// Kolmogorov-Smirnov D with its critical value at alpha = 0.001.
//
// EtM checks the MAC over the ciphertext before decrypting, so bad-mac is expected to be faster
// there: that tells the attacker nothing (the MAC covers only what they sent). Under MtE every
// pair should be equal within noise.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cbc.h"
#include "cipher_suite.h"
#include "record_protection.h"

using namespace tls_splice;

namespace {

constexpr size_t kHeaderLength = 5;
constexpr size_t kAadLength = 13;
const char* const kVariants[] = {"valid", "bad-padding", "bad-mac"};
constexpr int kVariantCount = 3;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "cbc_timing: %s\n", what);
  std::exit(2);
}

struct Keys {
  uint8_t enc[32];
  uint8_t mac[48];
};

// Raw AES-CBC without padding, for re-encrypting a record whose plaintext we changed.
void aes_cbc(const CipherSuite& suite, const uint8_t* key, const uint8_t* iv, const uint8_t* in,
             size_t length, uint8_t* out, bool encrypt) {
  const EVP_CIPHER* cipher = suite.key_length == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  if (ctx == nullptr || EVP_CipherInit_ex(ctx, cipher, nullptr, key, iv, encrypt ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
      EVP_CipherUpdate(ctx, out, &n, in, static_cast<int>(length)) != 1 ||
      static_cast<size_t>(n) != length) {
    fail("AES-CBC failed");
  }
  EVP_CIPHER_CTX_free(ctx);
}

// RFC 7366 3: HMAC(seq || type || version || length(IV + ciphertext) || IV || ciphertext), seq 0.
void etm_mac(const CipherSuite& suite, const uint8_t* mac_key, const uint8_t* header,
             const uint8_t* data, size_t length, uint8_t* out) {
  const EVP_MD* md = cbc_mac_length(suite.mac) == 20 ? EVP_sha1() : EVP_sha256();
  uint8_t aad[kAadLength] = {};
  aad[8] = header[0];
  aad[9] = header[1];
  aad[10] = header[2];
  aad[11] = static_cast<uint8_t>(length >> 8);
  aad[12] = static_cast<uint8_t>(length);
  std::vector<uint8_t> input(aad, aad + kAadLength);
  input.insert(input.end(), data, data + length);
  unsigned int written = 0;
  if (HMAC(md, mac_key, static_cast<int>(cbc_mac_length(suite.mac)), input.data(), input.size(),
           out, &written) == nullptr) {
    fail("HMAC failed");
  }
}

// The three records (header included) of one (size, mode).
std::vector<std::vector<uint8_t>> make_records(const CipherSuite& suite, const Keys& keys,
                                               bool etm, size_t size) {
  RecordProtection sealer;
  if (sealer.init_tls12_cbc(suite, keys.enc, keys.mac, etm, 0, true) != CbcInitStatus::kOk) {
    fail("sealer init failed (no AES-NI?)");
  }
  std::vector<uint8_t> plaintext(size, 0x5a);
  std::vector<uint8_t> valid(sealer.sealed_length(size));
  const size_t n = sealer.seal(ContentType::kApplicationData, plaintext.data(), size, valid.data());
  if (n == 0) fail("seal failed");
  valid.resize(n);
  const size_t mac_length = cbc_mac_length(suite.mac);
  uint8_t* const body = valid.data() + kHeaderLength;
  const size_t body_length = n - kHeaderLength;
  const uint8_t* const iv = body;
  // The CBC-encrypted part: after the IV, up to the MAC with EtM, to the end with MtE.
  const size_t encrypted_length = body_length - kCbcBlockLength - (etm ? mac_length : 0);
  std::vector<uint8_t> decrypted(encrypted_length);
  aes_cbc(suite, keys.enc, iv, body + kCbcBlockLength, encrypted_length, decrypted.data(), false);
  if (decrypted.back() == 255) fail("the padding is already 255 long");

  auto rebuild = [&](const std::vector<uint8_t>& inner) {
    std::vector<uint8_t> record = valid;
    uint8_t* b = record.data() + kHeaderLength;
    aes_cbc(suite, keys.enc, iv, inner.data(), encrypted_length, b + kCbcBlockLength, true);
    if (etm) {
      etm_mac(suite, keys.mac, record.data(), b, kCbcBlockLength + encrypted_length,
              b + kCbcBlockLength + encrypted_length);
    }
    return record;
  };
  std::vector<uint8_t> bad_padding_inner = decrypted;
  bad_padding_inner.back() = 255;
  std::vector<uint8_t> bad_padding = rebuild(bad_padding_inner);
  std::vector<uint8_t> bad_mac;
  if (etm) {
    bad_mac = valid;
    bad_mac.back() ^= 0x01;
  } else {
    std::vector<uint8_t> inner = decrypted;
    inner[size] ^= 0x01;  // the MAC's first byte follows the plaintext
    bad_mac = rebuild(inner);
  }
  // A check of the construction itself: rebuilding the unchanged plaintext gives the valid record.
  if (rebuild(decrypted) != valid) fail("re-encrypting the valid record changed it");
  return {valid, bad_padding, bad_mac};
}

struct Stats {
  double median, mean, trimmed_mean, sd;
  size_t n;
};

double quantile(std::vector<uint32_t> v, double q) {
  const size_t at = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(at), v.end());
  return v[at];
}

// Mean and sd of the samples at or below `cut` (drops preemptions and interrupts).
Stats stats_below(const std::vector<uint32_t>& v, double cut) {
  Stats s{quantile(v, 0.5), 0, 0, 0, 0};
  double sum = 0, all = 0;
  for (uint32_t x : v) all += x;
  s.mean = all / static_cast<double>(v.size());
  for (uint32_t x : v) {
    if (x <= cut) {
      sum += x;
      s.n++;
    }
  }
  s.trimmed_mean = sum / static_cast<double>(s.n);
  double sq = 0;
  for (uint32_t x : v) {
    if (x <= cut) sq += (x - s.trimmed_mean) * (x - s.trimmed_mean);
  }
  s.sd = std::sqrt(sq / static_cast<double>(s.n - 1));
  return s;
}

// Two-sample Kolmogorov-Smirnov D.
double ks_d(std::vector<uint32_t> a, std::vector<uint32_t> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    const uint32_t x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] == x) i++;
    while (j < b.size() && b[j] == x) j++;
    d = std::max(d, std::fabs(static_cast<double>(i) / a.size() - static_cast<double>(j) / b.size()));
  }
  return d;
}

void report(const char* suite, size_t size, const char* mode, const char* a_name,
            const std::vector<uint32_t>& a, const char* b_name, const std::vector<uint32_t>& b) {
  std::vector<uint32_t> pooled(a);
  pooled.insert(pooled.end(), b.begin(), b.end());
  const double cut = quantile(pooled, 0.99);
  const Stats sa = stats_below(a, cut), sb = stats_below(b, cut);
  const double welch_t = (sb.trimmed_mean - sa.trimmed_mean) /
                         std::sqrt(sa.sd * sa.sd / sa.n + sb.sd * sb.sd / sb.n);
  const double d = ks_d(a, b);
  // c(alpha) = sqrt(-ln(alpha / 2) / 2) = 1.949 for alpha = 0.001.
  const double d_critical = 1.949 * std::sqrt(static_cast<double>(a.size() + b.size()) /
                                              (static_cast<double>(a.size()) * b.size()));
  std::printf("{\"suite\":\"%s\",\"size\":%zu,\"mode\":\"%s\",\"a\":\"%s\",\"b\":\"%s\","
              "\"samples\":%zu,\"medianA\":%.0f,\"medianB\":%.0f,\"medianDiffNs\":%.0f,"
              "\"meanA\":%.1f,\"meanB\":%.1f,\"trimmedMeanA\":%.2f,\"trimmedMeanB\":%.2f,"
              "\"trimmedMeanDiffNs\":%.2f,\"welchT\":%.2f,\"ksD\":%.5f,\"ksDCritical001\":%.5f}\n",
              suite, size, mode, a_name, b_name, a.size(), sa.median, sb.median,
              sb.median - sa.median, sa.mean, sb.mean, sa.trimmed_mean, sb.trimmed_mean,
              sb.trimmed_mean - sa.trimmed_mean, welch_t, d, d_critical);
  std::fflush(stdout);
}

void run(const CipherSuite& suite, size_t size, bool etm, size_t samples, std::mt19937& rng) {
  Keys keys;
  for (size_t i = 0; i < sizeof(keys.enc); i++) keys.enc[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t i = 0; i < sizeof(keys.mac); i++) keys.mac[i] = static_cast<uint8_t>(i * 13 + 5);
  const auto records = make_records(suite, keys, etm, size);
  RecordProtection opener;
  if (opener.init_tls12_cbc(suite, keys.enc, keys.mac, etm, 0, false) != CbcInitStatus::kOk) {
    fail("opener init failed");
  }
  std::vector<uint8_t> out(records[0].size());
  const OpenStatus expected[kVariantCount] = {OpenStatus::kOk, OpenStatus::kBadRecordMac,
                                              OpenStatus::kBadRecordMac};
  std::vector<uint32_t> times[kVariantCount];
  for (auto& t : times) t.reserve(samples);
  int order[kVariantCount] = {0, 1, 2};
  // Warm-up rounds are not recorded: caches, branch predictors, frequency.
  for (size_t round = 0; round < samples + samples / 20; round++) {
    std::shuffle(order, order + kVariantCount, rng);
    for (int v : order) {
      const std::vector<uint8_t>& r = records[v];
      opener.set_seq(0);
      OpenedRecord opened;
      const uint64_t t0 = now_ns();
      const OpenStatus status = opener.open(r.data(), r.data() + kHeaderLength,
                                            r.size() - kHeaderLength, out.data(), &opened);
      const uint64_t t1 = now_ns();
      if (status != expected[v]) fail("a record opened with an unexpected status");
      if (v == 0 && opened.plaintext_length != size) fail("the valid record's length is wrong");
      if (round >= samples / 20) times[v].push_back(static_cast<uint32_t>(t1 - t0));
    }
  }
  const char* mode = etm ? "EtM" : "MtE";
  report(suite.name, size, mode, kVariants[0], times[0], kVariants[1], times[1]);
  report(suite.name, size, mode, kVariants[0], times[0], kVariants[2], times[2]);
  report(suite.name, size, mode, kVariants[1], times[1], kVariants[2], times[2]);
}

std::vector<unsigned long> parse_list(const char* s) {
  std::vector<unsigned long> v;
  std::string text(s);
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos
                                                                        : comma - at);
    if (!item.empty()) v.push_back(std::strtoul(item.c_str(), nullptr, 0));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  size_t samples = 200000;
  const char* sizes = "64,1400";
  unsigned long suite_id = 0x008C;  // TLS_PSK_WITH_AES_128_CBC_SHA
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--samples") == 0) samples = std::strtoul(argv[i + 1], nullptr, 0);
    else if (std::strcmp(argv[i], "--size") == 0) sizes = argv[i + 1];
    else if (std::strcmp(argv[i], "--suite") == 0) suite_id = std::strtoul(argv[i + 1], nullptr, 0);
  }
  const CipherSuite* suite = find_cipher_suite(TlsVersion::kTls12, static_cast<uint16_t>(suite_id));
  if (suite == nullptr || !suite->cbc) fail("not a TLS 1.2 CBC suite");
  std::mt19937 rng(12345);
  for (unsigned long size : parse_list(sizes)) {
    for (bool etm : {false, true}) run(*suite, size, etm, samples, rng);
  }
  return 0;
}
