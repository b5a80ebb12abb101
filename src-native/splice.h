// One splice: the two pumps that move cleartext between a TLS connection (whose session the
// record layer carries on) and a user's file descriptor, driven by uv_poll readiness on one I/O
// thread's loop.
//
//   TLS -> fd ("in"):  read TCP -> open records -> write cleartext (cut into packets if framed)
//   fd -> TLS ("out"): read cleartext (one packet per read if framed) -> seal records -> write TCP
//
// Backpressure: each direction has bounded buffers. When its sink would block, the pump stops
// reading its source and polls the sink for writability instead, so memory does not grow with
// the transfer or with a slow sink. A stream direction moves kMinStreamChunk per read until a
// read fills all it asked for, then kMaxStreamChunk: a bulk transfer makes a quarter of the
// syscalls and wakeups, an interactive one never touches the extra pages. Packet framing keeps
// kMinStreamChunk.
//
// Where: the lifecycle (setup, readiness, ending) is in splice.cc, the "in" pump in
// splice_pump_in.cc, the "out" pump in splice_pump_out.cc; every fd is an OwnedFd (owned_fd.h).
//
// Threading: construct and init() on any thread; after start(), every other call runs on the
// loop's thread (the binding posts them there). The observer is called on the loop's thread.
#ifndef TLS_SPLICE_SPLICE_H_
#define TLS_SPLICE_SPLICE_H_

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framing.h"
#include "owned_fd.h"
#include "record_layer.h"

