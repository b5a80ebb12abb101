// The record layer of a spliced session: both directions of an established TLS 1.2 or 1.3
// connection after handover. Reads whole records out of a ciphertext buffer and says what each
// meant; seals application data and the control records the protocol owes the peer (KeyUpdate
// answers, refusals, close_notify, fatal alerts). No I/O: the pump moves the bytes.
//
// After read_record() returns kError, or a seal function returns 0, the layer is dead: the
// caller sends alert_to_send() if it is not kNone (seal_alert still works for that) and ends the
// connection.
#ifndef TLS_SPLICE_RECORD_LAYER_H_
#define TLS_SPLICE_RECORD_LAYER_H_

#include <cstddef>
#include <cstdint>

#include "cipher_suite.h"
#include "post_handshake.h"
#include "record_protection.h"
#include "tls_constants.h"

namespace tls_splice {

// What capture hands to native code. Secrets are wiped by the caller after init().
struct SessionKeys {
  TlsVersion version = TlsVersion::kTls13;
  uint16_t cipher_suite = 0;
  // TLS 1.3: the current application traffic secrets (hash_length bytes each).
  uint8_t read_secret[kMaxSecretLength] = {};
  uint8_t write_secret[kMaxSecretLength] = {};
  // TLS 1.2: write keys and fixed IVs (suite.key_length / suite.fixed_iv_length bytes).
  uint8_t read_key[kMaxKeyLength] = {};
  uint8_t read_iv[kAeadNonceLength] = {};
  uint8_t write_key[kMaxKeyLength] = {};
  uint8_t write_iv[kAeadNonceLength] = {};
  // TLS 1.2 AES-CBC: MAC keys (cbc_mac_length(suite.mac) bytes), and whether the ServerHello
  // carried encrypt_then_mac (RFC 7366).
  uint8_t read_mac_key[kMaxMacKeyLength] = {};
  uint8_t write_mac_key[kMaxMacKeyLength] = {};
  bool encrypt_then_mac = false;
  uint64_t read_seq = 0;
  uint64_t write_seq = 0;
  // TLS 1.2 AES-GCM: the explicit nonce of the next record we seal. OpenSSL starts it at a
  // random value and counts up, so after handover it is the last one Node sent + 1, not
  // write_seq (RFC 5288 3: "each value of the nonce_explicit MUST be distinct for each distinct
  // invocation of the GCM encrypt function for any fixed key"). Absent: write_seq.
  uint64_t write_explicit_nonce = 0;
  bool has_write_explicit_nonce = false;
  // RFC 6066 4: the largest plaintext per record we may send (512, 1024, 2048, 4096 or 2^14).
  size_t max_fragment_length = kMaxPlaintextLength;
  // TLS 1.3: send our own KeyUpdate after this many records under one key; 0 = the suite's
  // RFC 8446 5.5 limit, and a value above that limit is capped to it. Tests lower it to
  // exercise the path.
  uint64_t key_update_after_records = 0;
};

enum class RecordError : uint8_t {
  kNone = 0,
  kBadRecordMac,          // a record did not authenticate (or is too short to)
  kRecordOverflow,        // a length above what RFC 8446 5.2 / RFC 5246 6.2 allow
  kBadRecordVersion,      // legacy_record_version other than 0x0303
  kUnexpectedRecord,      // a record type not allowed after the handshake, or no inner type
  kUnexpectedMessage,     // a post-handshake message this session does not accept
  kRenegotiation,         // TLS 1.2 renegotiation (refused; counted, not fatal by itself)
  kPostHandshakeAuth,     // TLS 1.3 CertificateRequest after the handshake
  kDecodeError,           // a malformed alert or handshake message
  kIllegalParameter,      // a well-formed message with a forbidden value
  kEmptyRecordFlood,      // more than kMaxEmptyRecordsInARow empty records
  kKeyUpdateFlood,        // more than kMaxKeyUpdatesInARow KeyUpdates without data
  kMessageTooLarge,       // a post-handshake message over kMaxPostHandshakeMessageLength
  kSequenceExhausted,     // a sequence number would wrap
  kPeerAlert,             // the peer sent a fatal alert (peer_alert() says which)
  kInternalError,         // OpenSSL failed
};

// The stable error code ("ERR_TLS_SPLICE_BAD_RECORD_MAC") of an error; kPeerAlert is reported
// as "ERR_TLS_ALERT_" + the alert's name by the binding.
const char* record_error_code(RecordError error);

// RFC 8446 5.1: empty application records are legal, but a flood of them is a denial of service.
constexpr uint32_t kMaxEmptyRecordsInARow = 32;
// A peer may ask for KeyUpdates; one that sends them with no data moving either way is burning
// our CPU.
constexpr uint32_t kMaxKeyUpdatesInARow = 32;
// The largest record seal_pending_control() or seal_alert() writes (a KeyUpdate or an alert).
constexpr size_t kMaxControlRecordLength = kMaxSealOverhead + 8;
// The output room read_record() needs: a whole record body opened in place.
constexpr size_t kMaxOpenedLength = kMaxTls12CiphertextLength;

enum class ReadOutcome : uint8_t {
  kNeedMore,         // no whole record at the start of the input yet
  kApplicationData,  // `out` holds plaintext_length bytes of application data
  kControl,          // a record with nothing for the caller: ticket, KeyUpdate, empty record,
                     // warning alert. has_pending_control() may now be true.
  kCloseNotify,      // the peer closed its write side; RFC 8446 6.1: later data is ignored
  kError,            // see error(), alert_to_send()
};

struct ReadResult {
  ReadOutcome outcome;
  size_t consumed;          // input bytes used: one whole record, or 0
  size_t plaintext_length;  // kApplicationData only
};

struct RecordLayerStats {
  uint64_t records_in = 0;
  uint64_t records_out = 0;
  uint64_t key_updates_in = 0;
  uint64_t key_updates_out = 0;
  uint64_t tickets_in = 0;
  uint64_t warning_alerts_in = 0;
  uint64_t renegotiations_refused = 0;
};

class RecordLayer {
 public:
  // Returns false when the suite is not implemented natively (for a CBC suite: see
  // cbc_refusal()) or OpenSSL fails.
  bool init(const SessionKeys& keys, bool is_server);

