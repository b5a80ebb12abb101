// The socket options and queries whose names differ between systems, chosen once here so the
// pumps and the binding ask the same way. Each Linux-only name is behind TLS_SPLICE_LINUX with
// the other systems' way next to it (see platform.h).
#ifndef TLS_SPLICE_SOCKET_PLATFORM_H_
#define TLS_SPLICE_SOCKET_PLATFORM_H_

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "platform.h"

#if TLS_SPLICE_LINUX
#include <linux/sockios.h>  // SIOCOUTQ
#endif

namespace tls_splice {

// The idle time before the first keepalive probe, in seconds: TCP_KEEPIDLE on Linux and the
// BSDs, TCP_KEEPALIVE on macOS (the same choice as libuv's uv_tcp_keepalive, which is what
// net.Socket.setKeepAlive() calls). -1 where there is no such option: only SO_KEEPALIVE is set.
#if TLS_SPLICE_LINUX
constexpr int kTcpKeepIdle = TCP_KEEPIDLE;
#elif defined(TCP_KEEPALIVE)
constexpr int kTcpKeepIdle = TCP_KEEPALIVE;
#elif defined(TCP_KEEPIDLE)
constexpr int kTcpKeepIdle = TCP_KEEPIDLE;
#else
constexpr int kTcpKeepIdle = -1;
#endif

// The bytes a stream socket holds that its peer has not acknowledged yet (sent or not), or -1
// when the system cannot say (or fd is not a socket). Linux: ioctl SIOCOUTQ. macOS: SO_NWRITE
// (the bytes in the send buffer, which keeps them until they are acknowledged); not TIOCOUTQ,
// which there is for terminals only.
inline int socket_unacked_bytes(int fd) {
  int queued = 0;
#if TLS_SPLICE_LINUX
  if (ioctl(fd, SIOCOUTQ, &queued) != 0) return -1;
#elif defined(SO_NWRITE)
  socklen_t length = sizeof(queued);
  if (getsockopt(fd, SOL_SOCKET, SO_NWRITE, &queued, &length) != 0) return -1;
#else
  (void)fd;
  return -1;
#endif
  return queued;
}

}  // namespace tls_splice

#endif  // TLS_SPLICE_SOCKET_PLATFORM_H_
