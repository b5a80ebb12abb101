// benchtool: the small native helpers the benchmarks run as peers, so that no peer is a Node
// process competing with the one under test, and the counting and checking of bytes costs as
// little as possible.
//
//   benchtool sink [--listen PORT] [--check zero|pattern|none] [--report FILE] [--pipe-size N]
//       Reads fd 0 (or the one TCP connection accepted on 127.0.0.1:PORT; "listening" is printed
//       once bound) until EOF with 1 MiB reads, checks the bytes, and writes a JSON report:
//       { bytes, ok, firstNs, lastNs } (CLOCK_MONOTONIC, the clock of process.hrtime.bigint()).
//   benchtool source --bytes N [--fill zero|pattern]
//       Writes N bytes to fd 1 (1 MiB writes), then exits.
//   benchtool duplex --bytes N [--check ...] [--report FILE]
//       Both at once on fds 0 and 1: writes N pattern bytes to fd 1 (then closes it) while
//       reading fd 0 to EOF; reports what it read like `sink`.
//   benchtool rusage --report FILE -- CMD ARGS...
//       Runs CMD, waits for it, and reports { status, userS, sysS, maxRssKb, startNs, endNs } from
//       getrusage(RUSAGE_CHILDREN): the process under test when it is not a Node process.
//   benchtool pkt-peer --port P [--tls --cert C --key K [--tls12-cipher NAME [--no-etm]]]
//                      --mode send|pingpong --count N [--size 1400] --tun NAME [--report FILE]
//       A TLS (OpenSSL) or plain TCP server for the packet benchmarks, on 127.0.0.1:P inside the
//       benchmark's network namespace. Prints "connected" once the handshake is done, then waits
//       for a line on stdin ("go") before it starts.
//       send: N IPv4/UDP packets of --size bytes, one TLS record each, to the TUN's address. The
//         UDP checksum is wrong on purpose: the kernel drops them silently after the TUN counted
//         them (no ICMP comes back). Records are sealed into memory in batches and written with
//         large writes, so the peer costs little. Done when the TUN's rx_packets has grown by N.
//       pingpong: N ICMP echo requests of --size bytes, one at a time; the kernel behind the TUN
//         answers each. Reports the round-trip times' percentiles.
//   benchtool peer (--listen PORT | --connect PORT) [--tls [--cert C --key K]] [--send N
//                  [--fill zero|pattern]] [--recv [--check zero|pattern|none]] [--report FILE]
//       A fast stream peer, TLS (OpenSSL) or plain TCP: sends N bytes and/or receives until the
//       other side closes, both at once if asked. Reports what it received like `sink`, plus
//       { sent, sendStartNs, sendEndNs, userS, sysS }.
//       --tls12-cipher NAME [--no-etm] (both, listening): TLS 1.2 with that suite, see
//       apply_tls12_cipher().
//   benchtool tun-fwd --connect PORT --tun NAME --addr CIDR
//       The no-TLS limit for packets: plain TCP <-> TUN in C, IPv4 framing by the header's total
//       length, one write() per packet. Opens and configures the TUN itself.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define BUF_SIZE (1u << 20)

static void die(const char* what) {
  fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void die_msg(const char* what) {
  fprintf(stderr, "benchtool: %s\n", what);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char* arg_value(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 0; i < argc - 1; i++) {
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

static int has_flag(int argc, char** argv, const char* name) {
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], name) == 0) return 1;
  }
  return 0;
}

static FILE* open_report(const char* path) {
  if (path == NULL) return stdout;
  FILE* f = fopen(path, "w");
  if (f == NULL) die("fopen report");
  return f;
}

static void close_report(FILE* f) {
  if (f != stdout) fclose(f);
  else fflush(f);
}

// --- the pattern: word w (bytes 8w..8w+7, little-endian) is w * golden ratio -------------------
// Every 8-byte position has its own value, so lost, doubled or reordered bytes show.

static inline uint64_t pattern_word(uint64_t w) { return (w + 1) * 0x9E3779B97F4A7C15ull; }

