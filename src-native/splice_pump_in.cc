// The "in" pump, TLS -> fd: read TCP, open records, write the cleartext to the fd (cut into
// packets when framed), and pass the peer's end on to the fd.
#include "splice.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "socket_platform.h"
#include "splice_internal.h"

namespace tls_splice {

using namespace splice_internal;

bool Splice::step_in(size_t* budget) {
  if (in_state_ == InState::kDone) return false;
  bool progress = false;
  if (failing_after_delivery_) return deliver_before_failing(&progress);
  if (!flush_in(&progress)) return progress;

  // Open the whole records already received while there is room for their cleartext.
  while (in_state_ == InState::kOpen && plain_in_.tail_room() >= kMaxOpenedLength) {
    if (cipher_in_.size() == 0) {
      cipher_in_needs_more_ = true;
      break;
    }
    const ReadResult r = layer_.read_record(cipher_in_.begin(), cipher_in_.size(),
                                            plain_in_.tail(), plain_in_.tail_room());
    if (r.outcome == ReadOutcome::kNeedMore) {
      cipher_in_needs_more_ = true;
      break;
    }
    cipher_in_needs_more_ = false;
    if (r.outcome == ReadOutcome::kError) {
      // The records opened before the bad one (or the peer's fatal alert) are authentic: they
      // reach the fd first, however long it takes it to accept them (bounded by
      // kDeliverBeforeFailingMaxMs), then the splice fails. Otherwise what reaches the fd would
      // depend on whether TCP happened to hand over the good records and the bad one in the same
      // read, and on how full the fd was at that moment.
      failing_after_delivery_ = true;
      deliver_before_failing(&progress);
      return true;
    }
    cipher_in_.start += r.consumed;
    progress = true;
    if (r.outcome == ReadOutcome::kApplicationData) {
      if (!config_.deliver_in) {
        fail("ERR_TLS_SPLICE_UNEXPECTED_DATA", AlertDescription::kNone,
             "the peer sent application data, but direction is 'out'");
        return true;
      }
      plain_in_.end += r.plaintext_length;
      if (plain_in_.size() >= in_chunk_) break;  // write before opening more
    } else if (r.outcome == ReadOutcome::kCloseNotify) {
      end_.close_notify_received = true;
      // RFC 8446 6.1: "Any data received after a closure alert has been received MUST be
      // ignored."
      end_.ignored_after_close += cipher_in_.size();
      cipher_in_.start = cipher_in_.end = 0;
      in_state_ = InState::kDraining;
    }
  }
  if (cipher_in_.size() == 0) cipher_in_.start = cipher_in_.end = 0;
  if (!flush_in(&progress)) return progress;

  if (in_state_ == InState::kOpen && !tcp_eof_ && !stopping_ && cipher_in_needs_more_) {
    if (cipher_in_.tail_room() < kMaxRecordLength) cipher_in_.compact();
    const size_t want = cipher_in_.tail_room();
    const ssize_t n = retry_eintr_read(config_.tcp_fd.get(), cipher_in_.tail(), want);
    if (n > 0) {
      if (static_cast<size_t>(n) == want) grow_in_chunk();
      cipher_in_.end += static_cast<size_t>(n);
      stats_.ciphertext_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      *budget -= std::min(*budget, static_cast<size_t>(n));
      cipher_in_needs_more_ = false;
      progress = true;
    } else if (n == 0) {
      tcp_eof_ = true;
      progress = true;
    } else if (!would_block(errno)) {
      fail_errno(errno, "read from the TLS connection");
      return true;
    }
  }

  if (in_state_ == InState::kOpen && cipher_in_needs_more_ && (tcp_eof_ || stopping_)) {
    if (tcp_eof_ && !stopping_) {
      if (cipher_in_.size() > 0) {
        // A truncation too: under 'reset' the target gets a reset, never a FIN, once it has
        // acknowledged what was opened before the cut (flushed above), as in reset_target().
        if (config_.on_truncation == Truncation::kReset) {
          set_reset_on_close();
          if (unacked_at_sink() > 0) {
            end_.code = "ERR_TLS_SPLICE_TRUNCATED_RECORD";
            end_.detail = "the peer's TCP stream ended inside a TLS record";
            if (start_reset_drain(EndReason::kError)) return true;
          }
        }
        fail("ERR_TLS_SPLICE_TRUNCATED_RECORD", AlertDescription::kNone,
             "the peer's TCP stream ended inside a TLS record");
        return true;
      }
      end_.peer_eof_without_close_notify = true;
    }
    in_state_ = InState::kDraining;
    progress = true;
  }
  if (in_state_ == InState::kDraining) {
    if (!flush_in(&progress)) return progress;
    // Packet framing: bytes left over are an incomplete packet the peer never finished.
    if (plain_in_.size() > 0 && !stopping_) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
           "the peer's stream ended inside a packet");
      return true;
    }
    finish_in();
    progress = true;
  }
  return progress;
}

