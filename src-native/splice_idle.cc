// A splice's inactivity limits (SpliceConfig::idle_timeout_ms, fin_timeout_ms): one timer per
// splice on its I/O thread, armed for the earliest moment a limit could be reached and re-armed
// lazily when it fires. The pumps only leave a time stamp behind (note_progress(), once per
// pump() call, never per byte), so a busy splice costs one comparison per wakeup and at most one
// timer callback per limit period.
//
// Progress: a byte read from the TLS connection or from the fd, or a byte one of them accepted
// (ciphertext written to TCP, cleartext written to the fd), or a side's end being read. A sink
// that takes nothing while its source has nothing new is no progress: a stalled splice ends.
#include "splice.h"

#include <poll.h>

#include <algorithm>
#include <cstdint>

#include "splice_internal.h"

namespace tls_splice {

using namespace splice_internal;

namespace {

// The other side shut its write side (a FIN, or a pipe's last writer gone), even while bytes
// before it wait unread: a splice whose sink is full never reads up to the end.
bool hangup_pending(int fd) {
  if (fd < 0) return false;
  pollfd p{};
  p.fd = fd;
#ifdef POLLRDHUP
  p.events = POLLRDHUP;
  const short hangup = POLLRDHUP | POLLHUP;
#else
  p.events = 0;
  const short hangup = POLLHUP;
#endif
  int rc;
  do rc = poll(&p, 1, 0); while (rc < 0 && errno == EINTR);
  return rc > 0 && (p.revents & hangup) != 0;
}

}  // namespace

bool Splice::start_idle_timer() {
  if (config_.idle_timeout_ms == 0 && config_.fin_timeout_ms == 0) return true;
  const int rc = uv_timer_init(loop_, &idle_timer_);
  if (rc < 0) {
    fail_errno(-rc, "uv_timer_init");
    return false;
  }
  idle_timer_.data = this;
  idle_timer_initialized_ = true;
  open_handles_++;
  uv_update_time(loop_);
  last_progress_ms_ = uv_now(loop_);
  last_progress_mark_ = progress_mark();
  arm_idle_timer(last_progress_ms_);
  return true;
}

uint64_t Splice::progress_mark() const {
  // Monotonic: any change means something moved (or a side's end was read) since the last look.
  return stats_.ciphertext_in.load(std::memory_order_relaxed) +
         stats_.ciphertext_out.load(std::memory_order_relaxed) +
         stats_.bytes_in.load(std::memory_order_relaxed) + source_bytes_read_ +
         (tcp_eof_ ? 1 : 0) + (fd_eof_ ? 1 : 0) + (end_.close_notify_received ? 1 : 0);
}

void Splice::note_progress() {
  if (!idle_timer_initialized_) return;
  const uint64_t mark = progress_mark();
  if (mark == last_progress_mark_) return;
  last_progress_mark_ = mark;
  last_progress_ms_ = uv_now(loop_);
}

bool Splice::one_side_ended() const {
  if (tcp_eof_ || fd_eof_ || in_state_ != InState::kOpen) return true;
  // Asked only when the splice has been quiet for fin_timeout_ms: two poll(2)s per period.
  return hangup_pending(config_.tcp_fd.get()) ||
         (config_.deliver_out && hangup_pending(config_.read_fd.get()));
}

void Splice::arm_idle_timer(uint64_t now) {
  const uint64_t idle = config_.idle_timeout_ms;
  const uint64_t fin = config_.fin_timeout_ms;
  uint64_t due = UINT64_MAX;
  if (idle != 0) due = last_progress_ms_ + idle;
  if (fin != 0) {
    uint64_t fin_due = last_progress_ms_ + fin;
    // Quiet long enough, but no side has ended yet: ask again soon (an end may come without a
    // byte, and a FIN behind unread bytes wakes nothing).
    if (fin_due <= now) fin_due = now + std::min(fin, kFinRecheckMaxMs);
    due = std::min(due, fin_due);
  }
  uv_timer_start(&idle_timer_, on_idle_timer, due > now ? due - now : 0, 0);
}

void Splice::on_idle_timer(uv_timer_t* handle) {
  static_cast<Splice*>(handle->data)->check_idle();
}

void Splice::check_idle() {
  // A truncation reset's drain and an alert's linger are bounded on their own.
  if (closing_ || reset_draining_ || alert_lingering_) return;
  // The idle end's own bound: whatever is not out by now stays undelivered.
  if (idle_ending_) return finish(EndReason::kIdle);
  const uint64_t now = uv_now(loop_);
  const uint64_t quiet = now - last_progress_ms_;
  const uint64_t idle = config_.idle_timeout_ms;
  const uint64_t fin = config_.fin_timeout_ms;
  if ((idle != 0 && quiet >= idle) || (fin != 0 && quiet >= fin && one_side_ended())) {
    return end_idle();
  }
  arm_idle_timer(now);
}

void Splice::end_idle() {
  // As a graceful stop (nothing more is read; what was read is delivered; close_notify, then the
  // peer's FIN is awaited), and the target gets its end too. Bounded: the sink that made no
  // progress may take nothing more.
  idle_ending_ = true;
  stopping_ = true;
  if (out_state_ == OutState::kOpen) out_state_ = OutState::kClosing;
  uv_timer_start(&idle_timer_, on_idle_timer, kIdleEndMaxMs, 0);
  pump();
}

}  // namespace tls_splice
