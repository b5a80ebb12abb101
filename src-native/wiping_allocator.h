// An allocator that wipes (OPENSSL_cleanse) every block over its whole size before freeing it,
// for containers that hold secrets: a std::vector that grows copies its bytes into a new block
// and frees the old one, and erase() leaves stale bytes past size() inside the capacity, so
// wiping data() over size() before destruction misses copies. With this allocator, every byte a
// container ever held is wiped when its block goes back to the heap.
#ifndef TLS_SPLICE_WIPING_ALLOCATOR_H_
#define TLS_SPLICE_WIPING_ALLOCATOR_H_

#include <openssl/crypto.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace tls_splice {

template <typename T>
struct WipingAllocator {
  using value_type = T;

  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}

  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }

  template <typename U>
  bool operator==(const WipingAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const WipingAllocator<U>&) const noexcept { return false; }
};

// Bytes that may hold secrets (NewSessionTicket messages carry resumption secrets).
using SecretBytes = std::vector<uint8_t, WipingAllocator<uint8_t>>;

}  // namespace tls_splice

#endif  // TLS_SPLICE_WIPING_ALLOCATOR_H_
