// The memory behind a splice's four buffers: one anonymous mapping per splice, kept for the next
// splice when it is small instead of going back to the kernel.
//
// Why a cache: a server of many short connections maps and unmaps an arena per connection. A
// profile of a terminator under `wrk -H 'Connection: close'` showed its I/O thread spending
// nearly all its time on that: page faults on the first touch of each buffer page, and munmap()
// flushing the TLB of every CPU the process ran on (an inter-processor interrupt, dear in a VM).
// A released arena whose resident part is small is wiped (only its resident pages, so nothing is
// faulted in) and kept; the next splice of the same size takes it with its pages still mapped.
//
// Bounds: an arena is kept only if at most kMaxKeptResident bytes of it are resident (a splice
// that moved bulk data grew its windows and goes back to the kernel), and the cache holds at most
// kMaxCacheResident resident bytes and kMaxCacheEntries arenas in all. Thread-safe: splices are
// created on the main thread and end on I/O threads.
#ifndef TLS_SPLICE_BUFFER_ARENA_H_
#define TLS_SPLICE_BUFFER_ARENA_H_

#include <cstddef>
#include <cstdint>

namespace tls_splice {

struct ArenaCacheStats {
  size_t entries = 0;         // arenas in the cache now
  size_t resident_bytes = 0;  // their resident bytes (as mincore() counted them at release)
  uint64_t reused = 0;        // acquisitions served from the cache
  uint64_t mapped = 0;        // acquisitions that mapped a new arena
  uint64_t unmapped = 0;      // releases that went back to the kernel
};

namespace buffer_arena {

// At most this many bytes of a released arena may be resident for it to be kept: the footprint
// of a splice whose reads stayed in the first chunk window (see splice.h).
constexpr size_t kMaxKeptResident = 384 * 1024;
constexpr size_t kMaxCacheResident = 4 * 1024 * 1024;
constexpr size_t kMaxCacheEntries = 256;

// Rounds `size` up to whole pages (what acquire() maps and release() expects).
size_t round_to_pages(size_t size);

// An arena of round_to_pages(size) bytes, all zero; nullptr if the kernel refuses one.
uint8_t* acquire(size_t size);

// Gives back an arena from acquire() with the same `size`. Its contents are wiped either way
// (kept: zeroed here; unmapped: the kernel zeroes pages before any other use).
void release(uint8_t* arena, size_t size);

// Unmaps every cached arena (tests; a process may call it under memory pressure).
void trim();

ArenaCacheStats stats();

}  // namespace buffer_arena
}  // namespace tls_splice

#endif  // TLS_SPLICE_BUFFER_ARENA_H_
