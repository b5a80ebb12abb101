// record_bench: seals and opens one TLS 1.3 record at a time through tls-splice's native record
// layer (RecordLayer::seal_application_data / read_record, the calls the pump makes), built from
// src-native/ against the system's libssl (the binding has no seal/open loop to call from JS).
//
//   record_bench [--seconds S] [--suite 0x1301,...] [--size 1400,16384]
//
// Prints one JSON line per (suite, size, op): { suite, size, op, records, ns, nsPerRecord, gbps },
// timed in thread CPU time.
// Open is measured on records sealed beforehand (at consecutive sequence numbers) into their own
// buffer; re-creating the layer between passes is outside the timed region.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cipher_suite.h"
#include "record_layer.h"

using namespace tls_splice;

namespace {

// CPU time of this thread, as `openssl speed` counts user time: other processes on the machine
// do not inflate it.
uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

SessionKeys make_keys(uint16_t suite, bool client) {
  SessionKeys keys;
  keys.version = TlsVersion::kTls13;
  keys.cipher_suite = suite;
  uint8_t a[kMaxSecretLength], b[kMaxSecretLength];
  for (size_t i = 0; i < kMaxSecretLength; i++) {
    a[i] = static_cast<uint8_t>(i * 7 + 1);
    b[i] = static_cast<uint8_t>(i * 13 + 5);
  }
  // The client writes with `a` and reads with `b`; the server the other way round.
  std::memcpy(keys.write_secret, client ? a : b, sizeof(a));
  std::memcpy(keys.read_secret, client ? b : a, sizeof(a));
  return keys;
}

struct Result {
  uint64_t records = 0;
  uint64_t ns = 0;
};

std::unique_ptr<RecordLayer> new_layer(uint16_t suite, bool client) {
  auto layer = std::make_unique<RecordLayer>();
  if (!layer->init(make_keys(suite, client), !client)) {
    std::fprintf(stderr, "record_bench: init failed for suite 0x%04x\n", suite);
    std::exit(2);
  }
  return layer;
}

Result bench_seal(uint16_t suite, size_t size, double seconds) {
  auto layer = new_layer(suite, true);
  std::vector<uint8_t> plaintext(size, 0x5a);
  std::vector<uint8_t> out(layer->max_sealed_length(size));
  Result r;
  const uint64_t budget = static_cast<uint64_t>(seconds * 1e9);
  const uint64_t start = now_ns();
  uint64_t t = start;
  while (t - start < budget) {
    for (int i = 0; i < 256; i++) {
      if (layer->seal_application_data(plaintext.data(), size, out.data(), out.size()) == 0) {
        std::fprintf(stderr, "record_bench: seal failed\n");
        std::exit(2);
      }
    }
    r.records += 256;
    t = now_ns();
  }
  r.ns = t - start;
  return r;
}

Result bench_open(uint16_t suite, size_t size, double seconds) {
  // About 8 MiB of sealed records, opened in order, again and again.
  const size_t count = std::max<size_t>(64, (8u << 20) / size);
  auto sealer = new_layer(suite, true);
  std::vector<uint8_t> plaintext(size, 0x5a);
  const size_t record_length = sealer->max_sealed_length(size);
  std::vector<uint8_t> records(count * record_length);
  size_t used = 0;
  for (size_t i = 0; i < count; i++) {
    const size_t n = sealer->seal_application_data(plaintext.data(), size, records.data() + used,
                                                   records.size() - used);
    if (n == 0) std::exit(2);
    used += n;
  }
  std::vector<uint8_t> out(kMaxOpenedLength);
  Result r;
  const uint64_t budget = static_cast<uint64_t>(seconds * 1e9);
  while (r.ns < budget) {
    auto opener = new_layer(suite, false);
    const uint64_t start = now_ns();
    size_t at = 0;
    while (at < used) {
      const ReadResult rr = opener->read_record(records.data() + at, used - at, out.data(),
                                                out.size());
      if (rr.outcome != ReadOutcome::kApplicationData || rr.plaintext_length != size) {
        std::fprintf(stderr, "record_bench: open failed (outcome %d)\n",
                     static_cast<int>(rr.outcome));
        std::exit(2);
      }
      at += rr.consumed;
    }
    r.ns += now_ns() - start;
    r.records += count;
  }
  return r;
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
  double seconds = 0.5;
  const char* suites = "0x1301,0x1303";
  const char* sizes = "1400,16384";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    else if (std::strcmp(argv[i], "--suite") == 0) suites = argv[i + 1];
    else if (std::strcmp(argv[i], "--size") == 0) sizes = argv[i + 1];
  }
  for (unsigned long suite : parse_list(suites)) {
    const CipherSuite* cs = find_cipher_suite(TlsVersion::kTls13, static_cast<uint16_t>(suite));
    if (cs == nullptr) {
      std::fprintf(stderr, "record_bench: unknown suite 0x%04lx\n", suite);
      return 2;
    }
    for (unsigned long size : parse_list(sizes)) {
      for (const char* op : {"seal", "open"}) {
        const Result r = std::strcmp(op, "seal") == 0
                             ? bench_seal(static_cast<uint16_t>(suite), size, seconds)
                             : bench_open(static_cast<uint16_t>(suite), size, seconds);
        const double ns_per = static_cast<double>(r.ns) / static_cast<double>(r.records);
        std::printf("{\"suite\":\"%s\",\"size\":%lu,\"op\":\"%s\",\"records\":%llu,\"ns\":%llu,"
                    "\"nsPerRecord\":%.1f,\"gbps\":%.3f}\n",
                    cs->name, size, op, static_cast<unsigned long long>(r.records),
                    static_cast<unsigned long long>(r.ns), ns_per,
                    static_cast<double>(size) / ns_per);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
