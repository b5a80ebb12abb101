// Which OS interfaces the core and the binding may use. Linux-only headers, ioctls and socket
// options sit behind `#if TLS_SPLICE_LINUX`, with the fallback for other systems (macOS) written
// next to them.
//
// TLS_SPLICE_FORCE_PORTABLE (make -C test/native check PORTABLE=1) selects the non-Linux branches
// on Linux, so that the fallbacks that can compile here are compiled and tested here. Branches
// that only compile on their own system (Apple's one-argument pthread_setname_np) are guarded by
// that system's macro instead and are not covered by it.
#ifndef TLS_SPLICE_PLATFORM_H_
#define TLS_SPLICE_PLATFORM_H_

#if defined(__linux__) && !defined(TLS_SPLICE_FORCE_PORTABLE)
#define TLS_SPLICE_LINUX 1
#else
#define TLS_SPLICE_LINUX 0
#endif

#endif  // TLS_SPLICE_PLATFORM_H_
