// Pump integration harness: a real TLS session between two OpenSSL (libssl) endpoints over a
// TCP loopback connection, after which one side's socket is handed to a Splice running on an
// IoThread, and the other side (the "peer") keeps using SSL_read / SSL_write.
//
//   peer (OpenSSL, own thread) <-- TCP loopback [optional trickle proxy] --> Splice <--> user fd
//
// Secrets come from SSL_CTX_set_keylog_callback exactly as tls-splice's capture gets them from
// Node (TLS 1.3 CLIENT/SERVER_TRAFFIC_SECRET_0; TLS 1.2 CLIENT_RANDOM + the randoms ->
// derive_tls12_key_block). Both the peer and the user side move deterministic PRNG streams and
// hash what they receive, so every transfer is checked by length and SHA-256.
#ifndef TLS_SPLICE_SPLICE_HARNESS_H_
#define TLS_SPLICE_SPLICE_HARNESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../../src-native/io_thread.h"
#include "../../src-native/key_schedule.h"
#include "../../src-native/splice.h"
#include "test_util.h"

namespace harness {

using Clock = std::chrono::steady_clock;

inline void die(const char* what) {
  std::fprintf(stderr, "harness: %s failed: %s\n", what, std::strerror(errno));
  ERR_print_errors_fp(stderr);
  std::exit(3);
}

inline void set_nonblocking(int fd, bool on) {
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

// A connected TCP pair on 127.0.0.1, with TCP_NODELAY on both ends unless told otherwise.
inline void tcp_pair(int out[2], bool nodelay = true) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) die("bind");
  if (listen(listener, 1) < 0) die("listen");
  if (getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) < 0) die("getsockname");
  out[0] = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(out[0], reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) die("connect");
  out[1] = accept(listener, nullptr, nullptr);
  if (out[1] < 0) die("accept");
  close(listener);
  if (!nodelay) return;
  const int one = 1;
  setsockopt(out[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(out[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// A self-signed P-256 certificate made in-process (no files).
struct Credentials {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
};

inline const Credentials& credentials() {
  static Credentials c = [] {
    Credentials out;
    out.key = EVP_EC_gen("P-256");
    if (!out.key) die("EVP_EC_gen");
    out.cert = X509_new();
    X509_set_version(out.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(out.cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(out.cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(out.cert), 3600 * 24);
    X509_set_pubkey(out.cert, out.key);
    X509_NAME* name = X509_get_subject_name(out.cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(out.cert, name);
    if (!X509_sign(out.cert, out.key, EVP_sha256())) die("X509_sign");
    return out;
  }();
  return c;
}

struct TlsParams {
  bool tls13 = true;
  // TLS 1.3: a suite name for SSL_CTX_set_ciphersuites; TLS 1.2: a cipher list.
  std::string cipher = "TLS_AES_128_GCM_SHA256";
  int num_tickets = 0;          // TLS 1.3 tickets the server sends after the handshake
  bool spliced_is_server = false;
  uint8_t max_fragment_length_mode = 0;  // TLSEXT_max_fragment_length_* asked by the client
  size_t splice_max_fragment_length = 0; // what the Splice is told (0: from the mode)
  uint64_t key_update_after_records = 0;
  bool trickle_proxy = false;   // put a proxy between the peer and the Splice
  bool pipes = false;           // user side: two pipes instead of a socketpair
  int sink_pipe_size = 0;       // pipes: F_SETPIPE_SZ of the sink pipe (0: default)
  tls_splice::FramingConfig framing;  // packet framing (user side: a SOCK_SEQPACKET pair)
  bool tcp_target = false;      // user side: a loopback TCP pair instead of a socketpair
  bool harness_nodelay = true;  // the harness sets TCP_NODELAY on the TCP pairs it makes
  bool keep_fd_copies = false;  // keep dups of the splice's TCP fd and target fd (see Harness)
  bool no_delay = true;                                          // SpliceConfig::no_delay
  tls_splice::Truncation on_truncation = tls_splice::Truncation::kEnd;
  uint64_t idle_timeout_ms = 0;                                  // SpliceConfig limits
  uint64_t fin_timeout_ms = 0;
};

// Lines the keylog callback saw, per SSL.
struct KeyLog {
  std::mutex mutex;
  std::vector<std::string> lines;
};

inline void keylog_callback(const SSL* ssl, const char* line) {
  auto* log = static_cast<KeyLog*>(SSL_get_app_data(ssl));
  if (!log) return;
  std::lock_guard<std::mutex> lock(log->mutex);
  log->lines.emplace_back(line);
}

inline test::Bytes keylog_value(KeyLog& log, const std::string& label) {
  std::lock_guard<std::mutex> lock(log.mutex);
  for (const std::string& line : log.lines) {
    if (line.compare(0, label.size() + 1, label + " ") == 0) {
      const size_t last = line.rfind(' ');
      return test::hex(line.c_str() + last + 1);
    }
  }
  return {};
}

// What the Splice's observer saw.
class Observer : public tls_splice::SpliceObserver {
 public:
  void on_peer_end() override {
    std::lock_guard<std::mutex> lock(mutex_);
    peer_end_count++;
    cv_.notify_all();
  }
  void on_close(const tls_splice::SpliceEnd& e) override {
    std::lock_guard<std::mutex> lock(mutex_);
    end = e;
    close_count++;
    cv_.notify_all();
  }
  bool wait_closed(int seconds) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return close_count > 0; });
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return close_count > 0;
  }
  tls_splice::SpliceEnd end;
  int peer_end_count = 0;
  int close_count = 0;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

// The OpenSSL side's behaviour.
struct PeerPlan {
  uint64_t send_bytes = 0;
  uint64_t seed = 1;
  std::vector<uint64_t> key_update_at;  // SSL_key_update(REQUESTED) once this much was sent
  bool shutdown_after_send = true;      // SSL_shutdown (close_notify) once everything is sent
  bool raw_eof_after_send = false;      // shutdown(fd, SHUT_WR) with no close_notify instead
  size_t read_chunk = 65536;            // SSL_read size
  int read_delay_us = 0;                // sleep after each read (a slow reader)
  std::function<void(uint64_t sent)> on_progress;  // called after each write
  std::function<void(uint64_t received)> on_read;  // called after each read
  bool send_after_close_notify = false;  // hold the stream until the splice's close_notify
  const std::vector<uint8_t>* stream = nullptr;  // send these bytes instead of the PRNG stream
  int timeout_seconds = 120;
};

struct PeerResult {
  uint64_t sent = 0;
  uint64_t received = 0;
  std::string received_sha;
  bool got_close_notify = false;  // SSL_read returned 0 with SSL_ERROR_ZERO_RETURN
  bool got_error = false;         // anything else ended the read side
  std::string error;              // OpenSSL's reason, or "eof"
  int key_updates_sent = 0;
  bool timed_out = false;
};

// User-side behaviour: the program on the other end of the splice's fd.
struct UserPlan {
  uint64_t send_bytes = 0;
  uint64_t seed = 2;
  bool close_after_send = true;  // shutdown(SHUT_WR) / close the pipe after sending
  size_t read_chunk = 65536;
  int read_delay_us = 0;
  std::function<void(uint64_t received)> on_read;  // after each read
  uint64_t stop_reading_after = UINT64_MAX;         // stop reading (never drain) past this
  int timeout_seconds = 120;
  bool send_after_eof = false;  // hold the stream until the splice's EOF reached us
};

struct UserResult {
  uint64_t sent = 0;
  uint64_t received = 0;
  std::string received_sha;
  bool got_eof = false;
  int read_errno = 0;
  int write_errno = 0;
  bool timed_out = false;
};

// Runs the OpenSSL peer on a blocking-free loop (one thread drives both directions: an SSL
// object must not be used from two threads at once).
inline PeerResult run_peer(SSL* ssl, int fd, const PeerPlan& plan) {
  PeerResult r;
  set_nonblocking(fd, true);
  test::Prng prng(plan.seed);
  test::Sha256 sha;
  std::vector<uint8_t> out(16384), in(plan.read_chunk);
  size_t out_len = 0;  // bytes of `out` to send; out[out_off..out_len) not yet accepted
  size_t out_off = 0;  // (an SSL_write after WANT_* is retried with the same arguments)
  size_t next_ku = 0;
  bool send_done = plan.send_bytes == 0;
  bool shutdown_sent = false;
  bool recv_done = false;
  const auto deadline = Clock::now() + std::chrono::seconds(plan.timeout_seconds);
  while (!recv_done || !send_done || (!shutdown_sent && (plan.shutdown_after_send || plan.raw_eof_after_send))) {
    if (Clock::now() > deadline) {
      r.timed_out = true;
      break;
    }
    bool want_read = false, want_write = false, progress = false;
    if (!send_done && plan.send_after_close_notify && !r.got_close_notify) {
      // waiting for the other side to close first
    } else if (!send_done) {
      if (out_len == 0) {
        out_len = static_cast<size_t>(std::min<uint64_t>(out.size(), plan.send_bytes - r.sent));
        if (plan.stream) {
          std::memcpy(out.data(), plan.stream->data() + r.sent, out_len);
        } else {
          prng.fill(out.data(), out_len);
        }
        out_off = 0;
      }
      const int n = SSL_write(ssl, out.data() + out_off, static_cast<int>(out_len - out_off));
      if (n > 0) {
        // SSL_MODE_ENABLE_PARTIAL_WRITE: n may be one record's worth (max_fragment_length).
        r.sent += static_cast<uint64_t>(n);
        out_off += static_cast<size_t>(n);
        if (out_off == out_len) out_len = 0;
        progress = true;
        if (plan.on_progress) plan.on_progress(r.sent);
        if (out_len == 0 && next_ku < plan.key_update_at.size() &&
            r.sent >= plan.key_update_at[next_ku]) {
          if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) == 1) r.key_updates_sent++;
          next_ku++;
        }
        if (r.sent == plan.send_bytes) send_done = true;
      } else {
        const int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) want_write = true;
        else if (err == SSL_ERROR_WANT_READ) want_read = true;
        else {
          send_done = true;  // the connection is gone; the read side reports why
          shutdown_sent = true;
        }
      }
    } else if (!shutdown_sent && plan.shutdown_after_send) {
      const int n = SSL_shutdown(ssl);
      if (n >= 0) {
        shutdown_sent = true;
        progress = true;
      } else {
        const int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) want_write = true;
        else if (err == SSL_ERROR_WANT_READ) want_read = true;
        else shutdown_sent = true;
      }
    } else if (!shutdown_sent && plan.raw_eof_after_send) {
      shutdown(fd, SHUT_WR);
      shutdown_sent = true;
    } else if (!shutdown_sent) {
      shutdown_sent = true;  // neither: the test ends the connection some other way
    }
    if (!recv_done) {
      const int n = SSL_read(ssl, in.data(), static_cast<int>(in.size()));
      if (n > 0) {
        sha.update(in.data(), static_cast<size_t>(n));
        r.received += static_cast<uint64_t>(n);
        progress = true;
        if (plan.on_read) plan.on_read(r.received);
        if (plan.read_delay_us) usleep(plan.read_delay_us);
      } else {
        const int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_READ) want_read = true;
        else if (err == SSL_ERROR_WANT_WRITE) want_write = true;
        else if (err == SSL_ERROR_ZERO_RETURN) {
          r.got_close_notify = true;
          recv_done = true;
        } else {
          r.got_error = true;
          const unsigned long e = ERR_peek_error();
          r.error = e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "ssl error"
                      : (err == SSL_ERROR_SYSCALL ? (errno ? std::strerror(errno) : "eof") : "ssl");
          ERR_clear_error();
          recv_done = true;
          send_done = true;
          shutdown_sent = true;
        }
      }
    }
    if (!progress) {
      pollfd p{fd, static_cast<short>((want_read || !recv_done ? POLLIN : 0) |
                                      (want_write ? POLLOUT : 0)), 0};
      poll(&p, 1, 20);
    }
  }
  r.received_sha = sha.hex_digest();
  return r;
}

