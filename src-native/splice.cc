// A splice's lifecycle: buffers and setup (init, start), the pump loop and its readiness
// (which fds are polled for what), stopping, and the ending (errors, handles, closing the fds).
// Each direction's pump is in its own file: splice_pump_in.cc (TLS -> fd) and
// splice_pump_out.cc (fd -> TLS).
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "buffer_arena.h"
#include "key_schedule.h"

#include "splice_internal.h"

namespace tls_splice {

using namespace splice_internal;

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
  arena_ = buffer_arena::acquire(total);
  if (arena_ == nullptr) return false;
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
  // cache zeroes what it keeps, the kernel what it gets back.
  buffer_arena::release(arena_, arena_size_);
  arena_ = nullptr;
  for (ByteBuffer* b : {&cipher_in_, &plain_in_, &plain_out_, &cipher_out_}) *b = ByteBuffer{};
}

Splice::Splice(SpliceConfig config, std::shared_ptr<SpliceObserver> observer)
    : config_(std::move(config)), observer_(std::move(observer)) {
  end_.alert_sent = static_cast<uint8_t>(AlertDescription::kNone);
  end_.alert_received = static_cast<uint8_t>(AlertDescription::kNone);
}

Splice::~Splice() {
  // Normally maybe_done() closed everything; a splice that never started closes its fds as the
  // OwnedFds in config_ go.
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
  write_is_read_ = config_.write_to_read_fd && config_.read_fd.valid();
  if (!config_.tcp_fd.valid() || (config_.deliver_in && sink_fd() < 0) ||
      (config_.deliver_out && !config_.read_fd.valid())) {
    *out_code = "ERR_TLS_SPLICE_INVALID_ARG";
    return false;
  }
  const FramingConfig& framing = config_.framing;
  const bool packets = framing.framing != Framing::kStream;
  const size_t max_packet_unit =
      framing.max_packet_size + kU16PrefixLength + packet_info_length(framing);

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
    OwnedFd* fd;
  };
  Setup setups[3] = {{&tcp_, &config_.tcp_fd},
                     {&user_read_, &config_.read_fd},
                     {&user_write_, write_is_read_ ? nullptr : &config_.write_fd}};
  sink_ = write_is_read_ ? &user_read_ : &user_write_;
  for (Setup& setup : setups) {
    Watch& w = *setup.watch;
    w.owner = this;
    w.fd = setup.fd != nullptr ? setup.fd->get() : -1;
    if (w.fd < 0) continue;
    // readFd and writeFd may be two fds of one open file description (fds 0 and 1 of an inetd
    // program): only the one that changed its flags restores them (owned_fd.h).
    const int err = setup.fd->set_nonblocking();
    if (err != 0) return fail_errno(err, "fcntl");
    if (setup.watch != &tcp_) grow_pipe(w.fd);
    else no_sigpipe(w.fd);
    if (config_.no_delay) set_tcp_nodelay(w.fd);
    const int rc = uv_poll_init(loop_, &w.poll, w.fd);
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
  if (sink_fd() >= 0) {
    struct stat st;
    write_is_socket_ = fstat(sink_fd(), &st) == 0 && S_ISSOCK(st.st_mode);
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
  if (!start_idle_timer()) return;
  pump();
}

void Splice::stop(bool graceful) {
  if (!started_ || closing_) return;
  // The splice already failed; it only waits for the peer's FIN: end it with its error now.
  if (alert_lingering_) return finish(EndReason::kError);
  if (!graceful) return finish(EndReason::kAborted);
  if (stopping_) return;
  stopping_ = true;
  if (out_state_ == OutState::kOpen) out_state_ = OutState::kClosing;
  pump();
}

void Splice::set_no_delay(bool enable) {
  if (!started_ || closing_ || !config_.tcp_fd.valid()) return;
  set_tcp_nodelay(config_.tcp_fd.get(), enable);
}

void Splice::set_keepalive(bool enable, int keepalive_delay_s) {
  if (!started_ || closing_ || !config_.tcp_fd.valid()) return;
  set_tcp_keepalive(config_.tcp_fd.get(), enable, keepalive_delay_s);
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
  if (reset_draining_) return;
  if (alert_lingering_) return pump_alert_linger();
  size_t budget = kMaxBytesPerWakeup;
  bool progress = true;
  while (progress && budget > 0 && !closing_) {
    progress = lingering_ ? discard_in(&budget) : step_in(&budget);
    if (closing_ || reset_draining_ || alert_lingering_) break;
    progress = step_out(&budget) || progress;
  }
  note_progress();
  if (closing_ || reset_draining_ || alert_lingering_) return;

  publish_layer_stats();

  if (in_state_ == InState::kDone && out_state_ == OutState::kDone) {
    if (!stopping_ || tcp_eof_) return finish(stopping_ ? stop_reason() : EndReason::kEnd);
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
        return finish(stop_reason());
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
  if (!self->closing_) self->finish(self->stop_reason());
}

bool Splice::discard_in(size_t* budget) {
  if (tcp_eof_) return false;
  const ssize_t n = retry_eintr_read(config_.tcp_fd.get(), cipher_in_.data, cipher_in_.capacity);
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
      sink_fd() >= 0 && in_state_ != InState::kDone &&
      (head_offset_ < config_.head.size() ||
       (plain_in_.size() > 0 && (config_.framing.framing == Framing::kStream ||
                                 cut_packet(config_.framing, plain_in_.begin(),
                                            plain_in_.size()).status == CutStatus::kPacket)));
  const bool source_wanted = out_state_ == OutState::kOpen && config_.deliver_out && !fd_eof_ &&
                             !failing_after_delivery_ && cipher_out_.size() == 0 &&
                             !layer_.has_pending_control();

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
  if (closing_ || alert_lingering_) return;
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
            retry_eintr_send(config_.tcp_fd.get(), cipher_out_.begin(), cipher_out_.size());
        if (sent <= 0) break;
        cipher_out_.start += static_cast<size_t>(sent);
      }
      if (cipher_out_.size() == 0 && start_alert_linger()) return;
    }
  }
  finish(EndReason::kError);
}

