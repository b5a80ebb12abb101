#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "key_schedule.h"

namespace tls_splice {
namespace {

// Room for one TCP read of a chunk on top of a partial record left from the last one.
constexpr size_t kCipherInExtra = kMaxRecordLength;
// Bytes one splice may move per wakeup before yielding to the others on its loop.
constexpr size_t kMaxBytesPerWakeup = 1024 * 1024;
// Packets read from a packet fd per batch before the batch is written to TCP.
constexpr size_t kMaxPacketsPerBatch = 64;
// Room kept in cipher_out_ for the control records of the protocol: a KeyUpdate answer, a
// renegotiation refusal, our own KeyUpdate, and a closing alert.
constexpr size_t kControlReserve = 4 * kMaxControlRecordLength;
// Consecutive poll errors on one fd with no I/O making progress before giving up on it.
constexpr int kMaxPollErrorsInARow = 16;
// How long a graceful stop waits for the peer's FIN after sending close_notify.
constexpr uint64_t kLingerMs = 2000;
// A pipe's kernel buffer is 64 KiB by default: every 64 KiB write fills it and the pump and the
// reader ping-pong through EAGAIN and wakeups. 1 MiB (Linux's default pipe-max-size) lets whole
// batches through; measured in bench/: TLS -> pipe from 1.56 to 0.93 CPU s/GiB.
constexpr int kPipeBufferSize = 1 << 20;

// Grows a pipe's buffer to kPipeBufferSize where the kernel allows it; anything else is left
// alone (not a pipe, not Linux, or over the user's pipe quota: the default still works).
void grow_pipe(int fd) {
#if defined(F_SETPIPE_SZ) && defined(F_GETPIPE_SZ)
  const int size = fcntl(fd, F_GETPIPE_SZ);
  if (size >= 0 && size < kPipeBufferSize) fcntl(fd, F_SETPIPE_SZ, kPipeBufferSize);
#else
  (void)fd;
#endif
}

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

ssize_t retry_eintr_read(int fd, void* data, size_t length) {
  ssize_t n;
  do n = read(fd, data, length); while (n < 0 && errno == EINTR);
  return n;
}

// A closed peer must be an EPIPE error, never a SIGPIPE for the process (Node ignores SIGPIPE,
// but the core also runs without Node): MSG_NOSIGNAL per send on Linux, SO_NOSIGPIPE once per
// socket where that is the way (macOS).
#if defined(MSG_NOSIGNAL)
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;
#endif

void no_sigpipe(int fd) {
#if defined(SO_NOSIGPIPE)
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
#else
  (void)fd;
#endif
}

ssize_t retry_eintr_send(int fd, const void* data, size_t length) {
  ssize_t n;
  do n = send(fd, data, length, kSendFlags); while (n < 0 && errno == EINTR);
  return n;
}

ssize_t retry_eintr_writev(int fd, const iovec* iov, int count) {
  ssize_t n;
  do n = writev(fd, iov, count); while (n < 0 && errno == EINTR);
  return n;
}

int set_nonblocking(int fd, int* out_original_flags) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return errno;
  if (out_original_flags) *out_original_flags = flags;
  if ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  return 0;
}

}  // namespace

void Splice::ByteBuffer::compact() {
  if (start == 0) return;
  if (start < end) std::memmove(data, data + start, end - start);
  end -= start;
  start = 0;
}

bool Splice::map_buffers(size_t cipher_in, size_t plain_in, size_t plain_out,
                         size_t cipher_out) {
  // Each buffer starts on a cache line.
  auto round_up = [](size_t n) { return (n + 63) & ~size_t{63}; };
  const size_t sizes[4] = {cipher_in, plain_in, plain_out, cipher_out};
  ByteBuffer* buffers[4] = {&cipher_in_, &plain_in_, &plain_out_, &cipher_out_};
  size_t total = 0;
  for (size_t n : sizes) total += round_up(n);
  void* arena = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (arena == MAP_FAILED) return false;
  arena_ = static_cast<uint8_t*>(arena);
  arena_size_ = total;
  size_t offset = 0;
  for (int i = 0; i < 4; i++) {
    buffers[i]->data = arena_ + offset;
    buffers[i]->capacity = sizes[i];
    buffers[i]->start = buffers[i]->end = 0;
    offset += round_up(sizes[i]);
  }
  return true;
}

void Splice::unmap_buffers() {
  if (arena_ == nullptr) return;
  // Cleartext and ciphertext only (the keys live in the record layer, wiped on their own): the
  // kernel zeroes the pages before any other use, so they are not wiped first.
  munmap(arena_, arena_size_);
  arena_ = nullptr;
  for (ByteBuffer* b : {&cipher_in_, &plain_in_, &plain_out_, &cipher_out_}) *b = ByteBuffer{};
}

