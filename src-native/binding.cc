// The N-API binding: turns the native core into JS functions and objects. Checks the shape of
// its arguments (lib/ has already checked their meaning) and converts; no policy lives here.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "binding_errors.h"
#include "cipher_suite.h"
#include "key_schedule.h"
#include "record_protection.h"
#include "socket_platform.h"
#include "fd_poller_binding.h"
#include "splice_binding.h"
#include "tun.h"

namespace tls_splice {
namespace {

bool get_version(const Napi::Value& value, TlsVersion* out) {
  if (!value.IsNumber()) return false;
  const uint32_t v = value.As<Napi::Number>().Uint32Value();
  if (v != static_cast<uint32_t>(TlsVersion::kTls12) &&
      v != static_cast<uint32_t>(TlsVersion::kTls13)) {
    return false;
  }
  *out = static_cast<TlsVersion>(v);
  return true;
}

const CipherSuite* get_suite(const Napi::Value& version, const Napi::Value& id) {
  TlsVersion v;
  if (!get_version(version, &v) || !id.IsNumber()) return nullptr;
  const uint32_t suite_id = id.As<Napi::Number>().Uint32Value();
  if (suite_id > 0xffff) return nullptr;
  return find_cipher_suite(v, static_cast<uint16_t>(suite_id));
}

bool get_bytes(const Napi::Value& value, size_t length, const uint8_t** out) {
  if (!value.IsBuffer()) return false;
  Napi::Buffer<uint8_t> buffer = value.As<Napi::Buffer<uint8_t>>();
  if (buffer.Length() != length) return false;
  *out = buffer.Data();
  return true;
}

Napi::Buffer<uint8_t> copy_buffer(Napi::Env env, const uint8_t* data, size_t length) {
  return Napi::Buffer<uint8_t>::Copy(env, data, length);
}

Napi::Value IsNativeSuite(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), get_suite(info[0], info[1]) != nullptr);
}

// cbcRefusal(version, cipherSuite, encryptThenMac): why a session of this suite cannot be
// spliced natively here (cipher_suite.h cbc_refusal()), or null when it can.
Napi::Value CbcRefusal(const Napi::CallbackInfo& info) {
  const CipherSuite* suite = get_suite(info[0], info[1]);
  const char* refusal =
      suite == nullptr ? nullptr : cbc_refusal(*suite, info[2].ToBoolean().Value());
  if (refusal == nullptr) return info.Env().Null();
  return Napi::String::New(info.Env(), refusal);
}

Napi::Value CipherSuiteName(const Napi::CallbackInfo& info) {
  const CipherSuite* suite = get_suite(info[0], info[1]);
  if (suite == nullptr) return info.Env().Undefined();
  return Napi::String::New(info.Env(), suite->name);
}

Napi::Value DeriveTls13Keys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CipherSuite* suite =
      get_suite(Napi::Number::New(env, static_cast<double>(TlsVersion::kTls13)), info[0]);
  const uint8_t* secret = nullptr;
  if (suite == nullptr || !get_bytes(info[1], hash_length(suite->hash), &secret)) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG",
                       "deriveTls13Keys(cipherSuite, secret): unknown suite or bad secret length");
  }
  uint8_t key[kMaxKeyLength];
  uint8_t iv[kAeadNonceLength];
  if (!derive_tls13_traffic_keys(*suite, secret, key, iv)) {
    return throw_coded(env, "ERR_TLS_SPLICE_INTERNAL", "HKDF-Expand-Label failed in OpenSSL");
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("key", copy_buffer(env, key, suite->key_length));
  result.Set("iv", copy_buffer(env, iv, kAeadNonceLength));
  wipe(key, sizeof(key));
  wipe(iv, sizeof(iv));
  return result;
}