bool Splice::deliver_before_failing(bool* progress) {
  // Nothing more is read from TCP or opened: only the cleartext already authenticated moves.
  cipher_in_needs_more_ = false;
  if (!flush_in(progress)) {
    if (!closing_ && !linger_timer_initialized_ && uv_timer_init(loop_, &linger_timer_) == 0) {
      linger_timer_.data = this;
      linger_timer_initialized_ = true;
      open_handles_++;
      uv_timer_start(&linger_timer_, on_deliver_before_failing_timeout,
                     kDeliverBeforeFailingMaxMs, 0);
    }
    return *progress;
  }
  fail_record_layer();
  return true;
}

void Splice::on_deliver_before_failing_timeout(uv_timer_t* handle) {
  // The fd did not take the authenticated cleartext in time: the rest is counted in
  // undelivered_in.
  Splice* self = static_cast<Splice*>(handle->data);
  if (!self->closing_) self->fail_record_layer();
}

bool Splice::flush_in(bool* progress) {
  const int sink = sink_fd();
  if (sink < 0) return true;
  // `head` first: raw bytes the caller wants on the fd before anything spliced.
  while (head_offset_ < config_.head.size()) {
    ssize_t n;
    do n = write(sink, config_.head.data() + head_offset_,
                 config_.head.size() - head_offset_);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    head_offset_ += static_cast<size_t>(n);
    // bytesIn counts everything written to the target, `head` included.
    stats_.bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *progress = true;
  }
  if (config_.framing.framing == Framing::kStream) return flush_stream_in(progress);
  return flush_packets_in(progress);
}

bool Splice::flush_stream_in(bool* progress) {
  const int sink = sink_fd();
  while (plain_in_.size() > 0) {
    ssize_t n;
    do n = write(sink, plain_in_.begin(), plain_in_.size());
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    plain_in_.start += static_cast<size_t>(n);
    stats_.bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *progress = true;
  }
  plain_in_.start = plain_in_.end = 0;
  return true;
}

bool Splice::flush_packets_in(bool* progress) {
  const FramingConfig& framing = config_.framing;
  for (;;) {
    const PacketCut cut = cut_packet(framing, plain_in_.begin(), plain_in_.size());
    if (cut.status == CutStatus::kNeedMore) break;
    if (cut.status == CutStatus::kMalformed) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone, cut.problem);
      return false;
    }
    uint8_t* packet = plain_in_.begin() + cut.prefix_length;
    uint8_t info[kPacketInfoLength];
    iovec iov[2];
    int count = 0;
    if (framing.packet_info != PacketInfo::kNone) {
      if (!make_packet_info(framing.packet_info, packet, cut.packet_length, info)) {
        fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
             "packet info needs an IPv4 or IPv6 packet");
        return false;
      }
      iov[count++] = {info, kPacketInfoLength};
    }
    iov[count++] = {packet, cut.packet_length};
    // One writev per packet: a TUN device takes each write as exactly one packet. A stream fd
    // may take part of it; the rest goes out on the next writable event.
    size_t skip = packet_written_;
    int first = 0;
    while (first < count && skip >= iov[first].iov_len) skip -= iov[first++].iov_len;
    iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + skip;
    iov[first].iov_len -= skip;
    const size_t unit = (count == 2 ? kPacketInfoLength : 0) + cut.packet_length;
    const ssize_t n = retry_eintr_writev(sink_fd(), iov + first, count - first);
    if (n < 0 && errno == EIO && packet_written_ == 0) {
      // A TUN device that is down refuses packets with EIO. A network drops a packet it cannot
      // deliver and carries on; so does the tunnel, counting it, instead of ending over a link
      // that was briefly down.
      plain_in_.start += cut.prefix_length + cut.packet_length;
      stats_.packets_dropped.fetch_add(1, std::memory_order_relaxed);
      *progress = true;
      continue;
    }
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    *progress = true;
    packet_written_ += static_cast<size_t>(n);
    if (packet_written_ < unit) return false;
    packet_written_ = 0;
    plain_in_.start += cut.prefix_length + cut.packet_length;
    stats_.bytes_in.fetch_add(cut.packet_length, std::memory_order_relaxed);
    stats_.packets_in.fetch_add(1, std::memory_order_relaxed);
  }
  // Keep a partial packet at the front so a whole record always fits behind it.
  if (plain_in_.size() == 0) {
    plain_in_.start = plain_in_.end = 0;
  } else if (plain_in_.tail_room() < kMaxOpenedLength) {
    plain_in_.compact();
  }
  return true;
}