Splice::Splice(SpliceConfig config, std::shared_ptr<SpliceObserver> observer)
    : config_(std::move(config)), observer_(std::move(observer)) {
  end_.alert_sent = static_cast<uint8_t>(AlertDescription::kNone);
  end_.alert_received = static_cast<uint8_t>(AlertDescription::kNone);
}

Splice::~Splice() {
  // Normally maybe_done() closed everything; this covers a splice that never started.
  if (config_.tcp_fd >= 0) close(config_.tcp_fd);
  if (config_.read_fd >= 0) close(config_.read_fd);
  if (config_.write_fd >= 0 && config_.write_fd != config_.read_fd) close(config_.write_fd);
  wipe(&config_.keys, sizeof(config_.keys));
  unmap_buffers();
}

bool Splice::init(std::string* out_code) {
  const bool layer_ok = layer_.init(config_.keys, config_.is_server);
  // The record layer holds its own copy now; the config's copy is not needed again.
  wipe(&config_.keys, sizeof(config_.keys));
  if (!layer_ok) {
    *out_code = "ERR_TLS_SPLICE_UNSUPPORTED_CIPHER";
    return false;
  }
  if (config_.tcp_fd < 0 || (config_.deliver_in && config_.write_fd < 0) ||
      (config_.deliver_out && config_.read_fd < 0)) {
    *out_code = "ERR_TLS_SPLICE_INVALID_ARG";
    return false;
  }
  const FramingConfig& framing = config_.framing;
  const bool packets = framing.framing != Framing::kStream;
  const size_t max_packet_unit =
      framing.max_packet_size + kU16PrefixLength + packet_info_length(framing);
  write_is_read_ = config_.write_fd >= 0 && config_.write_fd == config_.read_fd;

  // A packet is one write to the fd whatever the chunk, so packet splices keep the small one:
  // larger batches save nothing there and cost memory and cache.
  max_chunk_ = packets ? kMinStreamChunk : kMaxStreamChunk;
  // Opened records land in plain_in_ even when they carry no data for the fd (tickets, alerts).
  const size_t plain_in_data = config_.deliver_in
                                   ? std::max(max_chunk_, packets ? max_packet_unit : 0)
                                   : 0;
  const size_t mfl = layer_.max_fragment_length();
  // Packets are read at an offset leaving room for a u16be prefix in front of them; one byte
  // more than the largest packet shows a packet that was too large instead of truncating it.
  const size_t plain_out_size =
      config_.deliver_out ? (packets ? max_packet_unit + 1 : max_chunk_) : 0;
  const size_t out_chunk = packets ? max_chunk_ + max_packet_unit : max_chunk_;
  const size_t out_records = (out_chunk + mfl - 1) / mfl + 1;
  const size_t cipher_out_size =
      config_.deliver_out ? out_chunk + out_records * kMaxSealOverhead + kControlReserve
                          : kControlReserve;
  const size_t cipher_in_size = std::max(max_chunk_ + kCipherInExtra,
                                         config_.initial_ciphertext.size() + kMaxRecordLength);
  const size_t plain_in_size =
      plain_in_data + kMaxOpenedLength + config_.initial_plaintext.size();
  if (!map_buffers(cipher_in_size, plain_in_size, plain_out_size, cipher_out_size)) {
    *out_code = "ENOMEM";
    return false;
  }
  // Mapped for the largest chunk, used (and so backed by memory) for the first one until the
  // transfer shows it wants more: see grow_in_chunk().
  cipher_in_.capacity = std::max(kMinStreamChunk + kCipherInExtra,
                                 config_.initial_ciphertext.size() + kMaxRecordLength);
  if (config_.deliver_in) {
    plain_in_base_ = kMaxOpenedLength + config_.initial_plaintext.size();
    plain_in_floor_ = packets ? max_packet_unit : 0;
    plain_in_.capacity = plain_in_base_ + std::max(kMinStreamChunk, plain_in_floor_);
  }
  if (config_.deliver_out && !packets) plain_out_.capacity = kMinStreamChunk;
  // An empty vector's data() may be null, and memcpy from null is undefined even for 0 bytes.
  if (!config_.initial_ciphertext.empty()) {
    std::memcpy(cipher_in_.data, config_.initial_ciphertext.data(),
                config_.initial_ciphertext.size());
  }
  cipher_in_.end = config_.initial_ciphertext.size();
  if (!config_.initial_plaintext.empty()) {
    std::memcpy(plain_in_.data, config_.initial_plaintext.data(),
                config_.initial_plaintext.size());
  }
  plain_in_.end = config_.initial_plaintext.size();

  for (const std::vector<uint8_t>* v :
       {&config_.initial_ciphertext, &config_.initial_plaintext}) {
    std::vector<uint8_t>& bytes = *const_cast<std::vector<uint8_t>*>(v);
    if (!bytes.empty()) wipe(bytes.data(), bytes.size());
    bytes.clear();
    bytes.shrink_to_fit();
  }
  return true;
}