// The user side of the splice: writes its stream into `write_fd`, reads `read_fd` to EOF.
inline UserResult run_user(int write_fd, int read_fd, const UserPlan& plan) {
  UserResult r;
  set_nonblocking(write_fd, true);
  set_nonblocking(read_fd, true);
  test::Prng prng(plan.seed);
  test::Sha256 sha;
  std::vector<uint8_t> out(65536), in(plan.read_chunk);
  size_t out_off = 0, out_len = 0;
  bool send_done = plan.send_bytes == 0;
  bool closed = false;
  const bool same = write_fd == read_fd;
  const auto deadline = Clock::now() + std::chrono::seconds(plan.timeout_seconds);
  while (!r.got_eof || !closed) {
    if (Clock::now() > deadline) {
      r.timed_out = true;
      break;
    }
    bool progress = false;
    if (!send_done && !(plan.send_after_eof && !r.got_eof)) {
      if (out_off == out_len) {
        out_len = static_cast<size_t>(std::min<uint64_t>(out.size(), plan.send_bytes - r.sent));
        prng.fill(out.data(), out_len);
        out_off = 0;
      }
      const ssize_t n = write(write_fd, out.data() + out_off, out_len - out_off);
      if (n > 0) {
        out_off += static_cast<size_t>(n);
        r.sent += static_cast<uint64_t>(n);
        progress = true;
        if (r.sent == plan.send_bytes) send_done = true;
      } else if (n < 0 && errno != EAGAIN) {
        r.write_errno = errno;
        send_done = true;
      }
    }
    if (send_done && !closed) {
      if (plan.close_after_send) {
        if (same) shutdown(write_fd, SHUT_WR);
        else close(write_fd);
      }
      closed = true;
    }
    if (!r.got_eof && r.received < plan.stop_reading_after) {
      const ssize_t n = read(read_fd, in.data(), in.size());
      if (n > 0) {
        sha.update(in.data(), static_cast<size_t>(n));
        r.received += static_cast<uint64_t>(n);
        progress = true;
        if (plan.on_read) plan.on_read(r.received);
        if (plan.read_delay_us) usleep(plan.read_delay_us);
      } else if (n == 0) {
        r.got_eof = true;
        progress = true;
      } else if (errno != EAGAIN) {
        r.read_errno = errno;
        r.got_eof = true;
      }
    } else if (!r.got_eof) {
      // Not reading any more: wait for the test to end things.
      if (plan.on_read) plan.on_read(r.received);
      usleep(1000);
      continue;
    }
    if (!progress) {
      pollfd p[2] = {{read_fd, POLLIN, 0}, {write_fd, static_cast<short>(send_done ? 0 : POLLOUT), 0}};
      poll(p, same || send_done ? 1 : 2, 20);
      if (same && !send_done) {
        pollfd q{write_fd, POLLIN | POLLOUT, 0};
        poll(&q, 1, 20);
      }
    }
  }
  r.received_sha = sha.hex_digest();
  return r;
}

