// The Splice class as JS sees it: `new Splice(params, onEvent)`, start(), stop(graceful),
// stats(), ref(), unref(). Events ('end', 'close') reach JS through a thread-safe function.
#include "splice_binding.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "binding_errors.h"
#include "io_thread.h"
#include "key_schedule.h"
#include "splice.h"

namespace tls_splice {
namespace {

// The most I/O threads a process starts; a splice never needs more than one.
constexpr size_t kMaxIoThreads = 16;

struct AddonData {
  std::shared_ptr<IoThreadPool> pool;
  Napi::FunctionReference splice_constructor;
};

enum class EventType : uint8_t { kEnd, kClose };

struct Event {
  EventType type;
  SpliceEnd end;
};

const char* end_reason_name(EndReason reason) {
  switch (reason) {
    case EndReason::kEnd: return "end";
    case EndReason::kStopped: return "stopped";
    case EndReason::kAborted: return "aborted";
    case EndReason::kError: return "error";
    case EndReason::kIdle: return "idle";
  }
  return "error";
}

Napi::Value alert_value(Napi::Env env, uint8_t alert) {
  if (alert == static_cast<uint8_t>(AlertDescription::kNone)) return env.Undefined();
  return Napi::String::New(env, alert_name(alert));
}

void call_js(Napi::Env env, Napi::Function callback, Event* event) {
  std::unique_ptr<Event> owned(event);
  // env is null when the environment is being torn down: nobody is listening.
  if (env == nullptr || callback.IsEmpty()) return;
  Napi::Object info = Napi::Object::New(env);
  const char* type = "end";
  if (event->type == EventType::kClose) {
    type = "close";
    const SpliceEnd& end = event->end;
    info.Set("reason", end_reason_name(end.reason));
    if (!end.code.empty()) info.Set("code", end.code);
    if (!end.detail.empty()) info.Set("detail", end.detail);
    if (end.sys_errno) info.Set("errno", -end.sys_errno);
    info.Set("alertSent", alert_value(env, end.alert_sent));
    info.Set("alertReceived", alert_value(env, end.alert_received));
    info.Set("closeNotifyReceived", end.close_notify_received);
    info.Set("closeNotifySent", end.close_notify_sent);
    info.Set("peerEofWithoutCloseNotify", end.peer_eof_without_close_notify);
    info.Set("undeliveredIn", static_cast<double>(end.undelivered_in));
    info.Set("unreadCiphertext", static_cast<double>(end.unread_ciphertext));
    info.Set("undeliveredOut", static_cast<double>(end.undelivered_out));
    info.Set("ignoredAfterClose", static_cast<double>(end.ignored_after_close));
  }
  callback.Call({Napi::String::New(env, type), info});
}

// Delivers a splice's events to JS. Shared by the splice (I/O thread) and the TSFN finalizer
// (JS thread): the TSFN may be finalized by environment teardown while the splice still runs,
// so every use of it is checked under the mutex.
//
// The TSFN exists only from start() on (attach()): a TSFN keeps the event loop alive, and a
// splice that is constructed but never started, or whose start() failed, must not.
class EventSink : public SpliceObserver {
 public:
  // JS thread, in start(), before the splice runs.
  void attach(Napi::Env env, Napi::ThreadSafeFunction tsfn) {
    std::lock_guard<std::mutex> lock(mutex_);
    tsfn_ = tsfn;
    attached_ = true;
    if (!want_ref_) tsfn_.Unref(env);
  }

  // JS thread: start() could not start the splice; nothing will be emitted.
  void detach() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (attached_ && alive_ && !released_) tsfn_.Release();
    released_ = true;
  }

  void on_peer_end() override { emit(new Event{EventType::kEnd, {}}); }

  void on_close(const SpliceEnd& end) override {
    emit(new Event{EventType::kClose, end});
    std::lock_guard<std::mutex> lock(mutex_);
    if (attached_ && alive_ && !released_) tsfn_.Release();
    released_ = true;
  }

  void finalized() {
    std::lock_guard<std::mutex> lock(mutex_);
    alive_ = false;
  }

