// Internal to the splice's own files (splice.cc, splice_pump_in.cc, splice_pump_out.cc): the
// limits the pumps share and the syscall wrappers they use. Not part of the splice's interface.
#ifndef TLS_SPLICE_SPLICE_INTERNAL_H_
#define TLS_SPLICE_SPLICE_INTERNAL_H_

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "record_layer.h"
#include "socket_platform.h"

namespace tls_splice {
namespace splice_internal {


// Room for one TCP read of a chunk on top of a partial record left from the last one.
constexpr size_t kCipherInExtra = kMaxRecordLength;
// Bytes one splice may move per wakeup before yielding to the others on its loop.
constexpr size_t kMaxBytesPerWakeup = 1024 * 1024;
// Packets read from a packet fd per batch before the batch is written to TCP.
constexpr size_t kMaxPacketsPerBatch = 64;
// Room kept in cipher_out_ for the control records of the protocol: a KeyUpdate answer, a
// renegotiation refusal, our own KeyUpdate, and a closing alert.
constexpr size_t kControlReserve = 4 * kMaxControlRecordLength;
// Consecutive poll errors on one fd with no I/O making progress before giving up on it.
constexpr int kMaxPollErrorsInARow = 16;
// How long a graceful stop waits for the peer's FIN after sending close_notify.
constexpr uint64_t kLingerMs = 2000;
// An idle end (splice_idle.cc): how long close_notify, the target's FIN and the peer's FIN may
// take before the splice ends anyway, as a graceful stop's linger (kLingerMs) is bounded.
constexpr uint64_t kIdleEndMaxMs = kLingerMs + 1000;
// With fin_timeout_ms reached but no side's end seen yet: how often the kernel is asked again
// whether a FIN is waiting behind unread bytes.
constexpr uint64_t kFinRecheckMaxMs = 1000;
// onTruncation 'reset': how often, and for how long at most, the target socket's send queue is
// checked before the reset (an RST discards what the target has not acknowledged yet).
constexpr uint64_t kResetDrainTickMs = 5;
constexpr uint64_t kResetDrainMaxMs = 2000;
// After a bad record: how long the fd may take to accept the cleartext authenticated before it
// before the splice fails anyway (the rest is counted in undelivered_in).
constexpr uint64_t kDeliverBeforeFailingMaxMs = 5000;
// A pipe's kernel buffer is 64 KiB by default: every 64 KiB write fills it and the pump and the
// reader ping-pong through EAGAIN and wakeups. 1 MiB (Linux's default pipe-max-size) lets whole
// batches through; measured in bench/: TLS -> pipe from 1.56 to 0.93 CPU s/GiB.
constexpr int kPipeBufferSize = 1 << 20;

// Grows a pipe's buffer to kPipeBufferSize where the kernel allows it; anything else is left
// alone (not a pipe, not Linux, or over the user's pipe quota: the default still works).
inline void grow_pipe(int fd) {
#if defined(F_SETPIPE_SZ) && defined(F_GETPIPE_SZ)
  const int size = fcntl(fd, F_GETPIPE_SZ);
  if (size >= 0 && size < kPipeBufferSize) fcntl(fd, F_SETPIPE_SZ, kPipeBufferSize);
#else
  (void)fd;
#endif
}

inline bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

inline ssize_t retry_eintr_read(int fd, void* data, size_t length) {
  ssize_t n;
  do n = read(fd, data, length); while (n < 0 && errno == EINTR);
  return n;
}

// A closed peer must be an EPIPE error, never a SIGPIPE for the process (Node ignores SIGPIPE,
// but the core also runs without Node): MSG_NOSIGNAL per send on Linux, SO_NOSIGPIPE once per
// socket where that is the way (macOS).
#if defined(MSG_NOSIGNAL)
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;
#endif

inline void no_sigpipe(int fd) {
#if defined(SO_NOSIGPIPE)
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
#else
  (void)fd;
#endif
}

// Sets TCP_NODELAY on a TCP socket (IPv4 or IPv6 stream); anything else is left alone. See
// SpliceConfig::no_delay for why.
inline bool is_tcp_socket(int fd) {
  sockaddr_storage address;
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return false;
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6) return false;
  int type = 0;
  socklen_t type_length = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_length) == 0 && type == SOCK_STREAM;
}

inline void set_tcp_nodelay(int fd, bool enable = true) {
  if (!is_tcp_socket(fd)) return;
  const int on = enable ? 1 : 0;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

// As libuv's uv_tcp_keepalive() (what net.Socket.setKeepAlive() calls): SO_KEEPALIVE, and when
// enabling with a delay, the idle time (TCP_KEEPIDLE; TCP_KEEPALIVE on macOS).
inline void set_tcp_keepalive(int fd, bool enable, int delay_s) {
  if (!is_tcp_socket(fd)) return;
  const int on = enable ? 1 : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0) return;
  if (enable && delay_s > 0 && kTcpKeepIdle >= 0) {
    setsockopt(fd, IPPROTO_TCP, kTcpKeepIdle, &delay_s, sizeof(delay_s));
  }
}

inline ssize_t retry_eintr_send(int fd, const void* data, size_t length) {
  ssize_t n;
  do n = send(fd, data, length, kSendFlags); while (n < 0 && errno == EINTR);
  return n;
}

inline ssize_t retry_eintr_writev(int fd, const iovec* iov, int count) {
  ssize_t n;
  do n = writev(fd, iov, count); while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace splice_internal
}  // namespace tls_splice

#endif  // TLS_SPLICE_SPLICE_INTERNAL_H_
