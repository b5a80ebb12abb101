// TLS 1.2 CBC record protection (src-native/cbc.h): two known answers made with the openssl CLI,
// then a reference built here from plain
// AES-CBC and one-shot HMAC, written from RFC 5246 6.2.3.2 (MAC-then-encrypt) and RFC 7366 3
// (encrypt-then-MAC), not from the code under test (which uses OpenSSL's stitched ciphers for
// MAC-then-encrypt):
//   - records the reference seals (every padding length the RFC allows, up to 255) open to the
//     same plaintext; records cbc.cc seals open with the reference, with minimal padding and a
//     fresh explicit IV each time;
//   - tampering: a flipped bit in the IV, the first block, the padding, the MAC; a wrong padding
//     byte under a right MAC; a padding length longer than the record; a wrong MAC key, sequence
//     number or type; lengths that are not whole blocks or too short: every one fails, the same
//     way;
//   - SHA-384 with MAC-then-encrypt has no stitched cipher: init() refuses with
//     kNoConstantTimeCipher.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "../../src-native/cbc.h"
#include "test_util.h"

using namespace tls_splice;
using test::Bytes;

namespace {

const EVP_MD* md_for(CbcMac mac) {
  switch (mac) {
    case CbcMac::kSha1: return EVP_sha1();
    case CbcMac::kSha256: return EVP_sha256();
    case CbcMac::kSha384: return EVP_sha384();
  }
  return nullptr;
}

Bytes aad(uint64_t seq, uint8_t type, size_t length) {
  Bytes out(13);
  for (int i = 7; i >= 0; i--, seq >>= 8) out[i] = static_cast<uint8_t>(seq);
  out[8] = type;
  out[9] = 3;
  out[10] = 3;
  out[11] = static_cast<uint8_t>(length >> 8);
  out[12] = static_cast<uint8_t>(length);
  return out;
}

Bytes hmac(CbcMac mac, const Bytes& key, const Bytes& header, const uint8_t* data, size_t n) {
  Bytes input = header;
  input.insert(input.end(), data, data + n);
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(md_for(mac), key.data(), static_cast<int>(key.size()), input.data(), input.size(),
       out.data(), &len);
  out.resize(len);
  return out;
}

Bytes aes_cbc(CbcCipher cipher, const Bytes& key, const uint8_t* iv, const Bytes& in, bool enc) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_CipherInit_ex(ctx, cipher == CbcCipher::kAes128 ? EVP_aes_128_cbc() : EVP_aes_256_cbc(),
                    nullptr, key.data(), iv, enc ? 1 : 0);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  Bytes out(in.size());
  int n = 0;
  EVP_CipherUpdate(ctx, out.data(), &n, in.data(), static_cast<int>(in.size()));
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

struct Tamper {
  bool bad_pad_byte = false;  // one padding byte differs from the length (MAC still right)
  bool pad_too_long = false;  // padding_length byte larger than the record
};

// RFC 5246 6.2.3.2 / RFC 7366 3 with `pad` padding bytes (plus the padding_length byte).
Bytes ref_seal(const CbcParams& p, const Bytes& enc_key, const Bytes& mac_key, uint64_t seq,
               uint8_t type, const Bytes& data, size_t pad, const Bytes& iv, Tamper t = {}) {
  Bytes plain = data;
  if (!p.encrypt_then_mac) {
    const Bytes m = hmac(p.mac, mac_key, aad(seq, type, data.size()), data.data(), data.size());
    plain.insert(plain.end(), m.begin(), m.end());
  }
  for (size_t i = 0; i <= pad; i++) plain.push_back(static_cast<uint8_t>(pad));
  if (t.bad_pad_byte && pad > 0) plain[plain.size() - 2] ^= 1;
  if (t.pad_too_long) plain.back() = 255;
  Bytes body = iv;
  const Bytes c = aes_cbc(p.cipher, enc_key, iv.data(), plain, true);
  body.insert(body.end(), c.begin(), c.end());
  if (p.encrypt_then_mac) {
    const Bytes m = hmac(p.mac, mac_key, aad(seq, type, body.size()), body.data(), body.size());
    body.insert(body.end(), m.begin(), m.end());
  }
  return body;
}

// Returns true and the plaintext when the record is right in every respect.
bool ref_open(const CbcParams& p, const Bytes& enc_key, const Bytes& mac_key, uint64_t seq,
              uint8_t type, const Bytes& body, Bytes* data) {
  const size_t mac_len = cbc_mac_length(p.mac);
  Bytes enc(body.begin(), body.end() - (p.encrypt_then_mac ? mac_len : 0));
  if (p.encrypt_then_mac) {
    const Bytes m = hmac(p.mac, mac_key, aad(seq, type, enc.size()), enc.data(), enc.size());
    if (!std::equal(m.begin(), m.end(), body.end() - mac_len)) return false;
  }
  if (enc.size() < 32 || enc.size() % 16) return false;
  Bytes plain = aes_cbc(p.cipher, enc_key, enc.data(), Bytes(enc.begin() + 16, enc.end()), false);
  const size_t pad = plain.back();
  if (pad + 1 > plain.size()) return false;
  for (size_t i = plain.size() - pad - 1; i < plain.size(); i++) {
    if (plain[i] != pad) return false;
  }
  plain.resize(plain.size() - pad - 1);
  if (!p.encrypt_then_mac) {
    if (plain.size() < mac_len) return false;
    Bytes got(plain.end() - mac_len, plain.end());
    plain.resize(plain.size() - mac_len);
    if (hmac(p.mac, mac_key, aad(seq, type, plain.size()), plain.data(), plain.size()) != got) {
      return false;
    }
  }
  *data = plain;
  return true;
}

std::string name_of(const CbcParams& p) {
  std::string s = p.cipher == CbcCipher::kAes128 ? "AES-128" : "AES-256";
  s += p.mac == CbcMac::kSha1 ? "/SHA1" : p.mac == CbcMac::kSha256 ? "/SHA256" : "/SHA384";
  s += p.encrypt_then_mac ? "/ETM" : "/MtE";
  return s;
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>(seed + i * 31 + (i >> 8));
  return b;
}

// Opens with a fresh CbcProtection; true when it accepted, the plaintext in *data.
bool open_with(const CbcParams& p, const Bytes& enc_key, const Bytes& mac_key, uint64_t seq,
               uint8_t type, const Bytes& body, Bytes* data) {
  CbcProtection opener;
  if (opener.init(p, enc_key.data(), mac_key.data(), false) != CbcInitStatus::kOk) return false;
  Bytes out(body.size() + 1);
  size_t n = 0;
  if (!opener.open(seq, static_cast<ContentType>(type), body.data(), body.size(), out.data(), &n)) {
    return false;
  }
  out.resize(n);
  *data = out;
  return true;
}

void test_suite(const CbcParams& p) {
  test::begin_case(name_of(p));
  const Bytes enc_key = pattern(cbc_key_length(p.cipher), 1);
  const Bytes mac_key = pattern(cbc_mac_length(p.mac), 2);
  const Bytes other_mac_key = pattern(cbc_mac_length(p.mac), 3);
  const uint8_t kApp = 23;
  const uint64_t seq = 0x0102030405060708ull;

  // The reference's records, every allowed padding length, open to the same plaintext.
  for (size_t len : {0, 1, 15, 16, 17, 100, 1000, 16384}) {
    const Bytes data = pattern(len, static_cast<uint8_t>(len));
    const size_t mac_part = p.encrypt_then_mac ? 0 : cbc_mac_length(p.mac);
    const size_t min_pad = 15 - (len + mac_part) % 16;
    for (size_t pad = min_pad; pad <= 255; pad += 16) {
      const Bytes body = ref_seal(p, enc_key, mac_key, seq, kApp, data, pad, pattern(16, 9));
      Bytes got;
      CHECK(open_with(p, enc_key, mac_key, seq, kApp, body, &got));
      CHECK(got == data);
    }
  }

  // Records sealed here open with the reference, minimal padding, a fresh IV each time.
  CbcProtection sealer;
  REQUIRE(sealer.init(p, enc_key.data(), mac_key.data(), true) == CbcInitStatus::kOk);
  Bytes previous_iv;
  for (size_t len : {0, 1, 15, 16, 31, 32, 33, 1000, 16383, 16384}) {
    const Bytes data = pattern(len, 7);
    Bytes body(sealer.sealed_body_length(len));
    const size_t n = sealer.seal(seq + len, static_cast<ContentType>(kApp), data.data(), len,
                                 body.data());
    CHECK_EQ(n, body.size());
    Bytes got;
    CHECK(ref_open(p, enc_key, mac_key, seq + len, kApp, body, &got));
    CHECK(got == data);
    CHECK(open_with(p, enc_key, mac_key, seq + len, kApp, body, &got));
    CHECK(got == data);
    const Bytes iv(body.begin(), body.begin() + 16);
    CHECK(iv != previous_iv);
    previous_iv = iv;
  }
  CHECK_EQ(sealer.seal(seq, static_cast<ContentType>(kApp), enc_key.data(), 16385, nullptr), 0u);

  // Tampering: every change fails, the same way.
  const Bytes data = pattern(300, 5);
  const size_t mac_part = p.encrypt_then_mac ? 0 : cbc_mac_length(p.mac);
  const size_t pad = 15 - (300 + mac_part) % 16 + 32;  // several padding blocks
  const Bytes good = ref_seal(p, enc_key, mac_key, seq, kApp, data, pad, pattern(16, 4));
  Bytes got;
  REQUIRE(open_with(p, enc_key, mac_key, seq, kApp, good, &got));
  const size_t mac_len = cbc_mac_length(p.mac);
  const size_t enc_end = good.size() - (p.encrypt_then_mac ? mac_len : 0);
  // Byte offsets: IV, first block, the block before last (flips the last block's plaintext:
  // padding), last ciphertext byte, and (ETM) the MAC.
  std::vector<size_t> flips = {0, 15, 16, 20, enc_end - 17, enc_end - 1};
  if (p.encrypt_then_mac) {
    flips.push_back(enc_end);
    flips.push_back(good.size() - 1);
  }
  for (size_t at : flips) {
    for (int bit : {0, 7}) {
      Bytes bad = good;
      bad[at] ^= static_cast<uint8_t>(1 << bit);
      CHECK(!open_with(p, enc_key, mac_key, seq, kApp, bad, &got));
    }
  }
  CHECK(!open_with(p, enc_key, mac_key, seq + 1, kApp, good, &got));
  CHECK(!open_with(p, enc_key, mac_key, seq, 22, good, &got));
  CHECK(!open_with(p, enc_key, other_mac_key, seq, kApp, good, &got));
  CHECK(!open_with(p, enc_key, mac_key, seq, kApp,
                   ref_seal(p, enc_key, mac_key, seq, kApp, data, pad, pattern(16, 4),
                            {true, false}), &got));
  CHECK(!open_with(p, enc_key, mac_key, seq, kApp,
                   ref_seal(p, enc_key, mac_key, seq, kApp, pattern(1, 1),
                            15 - (1 + mac_part) % 16, pattern(16, 4), {false, true}), &got));
  CHECK(!open_with(p, enc_key, mac_key, seq, kApp,
                   ref_seal(p, other_mac_key, mac_key, seq, kApp, data, pad, pattern(16, 4)),
                   &got));
  // Lengths: one byte short or long, a block short, only an IV, nothing.
  for (size_t len : {good.size() - 1, good.size() + 1, good.size() - 16, size_t{16}, size_t{0}}) {
    Bytes bad = good;
    bad.resize(len);
    CHECK(!open_with(p, enc_key, mac_key, seq, kApp, bad, &got));
  }
  // Longer than RFC 5246 allows a TLSCiphertext fragment (2^14 + 2048).
  Bytes huge(16384 + 2048 + 16 + 16, 0);
  CHECK(!open_with(p, enc_key, mac_key, seq, kApp, huge, &got));
}

void test_no_sha384_mte() {
  test::begin_case("SHA-384 MtE refused");
  const Bytes enc_key = pattern(32, 1);
  const Bytes mac_key = pattern(48, 2);
  CbcProtection c;
  CHECK(c.init({CbcCipher::kAes256, CbcMac::kSha384, false}, enc_key.data(), mac_key.data(),
               false) == CbcInitStatus::kNoConstantTimeCipher);
  Bytes out(64);
  size_t n = 0;
  CHECK(!c.open(0, ContentType::kApplicationData, out.data(), 48, out.data() + 8, &n));
}

// Known answers made with the openssl CLI alone (HMAC with `openssl dgst -mac HMAC`, then
// `openssl enc -nopad` with the IV given), for "hello, cbc" as application data:
//   MtE, AES-128, HMAC-SHA1, seq 1: MAC over 0000000000000001 17 0303 000a || data, then
//     data || MAC || 01 01 encrypted under IV a0..af.
//   ETM, AES-256, HMAC-SHA256, seq 2: data || 05 x6 encrypted under IV a0..af, then the MAC over
//     0000000000000002 17 0303 0020 || IV || ciphertext.
void test_known_answers() {
  test::begin_case("known answers");
  const Bytes hello = {'h', 'e', 'l', 'l', 'o', ',', ' ', 'c', 'b', 'c'};
  Bytes got;
  CHECK(open_with({CbcCipher::kAes128, CbcMac::kSha1, false},
                  test::hex("000102030405060708090a0b0c0d0e0f"),
                  test::hex("101112131415161718191a1b1c1d1e1f20212223"), 1, 23,
                  test::hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf9a03ba64c10036ce67960d77c2152083"
                            "d5e3dc0a9ebe22fd025c28293f02a559"),
                  &got));
  CHECK(got == hello);
  got.clear();
  CHECK(open_with({CbcCipher::kAes256, CbcMac::kSha256, true},
                  test::hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
                  test::hex("303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f"),
                  2, 23,
                  test::hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf3f005a9e95d8ff1f7502ca4882d030b3"
                            "7a6eca6c3b29e774af1256f6e4ca6eaae195927030371658f31b17c3c4920ee8"),
                  &got));
  CHECK(got == hello);
}

}  // namespace

int main() {
  test_known_answers();
  for (CbcCipher cipher : {CbcCipher::kAes128, CbcCipher::kAes256}) {
    for (CbcMac mac : {CbcMac::kSha1, CbcMac::kSha256, CbcMac::kSha384}) {
      for (bool etm : {false, true}) {
        if (mac == CbcMac::kSha384 && !etm) continue;
        test_suite({cipher, mac, etm});
      }
    }
  }
  test_no_sha384_mte();
  return test::finish("test_cbc");
}