void Splice::start(uv_loop_t* loop) {
  self_ = shared_from_this();
  loop_ = loop;
  started_ = true;

  uv_idle_init(loop_, &idle_);
  idle_.data = this;
  idle_initialized_ = true;
  open_handles_++;

  struct Setup {
    Watch* watch;
    int fd;
    int* original_flags;
  };
  Setup setups[3] = {{&tcp_, config_.tcp_fd, nullptr},
                     {&user_read_, config_.read_fd, &original_read_flags_},
                     {&user_write_, write_is_read_ ? -1 : config_.write_fd,
                      &original_write_flags_}};
  sink_ = write_is_read_ ? &user_read_ : &user_write_;
  for (Setup& setup : setups) {
    Watch& w = *setup.watch;
    w.owner = this;
    w.fd = setup.fd;
    if (setup.fd < 0) continue;
    const int err = set_nonblocking(setup.fd, setup.original_flags);
    if (err != 0) return fail_errno(err, "fcntl");
    if (setup.watch != &tcp_) grow_pipe(setup.fd);
    else no_sigpipe(setup.fd);
    const int rc = uv_poll_init(loop_, &w.poll, setup.fd);
    if (rc == UV_EPERM) {
      // epoll refuses regular files and some devices (/dev/null): they never block, so the
      // pump treats them as always ready.
      w.pollable = false;
      continue;
    }
    if (rc < 0) return fail_errno(-rc, "uv_poll_init");
    w.poll.data = &w;
    w.pollable = true;
    w.active = true;
    open_handles_++;
  }
  if (!tcp_.pollable) return fail("ERR_TLS_SPLICE_INVALID_ARG", AlertDescription::kNone,
                                  "the TLS connection's fd cannot be polled");
  if (config_.write_fd >= 0) {
    struct stat st;
    write_is_socket_ = fstat(config_.write_fd, &st) == 0 && S_ISSOCK(st.st_mode);
  }
  if (!config_.deliver_in && plain_in_.size() > 0) {
    return fail("ERR_TLS_SPLICE_UNEXPECTED_DATA", AlertDescription::kNone,
                "Node had already decrypted data from the peer, but direction is 'out'");
  }
  if (config_.peer_ended) {
    // After a FIN Node read, whether a close_notify came first is not known: neither flag is set.
    end_.close_notify_received = config_.peer_close_notify;
    end_.ignored_after_close += cipher_in_.size();
    cipher_in_.start = cipher_in_.end = 0;
    in_state_ = InState::kDraining;
  }
  pump();
}

void Splice::stop(bool graceful) {
  if (!started_ || closing_) return;
  if (!graceful) return finish(EndReason::kAborted);
  if (stopping_) return;
  stopping_ = true;
  if (out_state_ == OutState::kOpen) out_state_ = OutState::kClosing;
  pump();
}

void Splice::on_poll(uv_poll_t* handle, int status, int events) {
  Watch* w = static_cast<Watch*>(handle->data);
  Splice* self = w->owner;
  if (self->closing_) return;
  if (status < 0) {
    // libuv reports POLLERR as a status and stops the handle. The syscalls the pump makes next
    // give the real error (EPIPE, ECONNRESET); the handle is re-armed if still wanted.
    w->events = 0;
    if (++w->poll_errors > kMaxPollErrorsInARow) return self->fail_errno(-status, "poll");
    self->pump();
    return;
  }
  (void)events;
  w->poll_errors = 0;
  self->pump();
}

void Splice::on_idle(uv_idle_t* handle) {
  Splice* self = static_cast<Splice*>(handle->data);
  if (!self->closing_) self->pump();
}

void Splice::pump() {
  size_t budget = kMaxBytesPerWakeup;
  bool progress = true;
  while (progress && budget > 0 && !closing_) {
    progress = lingering_ ? discard_in(&budget) : step_in(&budget);
    if (closing_) break;
    progress = step_out(&budget) || progress;
  }
  if (closing_) return;

  publish_layer_stats();

  if (in_state_ == InState::kDone && out_state_ == OutState::kDone) {
    if (!stopping_ || tcp_eof_) return finish(stopping_ ? EndReason::kStopped : EndReason::kEnd);
    if (!lingering_) {
      lingering_ = true;
      end_.unread_ciphertext += cipher_in_.size();
      cipher_in_.start = cipher_in_.end = 0;
      if (uv_timer_init(loop_, &linger_timer_) == 0) {
        linger_timer_.data = this;
        linger_timer_initialized_ = true;
        open_handles_++;
        uv_timer_start(&linger_timer_, on_linger_timeout, kLingerMs, 0);
      } else {
        return finish(EndReason::kStopped);
      }
      return pump();
    }
  }
  update_watches(budget == 0);
}