Napi::Value DeriveTls12KeyBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CipherSuite* suite =
      get_suite(Napi::Number::New(env, static_cast<double>(TlsVersion::kTls12)), info[0]);
  const uint8_t* master = nullptr;
  const uint8_t* client_random = nullptr;
  const uint8_t* server_random = nullptr;
  if (suite == nullptr || !get_bytes(info[1], kTls12MasterSecretLength, &master) ||
      !get_bytes(info[2], kRandomLength, &client_random) ||
      !get_bytes(info[3], kRandomLength, &server_random)) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG",
                       "deriveTls12KeyBlock(cipherSuite, masterSecret, clientRandom, "
                       "serverRandom): unknown suite or bad lengths");
  }
  Tls12KeyBlock block;
  if (!derive_tls12_key_block(*suite, master, client_random, server_random, &block)) {
    return throw_coded(env, "ERR_TLS_SPLICE_INTERNAL", "TLS 1.2 PRF failed in OpenSSL");
  }
  Napi::Object result = Napi::Object::New(env);
  const size_t mac = suite->cbc ? cbc_mac_length(suite->mac) : 0;
  result.Set("clientMacKey", copy_buffer(env, block.client_write_mac_key, mac));
  result.Set("serverMacKey", copy_buffer(env, block.server_write_mac_key, mac));
  result.Set("clientKey", copy_buffer(env, block.client_write_key, suite->key_length));
  result.Set("clientIv", copy_buffer(env, block.client_write_iv, suite->fixed_iv_length));
  result.Set("serverKey", copy_buffer(env, block.server_write_key, suite->key_length));
  result.Set("serverIv", copy_buffer(env, block.server_write_iv, suite->fixed_iv_length));
  wipe(&block, sizeof(block));
  return result;
}

bool get_u64(const Napi::Value& value, uint64_t* out) {
  if (value.IsBigInt()) {
    bool lossless = false;
    *out = value.As<Napi::BigInt>().Uint64Value(&lossless);
    return lossless;
  }
  if (value.IsNumber()) {
    const double d = value.As<Napi::Number>().DoubleValue();
    if (d < 0 || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      return false;
    *out = static_cast<uint64_t>(d);
    return true;
  }
  return false;
}

// The keys of one direction from params { version, cipherSuite, secret } (TLS 1.3),
// { version, cipherSuite, key, iv } (TLS 1.2 AEAD) or { version, cipherSuite, key, macKey,
// encryptThenMac } (TLS 1.2 CBC), at sequence `seq`, for opening. Throws (returns
// false with a pending exception) on a bad shape.
bool init_opening(Napi::Env env, const char* what, const Napi::Object& params, uint64_t seq,
                  RecordProtection* out_protection) {
  const CipherSuite* suite = get_suite(params.Get("version"), params.Get("cipherSuite"));
  bool ok = false;
  if (suite != nullptr && suite->version == TlsVersion::kTls13) {
    const uint8_t* secret = nullptr;
    ok = get_bytes(params.Get("secret"), hash_length(suite->hash), &secret) &&
         out_protection->init_tls13(*suite, secret, seq, false);
  } else if (suite != nullptr && suite->cbc) {
    const uint8_t* key = nullptr;
    const uint8_t* mac_key = nullptr;
    ok = get_bytes(params.Get("key"), suite->key_length, &key) &&
         get_bytes(params.Get("macKey"), cbc_mac_length(suite->mac), &mac_key) &&
         out_protection->init_tls12_cbc(*suite, key, mac_key,
                                        params.Get("encryptThenMac").ToBoolean().Value(), seq,
                                        false) == CbcInitStatus::kOk;
  } else if (suite != nullptr) {
    const uint8_t* key = nullptr;
    const uint8_t* iv = nullptr;
    ok = get_bytes(params.Get("key"), suite->key_length, &key) &&
         get_bytes(params.Get("iv"), suite->fixed_iv_length, &iv) &&
         out_protection->init_tls12(*suite, key, iv, seq, false);
  }
  if (!ok) {
    throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG",
                (std::string(what) + ": bad version, cipherSuite, secret, key, iv or macKey")
                    .c_str());
  }
  return ok;
}

// Opens one whole record (header included) at the protection's current sequence number:
// { type, plaintext }, or null when it is not one record or does not authenticate.
Napi::Value open_one(Napi::Env env, RecordProtection* protection, const Napi::Value& record_value) {
  Napi::Buffer<uint8_t> record = record_value.As<Napi::Buffer<uint8_t>>();
  const uint8_t* data = record.Data();
  const size_t length = record.Length();
  if (length < kRecordHeaderLength) return env.Null();
  const size_t body_length = (size_t{data[3]} << 8) | data[4];
  if (length != kRecordHeaderLength + body_length) return env.Null();
  std::string out(body_length, '\0');
  OpenedRecord opened{};
  const OpenStatus status = protection->open(data, data + kRecordHeaderLength, body_length,
                                             reinterpret_cast<uint8_t*>(out.data()), &opened);
  if (status != OpenStatus::kOk) {
    wipe(out.data(), out.size());
    return env.Null();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("type", Napi::Number::New(env, static_cast<uint8_t>(opened.type)));
  result.Set("plaintext", copy_buffer(env, reinterpret_cast<const uint8_t*>(out.data()),
                                      opened.plaintext_length));
  wipe(out.data(), out.size());
  return result;
}

Napi::Value OpenRecord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "openRecord(params): params object");
  }
  Napi::Object params = info[0].As<Napi::Object>();
  uint64_t seq = 0;
  Napi::Value record_value = params.Get("record");
  if (!get_u64(params.Get("seq"), &seq) || !record_value.IsBuffer()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "openRecord(params): bad seq or record");
  }
  RecordProtection protection;
  if (!init_opening(env, "openRecord(params)", params, seq, &protection)) return env.Undefined();
  return open_one(env, &protection, record_value);
}