static void fill_pattern(uint8_t* buf, uint64_t offset, size_t length) {
  // offset is a multiple of 8 here: the source writes whole buffers.
  uint64_t* words = (uint64_t*)buf;
  const uint64_t first = offset / 8;
  for (size_t i = 0; i < length / 8; i++) words[i] = pattern_word(first + i);
  for (size_t i = length / 8 * 8; i < length; i++) {
    const uint64_t v = pattern_word((offset + i) / 8);
    buf[i] = (uint8_t)(v >> (8 * ((offset + i) % 8)));
  }
}

enum check_kind { CHECK_NONE, CHECK_ZERO, CHECK_PATTERN };

static enum check_kind parse_check(const char* s) {
  if (strcmp(s, "zero") == 0) return CHECK_ZERO;
  if (strcmp(s, "pattern") == 0) return CHECK_PATTERN;
  if (strcmp(s, "none") == 0) return CHECK_NONE;
  die_msg("--check must be zero, pattern or none");
  return CHECK_NONE;
}

// A reader that checks what it reads. The buffer keeps the bytes of a partial word at its front
// so that words are always compared whole.
struct checker {
  enum check_kind kind;
  uint8_t* buf;
  uint64_t total;
  uint64_t first_ns;
  uint64_t last_ns;
  int ok;
  uint64_t bad_at;
};

static void checker_init(struct checker* c, enum check_kind kind) {
  memset(c, 0, sizeof(*c));
  c->kind = kind;
  c->ok = 1;
  c->bad_at = UINT64_MAX;
  if (posix_memalign((void**)&c->buf, 64, BUF_SIZE + 8) != 0) die_msg("out of memory");
}

// Returns bytes read, 0 at EOF, -1 with errno (EAGAIN included) on error.
// Where the next bytes go (after the carried partial word), and how many fit.
static uint8_t* checker_tail(struct checker* c) { return c->buf + c->total % 8; }

// Checks `n` bytes just placed at checker_tail().
static void checker_took(struct checker* c, size_t n) {
  const size_t carry = c->total % 8;
  const uint64_t t = now_ns();
  if (c->first_ns == 0) c->first_ns = t;
  c->last_ns = t;
  const size_t have = carry + (size_t)n;
  if (c->kind == CHECK_ZERO && c->ok) {
    const uint64_t* words = (const uint64_t*)c->buf;
    uint64_t acc = 0;
    for (size_t i = 0; i < have / 8; i++) acc |= words[i];
    for (size_t i = have / 8 * 8; i < have; i++) acc |= c->buf[i];
    if (acc != 0) {
      c->ok = 0;
      c->bad_at = c->total;
    }
  } else if (c->kind == CHECK_PATTERN && c->ok) {
    const uint64_t* words = (const uint64_t*)c->buf;
    const uint64_t first = (c->total - carry) / 8;
    for (size_t i = 0; i < have / 8; i++) {
      if (words[i] != pattern_word(first + i)) {
        c->ok = 0;
        c->bad_at = (first + i) * 8;
        break;
      }
    }
  }
  c->total += (uint64_t)n;
  // Keep the partial word for the next read.
  const size_t whole = have / 8 * 8;
  if (whole > 0 && have > whole) memmove(c->buf, c->buf + whole, have - whole);
}

static ssize_t checker_read(struct checker* c, int fd) {
  ssize_t n;
  do n = read(fd, checker_tail(c), BUF_SIZE); while (n < 0 && errno == EINTR);
  if (n > 0) checker_took(c, (size_t)n);
  return n;
}

static void checker_report(const struct checker* c, FILE* f, const char* extra) {
  fprintf(f, "{\"bytes\":%llu,\"ok\":%s,\"firstNs\":\"%llu\",\"lastNs\":\"%llu\"",
          (unsigned long long)c->total, c->ok ? "true" : "false",
          (unsigned long long)c->first_ns, (unsigned long long)c->last_ns);
  if (!c->ok) fprintf(f, ",\"badAt\":%llu", (unsigned long long)c->bad_at);
  if (extra) fprintf(f, ",%s", extra);
  fprintf(f, "}\n");
}

static int listen_tcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) die("bind");
  if (listen(fd, 16) != 0) die("listen");
  return fd;
}

static int accept_one(int listener) {
  int fd;
  do fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) die("accept");
  close(listener);
  return fd;
}

// --- sink / source / duplex ---------------------------------------------------------------------