namespace tls_splice {

// Cleartext a direction moves per read, at first (four full records) and at most.
constexpr size_t kMinStreamChunk = 64 * 1024;
constexpr size_t kMaxStreamChunk = 256 * 1024;

// What the "in" direction does when the peer's TCP ends without a close_notify (a truncation:
// the peer's agent was killed, or an attacker cut the connection).
enum class Truncation : uint8_t {
  kEnd = 0,    // pass it on as an end: shutdown(SHUT_WR) on a socket, close a pipe
  kReset = 1,  // never a clean end: SO_LINGER {on, 0} on a socket target, so its last close
               // sends a reset, and the splice ends at once (the JS layer destroys the socket)
};

struct SpliceConfig {
  // Every fd is the splice's own (a duplicate of the caller's), closed when the splice ends
  // with its status flags restored.
  OwnedFd tcp_fd;   // the TLS connection's socket
  OwnedFd read_fd;  // cleartext source (fd -> TLS), or none
  OwnedFd write_fd; // cleartext sink (TLS -> fd), or none; unused with write_to_read_fd
  // The sink is read_fd itself (one socket or terminal fd used both ways).
  bool write_to_read_fd = false;
  bool deliver_in = true;   // application data from the peer goes to write_fd
  bool deliver_out = true;  // data read from read_fd goes to the peer
  FramingConfig framing;
  SessionKeys keys;
  bool is_server = false;
  std::vector<uint8_t> head;                // raw bytes for write_fd before anything else
  std::vector<uint8_t> initial_plaintext;   // decrypted by Node, never delivered: first "in" data
  std::vector<uint8_t> initial_ciphertext;  // read from TCP, never given to Node: first input
  std::vector<uint8_t> initial_cleartext;   // buffered by the target's net.Socket: first "out" data
  // Node had already seen the end of the peer's side (its close_notify, or the TCP FIN after
  // which OpenSSL saw no more): deliver initial_plaintext, then the "in" direction is over;
  // records after it are ignored (RFC 8446 6.1).
  bool peer_ended = false;
  bool peer_close_notify = false;  // with peer_ended: the end was a close_notify
  // TCP_NODELAY on the TLS connection and on a TCP target: Nagle's algorithm holds a small
  // segment back until the previous one is acknowledged, a 40 ms stall per turn against a
  // delayed ACK (issue 11: 455 instead of about 8,000 HTTP/2 requests/s).
  bool no_delay = true;
  Truncation on_truncation = Truncation::kEnd;
  // Inactivity limits in milliseconds, 0 for none (splice_idle.cc). idle_timeout_ms: no progress
  // either way for that long ends the splice. fin_timeout_ms: the same once one side's end has
  // been seen (or its FIN is waiting unread in the kernel). Progress is a byte read from the TLS
  // connection or the fd, or a byte one of them accepted.
  uint64_t idle_timeout_ms = 0;
  uint64_t fin_timeout_ms = 0;
};

// kIdle: an inactivity limit of SpliceConfig ended the splice (close_notify to the peer, FIN to
// the target, as far as they take them within kIdleEndMaxMs).
enum class EndReason : uint8_t { kEnd, kStopped, kAborted, kError, kIdle };

// How a splice ended. Counts are what was still inside the splice when it ended.
struct SpliceEnd {
  EndReason reason = EndReason::kEnd;
  std::string code;        // error code (ERR_TLS_SPLICE_*, ERR_TLS_ALERT_*, EPIPE, ...)
  std::string detail;      // what was wrong (framing problem, failed syscall)
  int sys_errno = 0;
  uint8_t alert_sent = 255;      // AlertDescription sent with the error, 255 when none
  uint8_t alert_received = 255;  // fatal alert the peer sent, 255 when none
  bool close_notify_received = false;
  bool close_notify_sent = false;
  bool peer_eof_without_close_notify = false;
  uint64_t undelivered_in = 0;    // cleartext decrypted but not written to the fd
  // Ciphertext received but never opened: a partial record, or what the peer sent while a
  // graceful stop waited for its FIN.
  uint64_t unread_ciphertext = 0;
  uint64_t undelivered_out = 0;   // cleartext read from the fd but not fully sent to the peer
  uint64_t ignored_after_close = 0;  // bytes after the peer's close_notify (RFC 8446 6.1)
};

// Counters the JS thread may read at any time (relaxed atomics written by the loop's thread).
struct SpliceStats {
  std::atomic<uint64_t> bytes_in{0};        // cleartext written to the fd
  std::atomic<uint64_t> bytes_out{0};       // cleartext in records fully written to TCP
  std::atomic<uint64_t> records_in{0};
  std::atomic<uint64_t> records_out{0};
  std::atomic<uint64_t> key_updates_in{0};
  std::atomic<uint64_t> key_updates_out{0};
  std::atomic<uint64_t> tickets_in{0};
  std::atomic<uint64_t> packets_in{0};      // packets written to the fd
  std::atomic<uint64_t> packets_dropped{0}; // packets the fd refused with EIO (a TUN that is down)
  std::atomic<uint64_t> packets_out{0};     // packets read from the fd and sent
  std::atomic<uint64_t> ciphertext_in{0};   // bytes read from TCP
  std::atomic<uint64_t> ciphertext_out{0};  // bytes written to TCP
};

class SpliceObserver {
 public:
  virtual ~SpliceObserver() = default;
  // The peer closed its side (close_notify or TCP EOF) and every byte before it reached the fd.
  virtual void on_peer_end() = 0;
  // The splice is over; every fd it owned is closed and its keys are wiped. Called once.
  virtual void on_close(const SpliceEnd& end) = 0;
};

class Splice : public std::enable_shared_from_this<Splice> {
 public:
  Splice(SpliceConfig config, std::shared_ptr<SpliceObserver> observer);
  ~Splice();
  Splice(const Splice&) = delete;
  Splice& operator=(const Splice&) = delete;

  // Sets up the record layer and buffers. Returns false with a code in *out_code (and the fds
  // still owned: they are closed by the destructor) when the session cannot be carried on.
  bool init(std::string* out_code);

  // Registers with `loop` and starts pumping. The splice keeps itself alive until it closes.
  void start(uv_loop_t* loop);
  // graceful: stop reading both sources, deliver what was already read, send close_notify,
  // then close. Otherwise close at once. Idempotent; a no-op once closing.
  void stop(bool graceful);

  // TLSSocket.setNoDelay() / setKeepAlive() of a spent socket, on the TLS connection's socket
  // (a TCP one; anything else is left alone). On the loop's thread: the fd is the splice's until
  // it closes, so an option set while it closes is dropped, never set on a reused fd number.
  // keepalive_delay_s: TCP_KEEPIDLE in seconds when enabling (0 keeps the system's).
  void set_no_delay(bool enable);
  void set_keepalive(bool enable, int keepalive_delay_s);

  // Called on the loop's thread right after the observer's on_close (the I/O thread's load).
  void set_close_hook(std::function<void()> hook) { close_hook_ = std::move(hook); }

  const SpliceStats& stats() const { return stats_; }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