  void set_ref(Napi::Env env, bool ref) {
    std::lock_guard<std::mutex> lock(mutex_);
    want_ref_ = ref;  // applied by attach() when called before start()
    if (!attached_ || !alive_ || released_) return;
    if (ref) {
      tsfn_.Ref(env);
    } else {
      tsfn_.Unref(env);
    }
  }

 private:
  void emit(Event* event) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!attached_ || !alive_ || released_ || tsfn_.NonBlockingCall(event, call_js) != napi_ok) {
      delete event;
    }
  }

  std::mutex mutex_;
  Napi::ThreadSafeFunction tsfn_;  // guarded by mutex_, valid once attached_
  bool attached_ = false;  // guarded by mutex_
  bool alive_ = true;      // guarded by mutex_
  bool released_ = false;  // guarded by mutex_
  bool want_ref_ = true;   // guarded by mutex_
};

// --- parameter conversion --------------------------------------------------------------------

class Params {
 public:
  Params(Napi::Env env, Napi::Object object) : env_(env), object_(object) {}

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }

  int64_t integer(const char* name, int64_t min, int64_t max, int64_t fallback) {
    Napi::Value v = object_.Get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber()) return bad(name), fallback;
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min) ||
        d > static_cast<double>(max)) {
      return bad(name), fallback;
    }
    return static_cast<int64_t>(d);
  }

  bool boolean(const char* name, bool fallback) {
    Napi::Value v = object_.Get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsBoolean()) return bad(name), fallback;
    return v.As<Napi::Boolean>().Value();
  }

  uint64_t u64(const char* name) {
    Napi::Value v = object_.Get(name);
    if (v.IsBigInt()) {
      bool lossless = false;
      const uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
      if (lossless) return value;
    }
    bad(name);
    return 0;
  }

  // An optional BigInt: absent or null leaves *out_present false.
  uint64_t optional_u64(const char* name, bool* out_present) {
    *out_present = false;
    Napi::Value v = object_.Get(name);
    if (v.IsUndefined() || v.IsNull()) return 0;
    *out_present = true;
    return u64(name);
  }

  // Copies a Buffer of secrets (at most `capacity` bytes) into `out` and wipes the Buffer in
  // place, whatever happens, so the JS heap keeps no copy of a key. Returns its length.
  size_t take_secret(const char* name, uint8_t* out, size_t capacity) {
    Napi::Value v = object_.Get(name);
    if (!v.IsBuffer()) return bad(name), 0;
    Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
    const size_t length = b.Length();
    if (length <= capacity) std::memcpy(out, b.Data(), length);
    wipe(b.Data(), length);
    if (length > capacity) return bad(name), 0;
    return length;
  }

  std::vector<uint8_t> vector(const char* name) {
    Napi::Value v = object_.Get(name);
    if (v.IsUndefined() || v.IsNull()) return {};
    if (!v.IsBuffer()) return bad(name), std::vector<uint8_t>{};
    Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
    return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
  }

  void invalid(const char* name) { bad(name); }

 private:
  void bad(const char* name) {
    if (problem_.empty()) problem_ = std::string("invalid splice parameter \"") + name + "\"";
  }

  Napi::Env env_;
  Napi::Object object_;
  std::string problem_;
};

// The `keys` parameter: every key of the session in one Buffer, which the binding wipes in place
// as soon as it has copied it (lib/splice.ts packs it; the JS side keeps no other copy).
//   TLS 1.3: read traffic secret || write traffic secret   (hash length each: 32 or 48 bytes)
//   TLS 1.2: read key || read fixed IV || read MAC key || write key || write fixed IV ||
//            write MAC key (suite key length: 16 or 32; fixed IV: 4 for AES-GCM, 12 for
//            ChaCha20-Poly1305, none for AES-CBC; MAC key: AES-CBC only, 20, 32 or 48)
constexpr size_t kMaxPackedTls12KeysLength =
    2 * (kMaxKeyLength + kAeadNonceLength + kMaxMacKeyLength);