void Splice::publish_layer_stats() {
  const RecordLayerStats& s = layer_.stats();
  stats_.records_in.store(s.records_in, std::memory_order_relaxed);
  stats_.records_out.store(s.records_out, std::memory_order_relaxed);
  stats_.key_updates_in.store(s.key_updates_in, std::memory_order_relaxed);
  stats_.key_updates_out.store(s.key_updates_out, std::memory_order_relaxed);
  stats_.tickets_in.store(s.tickets_in, std::memory_order_relaxed);
}

void Splice::on_linger_timeout(uv_timer_t* handle) {
  Splice* self = static_cast<Splice*>(handle->data);
  if (!self->closing_) self->finish(EndReason::kStopped);
}

bool Splice::discard_in(size_t* budget) {
  if (tcp_eof_) return false;
  const ssize_t n = retry_eintr_read(config_.tcp_fd, cipher_in_.data, cipher_in_.capacity);
  if (n > 0) {
    end_.unread_ciphertext += static_cast<uint64_t>(n);
    stats_.ciphertext_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *budget -= std::min(*budget, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && would_block(errno)) return false;
  // EOF, or the peer reset the connection: either way there is nothing left to wait for.
  tcp_eof_ = true;
  return true;
}

// --- TLS -> fd -------------------------------------------------------------------------------

bool Splice::step_in(size_t* budget) {
  if (in_state_ == InState::kDone) return false;
  bool progress = false;
  if (!flush_in(&progress)) return progress;

  // Open the whole records already received while there is room for their cleartext.
  while (in_state_ == InState::kOpen && plain_in_.tail_room() >= kMaxOpenedLength) {
    if (cipher_in_.size() == 0) {
      cipher_in_needs_more_ = true;
      break;
    }
    const ReadResult r = layer_.read_record(cipher_in_.begin(), cipher_in_.size(),
                                            plain_in_.tail(), plain_in_.tail_room());
    if (r.outcome == ReadOutcome::kNeedMore) {
      cipher_in_needs_more_ = true;
      break;
    }
    cipher_in_needs_more_ = false;
    if (r.outcome == ReadOutcome::kError) {
      // The records opened before the bad one (or the peer's fatal alert) are authentic: deliver
      // them first, as far as the fd takes them without blocking; the rest is reported in
      // undelivered_in. Otherwise what reaches the fd would depend on whether TCP happened to
      // hand over the good records and the bad one in the same read.
      bool flushed = false;
      flush_in(&flushed);
      fail_record_layer();
      return true;
    }
    cipher_in_.start += r.consumed;
    progress = true;
    if (r.outcome == ReadOutcome::kApplicationData) {
      if (!config_.deliver_in) {
        fail("ERR_TLS_SPLICE_UNEXPECTED_DATA", AlertDescription::kNone,
             "the peer sent application data, but direction is 'out'");
        return true;
      }
      plain_in_.end += r.plaintext_length;
      if (plain_in_.size() >= in_chunk_) break;  // write before opening more
    } else if (r.outcome == ReadOutcome::kCloseNotify) {
      end_.close_notify_received = true;
      // RFC 8446 6.1: "Any data received after a closure alert has been received MUST be
      // ignored."
      end_.ignored_after_close += cipher_in_.size();
      cipher_in_.start = cipher_in_.end = 0;
      in_state_ = InState::kDraining;
    }
  }
  if (cipher_in_.size() == 0) cipher_in_.start = cipher_in_.end = 0;
  if (!flush_in(&progress)) return progress;

  if (in_state_ == InState::kOpen && !tcp_eof_ && !stopping_ && cipher_in_needs_more_) {
    if (cipher_in_.tail_room() < kMaxRecordLength) cipher_in_.compact();
    const size_t want = cipher_in_.tail_room();
    const ssize_t n = retry_eintr_read(config_.tcp_fd, cipher_in_.tail(), want);
    if (n > 0) {
      if (static_cast<size_t>(n) == want) grow_in_chunk();
      cipher_in_.end += static_cast<size_t>(n);
      stats_.ciphertext_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      *budget -= std::min(*budget, static_cast<size_t>(n));
      cipher_in_needs_more_ = false;
      progress = true;
    } else if (n == 0) {
      tcp_eof_ = true;
      progress = true;
    } else if (!would_block(errno)) {
      fail_errno(errno, "read from the TLS connection");
      return true;
    }
  }

  if (in_state_ == InState::kOpen && cipher_in_needs_more_ && (tcp_eof_ || stopping_)) {
    if (tcp_eof_ && !stopping_) {
      if (cipher_in_.size() > 0) {
        fail("ERR_TLS_SPLICE_TRUNCATED_RECORD", AlertDescription::kNone,
             "the peer's TCP stream ended inside a TLS record");
        return true;
      }
      end_.peer_eof_without_close_notify = true;
    }
    in_state_ = InState::kDraining;
    progress = true;
  }
  if (in_state_ == InState::kDraining) {
    if (!flush_in(&progress)) return progress;
    // Packet framing: bytes left over are an incomplete packet the peer never finished.
    if (plain_in_.size() > 0 && !stopping_) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
           "the peer's stream ended inside a packet");
      return true;
    }
    finish_in();
    progress = true;
  }
  return progress;
}

