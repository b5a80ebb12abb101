#include "record_layer.h"

#include <algorithm>

#include "key_schedule.h"

namespace tls_splice {
namespace {

// RFC 5246 7.2 gives warning alerts no meaning we act on; a stream of them is a nuisance.
constexpr uint32_t kMaxWarningAlertsInARow = 4;
// Renegotiation is refused with a warning; a peer that keeps asking is not going to stop.
constexpr uint32_t kMaxRenegotiationRefusals = 4;
// RecordProtection never uses sequence number 2^64-1; the one before it is kept for a KeyUpdate.
constexpr uint64_t kLastSequenceForKeyUpdate = UINT64_MAX - 1;

// RFC 8446 4.6.1: checks that a NewSessionTicket body is exactly
//   uint32 lifetime; uint32 age_add; opaque nonce<0..255>; opaque ticket<1..2^16-1>;
//   Extension extensions<0..2^16-2>;
bool is_well_formed_ticket(const uint8_t* body, size_t length) {
  size_t offset = 8;
  if (length < offset + 1) return false;
  offset += 1 + body[offset];
  if (length < offset + 2) return false;
  const size_t ticket_length = (size_t{body[offset]} << 8) | body[offset + 1];
  if (ticket_length == 0) return false;
  offset += 2 + ticket_length;
  if (length < offset + 2) return false;
  const size_t extensions_length = (size_t{body[offset]} << 8) | body[offset + 1];
  offset += 2 + extensions_length;
  return offset == length;
}

}  // namespace

const char* record_error_code(RecordError error) {
  switch (error) {
    case RecordError::kNone: return "";
    case RecordError::kBadRecordMac: return "ERR_TLS_SPLICE_BAD_RECORD_MAC";
    case RecordError::kRecordOverflow: return "ERR_TLS_SPLICE_RECORD_OVERFLOW";
    case RecordError::kBadRecordVersion: return "ERR_TLS_SPLICE_BAD_RECORD_VERSION";
    case RecordError::kUnexpectedRecord: return "ERR_TLS_SPLICE_UNEXPECTED_RECORD";
    case RecordError::kUnexpectedMessage: return "ERR_TLS_SPLICE_UNEXPECTED_MESSAGE";
    case RecordError::kRenegotiation: return "ERR_TLS_SPLICE_RENEGOTIATION";
    case RecordError::kPostHandshakeAuth: return "ERR_TLS_SPLICE_POST_HANDSHAKE_AUTH";
    case RecordError::kDecodeError: return "ERR_TLS_SPLICE_DECODE_ERROR";
    case RecordError::kIllegalParameter: return "ERR_TLS_SPLICE_ILLEGAL_PARAMETER";
    case RecordError::kEmptyRecordFlood: return "ERR_TLS_SPLICE_EMPTY_RECORD_FLOOD";
    case RecordError::kKeyUpdateFlood: return "ERR_TLS_SPLICE_KEY_UPDATE_FLOOD";
    case RecordError::kMessageTooLarge: return "ERR_TLS_SPLICE_MESSAGE_TOO_LARGE";
    case RecordError::kSequenceExhausted: return "ERR_TLS_SPLICE_SEQUENCE_EXHAUSTED";
    case RecordError::kPeerAlert: return "ERR_TLS_ALERT";
    case RecordError::kInternalError: return "ERR_TLS_SPLICE_INTERNAL";
  }
  return "ERR_TLS_SPLICE_INTERNAL";
}

bool RecordLayer::init(const SessionKeys& keys, bool is_server) {
  const CipherSuite* suite = find_cipher_suite(keys.version, keys.cipher_suite);
  if (suite == nullptr) return false;
  // RFC 6066 4 allows 2^9..2^12; anything else but the default 2^14 is a capture bug.
  if (keys.max_fragment_length < 512 || keys.max_fragment_length > kMaxPlaintextLength) {
    return false;
  }
  version_ = keys.version;
  is_server_ = is_server;
  max_fragment_length_ = keys.max_fragment_length;
  // RFC 8446 5.5: "Implementations MUST NOT exceed these limits"; a larger setting is capped.
  const uint64_t limit = record_limit_per_key(*suite);
  key_update_after_records_ = keys.key_update_after_records
                                  ? std::min(keys.key_update_after_records, limit)
                                  : limit;
  if (version_ == TlsVersion::kTls13) {
    return read_.init_tls13(*suite, keys.read_secret, keys.read_seq, false) &&
           write_.init_tls13(*suite, keys.write_secret, keys.write_seq, true);
  }
  if (suite->cbc) {
    return read_.init_tls12_cbc(*suite, keys.read_key, keys.read_mac_key, keys.encrypt_then_mac,
                                keys.read_seq, false) == CbcInitStatus::kOk &&
           write_.init_tls12_cbc(*suite, keys.write_key, keys.write_mac_key,
                                 keys.encrypt_then_mac, keys.write_seq, true) ==
               CbcInitStatus::kOk;
  }
  return read_.init_tls12(*suite, keys.read_key, keys.read_iv, keys.read_seq, false) &&
         write_.init_tls12(*suite, keys.write_key, keys.write_iv, keys.write_seq, true,
                           keys.has_write_explicit_nonce ? keys.write_explicit_nonce
                                                         : keys.write_seq);
}

void RecordLayer::wipe() {
  read_.wipe();
  write_.wipe();
  handshake_.clear();
  if (error_ == RecordError::kNone) error_ = RecordError::kInternalError;
}

ReadResult RecordLayer::fail(RecordError error, AlertDescription alert) {
  error_ = error;
  alert_to_send_ = alert;
  handshake_.clear();
  return ReadResult{ReadOutcome::kError, 0, 0};
}

ReadResult RecordLayer::read_record(const uint8_t* in, size_t length, uint8_t* out,
                                    size_t out_capacity) {
  if (error_ != RecordError::kNone) return ReadResult{ReadOutcome::kError, 0, 0};
  if (length < kRecordHeaderLength) return ReadResult{ReadOutcome::kNeedMore, 0, 0};

  // The header alone is enough to reject a record; do so before waiting for its body.
  const uint8_t outer_type = in[0];
  const uint16_t record_version = static_cast<uint16_t>((in[1] << 8) | in[2]);
  const size_t body_length = (size_t{in[3]} << 8) | in[4];
  if (record_version != kRecordVersion) {
    return fail(RecordError::kBadRecordVersion, AlertDescription::kProtocolVersion);
  }
  // RFC 8446 5.2: "The length MUST NOT exceed 2^14 + 256 bytes. An endpoint that receives a
  // record that exceeds this length MUST terminate the connection with a "record_overflow"
  // alert." RFC 5246 6.2.3 allows 2^14 + 2048 in TLS 1.2.
  const size_t max_body = is_tls13() ? kMaxTls13CiphertextLength : kMaxTls12CiphertextLength;
  if (body_length > max_body) {
    return fail(RecordError::kRecordOverflow, AlertDescription::kRecordOverflow);
  }
  // RFC 8446 5: "If a TLS implementation receives an unexpected record type, it MUST terminate
  // the connection with an "unexpected_message" alert." After the handshake every TLS 1.3
  // record is application_data outside (a change_cipher_spec is only tolerated before the
  // peer's Finished); TLS 1.2 has no change_cipher_spec after it without renegotiation.
  const bool type_allowed =
      is_tls13() ? outer_type == static_cast<uint8_t>(ContentType::kApplicationData)
                 : (outer_type == static_cast<uint8_t>(ContentType::kAlert) ||
                    outer_type == static_cast<uint8_t>(ContentType::kHandshake) ||
                    outer_type == static_cast<uint8_t>(ContentType::kApplicationData));
  if (!type_allowed) {
    return fail(RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage);
  }
  if (length - kRecordHeaderLength < body_length) {
    return ReadResult{ReadOutcome::kNeedMore, 0, 0};
  }
  if (out_capacity < body_length) {
    return fail(RecordError::kInternalError, AlertDescription::kInternalError);
  }

  OpenedRecord record{};
  switch (read_.open(in, in + kRecordHeaderLength, body_length, out, &record)) {
    case OpenStatus::kOk:
      break;
    case OpenStatus::kBadRecordMac:
      // RFC 8446 5.2: "If the decryption fails, the receiver MUST terminate the connection with
      // a "bad_record_mac" alert."
      return fail(RecordError::kBadRecordMac, AlertDescription::kBadRecordMac);
    case OpenStatus::kRecordOverflow:
      return fail(RecordError::kRecordOverflow, AlertDescription::kRecordOverflow);
    case OpenStatus::kNoContentType:
      return fail(RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage);
    case OpenStatus::kSequenceExhausted:
      return fail(RecordError::kSequenceExhausted, AlertDescription::kInternalError);
    case OpenStatus::kInternalError:
      return fail(RecordError::kInternalError, AlertDescription::kInternalError);
  }
  stats_.records_in++;
  const size_t consumed = kRecordHeaderLength + body_length;

  // RFC 8446 5.1: "Handshake messages MUST NOT be interleaved with other record types."
  if (record.type != ContentType::kHandshake && !handshake_.empty()) {
    return fail(RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage);
  }
  switch (record.type) {
    case ContentType::kApplicationData:
      if (record.plaintext_length == 0) {
        if (++empty_records_in_a_row_ > kMaxEmptyRecordsInARow) {
          return fail(RecordError::kEmptyRecordFlood, AlertDescription::kUnexpectedMessage);
        }
        return ReadResult{ReadOutcome::kControl, consumed, 0};
      }
      empty_records_in_a_row_ = 0;
      key_updates_in_a_row_ = 0;
      warning_alerts_in_a_row_ = 0;
      return ReadResult{ReadOutcome::kApplicationData, consumed, record.plaintext_length};
    case ContentType::kAlert:
      return on_alert(out, record.plaintext_length, consumed);
    case ContentType::kHandshake:
      return on_handshake(out, record.plaintext_length, consumed);
    default:
      return fail(RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage);
  }
}

ReadResult RecordLayer::on_alert(const uint8_t* body, size_t length, size_t consumed) {
  // RFC 8446 5.1: "a record with an Alert type MUST contain exactly one message."
  if (length != 2) return fail(RecordError::kDecodeError, AlertDescription::kDecodeError);
  const uint8_t level = body[0];
  const uint8_t description = body[1];
  if (description == static_cast<uint8_t>(AlertDescription::kCloseNotify)) {
    return ReadResult{ReadOutcome::kCloseNotify, consumed, 0};
  }
  // RFC 8446 6: alerts other than closure alerts "MUST be treated as error alerts when
  // received regardless of the AlertLevel"; user_canceled is a closure alert. TLS 1.2 warning
  // alerts are not fatal (RFC 5246 7.2).
  const bool is_warning =
      is_tls13() ? description == static_cast<uint8_t>(AlertDescription::kUserCanceled)
                 : level == static_cast<uint8_t>(AlertLevel::kWarning);
  if (is_warning) {
    stats_.warning_alerts_in++;
    // Its own count: empty records (legal, up to kMaxEmptyRecordsInARow) must not make a
    // single warning look like a flood.
    if (++warning_alerts_in_a_row_ > kMaxWarningAlertsInARow) {
      return fail(RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage);
    }
    return ReadResult{ReadOutcome::kControl, consumed, 0};
  }
  if (!is_tls13() && level != static_cast<uint8_t>(AlertLevel::kFatal)) {
    return fail(RecordError::kIllegalParameter, AlertDescription::kIllegalParameter);
  }
  peer_alert_ = description;
  // A fatal alert ends the connection: no alert is sent back (RFC 8446 6.2).
  return fail(RecordError::kPeerAlert, AlertDescription::kNone);
}

ReadResult RecordLayer::on_handshake(const uint8_t* body, size_t length, size_t consumed) {
  // RFC 8446 5.1: "Implementations MUST NOT send zero-length fragments of Handshake types";
  // RFC 5246 6.2.1 says the same.
  if (length == 0) return fail(RecordError::kUnexpectedRecord, AlertDescription::kUnexpectedMessage);
  if (!handshake_.append(body, length)) {
    return fail(RecordError::kMessageTooLarge, AlertDescription::kIllegalParameter);
  }
  for (;;) {
    HandshakeMessage message{};
    const NextMessageStatus status = handshake_.next(&message);
    if (status == NextMessageStatus::kNeedMore) break;
    if (status == NextMessageStatus::kTooLarge) {
      return fail(RecordError::kMessageTooLarge, AlertDescription::kIllegalParameter);
    }
    const auto type = static_cast<HandshakeType>(message.type);
    if (is_tls13()) {
      if (type == HandshakeType::kNewSessionTicket && !is_server_) {
        if (!is_well_formed_ticket(message.body, message.body_length)) {
          return fail(RecordError::kDecodeError, AlertDescription::kDecodeError);
        }
        // Resumption needs the resumption secret, which native code never has: skip, count.
        stats_.tickets_in++;
        continue;
      }
      if (type == HandshakeType::kKeyUpdate) {
        // RFC 8446 4.6.3: enum { update_not_requested(0), update_requested(1) }.
        if (message.body_length != 1) {
          return fail(RecordError::kDecodeError, AlertDescription::kDecodeError);
        }
        const uint8_t request_update = message.body[0];
        if (request_update > 1) {
          return fail(RecordError::kIllegalParameter, AlertDescription::kIllegalParameter);
        }
        // RFC 8446 5.1: "Handshake messages MUST NOT span key changes. ... If they [do not
        // fall on a record boundary], the receiver MUST terminate the connection with an
        // "unexpected_message" alert." KeyUpdate is such a message.
        if (!handshake_.empty()) {
          return fail(RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage);
        }
        if (++key_updates_in_a_row_ > kMaxKeyUpdatesInARow) {
          return fail(RecordError::kKeyUpdateFlood, AlertDescription::kUnexpectedMessage);
        }
        if (!read_.update_traffic_secret()) {
          return fail(RecordError::kInternalError, AlertDescription::kInternalError);
        }
        stats_.key_updates_in++;
        // RFC 8446 4.6.3: "If the request_update field is set to "update_requested", then the
        // receiver MUST send a KeyUpdate of its own with request_update set to
        // "update_not_requested" prior to sending its next Application Data record."
        if (request_update == 1) pending_key_update_ = true;
        continue;
      }
      if (type == HandshakeType::kCertificateRequest && !is_server_) {
        // RFC 8446 4.6.2: "A client that receives a CertificateRequest message without having
        // sent the "post_handshake_auth" extension MUST send an "unexpected_message" fatal
        // alert." Node's client never sends it.
        return fail(RecordError::kPostHandshakeAuth, AlertDescription::kUnexpectedMessage);
      }
      return fail(RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage);
    }
    // TLS 1.2: the only handshake messages after the handshake start a renegotiation, which a
    // spliced session cannot follow. RFC 5746 4.2 / RFC 5246 7.2.2: refuse with a
    // no_renegotiation warning.
    const bool renegotiation = is_server_ ? type == HandshakeType::kClientHello
                                          : type == HandshakeType::kHelloRequest;
    if (!renegotiation) {
      return fail(RecordError::kUnexpectedMessage, AlertDescription::kUnexpectedMessage);
    }
    if (type == HandshakeType::kHelloRequest && message.body_length != 0) {
      return fail(RecordError::kDecodeError, AlertDescription::kDecodeError);
    }
    // Counted in a row, between data we send: each refusal is a warning alert to the peer, and a
    // peer counts warnings until it gets data from us (OpenSSL refuses a fifth): rather than
    // send one warning too many, the fifth request ends the splice. A session whose server asks
    // now and then while data flows is fine.
    stats_.renegotiations_refused++;
    if (++renegotiations_in_a_row_ > kMaxRenegotiationRefusals) {
      return fail(RecordError::kRenegotiation, AlertDescription::kUnexpectedMessage);
    }
    pending_no_renegotiation_ = true;
  }
  return ReadResult{ReadOutcome::kControl, consumed, 0};
}

size_t RecordLayer::max_sealed_length(size_t plaintext_length) const {
  return 2 * kMaxControlRecordLength + write_.sealed_length(plaintext_length);
}

size_t RecordLayer::seal_key_update(bool update_requested, uint8_t* out) {
  const uint8_t message[5] = {static_cast<uint8_t>(HandshakeType::kKeyUpdate), 0, 0, 1,
                              static_cast<uint8_t>(update_requested ? 1 : 0)};
  const size_t length = write_.seal(ContentType::kHandshake, message, sizeof(message), out);
  if (length == 0) {
    error_ = write_.seq() == UINT64_MAX ? RecordError::kSequenceExhausted
                                        : RecordError::kInternalError;
    return 0;
  }
  // RFC 8446 4.6.3: "the sender MUST send its KeyUpdate using the old keys", then switch.
  if (!write_.update_traffic_secret()) {
    error_ = RecordError::kInternalError;
    return 0;
  }
  stats_.records_out++;
  stats_.key_updates_out++;
  return length;
}

size_t RecordLayer::seal_pending_control(uint8_t* out, size_t capacity) {
  if (error_ != RecordError::kNone || capacity < 2 * kMaxControlRecordLength) return 0;
  size_t written = 0;
  if (pending_no_renegotiation_) {
    pending_no_renegotiation_ = false;
    const uint8_t alert[2] = {static_cast<uint8_t>(AlertLevel::kWarning),
                              static_cast<uint8_t>(AlertDescription::kNoRenegotiation)};
    const size_t length = write_.seal(ContentType::kAlert, alert, sizeof(alert), out);
    if (length == 0) {
      error_ = RecordError::kInternalError;
      return 0;
    }
    stats_.records_out++;
    written += length;
  }
  if (pending_key_update_) {
    pending_key_update_ = false;
    const size_t length = seal_key_update(false, out + written);
    if (length == 0) return 0;
    written += length;
  }
  return written;
}

size_t RecordLayer::seal_application_data(const uint8_t* plaintext, size_t length, uint8_t* out,
                                          size_t capacity) {
  if (error_ != RecordError::kNone) return 0;
  if (length > max_fragment_length_ || capacity < max_sealed_length(length)) {
    error_ = RecordError::kInternalError;
    return 0;
  }
  size_t written = 0;
  if (has_pending_control()) {
    written = seal_pending_control(out, capacity);
    if (written == 0) return 0;
  }
  // RFC 8446 5.5: rekey before the AEAD usage limit of the current key. RFC 8446 5.3: "If a
  // TLS implementation would need to wrap a sequence number, it MUST either rekey ... or
  // terminate the connection": rekey while the KeyUpdate record itself still has a sequence
  // number (ChaCha20's usage limit is the whole space, so it would otherwise never rekey).
  if (is_tls13() && (write_.seq() >= key_update_after_records_ ||
                     write_.seq() >= kLastSequenceForKeyUpdate)) {
    const size_t n = seal_key_update(false, out + written);
    if (n == 0) return 0;
    written += n;
  }
  const size_t n = write_.seal(ContentType::kApplicationData, plaintext, length, out + written);
  // A peer that only receives may legitimately ask for KeyUpdates as our data flows: the flood
  // rule is about KeyUpdates with no data either way. Renegotiation refusals (warnings to the
  // peer) count until our next data, as the peer counts them.
  key_updates_in_a_row_ = 0;
  renegotiations_in_a_row_ = 0;
  if (n == 0) {
    error_ = write_.seq() == UINT64_MAX ? RecordError::kSequenceExhausted
                                        : RecordError::kInternalError;
    return 0;
  }
  stats_.records_out++;
  return written + n;
}

size_t RecordLayer::seal_alert(AlertDescription description, uint8_t* out, size_t capacity) {
  if (capacity < kMaxControlRecordLength || write_.suite() == nullptr) return 0;
  const bool closure = description == AlertDescription::kCloseNotify ||
                       description == AlertDescription::kUserCanceled;
  const uint8_t alert[2] = {
      static_cast<uint8_t>(closure ? AlertLevel::kWarning : AlertLevel::kFatal),
      static_cast<uint8_t>(description)};
  const size_t length = write_.seal(ContentType::kAlert, alert, sizeof(alert), out);
  if (length) stats_.records_out++;
  return length;
}

}  // namespace tls_splice