 private:
  // A window on the splice's buffer arena; it owns nothing.
  struct ByteBuffer {
    uint8_t* data = nullptr;
    size_t capacity = 0;
    size_t start = 0;
    size_t end = 0;
    size_t size() const { return end - start; }
    size_t tail_room() const { return capacity - end; }
    uint8_t* begin() { return data + start; }
    uint8_t* tail() { return data + end; }
    void compact();
  };

  // The four buffers live in one anonymous mapping: pages never touched cost nothing. When the
  // splice ends it goes back to the kernel, or, if little of it is resident, to a bounded cache
  // for the next splice (buffer_arena.h). As heap blocks they stayed resident after a peak of
  // many splices.
  bool map_buffers(size_t cipher_in, size_t plain_in, size_t plain_out, size_t cipher_out);
  void unmap_buffers();
  uint8_t* arena_ = nullptr;
  size_t arena_size_ = 0;

  // A polled fd. Fds epoll cannot watch (regular files, /dev/null) are "always ready": the
  // pump is re-run from an idle handle while it wants them.
  struct Watch {
    Splice* owner = nullptr;
    int fd = -1;
    uv_poll_t poll;
    bool pollable = false;
    bool active = false;  // uv_poll_init succeeded and the handle is not closed yet
    int events = 0;
    int poll_errors = 0;  // consecutive error reports from libuv
  };

  enum class InState : uint8_t { kOpen, kDraining, kDone };
  enum class OutState : uint8_t { kOpen, kClosing, kShutdownPending, kDone };

  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_idle(uv_idle_t* handle);
  static void on_linger_timeout(uv_timer_t* handle);
  static void on_handle_closed(uv_handle_t* handle);

  void pump();
  // Copies the record layer's counters to the atomics the JS thread reads.
  void publish_layer_stats();
  bool step_in(size_t* budget);
  bool step_out(size_t* budget);
  bool flush_in(bool* progress);
  // The record layer failed: write the cleartext opened before the bad record to the fd, then
  // fail with the record layer's error.
  bool deliver_before_failing(bool* progress);
  static void on_deliver_before_failing_timeout(uv_timer_t* handle);
  // A read filled all it asked for: move max_chunk_ per read from now on.
  void grow_in_chunk();
  void grow_out_chunk();
  bool flush_stream_in(bool* progress);
  bool flush_packets_in(bool* progress);
  bool read_out(size_t* budget);
  bool discard_in(size_t* budget);
  // After a fatal alert on an error end: our write side shut behind the alert, then the same
  // bounded read-and-discard as a graceful stop's linger, then the end (kError).
  bool start_alert_linger();
  void pump_alert_linger();
  static void on_alert_linger_timeout(uv_timer_t* handle);
  bool seal_stream(const uint8_t* data, size_t length);
  void finish_in();
  // Truncation::kReset: the peer's TCP ended without close_notify.
  void reset_target();
  // SO_LINGER {1, 0} on a socket sink: its last close sends a reset instead of a FIN.
  void set_reset_on_close();
  // Bytes a socket sink has not had acknowledged yet (SIOCOUTQ); 0 when none or unknown.
  size_t unacked_at_sink() const;
  // Before the reset: waits (bounded) until the target acknowledged everything written to it.
  // Ends with `reason` once it is over.
  bool start_reset_drain(EndReason reason);
  static void on_reset_drain_tick(uv_timer_t* handle);
  void update_watches(bool yield);

  // Inactivity limits (splice_idle.cc): one lazily re-armed timer per splice, which compares
  // the time of the last progress the pump recorded with the limits; nothing per byte.
  bool start_idle_timer();  // false: the splice failed (closing)
  // Called by pump(): records the time if anything moved since the last call.
  void note_progress();
  uint64_t progress_mark() const;
  static void on_idle_timer(uv_timer_t* handle);
  void check_idle();
  void arm_idle_timer(uint64_t now);
  // Whether one side's end is known: read by the pumps, or its FIN waiting unread.
  bool one_side_ended() const;
  void end_idle();
  EndReason stop_reason() const { return idle_ending_ ? EndReason::kIdle : EndReason::kStopped; }
  // The peer's end reached the target, or the idle end gives it one: FIN or close.
  void end_target_write_side();
  void watch(Watch* w, int events, bool* want_idle);

