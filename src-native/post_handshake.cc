#include "post_handshake.h"

namespace tls_splice {

// Handshake header: msg_type(1) length(3).
constexpr size_t kHandshakeHeaderLength = 4;

bool HandshakeAssembler::append(const uint8_t* data, size_t length) {
  if (read_offset_ > 0) {
    // Drop the messages already handed out so the buffer holds at most one partial message.
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(read_offset_));
    read_offset_ = 0;
  }
  // A record holds at most 2^14 bytes, so one partial message plus one record bounds this.
  if (buffer_.size() + length > kMaxPostHandshakeMessageLength + kHandshakeHeaderLength + 16384) {
    too_large_ = true;
    return false;
  }
  buffer_.insert(buffer_.end(), data, data + length);
  return true;
}

NextMessageStatus HandshakeAssembler::next(HandshakeMessage* out_message) {
  if (too_large_) return NextMessageStatus::kTooLarge;
  const size_t available = buffer_.size() - read_offset_;
  if (available < kHandshakeHeaderLength) return NextMessageStatus::kNeedMore;
  const uint8_t* p = buffer_.data() + read_offset_;
  const size_t body_length = (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | size_t{p[3]};
  if (body_length > kMaxPostHandshakeMessageLength) {
    too_large_ = true;
    return NextMessageStatus::kTooLarge;
  }
  if (available - kHandshakeHeaderLength < body_length) return NextMessageStatus::kNeedMore;
  out_message->type = p[0];
  out_message->body = p + kHandshakeHeaderLength;
  out_message->body_length = body_length;
  read_offset_ += kHandshakeHeaderLength + body_length;
  return NextMessageStatus::kMessage;
}

void HandshakeAssembler::clear() {
  // Tickets carry resumption secrets. Freeing the block wipes all of its capacity (the bytes
  // erase() left past size() included): see wiping_allocator.h.
  SecretBytes().swap(buffer_);
  read_offset_ = 0;
  too_large_ = false;
}

}  // namespace tls_splice