bool Splice::flush_in(bool* progress) {
  if (config_.write_fd < 0) return true;
  // `head` first: raw bytes the caller wants on the fd before anything spliced.
  while (head_offset_ < config_.head.size()) {
    ssize_t n;
    do n = write(config_.write_fd, config_.head.data() + head_offset_,
                 config_.head.size() - head_offset_);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    head_offset_ += static_cast<size_t>(n);
    // bytesIn counts everything written to the target, `head` included.
    stats_.bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *progress = true;
  }
  if (config_.framing.framing == Framing::kStream) return flush_stream_in(progress);
  return flush_packets_in(progress);
}

bool Splice::flush_stream_in(bool* progress) {
  while (plain_in_.size() > 0) {
    ssize_t n;
    do n = write(config_.write_fd, plain_in_.begin(), plain_in_.size());
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    plain_in_.start += static_cast<size_t>(n);
    stats_.bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *progress = true;
  }
  plain_in_.start = plain_in_.end = 0;
  return true;
}

bool Splice::flush_packets_in(bool* progress) {
  const FramingConfig& framing = config_.framing;
  for (;;) {
    const PacketCut cut = cut_packet(framing, plain_in_.begin(), plain_in_.size());
    if (cut.status == CutStatus::kNeedMore) break;
    if (cut.status == CutStatus::kMalformed) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone, cut.problem);
      return false;
    }
    uint8_t* packet = plain_in_.begin() + cut.prefix_length;
    uint8_t info[kPacketInfoLength];
    iovec iov[2];
    int count = 0;
    if (framing.packet_info != PacketInfo::kNone) {
      if (!make_packet_info(framing.packet_info, packet, cut.packet_length, info)) {
        fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
             "packet info needs an IPv4 or IPv6 packet");
        return false;
      }
      iov[count++] = {info, kPacketInfoLength};
    }
    iov[count++] = {packet, cut.packet_length};
    // One writev per packet: a TUN device takes each write as exactly one packet. A stream fd
    // may take part of it; the rest goes out on the next writable event.
    size_t skip = packet_written_;
    int first = 0;
    while (first < count && skip >= iov[first].iov_len) skip -= iov[first++].iov_len;
    iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + skip;
    iov[first].iov_len -= skip;
    const size_t unit = (count == 2 ? kPacketInfoLength : 0) + cut.packet_length;
    const ssize_t n = retry_eintr_writev(config_.write_fd, iov + first, count - first);
    if (n < 0 && errno == EIO && packet_written_ == 0) {
      // A TUN device that is down refuses packets with EIO. A network drops a packet it cannot
      // deliver and carries on; so does the tunnel, counting it, instead of ending over a link
      // that was briefly down.
      plain_in_.start += cut.prefix_length + cut.packet_length;
      stats_.packets_dropped.fetch_add(1, std::memory_order_relaxed);
      *progress = true;
      continue;
    }
    if (n < 0) {
      if (would_block(errno)) return false;
      fail_fd_errno(errno, "write to the target");
      return false;
    }
    *progress = true;
    packet_written_ += static_cast<size_t>(n);
    if (packet_written_ < unit) return false;
    packet_written_ = 0;
    plain_in_.start += cut.prefix_length + cut.packet_length;
    stats_.bytes_in.fetch_add(cut.packet_length, std::memory_order_relaxed);
    stats_.packets_in.fetch_add(1, std::memory_order_relaxed);
  }
  // Keep a partial packet at the front so a whole record always fits behind it.
  if (plain_in_.size() == 0) {
    plain_in_.start = plain_in_.end = 0;
  } else if (plain_in_.tail_room() < kMaxOpenedLength) {
    plain_in_.compact();
  }
  return true;
}

void Splice::grow_in_chunk() {
  if (in_chunk_ == max_chunk_) return;
  in_chunk_ = max_chunk_;
  cipher_in_.capacity = std::max(cipher_in_.capacity, in_chunk_ + kCipherInExtra);
  if (config_.deliver_in) {
    plain_in_.capacity = plain_in_base_ + std::max(in_chunk_, plain_in_floor_);
  }
}

void Splice::grow_out_chunk() {
  if (out_chunk_ == max_chunk_) return;
  out_chunk_ = max_chunk_;
  plain_out_.capacity = out_chunk_;
}

void Splice::finish_in() {
  in_state_ = InState::kDone;
  if (stopping_) return;
  // The peer closed its side: pass the end on to the fd. A socket gets a FIN and stays open for
  // the other direction; a separate write fd (a pipe) is closed so its reader sees EOF.
  if (config_.write_fd >= 0) {
    if (write_is_socket_) {
      shutdown(config_.write_fd, SHUT_WR);
    } else if (!write_is_read_) {
      close_write_fd();
    }
  }
  // With no data of our own to send, our side closes as soon as the peer's has.
  if (!config_.deliver_out && out_state_ == OutState::kOpen) out_state_ = OutState::kClosing;
  observer_->on_peer_end();
}