// A byte-trickling TCP proxy: copies a <-> b; while `trickle` is set, every byte from the peer
// to the splice (and back) goes in its own send().
class Proxy {
 public:
  Proxy(int peer_side, int splice_side) : a_(peer_side), b_(splice_side) {
    set_nonblocking(a_, true);
    set_nonblocking(b_, true);
    thread_ = std::thread([this] { run(); });
  }
  ~Proxy() { stop(); }
  void set_trickle(bool on) { trickle_.store(on); }
  void stop() {
    if (thread_.joinable()) {
      stop_.store(true);
      thread_.join();
      close(a_);
      close(b_);
    }
  }
  uint64_t trickled_sends() const { return trickled_.load(); }

 private:
  struct Dir {
    int from, to;
    std::vector<uint8_t> buf;
    size_t off = 0;
    bool eof = false, done = false;
  };
  void run() {
    Dir d[2] = {{a_, b_, {}, 0}, {b_, a_, {}, 0}};
    uint8_t tmp[65536];
    while (!stop_.load() && !(d[0].done && d[1].done)) {
      bool progress = false;
      for (Dir& x : d) {
        if (x.done) continue;
        if (x.buf.size() - x.off < 1 << 20 && !x.eof) {
          const ssize_t n = read(x.from, tmp, sizeof(tmp));
          if (n > 0) {
            x.buf.insert(x.buf.end(), tmp, tmp + n);
            progress = true;
          } else if (n == 0 || (n < 0 && errno != EAGAIN)) {
            x.eof = true;
            progress = true;
          }
        }
        while (x.off < x.buf.size()) {
          const bool t = trickle_.load();
          const size_t len = t ? 1 : x.buf.size() - x.off;
          const ssize_t n = send(x.to, x.buf.data() + x.off, len, MSG_NOSIGNAL);
          if (n <= 0) {
            if (n < 0 && errno != EAGAIN) {
              x.off = x.buf.size();
              x.eof = true;
            }
            break;
          }
          x.off += static_cast<size_t>(n);
          progress = true;
          if (t) {
            trickled_++;
            break;  // one byte per turn: the reader sees it alone
          }
        }
        if (x.off == x.buf.size()) {
          x.buf.clear();
          x.off = 0;
          if (x.eof) {
            shutdown(x.to, SHUT_WR);
            x.done = true;
          }
        }
      }
      if (!progress) {
        pollfd p[2] = {{a_, POLLIN, 0}, {b_, POLLIN, 0}};
        poll(p, 2, 5);
      }
    }
  }
  int a_, b_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> trickle_{false};
  std::atomic<uint64_t> trickled_{0};
};