  void fail(const char* code, AlertDescription alert, const std::string& detail = "");
  // An I/O error on the TLS connection (no alert can be sent) or elsewhere in the splice.
  void fail_errno(int err, const char* what);
  // An I/O error on the user's fd: the peer gets a fatal internal_error alert.
  void fail_fd_errno(int err, const char* what);
  void fail_record_layer();
  void finish(EndReason reason);
  void close_write_fd();
  // The fd cleartext from the peer is written to: write_fd, or read_fd; -1 once closed.
  int sink_fd() const { return write_is_read_ ? config_.read_fd.get() : config_.write_fd.get(); }
  void release_handles();
  void maybe_done();

  SpliceConfig config_;
  std::shared_ptr<SpliceObserver> observer_;
  std::function<void()> close_hook_;
  std::shared_ptr<Splice> self_;  // keeps the splice alive from start() until on_close
  RecordLayer layer_;
  SpliceStats stats_;
  SpliceEnd end_;

  uv_loop_t* loop_ = nullptr;
  Watch tcp_;
  Watch user_read_;
  Watch user_write_;       // unused when the sink is the source fd (user_read_ serves both)
  Watch* sink_ = nullptr;  // the watch of write_fd
  uv_idle_t idle_;
  bool idle_active_ = false;
  bool idle_initialized_ = false;
  int open_handles_ = 0;
  bool write_is_socket_ = false;
  bool write_is_read_ = false;

  ByteBuffer cipher_in_;   // TCP bytes not yet opened
  ByteBuffer plain_in_;    // opened cleartext not yet written to the fd
  ByteBuffer plain_out_;   // scratch for one read from the fd
  ByteBuffer cipher_out_;  // sealed records not yet written to TCP
  size_t head_offset_ = 0;
  size_t initial_cleartext_offset_ = 0;
  size_t packet_written_ = 0;  // bytes of the current packet (with packet info) already written
  uint64_t batch_plaintext_ = 0;  // cleartext inside cipher_out_, counted once it is all sent
  uint64_t batch_packets_ = 0;
  // Bytes per read in each direction, kMinStreamChunk or max_chunk_ (see the top). The buffers
  // are mapped for max_chunk_; their capacity is the window in use.
  size_t max_chunk_ = kMaxStreamChunk;
  size_t in_chunk_ = kMinStreamChunk;
  size_t out_chunk_ = kMinStreamChunk;
  // plain_in_'s capacity: plain_in_base_ + max(in_chunk_, plain_in_floor_) (the largest packet).
  size_t plain_in_base_ = 0;
  size_t plain_in_floor_ = 0;

  InState in_state_ = InState::kOpen;
  OutState out_state_ = OutState::kOpen;
  bool tcp_eof_ = false;
  bool cipher_in_needs_more_ = true;
  bool fd_eof_ = false;
  bool stopping_ = false;
  // The record layer failed; the cleartext authenticated before it is still going to the fd
  // (deliver_before_failing). Nothing more is read from either source meanwhile.
  bool failing_after_delivery_ = false;
  bool closing_ = false;
  bool started_ = false;
  std::atomic<bool> closed_{false};
  // After a graceful stop: our close_notify is out and our write side shut, but closing the
  // socket with the peer's bytes unread would make the kernel send a reset, which can destroy
  // our last records and the close_notify in the peer's receive queue. So the splice reads and
  // discards until the peer's FIN, for at most kLingerMs.
  bool lingering_ = false;
  uv_timer_t linger_timer_;
  bool linger_timer_initialized_ = false;
  // The same after an error end's fatal alert: closing at once with the peer still sending
  // made the kernel answer with a reset, and the peer's stack then dropped the alert unread
  // (RFC 8446 6.2 wants the peer to learn why). Nothing else moves; linger_timer_ bounds it.
  bool alert_lingering_ = false;
  // Truncation::kReset: nothing more is pumped; linger_timer_ checks the sink's send queue.
  bool reset_draining_ = false;
  uint64_t reset_drain_ticks_ = 0;
  EndReason reset_drain_reason_ = EndReason::kEnd;
  // Inactivity limits (splice_idle.cc).
  uv_timer_t idle_timer_;
  bool idle_timer_initialized_ = false;
  uint64_t last_progress_ms_ = 0;  // uv_now() when progress_mark() last changed
  uint64_t last_progress_mark_ = 0;
  uint64_t source_bytes_read_ = 0;  // cleartext read from the fd (bytes_out counts it once sent)
  bool idle_ending_ = false;  // a limit was reached: stopping, bounded by kIdleEndMaxMs
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_SPLICE_H_
