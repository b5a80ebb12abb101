// Reassembly of handshake messages that arrive after the handshake (RFC 8446 4.6, RFC 5246
// 7.4.1.1): a message may span records, and a record may hold several messages. Only framing:
// what a message means is decided by record_layer.cc.
#ifndef TLS_SPLICE_POST_HANDSHAKE_H_
#define TLS_SPLICE_POST_HANDSHAKE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "wiping_allocator.h"

namespace tls_splice {

// The largest post-handshake message accepted, body included. The largest legitimate one is a
// TLS 1.3 NewSessionTicket: 4 + 4 + (1 + 255) + (2 + 65535) + (2 + 65535) bytes of body.
constexpr size_t kMaxPostHandshakeMessageLength = 4 + 4 + (1 + 255) + (2 + 65535) + (2 + 65535);

struct HandshakeMessage {
  uint8_t type;
  const uint8_t* body;  // valid until the next call to append() or next()
  size_t body_length;
};

enum class NextMessageStatus : uint8_t {
  kMessage,   // *out_message is a whole message
  kNeedMore,  // the buffered bytes end inside a message (or are empty)
  kTooLarge,  // a message declares a length over kMaxPostHandshakeMessageLength
};

class HandshakeAssembler {
 public:
  // Appends the plaintext of one handshake record. Fails (returns false) only when the buffered
  // bytes would exceed the message limit, which next() then reports as kTooLarge.
  bool append(const uint8_t* data, size_t length);
  NextMessageStatus next(HandshakeMessage* out_message);
  // Bytes buffered that are not part of a message returned by next(): a partial message.
  bool empty() const { return read_offset_ == buffer_.size(); }
  void clear();

 private:
  // Tickets carry resumption secrets: every block this buffer ever used is wiped when freed
  // (a reallocation included), and clear() wipes the whole capacity.
  SecretBytes buffer_;
  size_t read_offset_ = 0;
  bool too_large_ = false;
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_POST_HANDSHAKE_H_