// One spliced session.
struct Harness {
  TlsParams params;
  SSL_CTX* client_ctx = nullptr;
  SSL_CTX* server_ctx = nullptr;
  SSL* peer_ssl = nullptr;  // the side that stays OpenSSL
  int peer_fd = -1;
  int user_write_fd = -1;   // the test writes here (the splice reads the other end)
  int user_read_fd = -1;    // the test reads here
  KeyLog keylog;
  std::unique_ptr<Proxy> proxy;
  std::shared_ptr<Observer> observer = std::make_shared<Observer>();
  std::shared_ptr<tls_splice::Splice> splice;
  tls_splice::IoThreadPool pool{1};
  tls_splice::IoThread* thread = nullptr;
  uint16_t suite_id = 0;
  std::string init_code;
  // With params.keep_fd_copies: dups of the fds given to the splice, to read socket options
  // after the splice closed its own (a copy keeps the socket open: no reset on close).
  int tcp_fd_copy = -1;
  int target_fd_copy = -1;

  explicit Harness(TlsParams p) : params(std::move(p)) {}

  ~Harness() {
    pool.shutdown();
    if (proxy) proxy->stop();
    if (peer_ssl) SSL_free(peer_ssl);
    if (peer_fd >= 0) close(peer_fd);
    if (user_write_fd >= 0) close(user_write_fd);
    if (user_read_fd >= 0 && user_read_fd != user_write_fd) close(user_read_fd);
    if (tcp_fd_copy >= 0) close(tcp_fd_copy);
    if (target_fd_copy >= 0) close(target_fd_copy);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
  }