void Splice::close_write_fd() {
  if (user_write_.active) {
    uv_poll_stop(&user_write_.poll);
    user_write_.active = false;
    // The fd is closed once libuv has let go of the handle.
    uv_close(reinterpret_cast<uv_handle_t*>(&user_write_.poll), [](uv_handle_t* handle) {
      Watch* w = static_cast<Watch*>(handle->data);
      Splice* self = w->owner;
      if (self->original_write_flags_ >= 0) fcntl(w->fd, F_SETFL, self->original_write_flags_);
      close(w->fd);
      self->config_.write_fd = -1;
      on_handle_closed(handle);
    });
    return;
  }
  if (original_write_flags_ >= 0) fcntl(config_.write_fd, F_SETFL, original_write_flags_);
  close(config_.write_fd);
  config_.write_fd = -1;
}

// --- fd -> TLS -------------------------------------------------------------------------------

bool Splice::step_out(size_t* budget) {
  if (out_state_ == OutState::kDone) return false;
  bool progress = false;
  while (cipher_out_.size() > 0) {
    const ssize_t n = retry_eintr_send(config_.tcp_fd, cipher_out_.begin(), cipher_out_.size());
    if (n < 0) {
      if (would_block(errno)) return progress;
      const int err = errno;
      // The peer closed its side and went away before our close_notify or KeyUpdate reached
      // it: nothing of the user's is lost, so this is the end, not an error.
      if ((err == EPIPE || err == ECONNRESET) && in_state_ == InState::kDone &&
          batch_plaintext_ == 0) {
        cipher_out_.start = cipher_out_.end = 0;
        out_state_ = OutState::kDone;
        return true;
      }
      fail_errno(err, "write to the TLS connection");
      return true;
    }
    cipher_out_.start += static_cast<size_t>(n);
    stats_.ciphertext_out.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    *budget -= std::min(*budget, static_cast<size_t>(n));
    progress = true;
  }
  cipher_out_.start = cipher_out_.end = 0;
  if (batch_plaintext_ || batch_packets_) {
    stats_.bytes_out.fetch_add(batch_plaintext_, std::memory_order_relaxed);
    stats_.packets_out.fetch_add(batch_packets_, std::memory_order_relaxed);
    batch_plaintext_ = batch_packets_ = 0;
  }

  // Control records owed to the peer go out before our close_notify, never after it: RFC 8446
  // 6.1, close_notify says "the sender will not send any more messages on this connection".
  // (A KeyUpdate the peer requests after that point is simply not answered.)
  if (layer_.has_pending_control() &&
      (out_state_ == OutState::kOpen || out_state_ == OutState::kClosing)) {
    const size_t n = layer_.seal_pending_control(cipher_out_.tail(), cipher_out_.tail_room());
    if (n == 0) {
      fail_record_layer();
      return true;
    }
    cipher_out_.end += n;
    return true;
  }

  switch (out_state_) {
    case OutState::kOpen:
      if (config_.deliver_out && !fd_eof_) return read_out(budget) || progress;
      return progress;
    case OutState::kClosing: {
      // RFC 8446 6.1: "Each party MUST send a "close_notify" alert before closing its write
      // side of the connection".
      const size_t n = layer_.seal_alert(AlertDescription::kCloseNotify, cipher_out_.tail(),
                                         cipher_out_.tail_room());
      if (n == 0) {
        fail_record_layer();
        return true;
      }
      cipher_out_.end += n;
      end_.close_notify_sent = true;
      out_state_ = OutState::kShutdownPending;
      return true;
    }
    case OutState::kShutdownPending:
      shutdown(config_.tcp_fd, SHUT_WR);
      out_state_ = OutState::kDone;
      return true;
    case OutState::kDone:
      break;
  }
  return progress;
}

bool Splice::seal_stream(const uint8_t* data, size_t length) {
  const size_t mfl = layer_.max_fragment_length();
  while (length > 0) {
    const size_t take = std::min(length, mfl);
    // Keep room behind the data for a closing alert.
    const size_t room = cipher_out_.tail_room();
    const size_t n = layer_.seal_application_data(
        data, take, cipher_out_.tail(),
        room > kMaxControlRecordLength ? room - kMaxControlRecordLength : 0);
    if (n == 0) {
      fail_record_layer();
      return false;
    }
    cipher_out_.end += n;
    data += take;
    length -= take;
  }
  return true;
}

