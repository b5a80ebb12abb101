// One file descriptor the native core owns: its own duplicate of a caller's fd, closed exactly
// once (RAII, move-only). It also remembers the file status flags of the fd's open file
// description as they were before the core made it non-blocking, and puts them back before
// closing, so the caller's fds behave afterwards as they did before the splice.
//
// Status flags (O_NONBLOCK, O_APPEND) belong to the open file description, not to the fd: every
// dup() of it, and the caller's own fds (0 and 1 of an inetd program or a terminal are often one
// description), see the same flags. So only the OwnedFd that changed a description's flags
// restores them: a second fd of that description finds O_NONBLOCK already set, saves nothing and
// restores nothing, and the description is restored once, whichever fd closes first.
//
// Not thread-safe; the splice uses each OwnedFd from one thread at a time.
#ifndef TLS_SPLICE_OWNED_FD_H_
#define TLS_SPLICE_OWNED_FD_H_

namespace tls_splice {

class OwnedFd {
 public:
  OwnedFd() = default;
  // Takes ownership of `fd` (which may be -1: an OwnedFd that owns nothing).
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd() { reset(); }
  OwnedFd(OwnedFd&& other) noexcept;
  OwnedFd& operator=(OwnedFd&& other) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;

  // A close-on-exec duplicate of `fd` (the caller keeps its own). On failure the result owns
  // nothing and errno says why.
  static OwnedFd dup_of(int fd);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Sets O_NONBLOCK. When that changes the flags, the previous flags are saved to be restored;
  // when O_NONBLOCK was set already there is nothing to restore. Returns 0 or an errno.
  int set_nonblocking();

  // Puts back the saved status flags, if any (once).
  void restore_flags();
  // Restores the flags and closes the fd. Idempotent.
  void reset();

 private:
  int fd_ = -1;
  int saved_flags_ = -1;  // the flags to restore, -1 when there is nothing to restore
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_OWNED_FD_H_
