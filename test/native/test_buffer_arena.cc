// The buffer arena cache (buffer_arena.h): a released arena with little resident comes back to
// the next acquisition of its size, zeroed, without new page faults; a large one, or one over the
// cache's bounds, goes back to the kernel.
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "../../src-native/buffer_arena.h"
#include "test_util.h"

using namespace tls_splice;

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

size_t resident_pages(uint8_t* arena, size_t size) {
  std::vector<unsigned char> v(size / kPage);
  if (mincore(arena, size, v.data()) != 0) return SIZE_MAX;
  size_t n = 0;
  for (unsigned char r : v) n += r & 1;
  return n;
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

void test_reuse() {
  test::begin_case("a small released arena is reused, zeroed, its pages still mapped");
  buffer_arena::trim();
  const size_t size = 1100 * 1024 + 100;  // not a whole number of pages
  const ArenaCacheStats before = buffer_arena::stats();
  uint8_t* a = buffer_arena::acquire(size);
  CHECK(a != nullptr);
  CHECK_EQ(buffer_arena::stats().mapped, before.mapped + 1);
  // Three pages touched at scattered places, like a short exchange's buffers.
  std::memset(a, 0xab, 100);
  std::memset(a + 300 * 1024, 0xcd, kPage + 10);
  CHECK_EQ(resident_pages(a, buffer_arena::round_to_pages(size)), size_t{3});
  buffer_arena::release(a, size);
  ArenaCacheStats s = buffer_arena::stats();
  CHECK_EQ(s.entries, size_t{1});
  CHECK_EQ(s.resident_bytes, 3 * kPage);
  uint8_t* b = buffer_arena::acquire(size);
  CHECK(b == a);
  // What was written is zero now (reading the untouched pages too would map the shared zero
  // page in and make them count as resident).
  CHECK(all_zero(b, kPage));
  CHECK(all_zero(b + 300 * 1024, 2 * kPage));
  CHECK_EQ(resident_pages(b, buffer_arena::round_to_pages(size)), size_t{3});
  CHECK_EQ(buffer_arena::stats().reused, before.reused + 1);
  CHECK_EQ(buffer_arena::stats().entries, size_t{0});
  // Another size is not served from an arena of this one.
  buffer_arena::release(b, size);
  uint8_t* c = buffer_arena::acquire(size + 64 * 1024);
  CHECK(c != a);
  CHECK_EQ(buffer_arena::stats().entries, size_t{1});
  buffer_arena::release(c, size + 64 * 1024);
  buffer_arena::trim();
  CHECK_EQ(buffer_arena::stats().entries, size_t{0});
  CHECK_EQ(buffer_arena::stats().resident_bytes, size_t{0});
}

void test_large_goes_back() {
  test::begin_case("an arena with more than kMaxKeptResident resident goes back to the kernel");
  buffer_arena::trim();
  const size_t size = 2 * buffer_arena::kMaxKeptResident;
  uint8_t* a = buffer_arena::acquire(size);
  CHECK(a != nullptr);
  std::memset(a, 1, buffer_arena::kMaxKeptResident + kPage);
  const uint64_t unmapped = buffer_arena::stats().unmapped;
  buffer_arena::release(a, size);
  CHECK_EQ(buffer_arena::stats().entries, size_t{0});
  CHECK_EQ(buffer_arena::stats().unmapped, unmapped + 1);
  // Exactly kMaxKeptResident is still kept.
  uint8_t* b = buffer_arena::acquire(size);
  std::memset(b, 1, buffer_arena::kMaxKeptResident);
  buffer_arena::release(b, size);
  CHECK_EQ(buffer_arena::stats().entries, size_t{1});
  buffer_arena::trim();
}

void test_bounds() {
  test::begin_case("the cache holds at most kMaxCacheResident resident bytes");
  buffer_arena::trim();
  const size_t size = 256 * 1024;
  const size_t touched = 64 * 1024;
  const size_t fit = buffer_arena::kMaxCacheResident / touched;
  std::vector<uint8_t*> arenas;
  for (size_t i = 0; i < fit + 3; i++) {
    uint8_t* a = buffer_arena::acquire(size);
    CHECK(a != nullptr);
    std::memset(a, static_cast<int>(i + 1), touched);
    arenas.push_back(a);
  }
  const uint64_t unmapped = buffer_arena::stats().unmapped;
  for (uint8_t* a : arenas) buffer_arena::release(a, size);
  const ArenaCacheStats s = buffer_arena::stats();
  CHECK_EQ(s.entries, fit);
  CHECK_EQ(s.resident_bytes, fit * touched);
  CHECK_EQ(s.unmapped, unmapped + 3);
  // Each comes back zeroed.
  bool zero = true;
  for (size_t i = 0; i < fit; i++) {
    uint8_t* a = buffer_arena::acquire(size);
    zero = zero && all_zero(a, touched);
    arenas[i] = a;
  }
  CHECK(zero);
  for (size_t i = 0; i < fit; i++) buffer_arena::release(arenas[i], size);
  buffer_arena::trim();
}

}  // namespace

int main() {
  test_reuse();
  test_large_goes_back();
  test_bounds();
  return test::finish("test_buffer_arena");
}