constexpr size_t kMaxPackedKeysLength = 2 * kMaxSecretLength > kMaxPackedTls12KeysLength
                                            ? 2 * kMaxSecretLength
                                            : kMaxPackedTls12KeysLength;

// Splits a packed keys Buffer (see above) into `keys`; false when its length is not the suite's.
bool unpack_keys(const CipherSuite& suite, const uint8_t* packed, size_t length,
                 SessionKeys* keys) {
  if (suite.version == TlsVersion::kTls13) {
    const size_t secret = hash_length(suite.hash);
    if (length != 2 * secret) return false;
    std::memcpy(keys->read_secret, packed, secret);
    std::memcpy(keys->write_secret, packed + secret, secret);
    return true;
  }
  const size_t key = suite.key_length;
  const size_t iv = suite.fixed_iv_length;
  const size_t mac = suite.cbc ? cbc_mac_length(suite.mac) : 0;
  if (length != 2 * (key + iv + mac)) return false;
  const uint8_t* p = packed;
  std::memcpy(keys->read_key, p, key), p += key;
  std::memcpy(keys->read_iv, p, iv), p += iv;
  std::memcpy(keys->read_mac_key, p, mac), p += mac;
  std::memcpy(keys->write_key, p, key), p += key;
  std::memcpy(keys->write_iv, p, iv), p += iv;
  std::memcpy(keys->write_mac_key, p, mac);
  return true;
}