bool Splice::read_out(size_t* budget) {
  const FramingConfig& framing = config_.framing;
  // Bytes the target's net.Socket had already read go first.
  if (initial_cleartext_offset_ < config_.initial_cleartext.size()) {
    const size_t take = std::min(max_chunk_,
                                 config_.initial_cleartext.size() - initial_cleartext_offset_);
    if (!seal_stream(config_.initial_cleartext.data() + initial_cleartext_offset_, take))
      return true;
    initial_cleartext_offset_ += take;
    batch_plaintext_ += take;
    return true;
  }

  if (framing.framing == Framing::kStream) {
    const ssize_t n = retry_eintr_read(config_.read_fd, plain_out_.data, plain_out_.capacity);
    if (n > 0) {
      if (static_cast<size_t>(n) == plain_out_.capacity) grow_out_chunk();
      if (!seal_stream(plain_out_.data, static_cast<size_t>(n))) return true;
      batch_plaintext_ += static_cast<uint64_t>(n);
      *budget -= std::min(*budget, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) {
      fd_eof_ = true;
      out_state_ = OutState::kClosing;
      return true;
    }
    if (would_block(errno)) return false;
    fail_fd_errno(errno, "read from the target");
    return true;
  }

  // Packet framing: every read() is one packet, and becomes one record (or several, only if it
  // is larger than the record limit).
  const size_t info_length = packet_info_length(framing);
  const size_t prefix = framing.framing == Framing::kU16be ? kU16PrefixLength : 0;
  const size_t max_unit = framing.max_packet_size + prefix + info_length;
  bool progress = false;
  for (size_t i = 0; i < kMaxPacketsPerBatch; i++) {
    if (cipher_out_.tail_room() < max_unit + (max_unit / layer_.max_fragment_length() + 1) *
                                                     kMaxSealOverhead + kControlReserve) {
      break;
    }
    uint8_t* read_at = plain_out_.data + kU16PrefixLength;
    const size_t room = plain_out_.capacity - kU16PrefixLength;
    const ssize_t n = retry_eintr_read(config_.read_fd, read_at, room);
    if (n == 0) {
      fd_eof_ = true;
      out_state_ = OutState::kClosing;
      return true;
    }
    if (n < 0) {
      if (would_block(errno)) return progress;
      fail_fd_errno(errno, "read from the target");
      return true;
    }
    progress = true;
    const size_t got = static_cast<size_t>(n);
    if (got < info_length) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone,
           "packet read from the fd is shorter than its packet-info header");
      return true;
    }
    uint8_t* packet = read_at + info_length;
    const size_t packet_length = got - info_length;
    if (const char* problem = check_outgoing_packet(framing, packet, packet_length)) {
      fail("ERR_TLS_SPLICE_FRAMING", AlertDescription::kNone, problem);
      return true;
    }
    uint8_t* unit = packet;
    size_t unit_length = packet_length;
    if (prefix) {
      unit -= kU16PrefixLength;
      unit[0] = static_cast<uint8_t>(packet_length >> 8);
      unit[1] = static_cast<uint8_t>(packet_length);
      unit_length += kU16PrefixLength;
    }
    if (!seal_stream(unit, unit_length)) return true;
    batch_plaintext_ += packet_length;
    batch_packets_++;
    *budget -= std::min(*budget, got);
  }
  return progress;
}

// --- readiness -------------------------------------------------------------------------------

void Splice::watch(Watch* w, int events, bool* want_idle) {
  if (w->fd < 0) return;
  if (!w->pollable) {
    if (events) *want_idle = true;
    return;
  }
  if (!w->active || events == w->events) return;
  if (events == 0) {
    uv_poll_stop(&w->poll);
  } else {
    const int rc = uv_poll_start(&w->poll, events, on_poll);
    if (rc < 0) return fail_errno(-rc, "uv_poll_start");
  }
  w->events = events;
}

