#include "buffer_arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TLS_SPLICE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TLS_SPLICE_ASAN 1
#endif
#ifdef TLS_SPLICE_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace tls_splice {
namespace buffer_arena {
namespace {

struct Entry {
  uint8_t* arena;
  size_t size;
  size_t resident;
};

struct Cache {
  std::mutex mutex;
  std::vector<Entry> entries;  // most recently released last
  size_t resident_bytes = 0;
  uint64_t reused = 0;
  uint64_t mapped = 0;
  uint64_t unmapped = 0;
};

// Never destroyed: I/O threads may release arenas while the process exits.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// While an arena sits in the cache, ASan reports any touch of it (a splice using its buffers
// after release); munmap() gave the same guarantee with a fault.
void poison(uint8_t* arena, size_t size) {
#ifdef TLS_SPLICE_ASAN
  ASAN_POISON_MEMORY_REGION(arena, size);
#else
  (void)arena;
  (void)size;
#endif
}

void unpoison(uint8_t* arena, size_t size) {
#ifdef TLS_SPLICE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(arena, size);
#else
  (void)arena;
  (void)size;
#endif
}

// Zeroes the resident pages of the arena and returns how many bytes they are, or SIZE_MAX if more
// than kMaxKeptResident are resident (then nothing is zeroed: the arena goes to the kernel) or
// mincore() fails. Pages that are not resident are zero already and stay unmapped.
size_t wipe_resident(uint8_t* arena, size_t size) {
  const size_t page = page_size();
  const size_t pages = size / page;
  std::vector<unsigned char> residency(pages);
  if (mincore(arena, size, residency.data()) != 0) return SIZE_MAX;
  size_t resident = 0;
  for (unsigned char r : residency) resident += (r & 1) ? page : 0;
  if (resident > kMaxKeptResident) return SIZE_MAX;
  for (size_t i = 0; i < pages;) {
    if (!(residency[i] & 1)) {
      i++;
      continue;
    }
    size_t run = i;
    while (run < pages && (residency[run] & 1)) run++;
    std::memset(arena + i * page, 0, (run - i) * page);
    i = run;
  }
  return resident;
}

}  // namespace

size_t round_to_pages(size_t size) {
  const size_t page = page_size();
  return (size + page - 1) / page * page;
}

uint8_t* acquire(size_t size) {
  size = round_to_pages(size);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (size_t i = c.entries.size(); i-- > 0;) {
      if (c.entries[i].size != size) continue;
      const Entry entry = c.entries[i];
      c.entries.erase(c.entries.begin() + static_cast<std::ptrdiff_t>(i));
      c.resident_bytes -= entry.resident;
      c.reused++;
      unpoison(entry.arena, entry.size);
      return entry.arena;
    }
    c.mapped++;
  }
  void* arena = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return arena == MAP_FAILED ? nullptr : static_cast<uint8_t*>(arena);
}

void release(uint8_t* arena, size_t size) {
  if (arena == nullptr) return;
  size = round_to_pages(size);
  Cache& c = cache();
  const size_t resident = wipe_resident(arena, size);
  if (resident != SIZE_MAX) {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.entries.size() < kMaxCacheEntries && c.resident_bytes + resident <= kMaxCacheResident) {
      poison(arena, size);
      c.entries.push_back(Entry{arena, size, resident});
      c.resident_bytes += resident;
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.unmapped++;
  }
  munmap(arena, size);
}

void trim() {
  Cache& c = cache();
  std::vector<Entry> entries;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    entries.swap(c.entries);
    c.resident_bytes = 0;
    c.unmapped += entries.size();
  }
  for (const Entry& e : entries) {
    unpoison(e.arena, e.size);
    munmap(e.arena, e.size);
  }
}

ArenaCacheStats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  ArenaCacheStats s;
  s.entries = c.entries.size();
  s.resident_bytes = c.resident_bytes;
  s.reused = c.reused;
  s.mapped = c.mapped;
  s.unmapped = c.unmapped;
  return s;
}

}  // namespace buffer_arena
}  // namespace tls_splice
