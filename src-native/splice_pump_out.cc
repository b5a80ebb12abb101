// The "out" pump, fd -> TLS: read cleartext from the fd (one packet per read when framed),
// seal records, write them to TCP; then close_notify and the TCP write side.
#include "splice.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "splice_internal.h"

namespace tls_splice {

using namespace splice_internal;

void Splice::grow_out_chunk() {
  if (out_chunk_ == max_chunk_) return;
  out_chunk_ = max_chunk_;
  plain_out_.capacity = out_chunk_;
}

bool Splice::step_out(size_t* budget) {
  if (out_state_ == OutState::kDone) return false;
  bool progress = false;
  while (cipher_out_.size() > 0) {
    const ssize_t n = retry_eintr_send(config_.tcp_fd.get(), cipher_out_.begin(), cipher_out_.size());
    if (n < 0) {
      if (would_block(errno)) return progress;
      const int err = errno;
      // The peer closed its side and went away before our close_notify or KeyUpdate reached
      // it: nothing of the user's is lost, so this is the end, not an error.
      // So is an idle end whose peer has gone: what it did not take is counted undelivered.
      if ((err == EPIPE || err == ECONNRESET) &&
          (idle_ending_ || (in_state_ == InState::kDone && batch_plaintext_ == 0))) {
        if (out_state_ == OutState::kShutdownPending) end_.close_notify_sent = false;
        cipher_out_.start = cipher_out_.end = 0;
        out_state_ = OutState::kDone;
        return true;
      }
      fail_errno(err, "write to the TLS connection");
      return true;
    }
    cipher_out_.start += static_cast<size_t>(n);
    stats_.ciphertext_out.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *budget -= std::min(*budget, static_cast<size_t>(n));
    progress = true;
  }
  cipher_out_.start = cipher_out_.end = 0;
  if (batch_plaintext_ || batch_packets_) {
    stats_.bytes_out.fetch_add(batch_plaintext_, std::memory_order_relaxed);
    stats_.packets_out.fetch_add(batch_packets_, std::memory_order_relaxed);
    batch_plaintext_ = batch_packets_ = 0;
  }

  // Control records owed to the peer go out before our close_notify, never after it: RFC 8446
  // 6.1, close_notify says "the sender will not send any more messages on this connection".
  // (A KeyUpdate the peer requests after that point is simply not answered.)
  if (layer_.has_pending_control() &&
      (out_state_ == OutState::kOpen || out_state_ == OutState::kClosing)) {
    const size_t n = layer_.seal_pending_control(cipher_out_.tail(), cipher_out_.tail_room());
    if (n == 0) {
      fail_record_layer();
      return true;
    }
    cipher_out_.end += n;
    return true;
  }

  switch (out_state_) {
    case OutState::kOpen:
      // A peer whose record failed gets nothing more of the user's.
      if (config_.deliver_out && !fd_eof_ && !failing_after_delivery_) {
        return read_out(budget) || progress;
      }
      return progress;
    case OutState::kClosing: {
      // RFC 8446 6.1: "Each party MUST send a "close_notify" alert before closing its write
      // side of the connection".
      const size_t n = layer_.seal_alert(AlertDescription::kCloseNotify, cipher_out_.tail(),
                                         cipher_out_.tail_room());
      if (n == 0) {
        fail_record_layer();
        return true;
      }
      cipher_out_.end += n;
      end_.close_notify_sent = true;
      out_state_ = OutState::kShutdownPending;
      return true;
    }
    case OutState::kShutdownPending:
      shutdown(config_.tcp_fd.get(), SHUT_WR);
      out_state_ = OutState::kDone;
      return true;
    case OutState::kDone:
      break;
  }
  return progress;
}

bool Splice::seal_stream(const uint8_t* data, size_t length) {
  const size_t mfl = layer_.max_fragment_length();
  while (length > 0) {
    const size_t take = std::min(length, mfl);
    // Keep room behind the data for a closing alert.
    const size_t room = cipher_out_.tail_room();
    const size_t n = layer_.seal_application_data(
        data, take, cipher_out_.tail(),
        room > kMaxControlRecordLength ? room - kMaxControlRecordLength : 0);
    if (n == 0) {
      fail_record_layer();
      return false;
    }
    cipher_out_.end += n;
    data += take;
    length -= take;
  }
  return true;
}

bool Splice::read_out(size_t* budget) {
  const FramingConfig& framing = config_.framing;
  // Bytes the target's net.Socket had already read go first.
  if (initial_cleartext_offset_ < config_.initial_cleartext.size()) {
    const size_t take = std::min(max_chunk_,
                                 config_.initial_cleartext.size() - initial_cleartext_offset_);
    if (!seal_stream(config_.initial_cleartext.data() + initial_cleartext_offset_, take))
      return true;
    initial_cleartext_offset_ += take;
    batch_plaintext_ += take;
    return true;
  }

  if (framing.framing == Framing::kStream) {
    const ssize_t n = retry_eintr_read(config_.read_fd.get(), plain_out_.data, plain_out_.capacity);
    if (n > 0) {
      source_bytes_read_ += static_cast<uint64_t>(n);
      if (static_cast<size_t>(n) == plain_out_.capacity) grow_out_chunk();
      if (!seal_stream(plain_out_.data, static_cast<size_t>(n))) return true;
      batch_plaintext_ += static_cast<uint64_t>(n);
      *budget -= std::min(*budget, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) {
      fd_eof_ = true;
      out_state_ = OutState::kClosing;
      return true;
    }
    if (would_block(errno)) return false;
    fail_fd_errno(errno, "read from the target");
    return true;
  }

  // Packet framing: every read() is one packet, and becomes one record (or several, only if it
  // is larger than the record limit).
  const size_t info_length = packet_info_length(framing);
  const size_t prefix = framing.framing == Framing::kU16be ? kU16PrefixLength : 0;
  const size_t max_unit = framing.max_packet_size + prefix + info_length;
  bool progress = false;
  for (size_t i = 0; i < kMaxPacketsPerBatch; i++) {
    if (cipher_out_.tail_room() < max_unit + (max_unit / layer_.max_fragment_length() + 1) *
                                                     kMaxSealOverhead + kControlReserve) {
      break;
    }
    uint8_t* read_at = plain_out_.data + kU16PrefixLength;
    const size_t room = plain_out_.capacity - kU16PrefixLength;
    const ssize_t n = retry_eintr_read(config_.read_fd.get(), read_at, room);
    if (n == 0) {
      fd_eof_ = true;
      out_state_ = OutState::kClosing;
      return true;
    }
    if (n < 0) {
      if (would_block(errno)) return progress;
      fail_fd_errno(errno, "read from the target");
      return true;
    }
    progress = true;
    const size_t got = static_cast<size_t>(n);
    source_bytes_read_ += got;
    if (got < info_length) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
           "packet read from the fd is shorter than its packet-info header");
      return true;
    }
    uint8_t* packet = read_at + info_length;
    const size_t packet_length = got - info_length;
    if (const char* problem = check_outgoing_packet(framing, packet, packet_length)) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone, problem);
      return true;
    }
    uint8_t* unit = packet;
    size_t unit_length = packet_length;
    if (prefix) {
      unit -= kU16PrefixLength;
      unit[0] = static_cast<uint8_t>(packet_length >> 8);
      unit[1] = static_cast<uint8_t>(packet_length);
      unit_length += kU16PrefixLength;
    }
    if (!seal_stream(unit, unit_length)) return true;
    batch_plaintext_ += packet_length;
    batch_packets_++;
    *budget -= std::min(*budget, got);
  }
  return progress;
}

}  // namespace tls_splice