  SSL_CTX* make_ctx(bool server) {
    SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    const int v = params.tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    if (params.tls13) {
      SSL_CTX_set_ciphersuites(ctx, params.cipher.c_str());
    } else {
      SSL_CTX_set_cipher_list(ctx, params.cipher.c_str());
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_keylog_callback(ctx, keylog_callback);
    if (server) {
      SSL_CTX_use_certificate(ctx, credentials().cert);
      SSL_CTX_use_PrivateKey(ctx, credentials().key);
      SSL_CTX_set_num_tickets(ctx, static_cast<size_t>(params.num_tickets));
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      if (params.max_fragment_length_mode) {
        SSL_CTX_set_tlsext_max_fragment_length(ctx, params.max_fragment_length_mode);
      }
    }
    return ctx;
  }

  // Handshake, capture, and build + start the splice. Returns false (with REQUIREs reported)
  // when the session could not be set up.
  bool start(bool deliver_in = true, bool deliver_out = true) {
    client_ctx = make_ctx(false);
    server_ctx = make_ctx(true);
    int tcp[2];
    tcp_pair(tcp, params.harness_nodelay);  // tcp[0] client, tcp[1] server
    int client_fd = tcp[0], server_fd = tcp[1];
    if (params.trickle_proxy) {
      // client <-> proxy <-> server: the proxy sits on the peer's side of the splice.
      int second[2];
      tcp_pair(second, params.harness_nodelay);
      // client = tcp[0] <-> proxy(tcp[1], second[0]) <-> second[1] = server
      proxy = std::make_unique<Proxy>(tcp[1], second[0]);
      server_fd = second[1];
    }
    SSL* client = SSL_new(client_ctx);
    SSL* server = SSL_new(server_ctx);
    SSL_set_fd(client, client_fd);
    SSL_set_fd(server, server_fd);
    SSL* spliced = params.spliced_is_server ? server : client;
    SSL_set_app_data(spliced, &keylog);
    int client_rc = 0, server_rc = 0;
    std::thread t([&] { server_rc = SSL_accept(server); });
    client_rc = SSL_connect(client);
    t.join();
    if (client_rc != 1 || server_rc != 1) {
      ERR_print_errors_fp(stderr);
      REQUIRE(client_rc == 1 && server_rc == 1);
    }
    suite_id = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(spliced));
    tls_splice::SpliceConfig config;
    config.is_server = params.spliced_is_server;
    tls_splice::SessionKeys& k = config.keys;
    k.version = params.tls13 ? tls_splice::TlsVersion::kTls13 : tls_splice::TlsVersion::kTls12;
    k.cipher_suite = suite_id;
    const tls_splice::CipherSuite* suite = tls_splice::find_cipher_suite(k.version, suite_id);
    REQUIRE(suite != nullptr);
    if (params.tls13) {
      const test::Bytes cs = keylog_value(keylog, "CLIENT_TRAFFIC_SECRET_0");
      const test::Bytes ss = keylog_value(keylog, "SERVER_TRAFFIC_SECRET_0");
      REQUIRE(cs.size() == tls_splice::hash_length(suite->hash) && ss.size() == cs.size());
      std::memcpy(k.read_secret, params.spliced_is_server ? cs.data() : ss.data(), cs.size());
      std::memcpy(k.write_secret, params.spliced_is_server ? ss.data() : cs.data(), cs.size());
      // Tickets the (OpenSSL) server wrote at the end of SSL_accept took its first sequence
      // numbers; a spliced client reads them itself.
      k.read_seq = 0;
      k.write_seq = params.spliced_is_server ? static_cast<uint64_t>(params.num_tickets) : 0;
    } else {
      const test::Bytes ms = keylog_value(keylog, "CLIENT_RANDOM");
      REQUIRE(ms.size() == tls_splice::kTls12MasterSecretLength);
      uint8_t cr[32], sr[32];
      SSL_get_client_random(spliced, cr, sizeof(cr));
      SSL_get_server_random(spliced, sr, sizeof(sr));
      tls_splice::Tls12KeyBlock kb;
      REQUIRE(tls_splice::derive_tls12_key_block(*suite, ms.data(), cr, sr, &kb));
      const bool srv = params.spliced_is_server;
      std::memcpy(k.read_key, srv ? kb.client_write_key : kb.server_write_key, suite->key_length);
      std::memcpy(k.write_key, srv ? kb.server_write_key : kb.client_write_key, suite->key_length);
      std::memcpy(k.read_iv, srv ? kb.client_write_iv : kb.server_write_iv, suite->fixed_iv_length);
      std::memcpy(k.write_iv, srv ? kb.server_write_iv : kb.client_write_iv, suite->fixed_iv_length);
      tls_splice::wipe(&kb, sizeof(kb));
      // RFC 5246 6.1: the Finished records took sequence 0 in each direction.
      k.read_seq = 1;
      k.write_seq = 1;
    }
    if (params.splice_max_fragment_length) {
      k.max_fragment_length = params.splice_max_fragment_length;
    } else if (params.max_fragment_length_mode) {
      k.max_fragment_length = size_t{256} << params.max_fragment_length_mode;
    }
    k.key_update_after_records = params.key_update_after_records;

    // The spliced side's SSL is spent: free it without a close_notify. Its fd stays open
    // (SSL_set_fd does not own it) and goes to the splice.
    SSL_set_quiet_shutdown(spliced, 1);
    SSL_free(spliced);
    const int spliced_fd = params.spliced_is_server ? server_fd : client_fd;
    peer_ssl = params.spliced_is_server ? client : server;
    peer_fd = params.spliced_is_server ? client_fd : server_fd;
    config.tcp_fd = tls_splice::OwnedFd(spliced_fd);
    config.framing = params.framing;
    config.no_delay = params.no_delay;
    config.on_truncation = params.on_truncation;
    config.idle_timeout_ms = params.idle_timeout_ms;
    config.fin_timeout_ms = params.fin_timeout_ms;
    if (params.keep_fd_copies) tcp_fd_copy = dup(spliced_fd);
    config.deliver_in = deliver_in;
    config.deliver_out = deliver_out;
    if (params.pipes) {
      int to_splice[2], from_splice[2];
      if (pipe(to_splice) < 0 || pipe(from_splice) < 0) die("pipe");
      if (params.sink_pipe_size) fcntl(from_splice[1], F_SETPIPE_SZ, params.sink_pipe_size);
      config.read_fd = tls_splice::OwnedFd(to_splice[0]);
      config.write_fd = tls_splice::OwnedFd(from_splice[1]);
      user_write_fd = to_splice[1];
      user_read_fd = from_splice[0];
    } else if (params.tcp_target) {
      int sp[2];
      tcp_pair(sp, params.harness_nodelay);
      config.read_fd = tls_splice::OwnedFd(sp[0]);
      config.write_to_read_fd = true;
      user_write_fd = user_read_fd = sp[1];
      if (params.keep_fd_copies) target_fd_copy = dup(sp[0]);
    } else {
      int sp[2];
      const int type = params.framing.framing == tls_splice::Framing::kStream ? SOCK_STREAM
                                                                              : SOCK_SEQPACKET;
      if (socketpair(AF_UNIX, type, 0, sp) < 0) die("socketpair");
      config.read_fd = tls_splice::OwnedFd(sp[0]);
      config.write_to_read_fd = true;
      user_write_fd = user_read_fd = sp[1];
      if (params.keep_fd_copies) target_fd_copy = dup(sp[0]);
    }
    splice = std::make_shared<tls_splice::Splice>(std::move(config), observer);
    if (!splice->init(&init_code)) return false;
    int err = 0;
    thread = pool.start_splice(splice, &err);
    REQUIRE(thread != nullptr);
    return true;
  }