class SpliceWrap : public Napi::ObjectWrap<SpliceWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Splice",
                       {InstanceMethod<&SpliceWrap::start>("start"),
                        InstanceMethod<&SpliceWrap::stop>("stop"),
                        InstanceMethod<&SpliceWrap::stats>("stats"),
                        InstanceMethod<&SpliceWrap::ref>("ref"),
                        InstanceMethod<&SpliceWrap::unref>("unref"),
                        InstanceMethod<&SpliceWrap::setNoDelay>("setNoDelay"),
                        InstanceMethod<&SpliceWrap::setKeepAlive>("setKeepAlive")});
  }

  explicit SpliceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SpliceWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "new Splice(params, onEvent)");
      return;
    }
    AddonData* data = env.GetInstanceData<AddonData>();
    pool_ = data->pool;

    Params p(env, info[0].As<Napi::Object>());
    SpliceConfig config;
    const int tcp_fd = static_cast<int>(p.integer("tcpFd", 0, INT32_MAX, -1));
    const int read_fd = static_cast<int>(p.integer("readFd", -1, INT32_MAX, -1));
    const int write_fd = static_cast<int>(p.integer("writeFd", -1, INT32_MAX, -1));
    config.deliver_in = p.boolean("deliverIn", true);
    config.deliver_out = p.boolean("deliverOut", true);
    config.framing.framing = static_cast<Framing>(p.integer("framing", 0, 2, 0));
    config.framing.packet_info = static_cast<PacketInfo>(p.integer("packetInfo", 0, 2, 0));
    config.framing.max_packet_size =
        static_cast<size_t>(p.integer("maxPacketSize", 20, 65535, 65535));
    config.is_server = p.boolean("isServer", false);
    config.peer_ended = p.boolean("peerEnded", false);
    config.peer_close_notify = p.boolean("peerCloseNotify", false);
    config.no_delay = p.boolean("noDelay", true);
    config.on_truncation = static_cast<Truncation>(p.integer("onTruncation", 0, 1, 0));
    // Milliseconds, 0 for none; lib/splice.ts checks the user's options (at most setTimeout's).
    config.idle_timeout_ms = static_cast<uint64_t>(p.integer("idleTimeout", 0, INT32_MAX, 0));
    config.fin_timeout_ms = static_cast<uint64_t>(p.integer("finTimeout", 0, INT32_MAX, 0));

    // The keys Buffer is wiped first, before anything can throw (see kKeysLayout).
    uint8_t packed[kMaxPackedKeysLength];
    const size_t packed_length = p.take_secret("keys", packed, sizeof(packed));
    SessionKeys& keys = config.keys;
    const int64_t version = p.integer("version", 0x0303, 0x0304, 0x0304);
    keys.version = static_cast<TlsVersion>(version);
    keys.cipher_suite = static_cast<uint16_t>(p.integer("cipherSuite", 0, 0xffff, 0));
    const CipherSuite* suite = find_cipher_suite(keys.version, keys.cipher_suite);
    if (suite == nullptr) {
      wipe(packed, sizeof(packed));
      throw_coded(env, "ERR_TLS_SPLICE_UNSUPPORTED_CIPHER",
                  "the native record layer does not implement this cipher suite");
      return;
    }
    if (!unpack_keys(*suite, packed, packed_length, &keys)) p.invalid("keys");
    wipe(packed, sizeof(packed));
    keys.read_seq = p.u64("readSeq");
    keys.write_seq = p.u64("writeSeq");
    keys.encrypt_then_mac = p.boolean("encryptThenMac", false);
    keys.write_explicit_nonce =
        p.optional_u64("writeExplicitNonce", &keys.has_write_explicit_nonce);
    keys.max_fragment_length =
        static_cast<size_t>(p.integer("maxFragmentLength", 512, 16384, 16384));
    keys.key_update_after_records =
        static_cast<uint64_t>(p.integer("keyUpdateAfterRecords", 0, (INT64_C(1) << 53) - 1, 0));
    config.head = p.vector("head");
    config.initial_plaintext = p.vector("initialPlaintext");
    config.initial_ciphertext = p.vector("initialCiphertext");
    config.initial_cleartext = p.vector("initialCleartext");
    if (!p.ok() || tcp_fd < 0) {
      wipe(&keys, sizeof(keys));
      throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG",
                  p.ok() ? std::string("tcpFd is required") : p.problem());
      return;
    }

    // The native side uses only its own duplicates, so a user closing an fd can never make a
    // pump write into a reused descriptor.
    int dup_errno = 0;
    auto dup_owned = [&dup_errno](int fd) {
      if (fd < 0) return OwnedFd();
      OwnedFd owned = OwnedFd::dup_of(fd);
      if (!owned.valid() && dup_errno == 0) dup_errno = errno;
      return owned;
    };
    config.tcp_fd = dup_owned(tcp_fd);
    config.read_fd = dup_owned(read_fd);
    config.write_to_read_fd = write_fd >= 0 && write_fd == read_fd;
    if (!config.write_to_read_fd) config.write_fd = dup_owned(write_fd);
    const bool dup_failed = dup_errno != 0;

    // The callback waits here; the TSFN that calls it is made by start() (see EventSink).
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    sink_ = std::make_shared<EventSink>();
    splice_ = std::make_shared<Splice>(std::move(config), sink_);
    // Moving copied the key arrays; wipe the moved-from copy.
    wipe(&keys, sizeof(keys));
    if (dup_failed) {
      throw_uv(env, -dup_errno, "dup");
      splice_.reset();
      return;
    }
    std::string code;
    if (!splice_->init(&code)) {
      throw_coded(env, code, "the native record layer cannot carry this session");
      splice_.reset();
      return;
    }
  }

 private:
  Napi::Value start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!splice_ || thread_ != nullptr) {
      return throw_coded(env, "ERR_TLS_SPLICE_INVALID_STATE", "splice already started");
    }
    // The sink learns when the TSFN is finalized, whether released by the splice or torn down
    // with the environment.
    auto* holder = new std::shared_ptr<EventSink>(sink_);
    Napi::ThreadSafeFunction tsfn = Napi::ThreadSafeFunction::New(
        env, callback_.Value(), "tls-splice", 0, 1,
        [](Napi::Env, std::shared_ptr<EventSink>* sink) {
          (*sink)->finalized();
          delete sink;
        },
        holder);
    sink_->attach(env, tsfn);
    callback_.Reset();
    int error = 0;
    thread_ = pool_->start_splice(splice_, &error);
    if (thread_ == nullptr) {
      sink_->detach();
      splice_.reset();
      return throw_uv(env, error, "starting a native I/O thread");
    }
    return env.Undefined();
  }

  Napi::Value stop(const Napi::CallbackInfo& info) {
    const bool graceful = info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    if (thread_ != nullptr && splice_) {
      std::shared_ptr<Splice> splice = splice_;
      thread_->post([splice, graceful](uv_loop_t*) { splice->stop(graceful); });
    }
    return info.Env().Undefined();
  }

  // setNoDelay(enable) / setKeepAlive(enable, delaySeconds): the spent TLSSocket's socket
  // options, applied on the I/O thread (Splice::set_no_delay). Nothing before start() or after
  // the splice closed, as Node's own methods do nothing on a socket without a handle.
  Napi::Value setNoDelay(const Napi::CallbackInfo& info) {
    const bool enable = !info[0].IsBoolean() || info[0].As<Napi::Boolean>().Value();
    if (thread_ != nullptr && splice_) {
      std::shared_ptr<Splice> splice = splice_;
      thread_->post([splice, enable](uv_loop_t*) { splice->set_no_delay(enable); });
    }
    return info.Env().Undefined();
  }

  Napi::Value setKeepAlive(const Napi::CallbackInfo& info) {
    const bool enable = info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    double delay = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
    // TCP_KEEPIDLE is an int of seconds; Linux takes 1..32767.
    if (!(delay >= 0)) delay = 0;
    const int delay_s = delay > 32767 ? 32767 : static_cast<int>(delay);
    if (thread_ != nullptr && splice_) {
      std::shared_ptr<Splice> splice = splice_;
      thread_->post([splice, enable, delay_s](uv_loop_t*) { splice->set_keepalive(enable, delay_s); });
    }
    return info.Env().Undefined();
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    if (!splice_) return out;
    const SpliceStats& s = splice_->stats();
    auto set = [&](const char* name, const std::atomic<uint64_t>& value) {
      out.Set(name, static_cast<double>(value.load(std::memory_order_relaxed)));
    };
    set("bytesIn", s.bytes_in);
    set("bytesOut", s.bytes_out);
    set("recordsIn", s.records_in);
    set("recordsOut", s.records_out);
    set("keyUpdatesIn", s.key_updates_in);
    set("keyUpdatesOut", s.key_updates_out);
    set("ticketsIn", s.tickets_in);
    set("packetsIn", s.packets_in);
    set("packetsDropped", s.packets_dropped);
    set("packetsOut", s.packets_out);
    set("ciphertextIn", s.ciphertext_in);
    set("ciphertextOut", s.ciphertext_out);
    return out;
  }

  Napi::Value ref(const Napi::CallbackInfo& info) {
    if (sink_) sink_->set_ref(info.Env(), true);
    return info.Env().Undefined();
  }

  Napi::Value unref(const Napi::CallbackInfo& info) {
    if (sink_) sink_->set_ref(info.Env(), false);
    return info.Env().Undefined();
  }

  std::shared_ptr<IoThreadPool> pool_;
  std::shared_ptr<Splice> splice_;
  std::shared_ptr<EventSink> sink_;
  Napi::FunctionReference callback_;  // until start() hands it to the TSFN
  IoThread* thread_ = nullptr;
};

size_t io_thread_count() {
  if (const char* env = std::getenv("TLS_SPLICE_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1 && n <= static_cast<long>(kMaxIoThreads)) return static_cast<size_t>(n);
  }
  const unsigned cpus = uv_available_parallelism();
  return std::min<size_t>(std::max<unsigned>(cpus, 1), 4);
}

}  // namespace

void init_splice_binding(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->pool = std::make_shared<IoThreadPool>(io_thread_count());
  Napi::Function constructor = SpliceWrap::define(env);
  data->splice_constructor = Napi::Persistent(constructor);
  env.SetInstanceData<AddonData>(data);
  // Registered before any splice exists, so it runs after every splice's TSFN has been torn
  // down (cleanup hooks run in reverse order): it aborts what still runs and joins the threads.
  napi_add_env_cleanup_hook(
      env, [](void* arg) { static_cast<IoThreadPool*>(arg)->shutdown(); }, data->pool.get());
  exports.Set("Splice", constructor);
}

}  // namespace tls_splice