// `new RecordOpener(params)`: the keys of one direction ({ version, cipherSuite, secret } or
// { version, cipherSuite, key, iv }), derived once, for trial decryption of many records at
// capture; open(seq, record) is openRecord() without the key derivation. wipe() erases the keys
// (so does the garbage collector); open() after wipe() throws.
class RecordOpenerWrap : public Napi::ObjectWrap<RecordOpenerWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "RecordOpener",
                       {InstanceMethod<&RecordOpenerWrap::open>("open"),
                        InstanceMethod<&RecordOpenerWrap::wipe_keys>("wipe")});
  }

  explicit RecordOpenerWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<RecordOpenerWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "new RecordOpener(params): params object");
      return;
    }
    ready_ = init_opening(env, "new RecordOpener(params)", info[0].As<Napi::Object>(), 0,
                          &protection_);
  }

 private:
  Napi::Value open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t seq = 0;
    if (!ready_) {
      return throw_coded(env, "ERR_TLS_SPLICE_INVALID_STATE", "RecordOpener: the keys were wiped");
    }
    if (!get_u64(info[0], &seq) || !info[1].IsBuffer()) {
      return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "RecordOpener.open(seq, record)");
    }
    protection_.set_seq(seq);
    return open_one(env, &protection_, info[1]);
  }

  Napi::Value wipe_keys(const Napi::CallbackInfo& info) {
    protection_.wipe();
    ready_ = false;
    return info.Env().Undefined();
  }

  RecordProtection protection_;  // its destructor wipes the keys
  bool ready_ = false;
};

Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "dupFd(fd): fd must be a number");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return throw_uv(env, -errno, "dup");
  return Napi::Number::New(env, copy);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "closeFd(fd): fd must be a number");
  }
  if (close(info[0].As<Napi::Number>().Int32Value()) != 0 && errno != EINTR) {
    return throw_uv(env, -errno, "close");
  }
  return env.Undefined();
}

// Internal, for tests: what the splice left behind on an fd. getFdFlags(fd) is fcntl(F_GETFL)
// (O_NONBLOCK restored?); getSocketOption(fd, name) reads "TCP_NODELAY", "SO_KEEPALIVE",
// "TCP_KEEPIDLE" (seconds) or "SO_LINGER" (the linger time in seconds when on, -1 when off).
Napi::Value GetFdFlags(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "getFdFlags(fd): fd must be a number");
  }
  const int flags = fcntl(info[0].As<Napi::Number>().Int32Value(), F_GETFL);
  if (flags < 0) return throw_uv(env, -errno, "fcntl");
  return Napi::Number::New(env, flags);
}

Napi::Value GetSocketOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsString()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "getSocketOption(fd, name)");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  if (name == "TCP_NODELAY") {
    int on = 0;
    socklen_t length = sizeof(on);
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &length) != 0) {
      return throw_uv(env, -errno, "getsockopt");
    }
    return Napi::Boolean::New(env, on != 0);
  }
  if (name == "SO_KEEPALIVE" || name == "TCP_KEEPIDLE") {
    int value = 0;
    socklen_t length = sizeof(value);
    const bool idle = name == "TCP_KEEPIDLE";
    // The keepalive idle time under this system's name for it (TCP_KEEPALIVE on macOS).
    if (idle && kTcpKeepIdle < 0) return Napi::Number::New(env, 0);
    if (getsockopt(fd, idle ? IPPROTO_TCP : SOL_SOCKET, idle ? kTcpKeepIdle : SO_KEEPALIVE, &value,
                   &length) != 0) {
      return throw_uv(env, -errno, "getsockopt");
    }
    return idle ? Napi::Value(Napi::Number::New(env, value)) : Napi::Value(Napi::Boolean::New(env, value != 0));
  }
  if (name == "SO_LINGER") {
    linger value{};
    socklen_t length = sizeof(value);
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &value, &length) != 0) {
      return throw_uv(env, -errno, "getsockopt");
    }
    return Napi::Number::New(env, value.l_onoff ? value.l_linger : -1);
  }
  return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG",
                     "getSocketOption(fd, name): name is TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE "
                     "or SO_LINGER");
}

