#include "tun.h"

#include <errno.h>

#include "platform.h"

#if TLS_SPLICE_LINUX
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#endif

namespace tls_splice {

#if TLS_SPLICE_LINUX

int open_tun(const std::string& name, bool packet_info, int mtu, TunDevice* out_device,
             const char** out_step) {
  if (name.size() >= IFNAMSIZ) {
    *out_step = "name";
    return ENAMETOOLONG;
  }
  *out_step = "open";
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno;
  struct ifreq request;
  std::memset(&request, 0, sizeof(request));
  request.ifr_flags = static_cast<short>(IFF_TUN | (packet_info ? 0 : IFF_NO_PI));
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &request) < 0) {
    const int err = errno;
    *out_step = "TUNSETIFF";
    close(fd);
    return err;
  }
  if (mtu > 0) {
    // The MTU is a property of the interface, set through any socket.
    const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq mtu_request;
    std::memset(&mtu_request, 0, sizeof(mtu_request));
    std::memcpy(mtu_request.ifr_name, request.ifr_name, IFNAMSIZ);
    mtu_request.ifr_mtu = mtu;
    if (sock < 0 || ioctl(sock, SIOCSIFMTU, &mtu_request) < 0) {
      const int err = errno;
      *out_step = "SIOCSIFMTU";
      if (sock >= 0) close(sock);
      close(fd);
      return err;
    }
    close(sock);
  }
  out_device->fd = fd;
  out_device->name.assign(request.ifr_name, strnlen(request.ifr_name, IFNAMSIZ));
  return 0;
}

#else

// macOS has no TUN device: its utun is a PF_SYSTEM socket that the caller opens and passes in
// as an fd (README, "IP packets over TLS").
int open_tun(const std::string&, bool, int, TunDevice*, const char** out_step) {
  *out_step = "platform";
  return ENOTSUP;
}

#endif

}  // namespace tls_splice
