// Fuzz target: TLS 1.2 CBC record open (src-native/cbc.h), MAC-then-encrypt through OpenSSL's
// stitched ciphers and encrypt-then-MAC, AES-128/256 with SHA-1/256 (and SHA-384 with ETM).
//
// Input: byte 0 the parameters (mod 10), bytes 1-2 an offset and byte 3 an XOR value for one
// byte of a sealed record, byte 4 a length change (signed, in bytes), the rest a payload.
//   1. The payload opened as a record body as is must fail: nobody can forge the MAC without
//      the key.
//   2. The payload (up to 2^14 bytes) sealed with the fixed keys opens to itself.
//   3. That record with the byte changed (XOR not 0) or its length changed must fail, and
//      nothing the opener wrote is used.
// The opener writes into an exactly sized buffer, so ASan sees any write past the record.
#include <cstring>
#include <vector>

#include "../../src-native/cbc.h"
#include "fuzz_common.h"

using namespace tls_splice;

namespace {

const CbcParams kParams[10] = {
    {CbcCipher::kAes128, CbcMac::kSha1, false},   {CbcCipher::kAes256, CbcMac::kSha1, false},
    {CbcCipher::kAes128, CbcMac::kSha256, false}, {CbcCipher::kAes256, CbcMac::kSha256, false},
    {CbcCipher::kAes128, CbcMac::kSha1, true},    {CbcCipher::kAes256, CbcMac::kSha1, true},
    {CbcCipher::kAes128, CbcMac::kSha256, true},  {CbcCipher::kAes256, CbcMac::kSha256, true},
    {CbcCipher::kAes128, CbcMac::kSha384, true},  {CbcCipher::kAes256, CbcMac::kSha384, true},
};

bool open_exact(CbcProtection& opener, uint64_t seq, const std::vector<uint8_t>& body,
                std::vector<uint8_t>* plain) {
  std::vector<uint8_t> out(body.size());
  size_t n = 0;
  const bool ok = opener.open(seq, ContentType::kApplicationData, body.data(), body.size(),
                              out.data(), &n);
  if (ok) {
    FUZZ_INVARIANT(n <= body.size());
    out.resize(n);
    *plain = out;
  }
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const CbcParams& params = kParams[data[0] % 10];
  const size_t offset = static_cast<size_t>(data[1]) << 8 | data[2];
  const uint8_t flip = data[3];
  const int resize = static_cast<int8_t>(data[4]);
  const std::vector<uint8_t> payload(data + 5, data + size);

  uint8_t enc_key[32], mac_key[48];
  for (size_t i = 0; i < sizeof(enc_key); i++) enc_key[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t i = 0; i < sizeof(mac_key); i++) mac_key[i] = static_cast<uint8_t>(i * 13 + 2);
  CbcProtection opener, sealer;
  if (opener.init(params, enc_key, mac_key, false) != CbcInitStatus::kOk ||
      sealer.init(params, enc_key, mac_key, true) != CbcInitStatus::kOk) {
    return 0;  // no stitched cipher on this CPU: nothing to fuzz
  }
  const uint64_t seq = offset * 0x9E3779B97F4A7C15ull;
  std::vector<uint8_t> plain;
  FUZZ_INVARIANT(!open_exact(opener, seq, payload, &plain));

  if (payload.size() > kMaxPlaintextLength) return 0;
  std::vector<uint8_t> record(sealer.sealed_body_length(payload.size()));
  const size_t n = sealer.seal(seq, ContentType::kApplicationData, payload.data(),
                               payload.size(), record.data());
  FUZZ_INVARIANT(n == record.size());
  FUZZ_INVARIANT(open_exact(opener, seq, record, &plain) && plain == payload);
  FUZZ_INVARIANT(!open_exact(opener, seq + 1, record, &plain));

  std::vector<uint8_t> bad = record;
  if (flip != 0) {
    bad[offset % bad.size()] ^= flip;
    FUZZ_INVARIANT(!open_exact(opener, seq, bad, &plain));
  }
  if (resize != 0) {
    bad = record;
    bad.resize(static_cast<size_t>(static_cast<long>(bad.size()) + resize < 0
                                       ? 0
                                       : static_cast<long>(bad.size()) + resize),
               flip);
    FUZZ_INVARIANT(!open_exact(opener, seq, bad, &plain));
  }
  return 0;
}
