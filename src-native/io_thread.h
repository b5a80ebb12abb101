// A small pool of native I/O threads, each running its own libuv loop. A splice lives on one
// thread for its whole life; Node's main loop never runs a pump.
//
// post() may be called from any thread. shutdown() aborts every splice still running, waits for
// their handles to close, and joins the threads; after it, post() does nothing.
#ifndef TLS_SPLICE_IO_THREAD_H_
#define TLS_SPLICE_IO_THREAD_H_

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "splice.h"

namespace tls_splice {

class IoThread {
 public:
  // The name each I/O thread gives itself (pthread_setname_np; at most 15 characters).
  static constexpr const char kThreadName[] = "tls-splice-io";

  IoThread() = default;
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // Starts the thread. Returns a libuv error (< 0) on failure.
  int start();
  // Runs `task` on this thread's loop. Returns false once the thread is shutting down.
  bool post(std::function<void(uv_loop_t*)> task);
  // Hands `splice` to this thread and starts it there.
  bool adopt(std::shared_ptr<Splice> splice);
  void shutdown();

  int load() const { return load_.load(std::memory_order_relaxed); }

 private:
  static void run(void* arg);
  static void on_wakeup(uv_async_t* handle);

  uv_loop_t loop_;
  uv_async_t wakeup_;
  uv_thread_t thread_;
  bool started_ = false;
  std::mutex mutex_;
  std::vector<std::function<void(uv_loop_t*)>> tasks_;  // guarded by mutex_
  bool stopping_ = false;                              // guarded by mutex_
  std::vector<std::weak_ptr<Splice>> splices_;         // touched on the loop thread only
  std::atomic<int> load_{0};
};

class IoThreadPool {
 public:
  explicit IoThreadPool(size_t threads) : size_(threads == 0 ? 1 : threads) {}
  ~IoThreadPool() { shutdown(); }

  // Starts `splice` on the least-loaded thread, starting threads lazily. Returns that thread, or
  // nullptr with a libuv error in *out_error when no thread can run it. Threads live as long as
  // the pool, so the pointer stays valid for the pool's owners.
  IoThread* start_splice(std::shared_ptr<Splice> splice, int* out_error);
  // Aborts every splice and joins the threads; the pool refuses new splices afterwards.
  void shutdown();

 private:
  std::mutex mutex_;
  size_t size_;
  std::vector<std::unique_ptr<IoThread>> threads_;  // guarded by mutex_; never shrinks
  bool shut_down_ = false;                           // guarded by mutex_
};

}  // namespace tls_splice

#endif  // TLS_SPLICE_IO_THREAD_H_