bool Splice::start_alert_linger() {
  if (reset_draining_ || tcp_eof_) return false;
  // A deliver_before_failing bound may hold the timer: it is over now, the timer is reused.
  if (!linger_timer_initialized_) {
    if (uv_timer_init(loop_, &linger_timer_) != 0) return false;
    linger_timer_.data = this;
    linger_timer_initialized_ = true;
    open_handles_++;
  }
  // The FIN behind the alert: a peer that stops on it closes, and its FIN ends the linger early.
  shutdown(config_.tcp_fd.get(), SHUT_WR);
  alert_lingering_ = true;
  uv_timer_start(&linger_timer_, on_alert_linger_timeout, kLingerMs, 0);
  // The fail may come from deep inside the pump: the discarding starts on the next wakeup.
  bool want_idle = false;
  watch(&user_read_, 0, &want_idle);
  if (!write_is_read_) watch(&user_write_, 0, &want_idle);
  if (idle_active_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
  watch(&tcp_, UV_READABLE, &want_idle);
  return true;
}

void Splice::pump_alert_linger() {
  if (!lingering_) {
    // The bytes the splice had not opened count as unread, as in a graceful stop's linger.
    lingering_ = true;
    end_.unread_ciphertext += cipher_in_.size();
    cipher_in_.start = cipher_in_.end = 0;
  }
  size_t budget = kMaxBytesPerWakeup;
  while (budget > 0 && discard_in(&budget) && !tcp_eof_) {
  }
  if (tcp_eof_) return finish(EndReason::kError);
  // Level-triggered: a budget spent with bytes still queued wakes the loop again at once.
  bool want_idle = false;
  watch(&tcp_, UV_READABLE, &want_idle);
}

void Splice::on_alert_linger_timeout(uv_timer_t* handle) {
  Splice* self = static_cast<Splice*>(handle->data);
  if (!self->closing_) self->finish(EndReason::kError);
}

void Splice::fail_errno(int err, const char* what) {
  if (closing_ || alert_lingering_) return;
  end_.sys_errno = err;
  fail(uv_err_name(-err), AlertDescription::kNone, what);
}

void Splice::fail_fd_errno(int err, const char* what) {
  if (closing_ || alert_lingering_) return;
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
  // An idle end that could not send it: the close_notify sealed behind records the peer did not
  // take never left.
  if (idle_ending_ && out_state_ == OutState::kShutdownPending && cipher_out_.size() > 0) {
    end_.close_notify_sent = false;
  }
  end_.undelivered_in = (config_.head.size() - head_offset_) +
                        (config_.deliver_in ? plain_in_.size() : 0);
  if (!lingering_) end_.unread_ciphertext += cipher_in_.size();
  end_.undelivered_out = batch_plaintext_ + (config_.initial_cleartext.size() -
                                             initial_cleartext_offset_);
  publish_layer_stats();
  release_handles();
}

void Splice::release_handles() {
  if (idle_timer_initialized_) {
    uv_timer_stop(&idle_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_timer_), on_handle_closed);
    idle_timer_initialized_ = false;
  }
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
  config_.write_fd.reset();
  config_.read_fd.reset();
  config_.tcp_fd.reset();

  layer_.wipe();
  unmap_buffers();

  closed_.store(true, std::memory_order_release);
  // The last reference may go with self_: nothing may touch `this` after the observer call.
  std::shared_ptr<Splice> keep = std::move(self_);
  observer_->on_close(end_);
  if (close_hook_) close_hook_();
}

}  // namespace tls_splice
