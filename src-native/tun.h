// Opening a Linux TUN device (ioctl TUNSETIFF on /dev/net/tun). Elsewhere the caller brings its
// own fd (a macOS utun socket, an fd passed by a privileged helper).
#ifndef TLS_SPLICE_TUN_H_
#define TLS_SPLICE_TUN_H_

#include <string>

namespace tls_splice {

struct TunDevice {
  int fd = -1;        // close-on-exec; blocking (the splice makes its own duplicate non-blocking)
  std::string name;   // the kernel's name for it, e.g. "tun0"
};

// Opens a TUN device named `name` (empty: the kernel picks tunN). With packet_info, each packet
// carries the 4-byte struct tun_pi (no IFF_NO_PI). mtu > 0 sets the MTU. Returns 0, or an errno
// value with *out_step naming the step that failed ("open", "TUNSETIFF", "SIOCSIFMTU").
int open_tun(const std::string& name, bool packet_info, int mtu, TunDevice* out_device,
             const char** out_step);

}  // namespace tls_splice

#endif  // TLS_SPLICE_TUN_H_