void Splice::grow_in_chunk() {
  if (in_chunk_ == max_chunk_) return;
  in_chunk_ = max_chunk_;
  cipher_in_.capacity = std::max(cipher_in_.capacity, in_chunk_ + kCipherInExtra);
  if (config_.deliver_in) {
    plain_in_.capacity = plain_in_base_ + std::max(in_chunk_, plain_in_floor_);
  }
}

void Splice::finish_in() {
  in_state_ = InState::kDone;
  if (stopping_) {
    // A stop hands the target back as it is; an idle end ends it (nothing more will come).
    if (idle_ending_) end_target_write_side();
    return;
  }
  if (end_.peer_eof_without_close_notify && config_.on_truncation == Truncation::kReset) {
    return reset_target();
  }
  end_target_write_side();
  // With no data of our own to send, our side closes as soon as the peer's has.
  if (!config_.deliver_out && out_state_ == OutState::kOpen) out_state_ = OutState::kClosing;
  observer_->on_peer_end();
}

void Splice::end_target_write_side() {
  // A socket gets a FIN and stays open for the other direction; a separate write fd (a pipe) is
  // closed so its reader sees EOF.
  if (sink_fd() < 0) return;
  if (write_is_socket_) {
    shutdown(sink_fd(), SHUT_WR);
  } else if (!write_is_read_) {
    close_write_fd();
  }
}

void Splice::reset_target() {
  // A FIN would tell a plain backend the stream is complete; a cut upload must not look like one.
  // SO_LINGER {on, 0} is a property of the socket, shared with the user's fd: whichever close is
  // the last sends a reset instead of a FIN. Every byte that arrived before the cut was written
  // to the target already (finish_in runs after the drain), but an RST discards what the target
  // has not acknowledged: the reset waits (bounded) until the target's send queue is empty.
  set_reset_on_close();
  if (unacked_at_sink() > 0 && start_reset_drain(EndReason::kEnd)) return;
  // No on_peer_end(): the JS layer would end the target's write side. The splice is over; the
  // end reports peer_eof_without_close_notify.
  finish(EndReason::kEnd);
}

void Splice::set_reset_on_close() {
  if (write_is_socket_ && sink_fd() >= 0) {
    const linger reset_on_close{1, 0};
    setsockopt(sink_fd(), SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof(reset_on_close));
  }
}

size_t Splice::unacked_at_sink() const {
  if (!write_is_socket_ || sink_fd() < 0) return 0;
  const int queued = socket_unacked_bytes(sink_fd());
  return queued > 0 ? static_cast<size_t>(queued) : 0;
}

bool Splice::start_reset_drain(EndReason reason) {
  if (linger_timer_initialized_ || uv_timer_init(loop_, &linger_timer_) != 0) return false;
  reset_drain_reason_ = reason;
  linger_timer_.data = this;
  linger_timer_initialized_ = true;
  open_handles_++;
  reset_draining_ = true;
  reset_drain_ticks_ = 0;
  // Nothing more moves in either direction: the splice only waits, then ends as reset_target().
  bool unused = false;
  for (Watch* w : {&tcp_, &user_read_, &user_write_}) watch(w, 0, &unused);
  if (idle_active_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
  uv_timer_start(&linger_timer_, on_reset_drain_tick, kResetDrainTickMs, kResetDrainTickMs);
  return true;
}

void Splice::on_reset_drain_tick(uv_timer_t* handle) {
  Splice* self = static_cast<Splice*>(handle->data);
  if (self->closing_) return;
  if (self->unacked_at_sink() == 0 ||
      ++self->reset_drain_ticks_ >= kResetDrainMaxMs / kResetDrainTickMs) {
    self->finish(self->reset_drain_reason_);
  }
}

void Splice::close_write_fd() {
  if (user_write_.active) {
    uv_poll_stop(&user_write_.poll);
    user_write_.active = false;
    // The fd is closed once libuv has let go of the handle.
    uv_close(reinterpret_cast<uv_handle_t*>(&user_write_.poll), [](uv_handle_t* handle) {
      Watch* w = static_cast<Watch*>(handle->data);
      Splice* self = w->owner;
      self->config_.write_fd.reset();
      on_handle_closed(handle);
    });
    return;
  }
  config_.write_fd.reset();
}

}  // namespace tls_splice