static int cmd_sink(int argc, char** argv) {
  struct checker c;
  checker_init(&c, parse_check(arg_value(argc, argv, "--check", "none")));
  int fd = 0;
  // --pipe-size N: F_SETPIPE_SZ on a pipe stdin (for experiments: what a larger pipe would give).
  const char* pipe_size = arg_value(argc, argv, "--pipe-size", NULL);
  if (pipe_size && fcntl(0, F_SETPIPE_SZ, atoi(pipe_size)) < 0) die("F_SETPIPE_SZ");
  const char* port = arg_value(argc, argv, "--listen", NULL);
  if (port) {
    const int listener = listen_tcp(atoi(port));
    printf("listening\n");
    fflush(stdout);
    fd = accept_one(listener);
  }
  for (;;) {
    const ssize_t n = checker_read(&c, fd);
    if (n == 0) break;
    if (n < 0) die("read");
  }
  FILE* f = open_report(arg_value(argc, argv, "--report", NULL));
  checker_report(&c, f, NULL);
  close_report(f);
  return c.ok ? 0 : 1;
}

static int write_all(int fd, const uint8_t* data, size_t length) {
  while (length > 0) {
    ssize_t n;
    do n = write(fd, data, length); while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    data += n;
    length -= (size_t)n;
  }
  return 0;
}

static int cmd_source(int argc, char** argv) {
  const uint64_t total = strtoull(arg_value(argc, argv, "--bytes", "0"), NULL, 10);
  const int pattern = strcmp(arg_value(argc, argv, "--fill", "pattern"), "pattern") == 0;
  uint8_t* buf;
  if (posix_memalign((void**)&buf, 64, BUF_SIZE) != 0) die_msg("out of memory");
  memset(buf, 0, BUF_SIZE);
  signal(SIGPIPE, SIG_IGN);
  for (uint64_t sent = 0; sent < total;) {
    const size_t take = total - sent < BUF_SIZE ? (size_t)(total - sent) : BUF_SIZE;
    if (pattern) fill_pattern(buf, sent, take);
    if (write_all(1, buf, take) != 0) die("write");
    sent += take;
  }
  return 0;
}

static int cmd_duplex(int argc, char** argv) {
  const uint64_t total = strtoull(arg_value(argc, argv, "--bytes", "0"), NULL, 10);
  struct checker c;
  checker_init(&c, parse_check(arg_value(argc, argv, "--check", "none")));
  uint8_t* out;
  if (posix_memalign((void**)&out, 64, BUF_SIZE) != 0) die_msg("out of memory");
  signal(SIGPIPE, SIG_IGN);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  uint64_t sent = 0;
  size_t out_start = 0, out_end = 0;
  int reading = 1, writing = total > 0;
  if (!writing) close(1);
  while (reading || writing) {
    struct pollfd fds[2] = {{.fd = reading ? 0 : -1, .events = POLLIN},
                            {.fd = writing ? 1 : -1, .events = POLLOUT}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (reading && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      for (;;) {
        const ssize_t n = checker_read(&c, 0);
        if (n == 0) {
          reading = 0;
          break;
        }
        if (n < 0) {
          if (errno == EAGAIN) break;
          die("read");
        }
      }
    }
    if (writing && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      for (;;) {
        if (out_start == out_end) {
          if (sent == total) break;
          const size_t take = total - sent < BUF_SIZE ? (size_t)(total - sent) : BUF_SIZE;
          fill_pattern(out, sent, take);
          sent += take;
          out_start = 0;
          out_end = take;
        }
        const ssize_t n = write(1, out + out_start, out_end - out_start);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          die("write");
        }
        out_start += (size_t)n;
      }
      if (out_start == out_end && sent == total) {
        writing = 0;
        // A socket gets a FIN (half-close), a pipe its EOF.
        shutdown(1, SHUT_WR);
        close(1);
      }
    }
  }
  FILE* f = open_report(arg_value(argc, argv, "--report", NULL));
  char extra[64];
  snprintf(extra, sizeof(extra), "\"sent\":%llu", (unsigned long long)sent);
  checker_report(&c, f, extra);
  close_report(f);
  return c.ok ? 0 : 1;
}

