// Shared by the fuzz targets: session selection from the first input byte, and an invariant
// check that traps (so libFuzzer reports it as a crash) instead of an assert that NDEBUG removes.
#ifndef TLS_SPLICE_FUZZ_COMMON_H_
#define TLS_SPLICE_FUZZ_COMMON_H_

#include <cstdio>

#include "../native/test_util.h"

#define FUZZ_INVARIANT(cond)                                                          \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                               \
    }                                                                                 \
  } while (0)

namespace fuzz {

// Byte 0 of every record-layer input: bits 0-2 the suite (index into test::all_suites(), mod
// 6), bit 3 the role under test (0 client, 1 server), bits 4-7 a feeding chunk size selector.
struct Setup {
  const test::SuiteCase* suite;
  bool is_server;
  size_t chunk;  // 0 = everything at once
};

inline Setup setup_from(uint8_t b) {
  static const size_t chunks[16] = {0, 1, 2, 3, 5, 7, 13, 64, 100, 512, 4096, 16389, 0, 0, 1, 0};
  const auto& suites = test::all_suites();
  return Setup{&suites[(b & 7) % suites.size()], (b & 8) != 0, chunks[b >> 4]};
}

}  // namespace fuzz

#endif  // TLS_SPLICE_FUZZ_COMMON_H_