void Splice::update_watches(bool yield) {
  bool want_idle = yield;
  int tcp_events = 0;
  if ((in_state_ == InState::kOpen && !tcp_eof_ && !stopping_ && cipher_in_needs_more_) ||
      (lingering_ && !tcp_eof_)) {
    tcp_events |= UV_READABLE;
  }
  if (cipher_out_.size() > 0) tcp_events |= UV_WRITABLE;

  const bool sink_pending =
      config_.write_fd >= 0 && in_state_ != InState::kDone &&
      (head_offset_ < config_.head.size() ||
       (plain_in_.size() > 0 && (config_.framing.framing == Framing::kStream ||
                                 cut_packet(config_.framing, plain_in_.begin(),
                                            plain_in_.size()).status == CutStatus::kPacket)));
  const bool source_wanted = out_state_ == OutState::kOpen && config_.deliver_out && !fd_eof_ &&
                             cipher_out_.size() == 0 && !layer_.has_pending_control();

  watch(&tcp_, tcp_events, &want_idle);
  if (closing_) return;
  if (write_is_read_) {
    watch(&user_read_, (source_wanted ? UV_READABLE : 0) | (sink_pending ? UV_WRITABLE : 0),
          &want_idle);
  } else {
    watch(&user_read_, source_wanted ? UV_READABLE : 0, &want_idle);
    if (closing_) return;
    watch(&user_write_, sink_pending ? UV_WRITABLE : 0, &want_idle);
  }
  if (closing_) return;
  if (want_idle && !idle_active_) {
    uv_idle_start(&idle_, on_idle);
    idle_active_ = true;
  } else if (!want_idle && idle_active_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
}

// --- ending ----------------------------------------------------------------------------------

void Splice::fail(const char* code, AlertDescription alert, const std::string& detail) {
  if (closing_) return;
  end_.code = code;
  end_.detail = detail;
  // Nothing follows our close_notify (RFC 8446 6.1), not even an alert.
  if (alert != AlertDescription::kNone && !end_.close_notify_sent &&
      out_state_ != OutState::kDone && cipher_out_.tail_room() >= kMaxControlRecordLength) {
    const size_t n = layer_.seal_alert(alert, cipher_out_.tail(), cipher_out_.tail_room());
    if (n > 0) {
      cipher_out_.end += n;
      end_.alert_sent = static_cast<uint8_t>(alert);
      // Best effort, without waiting: whatever was sealed before the alert, then the alert.
      while (cipher_out_.size() > 0) {
        const ssize_t sent =
            retry_eintr_send(config_.tcp_fd, cipher_out_.begin(), cipher_out_.size());
        if (sent <= 0) break;
        cipher_out_.start += static_cast<size_t>(sent);
      }
    }
  }
  finish(EndReason::kError);
}

void Splice::fail_errno(int err, const char* what) {
  if (closing_) return;
  end_.sys_errno = err;
  fail(uv_err_name(-err), AlertDescription::kNone, what);
}

void Splice::fail_fd_errno(int err, const char* what) {
  if (closing_) return;
  end_.sys_errno = err;
  // The TLS connection is fine but the splice cannot go on: RFC 8446 6.2 internal_error ("an
  // internal error unrelated to the peer ... makes it impossible to continue") tells the peer
  // this is a failure, which a bare TCP close would not (it could be a truncation attack).
  fail(uv_err_name(-err), AlertDescription::kInternalError, what);
}

void Splice::fail_record_layer() {
  const RecordError error = layer_.error();
  if (error == RecordError::kPeerAlert) {
    end_.alert_received = layer_.peer_alert();
    std::string code = "ERR_TLS_ALERT_";
    for (const char* p = alert_name(layer_.peer_alert()); *p; p++) {
      code += static_cast<char>(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    return fail(code.c_str(), AlertDescription::kNone);
  }
  fail(record_error_code(error), layer_.alert_to_send());
}

void Splice::finish(EndReason reason) {
  if (closing_) return;
  closing_ = true;
  end_.reason = reason;
  end_.undelivered_in = (config_.head.size() - head_offset_) +
                        (config_.deliver_in ? plain_in_.size() : 0);
  if (!lingering_) end_.unread_ciphertext += cipher_in_.size();
  end_.undelivered_out = batch_plaintext_ + (config_.initial_cleartext.size() -
                                             initial_cleartext_offset_);
  publish_layer_stats();
  release_handles();
}

void Splice::release_handles() {
  if (linger_timer_initialized_) {
    uv_timer_stop(&linger_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&linger_timer_), on_handle_closed);
    linger_timer_initialized_ = false;
  }
  if (idle_initialized_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), on_handle_closed);
    idle_initialized_ = false;
  }
  for (Watch* w : {&tcp_, &user_read_, &user_write_}) {
    if (!w->active) continue;
    uv_poll_stop(&w->poll);
    w->active = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), on_handle_closed);
  }
}

void Splice::on_handle_closed(uv_handle_t* handle) {
  Splice* self = handle->type == UV_POLL ? static_cast<Watch*>(handle->data)->owner
                                         : static_cast<Splice*>(handle->data);
  if (--self->open_handles_ == 0 && self->closing_) self->maybe_done();
}

void Splice::maybe_done() {
  // Every handle is closed: libuv no longer touches the fds, which can now be closed.
  if (original_read_flags_ >= 0 && config_.read_fd >= 0) {
    fcntl(config_.read_fd, F_SETFL, original_read_flags_);
  }
  if (original_write_flags_ >= 0 && config_.write_fd >= 0 && !write_is_read_) {
    fcntl(config_.write_fd, F_SETFL, original_write_flags_);
  }
  if (config_.tcp_fd >= 0) close(config_.tcp_fd);
  if (config_.read_fd >= 0) close(config_.read_fd);
  if (config_.write_fd >= 0 && config_.write_fd != config_.read_fd) close(config_.write_fd);
  config_.tcp_fd = config_.read_fd = config_.write_fd = -1;

  layer_.wipe();
  unmap_buffers();

  closed_.store(true, std::memory_order_release);
  // The last reference may go with self_: nothing may touch `this` after the observer call.
  std::shared_ptr<Splice> keep = std::move(self_);
  observer_->on_close(end_);
  if (close_hook_) close_hook_();
}

}  // namespace tls_splice