// --- rusage -------------------------------------------------------------------------------------

static pid_t child_pid = 0;

static void forward_signal(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static int cmd_rusage(int argc, char** argv) {
  int dash = -1;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      dash = i;
      break;
    }
  }
  if (dash < 0 || dash + 1 >= argc) die_msg("rusage: -- CMD ARGS... missing");
  const char* report = arg_value(dash, argv, "--report", NULL);
  const uint64_t start = now_ns();
  child_pid = fork();
  if (child_pid < 0) die("fork");
  if (child_pid == 0) {
    execvp(argv[dash + 1], argv + dash + 1);
    _exit(127);
  }
  signal(SIGTERM, forward_signal);
  signal(SIGINT, forward_signal);
  int status = 0;
  while (waitpid(child_pid, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  const uint64_t end = now_ns();
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  FILE* f = open_report(report);
  fprintf(f,
          "{\"status\":%d,\"signal\":%d,\"userS\":%.6f,\"sysS\":%.6f,\"maxRssKb\":%ld,"
          "\"startNs\":\"%llu\",\"endNs\":\"%llu\"}\n",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
          ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
          ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss,
          (unsigned long long)start, (unsigned long long)end);
  close_report(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// --- IPv4 packets -------------------------------------------------------------------------------

static uint16_t ip_checksum(const uint8_t* data, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < length; i += 2) sum += (uint32_t)(data[i] << 8 | data[i + 1]);
  if (length & 1) sum += (uint32_t)data[length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static const uint32_t kTunAddr = 0x0a4d0001;   // 10.77.0.1: the TUN's address
static const uint32_t kPeerAddr = 0x0a4d0002;  // 10.77.0.2: the far end of the "tunnel"

static void put16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t* p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

static void make_ipv4_header(uint8_t* p, size_t total, uint8_t protocol) {
  memset(p, 0, 20);
  p[0] = 0x45;
  put16(p + 2, (uint16_t)total);
  p[8] = 64;
  p[9] = protocol;
  put32(p + 12, kPeerAddr);
  put32(p + 16, kTunAddr);
  put16(p + 10, ip_checksum(p, 20));
}

// UDP to port 9 with a deliberately wrong checksum: counted by the TUN, dropped without a reply.
static void make_udp_packet(uint8_t* p, size_t total) {
  make_ipv4_header(p, total, 17);
  uint8_t* udp = p + 20;
  put16(udp, 40000);
  put16(udp + 2, 9);
  put16(udp + 4, (uint16_t)(total - 20));
  for (size_t i = 8; i < total - 20; i++) udp[i] = (uint8_t)i;
  put16(udp + 6, 0xbad1);
}

static void make_echo_request(uint8_t* p, size_t total, uint16_t seq) {
  make_ipv4_header(p, total, 1);
  uint8_t* icmp = p + 20;
  memset(icmp, 0, 8);
  icmp[0] = 8;  // echo request
  put16(icmp + 4, 0x7b7b);
  put16(icmp + 6, seq);
  for (size_t i = 8; i < total - 20; i++) icmp[i] = (uint8_t)(i ^ seq);
  put16(icmp + 2, ip_checksum(icmp, total - 20));
}

static uint64_t read_counter(const char* tun, const char* name) {
  char path[256];
  snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", tun, name);
  FILE* f = fopen(path, "r");
  if (f == NULL) die("open tun statistics");
  unsigned long long v = 0;
  if (fscanf(f, "%llu", &v) != 1) die_msg("read tun statistics");
  fclose(f);
  return v;
}

// --- pkt-peer -----------------------------------------------------------------------------------

struct conn {
  int fd;
  SSL* ssl;       // NULL for plain TCP
  BIO* mem;       // TLS: records are sealed into memory, then written in large writes
};

static void conn_flush(struct conn* c) {
  if (c->ssl == NULL) return;
  char* data;
  const long length = BIO_get_mem_data(c->mem, &data);
  if (length > 0 && write_all(c->fd, (const uint8_t*)data, (size_t)length) != 0) die("write");
  (void)BIO_reset(c->mem);
}

// Queues one packet: one TLS record, or raw bytes on plain TCP (written at once).
static void conn_send_packet(struct conn* c, const uint8_t* p, size_t length) {
  if (c->ssl == NULL) {
    if (write_all(c->fd, p, length) != 0) die("write");
    return;
  }
  if (SSL_write(c->ssl, p, (int)length) != (int)length) die_msg("SSL_write failed");
}

// Reads some cleartext; 0 at EOF or close_notify.
static ssize_t conn_read(struct conn* c, uint8_t* buf, size_t capacity) {
  if (c->ssl == NULL) {
    ssize_t n;
    do n = read(c->fd, buf, capacity); while (n < 0 && errno == EINTR);
    if (n < 0) die("read");
    return n;
  }
  for (;;) {
    const int n = SSL_read(c->ssl, buf, (int)capacity);
    if (n > 0) return n;
    const int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;
    ERR_print_errors_fp(stderr);
    die_msg("SSL_read failed");
  }
}

static void conn_close(struct conn* c) {
  if (c->ssl != NULL) {
    SSL_shutdown(c->ssl);
    conn_flush(c);
  }
  shutdown(c->fd, SHUT_WR);
  // Drain until the other side closes, so that unread bytes never turn the close into an RST.
  uint8_t buf[16384];
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  while (poll(&pfd, 1, 5000) > 0) {
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n <= 0) break;
  }
  close(c->fd);
}

static int cmp_u64(const void* a, const void* b) {
  const uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

// --tls12-cipher NAME [--no-etm]: TLS 1.2 with that one OpenSSL cipher suite (e.g.
// ECDHE-RSA-AES128-SHA), instead of TLS 1.3; --no-etm refuses encrypt_then_mac (RFC 7366), so a
// CBC suite runs MAC-then-encrypt.
static void apply_tls12_cipher(SSL_CTX* ctx, int argc, char** argv) {
  const char* cipher = arg_value(argc, argv, "--tls12-cipher", NULL);
  if (cipher == NULL) return;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(ctx, cipher) != 1) {
    ERR_print_errors_fp(stderr);
    die_msg("unknown --tls12-cipher");
  }
  if (has_flag(argc, argv, "--no-etm")) SSL_CTX_set_options(ctx, SSL_OP_NO_ENCRYPT_THEN_MAC);
}

static int cmd_pkt_peer(int argc, char** argv) {
  const int port = atoi(arg_value(argc, argv, "--port", "0"));
  const int tls = has_flag(argc, argv, "--tls");
  const char* mode = arg_value(argc, argv, "--mode", "send");
  const uint64_t count = strtoull(arg_value(argc, argv, "--count", "10000"), NULL, 10);
  const size_t size = (size_t)atoi(arg_value(argc, argv, "--size", "1400"));
  const char* tun = arg_value(argc, argv, "--tun", "tsb0");
  if (size < 64 || size > 16384) die_msg("--size must be 64..16384");
  signal(SIGPIPE, SIG_IGN);

  SSL_CTX* ctx = NULL;
  if (tls) {
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, arg_value(argc, argv, "--cert", "")) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, arg_value(argc, argv, "--key", ""), SSL_FILETYPE_PEM) != 1) {
      ERR_print_errors_fp(stderr);
      die_msg("cannot load --cert / --key");
    }
    apply_tls12_cipher(ctx, argc, argv);
  }
  const int listener = listen_tcp(port);
  printf("listening\n");
  fflush(stdout);
  struct conn c = {.fd = accept_one(listener)};
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (tls) {
    c.ssl = SSL_new(ctx);
    SSL_set_fd(c.ssl, c.fd);
    if (SSL_accept(c.ssl) != 1) {
      ERR_print_errors_fp(stderr);
      die_msg("SSL_accept failed");
    }
    c.mem = BIO_new(BIO_s_mem());
    SSL_set0_wbio(c.ssl, c.mem);
  }
  printf("connected\n");
  fflush(stdout);
  char line[64];
  if (fgets(line, sizeof(line), stdin) == NULL) die_msg("no go line on stdin");

  uint8_t* packet = malloc(size);
  uint8_t* in = malloc(65536 + size);
  FILE* report = open_report(arg_value(argc, argv, "--report", NULL));
  if (strcmp(mode, "send") == 0) {
    make_udp_packet(packet, size);
    const uint64_t base = read_counter(tun, "rx_packets");
    const uint64_t start = now_ns();
    const uint64_t batch = tls ? 64 : 1;
    for (uint64_t i = 0; i < count; i += batch) {
      for (uint64_t j = i; j < i + batch && j < count; j++) conn_send_packet(&c, packet, size);
      conn_flush(&c);
    }
    const uint64_t sent = now_ns();
    // Done when the TUN has seen every packet (checked every 200 us, for at most 60 s).
    uint64_t got = 0;
    while ((got = read_counter(tun, "rx_packets") - base) < count) {
      if (now_ns() - sent > 60000000000ull) break;
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
    }
    const uint64_t done = now_ns();
    fprintf(report,
            "{\"mode\":\"send\",\"packets\":%llu,\"received\":%llu,\"startNs\":\"%llu\","
            "\"sentNs\":\"%llu\",\"doneNs\":\"%llu\"}\n",
            (unsigned long long)count, (unsigned long long)got, (unsigned long long)start,
            (unsigned long long)sent, (unsigned long long)done);
  } else {
    uint64_t* rtt = malloc(sizeof(uint64_t) * (count ? count : 1));
    size_t have = 0;
    uint64_t lost = 0, other = 0;
    const uint64_t start = now_ns();
    for (uint64_t i = 0; i < count; i++) {
      const uint16_t seq = (uint16_t)i;
      make_echo_request(packet, size, seq);
      const uint64_t t0 = now_ns();
      conn_send_packet(&c, packet, size);
      conn_flush(&c);
      // Read until the matching echo reply (IPv4 framing by total length).
      for (;;) {
        while (have < 20 || have < (size_t)(in[2] << 8 | in[3])) {
          const ssize_t n = conn_read(&c, in + have, 65536 + size - have);
          if (n == 0) die_msg("pingpong: the connection closed early");
          have += (size_t)n;
        }
        const size_t length = (size_t)(in[2] << 8 | in[3]);
        if (length < 20 || (in[0] >> 4) != 4) die_msg("pingpong: not an IPv4 packet");
        const int match = in[9] == 1 && length == size && in[20] == 0 &&
                          (uint16_t)(in[26] << 8 | in[27]) == seq;
        memmove(in, in + length, have - length);
        have -= length;
        if (match) break;
        other++;
      }
      rtt[i] = now_ns() - t0;
    }
    const uint64_t end = now_ns();
    qsort(rtt, count, sizeof(uint64_t), cmp_u64);
    const double us = 1000.0;
    fprintf(report,
            "{\"mode\":\"pingpong\",\"exchanges\":%llu,\"lost\":%llu,\"otherPackets\":%llu,"
            "\"p50Us\":%.2f,\"p90Us\":%.2f,\"p99Us\":%.2f,\"minUs\":%.2f,\"maxUs\":%.2f,"
            "\"startNs\":\"%llu\",\"doneNs\":\"%llu\"}\n",
            (unsigned long long)count, (unsigned long long)lost, (unsigned long long)other,
            rtt[count / 2] / us, rtt[count * 9 / 10] / us, rtt[count * 99 / 100] / us,
            rtt[0] / us, rtt[count - 1] / us, (unsigned long long)start,
            (unsigned long long)end);
  }
  close_report(report);
  conn_close(&c);
  return 0;
}