  void stop(bool graceful) {
    std::shared_ptr<tls_splice::Splice> s = splice;
    thread->post([s, graceful](uv_loop_t*) { s->stop(graceful); });
  }
};

// Runs the peer and the user concurrently and waits for both and for the splice to close.
struct RunResult {
  PeerResult peer;
  UserResult user;
  bool closed = false;
};

inline RunResult run(Harness& h, const PeerPlan& peer_plan, const UserPlan& user_plan,
                     int close_timeout_seconds = 60) {
  RunResult r;
  std::thread peer([&] { r.peer = run_peer(h.peer_ssl, h.peer_fd, peer_plan); });
  r.user = run_user(h.user_write_fd, h.user_read_fd, user_plan);
  peer.join();
  r.closed = h.observer->wait_closed(close_timeout_seconds);
  // The user side closed (or shut down) its write end; forget it so ~Harness does not close a
  // number that may have been reused.
  if (user_plan.close_after_send && h.user_write_fd != h.user_read_fd) h.user_write_fd = -1;
  return r;
}

inline std::string suite_label(const TlsParams& p) {
  return std::string(p.tls13 ? "tls13 " : "tls12 ") + p.cipher +
         (p.spliced_is_server ? " (spliced server)" : " (spliced client)");
}

// The TLS 1.3 suites and the TLS 1.2 AEAD suites with an ECDSA certificate.
inline std::vector<TlsParams> all_params() {
  std::vector<TlsParams> v;
  for (const char* s : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                        "TLS_CHACHA20_POLY1305_SHA256"}) {
    TlsParams p;
    p.tls13 = true;
    p.cipher = s;
    v.push_back(p);
  }
  for (const char* s : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                        "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
    TlsParams p;
    p.tls13 = false;
    p.cipher = s;
    v.push_back(p);
  }
  return v;
}

inline void init_openssl() {
  OPENSSL_init_ssl(0, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace harness

#endif  // TLS_SPLICE_SPLICE_HARNESS_H_