  // Reads the record at the start of `in`. `out` must have kMaxOpenedLength bytes of room.
  ReadResult read_record(const uint8_t* in, size_t length, uint8_t* out, size_t out_capacity);

  RecordError error() const { return error_; }
  AlertDescription alert_to_send() const { return alert_to_send_; }
  uint8_t peer_alert() const { return peer_alert_; }

  // RFC 6066 4: the largest plaintext one sealed record may carry.
  size_t max_fragment_length() const { return max_fragment_length_; }
  // The bytes sealing `plaintext_length` bytes of data takes, control records it may need to
  // precede them with included.
  size_t max_sealed_length(size_t plaintext_length) const;

  // Control records owed to the peer (a KeyUpdate answer, a no_renegotiation warning).
  bool has_pending_control() const { return pending_key_update_ || pending_no_renegotiation_; }
  // Seals what is owed into `out` and returns the byte count (0 if nothing is owed, or on
  // error). `capacity` must be at least 2 * kMaxControlRecordLength.
  size_t seal_pending_control(uint8_t* out, size_t capacity);

  // Seals one application-data record of at most max_fragment_length() bytes, preceded by any
  // pending control record and by our own KeyUpdate when the key's usage limit is reached.
  // Returns the bytes written, or 0 on error (the caller checks error()).
  size_t seal_application_data(const uint8_t* plaintext, size_t length, uint8_t* out,
                               size_t capacity);

  // Seals an alert (close_notify, or a fatal alert after an error). Returns 0 if it cannot.
  size_t seal_alert(AlertDescription description, uint8_t* out, size_t capacity);

  // Wipes both directions' keys and any buffered handshake bytes (tickets). Dead afterwards.
  void wipe();

  bool is_tls13() const { return version_ == TlsVersion::kTls13; }
  // Records sealed under one key before our own KeyUpdate (TLS 1.3).
  uint64_t key_update_after_records() const { return key_update_after_records_; }
  uint64_t read_seq() const { return read_.seq(); }
  uint64_t write_seq() const { return write_.seq(); }
  const RecordLayerStats& stats() const { return stats_; }

 private:
  ReadResult fail(RecordError error, AlertDescription alert);
  ReadResult on_alert(const uint8_t* body, size_t length, size_t consumed);
  ReadResult on_handshake(const uint8_t* body, size_t length, size_t consumed);
  size_t seal_key_update(bool update_requested, uint8_t* out);

  TlsVersion version_ = TlsVersion::kTls13;
  bool is_server_ = false;
  RecordProtection read_;
  RecordProtection write_;
  HandshakeAssembler handshake_;
  size_t max_fragment_length_ = kMaxPlaintextLength;
  uint64_t key_update_after_records_ = 0;
  uint32_t empty_records_in_a_row_ = 0;
  uint32_t key_updates_in_a_row_ = 0;
  uint32_t warning_alerts_in_a_row_ = 0;
  uint32_t renegotiations_in_a_row_ = 0;  // since the last data we sealed
  bool pending_key_update_ = false;
  bool pending_no_renegotiation_ = false;
  RecordError error_ = RecordError::kNone;
  AlertDescription alert_to_send_ = AlertDescription::kNone;
  uint8_t peer_alert_ = 0;
  RecordLayerStats stats_;
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_RECORD_LAYER_H_
