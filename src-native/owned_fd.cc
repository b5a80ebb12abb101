#include "owned_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace tls_splice {

OwnedFd::OwnedFd(OwnedFd&& other) noexcept : fd_(other.fd_), saved_flags_(other.saved_flags_) {
  other.fd_ = -1;
  other.saved_flags_ = -1;
}

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.fd_;
    saved_flags_ = other.saved_flags_;
    other.fd_ = -1;
    other.saved_flags_ = -1;
  }
  return *this;
}

OwnedFd OwnedFd::dup_of(int fd) {
  if (fd < 0) {
    errno = EBADF;
    return OwnedFd();
  }
  return OwnedFd(fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

int OwnedFd::set_nonblocking() {
  const int flags = fcntl(fd_, F_GETFL);
  if (flags < 0) return errno;
  // Already non-blocking: the caller's own setting, or another OwnedFd of this description
  // changed it and restores it (see the top of owned_fd.h).
  if (flags & O_NONBLOCK) return 0;
  if (fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  saved_flags_ = flags;
  return 0;
}

void OwnedFd::restore_flags() {
  if (fd_ >= 0 && saved_flags_ >= 0) fcntl(fd_, F_SETFL, saved_flags_);
  saved_flags_ = -1;
}

void OwnedFd::reset() {
  if (fd_ < 0) return;
  restore_flags();
  close(fd_);
  fd_ = -1;
}

}  // namespace tls_splice