// socketSendQueue(fd): the bytes a socket has sent but its peer has not acknowledged yet
// (SIOCOUTQ; SO_NWRITE on macOS), or -1 when the fd or the system cannot say. The JS engine waits for 0 before a
// truncation reset: an RST discards whatever is still queued.
Napi::Value SocketSendQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "socketSendQueue(fd): fd must be a number");
  }
  return Napi::Number::New(env, socket_unacked_bytes(info[0].As<Napi::Number>().Int32Value()));
}

// The JS engine's finTimeout (lib/idle-watch.ts): whether the other end of fd shut its write side
// (a FIN, or a pipe's last writer gone), also while bytes before it wait unread.
Napi::Value HangupPending(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "hangupPending(fd): fd must be a number");
  }
  pollfd p{};
  p.fd = info[0].As<Napi::Number>().Int32Value();
#ifdef POLLRDHUP
  p.events = POLLRDHUP;
  const short hangup = POLLRDHUP | POLLHUP;
#else
  const short hangup = POLLHUP;
#endif
  int rc;
  do rc = poll(&p, 1, 0); while (rc < 0 && errno == EINTR);
  return Napi::Boolean::New(env, rc > 0 && (p.revents & hangup) != 0);
}

// Internal, for tests and benchmarks: Node has no pipe() or socketpair(). Close-on-exec fds.
Napi::Value fd_pair(Napi::Env env, int rc, const int fds[2], const char* syscall) {
  if (rc != 0) return throw_uv(env, -errno, syscall);
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, fds[0]));
  result.Set(1u, Napi::Number::New(env, fds[1]));
  return result;
}

// pipe2() and SOCK_CLOEXEC are not everywhere (macOS): set close-on-exec afterwards there. Only
// tests and benchmarks use these, so the window before FD_CLOEXEC is set does not matter.
int set_cloexec_pair(int rc, const int fds[2]) {
  if (rc == 0) {
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  }
  return rc;
}

Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int fds[2];
  const int rc = set_cloexec_pair(pipe(fds), fds);
  return fd_pair(info.Env(), rc, fds, "pipe");
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
  const int rc = set_cloexec_pair(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), fds);
  return fd_pair(info.Env(), rc, fds, "socketpair");
}

Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsBoolean() || !info[2].IsNumber()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "openTun(name, packetInfo, mtu)");
  }
  TunDevice device;
  const char* step = "";
  const int err = open_tun(info[0].As<Napi::String>().Utf8Value(),
                           info[1].As<Napi::Boolean>().Value(),
                           info[2].As<Napi::Number>().Int32Value(), &device, &step);
  if (err != 0) return throw_uv(env, -err, step);
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, device.fd));
  result.Set("name", Napi::String::New(env, device.name));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("isNativeSuite", Napi::Function::New(env, IsNativeSuite, "isNativeSuite"));
  exports.Set("cbcRefusal", Napi::Function::New(env, CbcRefusal, "cbcRefusal"));
  exports.Set("cipherSuiteName", Napi::Function::New(env, CipherSuiteName, "cipherSuiteName"));
  exports.Set("deriveTls13Keys", Napi::Function::New(env, DeriveTls13Keys, "deriveTls13Keys"));
  exports.Set("deriveTls12KeyBlock",
              Napi::Function::New(env, DeriveTls12KeyBlock, "deriveTls12KeyBlock"));
  exports.Set("openRecord", Napi::Function::New(env, OpenRecord, "openRecord"));
  exports.Set("RecordOpener", RecordOpenerWrap::define(env));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("getFdFlags", Napi::Function::New(env, GetFdFlags, "getFdFlags"));
  exports.Set("getSocketOption", Napi::Function::New(env, GetSocketOption, "getSocketOption"));
  exports.Set("socketSendQueue", Napi::Function::New(env, SocketSendQueue, "socketSendQueue"));
  exports.Set("hangupPending", Napi::Function::New(env, HangupPending, "hangupPending"));
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  init_splice_binding(env, exports);
  init_fd_poller_binding(env, exports);
  return exports;
}

}  // namespace
}  // namespace tls_splice

static Napi::Object InitTlsSplice(Napi::Env env, Napi::Object exports) {
  return tls_splice::Init(env, exports);
}

NODE_API_MODULE(tls_splice, InitTlsSplice)
