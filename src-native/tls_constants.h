// Wire constants of TLS 1.2 (RFC 5246) and TLS 1.3 (RFC 8446) used by the record layer.
// Plain data: no OpenSSL, no libuv, no Node.
#ifndef TLS_SPLICE_TLS_CONSTANTS_H_
#define TLS_SPLICE_TLS_CONSTANTS_H_

#include <cstddef>
#include <cstdint>

namespace tls_splice {

enum class TlsVersion : uint16_t {
  kTls12 = 0x0303,
  kTls13 = 0x0304,
};

// The record header's legacy_record_version after the handshake, in both versions.
constexpr uint16_t kRecordVersion = 0x0303;

enum class ContentType : uint8_t {
  kChangeCipherSpec = 20,
  kAlert = 21,
  kHandshake = 22,
  kApplicationData = 23,
};

enum class HandshakeType : uint8_t {
  kHelloRequest = 0,
  kClientHello = 1,
  kServerHello = 2,
  kNewSessionTicket = 4,
  kEncryptedExtensions = 8,
  kCertificateRequest = 13,
  kFinished = 20,
  kKeyUpdate = 24,
};

enum class AlertLevel : uint8_t {
  kWarning = 1,
  kFatal = 2,
};

// RFC 8446 6 and RFC 5246 7.2. kNone means "no alert" in outcome structs.
enum class AlertDescription : uint8_t {
  kCloseNotify = 0,
  kUnexpectedMessage = 10,
  kBadRecordMac = 20,
  kRecordOverflow = 22,
  kHandshakeFailure = 40,
  kBadCertificate = 42,
  kUnsupportedCertificate = 43,
  kCertificateRevoked = 44,
  kCertificateExpired = 45,
  kCertificateUnknown = 46,
  kIllegalParameter = 47,
  kUnknownCa = 48,
  kAccessDenied = 49,
  kDecodeError = 50,
  kDecryptError = 51,
  kProtocolVersion = 70,
  kInsufficientSecurity = 71,
  kInternalError = 80,
  kInappropriateFallback = 86,
  kUserCanceled = 90,
  kNoRenegotiation = 100,
  kMissingExtension = 109,
  kUnsupportedExtension = 110,
  kUnrecognizedName = 112,
  kBadCertificateStatusResponse = 113,
  kUnknownPskIdentity = 115,
  kCertificateRequired = 116,
  kNoApplicationProtocol = 120,
  kNone = 255,
};

// The RFC's name of an alert ("bad_record_mac"), or "unknown_alert" for a value no RFC names.
const char* alert_name(uint8_t description);

// RFC 8446 5.1 / RFC 5246 6.2.1: the record header is type(1) version(2) length(2).
constexpr size_t kRecordHeaderLength = 5;
// RFC 8446 5.1: "The length MUST NOT exceed 2^14 bytes" (TLSPlaintext.fragment).
constexpr size_t kMaxPlaintextLength = 16384;
// RFC 8446 5.2: "The length MUST NOT exceed 2^14 + 256 bytes" (TLSCiphertext).
constexpr size_t kMaxTls13CiphertextLength = kMaxPlaintextLength + 256;
// RFC 5246 6.2.3: "The length MUST NOT exceed 2^14 + 2048."
constexpr size_t kMaxTls12CiphertextLength = kMaxPlaintextLength + 2048;
// The largest record either version can carry, header included: a buffer of this size always
// has room for one whole record.
constexpr size_t kMaxRecordLength = kRecordHeaderLength + kMaxTls12CiphertextLength;

constexpr size_t kAeadTagLength = 16;
// RFC 5288 3: GCM in TLS 1.2 carries an 8-byte explicit nonce before the ciphertext.
constexpr size_t kTls12GcmExplicitNonceLength = 8;
constexpr size_t kAeadNonceLength = 12;
constexpr size_t kMaxKeyLength = 32;
constexpr size_t kMaxSecretLength = 48;  // SHA-384
constexpr size_t kRandomLength = 32;
constexpr size_t kTls12MasterSecretLength = 48;
// TLS 1.2 CBC: an HMAC key is as long as its hash (RFC 5246 6.3), at most SHA-384's.
constexpr size_t kMaxMacKeyLength = 48;
// TLS 1.2 CBC (RFC 5246 6.2.3.2): an explicit IV block, then at most a 48-byte MAC and a
// whole block of padding.
constexpr size_t kMaxCbcSealOverhead = 16 + 48 + 16;

// The largest overhead a sealed record adds to its plaintext, header included
// (TLS 1.2 CBC: header + IV + MAC + padding; TLS 1.2 GCM: header + explicit nonce + tag;
// TLS 1.3: header + inner type + tag).
constexpr size_t kMaxSealOverhead = kRecordHeaderLength + kMaxCbcSealOverhead;
static_assert(kMaxCbcSealOverhead > kTls12GcmExplicitNonceLength + kAeadTagLength, "largest");

}  // namespace tls_splice

#endif  // TLS_SPLICE_TLS_CONSTANTS_H_