// --- peer: a fast TLS (or plain TCP) stream peer -----------------------------------------------
// One connection, accepted (--listen) or made (--connect), on 127.0.0.1. Sends --send bytes and/or
// receives until the other side closes (--recv), both at once with poll(). TLS: OpenSSL with
// records sealed through a memory BIO 64 at a time and written with large write()s, and reads
// with read-ahead, so the peer spends its CPU on AES and one copy, not on syscalls per record.

static SSL_CTX* make_ctx(int server, const char* cert, const char* key) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
  if (server && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
    ERR_print_errors_fp(stderr);
    die_msg("cannot load --cert / --key");
  }
  return ctx;
}

static int connect_tcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) die("connect");
  return fd;
}

static int cmd_peer(int argc, char** argv) {
  const char* listen_port = arg_value(argc, argv, "--listen", NULL);
  const char* connect_port = arg_value(argc, argv, "--connect", NULL);
  const int tls = has_flag(argc, argv, "--tls");
  const uint64_t to_send = strtoull(arg_value(argc, argv, "--send", "0"), NULL, 10);
  const int pattern = strcmp(arg_value(argc, argv, "--fill", "zero"), "pattern") == 0;
  const int receiving = has_flag(argc, argv, "--recv");  // reports what it read (always reads)
  struct checker c;
  checker_init(&c, parse_check(arg_value(argc, argv, "--check", "none")));
  signal(SIGPIPE, SIG_IGN);

  int fd;
  if (listen_port) {
    const int listener = listen_tcp(atoi(listen_port));
    printf("listening\n");
    fflush(stdout);
    fd = accept_one(listener);
  } else if (connect_port) {
    fd = connect_tcp(atoi(connect_port));
  } else {
    die_msg("peer: --listen or --connect");
  }
  SSL* ssl = NULL;
  BIO* mem = NULL;
  if (tls) {
    SSL_CTX* ctx = make_ctx(listen_port != NULL, arg_value(argc, argv, "--cert", ""),
                            arg_value(argc, argv, "--key", ""));
    if (listen_port) apply_tls12_cipher(ctx, argc, argv);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if ((listen_port ? SSL_accept(ssl) : SSL_connect(ssl)) != 1) {
      ERR_print_errors_fp(stderr);
      die_msg("TLS handshake failed");
    }
    mem = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl, mem);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  uint8_t* plain;
  if (posix_memalign((void**)&plain, 64, BUF_SIZE) != 0) die_msg("out of memory");
  memset(plain, 0, BUF_SIZE);
  uint64_t sent = 0;           // plaintext handed to the connection
  const uint8_t* out = NULL;   // bytes waiting to be written to the socket
  size_t out_length = 0, out_at = 0;
  // Always read until the other side closes, even when only sending: closing with unread bytes
  // (a ticket, the other side's close_notify) would send an RST that can destroy data in flight.
  (void)receiving;
  int sending = 1, shut = 0, eof = 0;
  uint64_t send_start = 0, send_end = 0;

  while (sending || !eof) {
    // Refill: the next batch of plaintext (sealed into memory when TLS).
    if (sending && out_at == out_length) {
      if (mem) (void)BIO_reset(mem);
      out_length = out_at = 0;
      if (sent < to_send) {
        if (send_start == 0) send_start = now_ns();
        const size_t take = to_send - sent < BUF_SIZE ? (size_t)(to_send - sent) : BUF_SIZE;
        if (pattern) fill_pattern(plain, sent, take);
        if (ssl) {
          for (size_t at = 0; at < take; at += 16384) {
            const int n = (int)(take - at < 16384 ? take - at : 16384);
            if (SSL_write(ssl, plain + at, n) != n) die_msg("SSL_write failed");
          }
          char* data;
          out_length = (size_t)BIO_get_mem_data(mem, &data);
          out = (const uint8_t*)data;
        } else {
          out = plain;
          out_length = take;
        }
        sent += take;
      } else if (to_send == 0 && !eof) {
        // Receive-only: stay open until the other side has closed, then close ours.
      } else if (!shut) {
        // All sent: close_notify (TLS 1.3: a half-close), then a FIN below; keep reading.
        if (ssl) {
          SSL_shutdown(ssl);
          char* data;
          out_length = (size_t)BIO_get_mem_data(mem, &data);
          out = (const uint8_t*)data;
        }
        shut = 1;
      }
      if (shut && out_at == out_length) {
        shutdown(fd, SHUT_WR);
        send_end = now_ns();
        sending = 0;
      }
    }
    struct pollfd pfd = {.fd = fd, .events = (short)((!eof ? POLLIN : 0) |
                                                      (sending && out_at < out_length ? POLLOUT : 0))};
    if (pfd.events == 0) continue;
    if (poll(&pfd, 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (sending && out_at < out_length && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = write(fd, out + out_at, out_length - out_at);
      if (n < 0 && errno != EAGAIN && errno != EINTR) die("write");
      if (n > 0) out_at += (size_t)n;
    }
    if (!eof && (pfd.revents & (POLLIN | POLLERR | POLLHUP))) {
      for (;;) {
        if (ssl) {
          const int n = SSL_read(ssl, checker_tail(&c), 16 * 16384);
          if (n > 0) {
            checker_took(&c, (size_t)n);
            continue;
          }
          const int err = SSL_get_error(ssl, n);
          if (err == SSL_ERROR_WANT_READ) break;
          if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
            eof = 1;
            break;
          }
          ERR_print_errors_fp(stderr);
          die_msg("SSL_read failed");
        } else {
          const ssize_t n = read(fd, checker_tail(&c), BUF_SIZE);
          if (n > 0) {
            checker_took(&c, (size_t)n);
            continue;
          }
          if (n == 0) {
            eof = 1;
            break;
          }
          if (errno == EAGAIN) break;
          if (errno == EINTR) continue;
          die("read");
        }
      }
    }
  }
  close(fd);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  FILE* f = open_report(arg_value(argc, argv, "--report", NULL));
  char extra[256];
  snprintf(extra, sizeof(extra),
           "\"sent\":%llu,\"sendStartNs\":\"%llu\",\"sendEndNs\":\"%llu\",\"userS\":%.6f,"
           "\"sysS\":%.6f",
           (unsigned long long)sent, (unsigned long long)send_start,
           (unsigned long long)send_end, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  checker_report(&c, f, extra);
  close_report(f);
  return c.ok ? 0 : 1;
}

// --- tun-fwd ------------------------------------------------------------------------------------

static int open_tun(const char* name) {
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) die("TUNSETIFF");
  return fd;
}

static int cmd_tun_fwd(int argc, char** argv) {
  const int port = atoi(arg_value(argc, argv, "--connect", "0"));
  const char* tun = arg_value(argc, argv, "--tun", "tsb0");
  const char* cidr = arg_value(argc, argv, "--addr", "10.77.0.1/24");
  signal(SIGPIPE, SIG_IGN);
  const int tfd = open_tun(tun);
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "ip addr add %s dev %s && ip link set %s up", cidr, tun, tun);
  if (system(cmd) != 0) die_msg("ip addr / link set failed");
  const int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(sfd, (struct sockaddr*)&addr, sizeof(addr)) != 0) die("connect");
  const int one = 1;
  setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  uint8_t* in = malloc(2 * 65536);
  uint8_t* out = malloc(65536);
  size_t have = 0;
  for (;;) {
    struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = tfd, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[0].revents) {
      const ssize_t n = read(sfd, in + have, 2 * 65536 - have);
      if (n < 0 && errno != EINTR) die("read tcp");
      if (n == 0) break;
      if (n > 0) have += (size_t)n;
      size_t at = 0;
      while (have - at >= 20) {
        const size_t length = (size_t)(in[at + 2] << 8 | in[at + 3]);
        if (length < 20) die_msg("tun-fwd: bad IPv4 length");
        if (have - at < length) break;
        if (write(tfd, in + at, length) < 0 && errno != EINVAL) die("write tun");
        at += length;
      }
      memmove(in, in + at, have - at);
      have -= at;
    }
    if (fds[1].revents) {
      const ssize_t n = read(tfd, out, 65536);
      if (n < 0 && errno != EINTR) die("read tun");
      if (n > 0 && write_all(sfd, out, (size_t)n) != 0) die("write tcp");
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: benchtool sink|source|duplex|rusage|peer|pkt-peer|tun-fwd ...\n");
    return 2;
  }
  const char* cmd = argv[1];
  argc -= 2;
  argv += 2;
  if (strcmp(cmd, "sink") == 0) return cmd_sink(argc, argv);
  if (strcmp(cmd, "source") == 0) return cmd_source(argc, argv);
  if (strcmp(cmd, "duplex") == 0) return cmd_duplex(argc, argv);
  if (strcmp(cmd, "rusage") == 0) return cmd_rusage(argc, argv);
  if (strcmp(cmd, "pkt-peer") == 0) return cmd_pkt_peer(argc, argv);
  if (strcmp(cmd, "tun-fwd") == 0) return cmd_tun_fwd(argc, argv);
  if (strcmp(cmd, "peer") == 0) return cmd_peer(argc, argv);
  fprintf(stderr, "benchtool: unknown command %s\n", cmd);
  return 2;
}
