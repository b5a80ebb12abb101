#include "io_thread.h"

#include <pthread.h>

#include <algorithm>

namespace tls_splice {

IoThread::~IoThread() { shutdown(); }

int IoThread::start() {
  int rc = uv_loop_init(&loop_);
  if (rc < 0) return rc;
  rc = uv_async_init(&loop_, &wakeup_, on_wakeup);
  if (rc < 0) {
    uv_loop_close(&loop_);
    return rc;
  }
  wakeup_.data = this;
  rc = uv_thread_create(&thread_, run, this);
  if (rc < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return rc;
  }
  started_ = true;
  return 0;
}

void IoThread::run(void* arg) {
  IoThread* self = static_cast<IoThread*>(arg);
  // Named for `top -H`, perf and /proc/<pid>/task/*/comm: the splices' CPU is told apart from
  // Node's own threads (all named "node"). At most 15 characters.
#if defined(__APPLE__)
  pthread_setname_np(kThreadName);  // Apple's names only the calling thread
#elif defined(__linux__) || defined(__FreeBSD__)
  pthread_setname_np(pthread_self(), kThreadName);
#endif
  // Runs until shutdown closes the wakeup handle and every splice has closed its handles.
  uv_run(&self->loop_, UV_RUN_DEFAULT);
}

bool IoThread::post(std::function<void(uv_loop_t*)> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_ || stopping_) return false;
    tasks_.push_back(std::move(task));
  }
  uv_async_send(&wakeup_);
  return true;
}

bool IoThread::adopt(std::shared_ptr<Splice> splice) {
  load_.fetch_add(1, std::memory_order_relaxed);
  const bool posted = post([this, splice](uv_loop_t* loop) {
    splices_.erase(std::remove_if(splices_.begin(), splices_.end(),
                                  [](const std::weak_ptr<Splice>& w) { return w.expired(); }),
                   splices_.end());
    splices_.push_back(splice);
    splice->set_close_hook([this] { load_.fetch_sub(1, std::memory_order_relaxed); });
    splice->start(loop);
  });
  if (!posted) load_.fetch_sub(1, std::memory_order_relaxed);
  return posted;
}

void IoThread::on_wakeup(uv_async_t* handle) {
  IoThread* self = static_cast<IoThread*>(handle->data);
  std::vector<std::function<void(uv_loop_t*)>> tasks;
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    tasks.swap(self->tasks_);
    stopping = self->stopping_;
  }
  for (auto& task : tasks) task(&self->loop_);
  if (stopping) {
    for (const std::weak_ptr<Splice>& weak : self->splices_) {
      if (std::shared_ptr<Splice> splice = weak.lock()) splice->stop(false);
    }
    self->splices_.clear();
    // Once this and the splices' handles are closed, uv_run returns and the thread ends.
    uv_close(reinterpret_cast<uv_handle_t*>(&self->wakeup_), nullptr);
  }
}

void IoThread::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  uv_async_send(&wakeup_);
  uv_thread_join(&thread_);
  uv_loop_close(&loop_);
}

IoThread* IoThreadPool::start_splice(std::shared_ptr<Splice> splice, int* out_error) {
  std::lock_guard<std::mutex> lock(mutex_);
  *out_error = UV_ECANCELED;
  if (shut_down_) return nullptr;
  IoThread* best = nullptr;
  for (auto& thread : threads_) {
    if (best == nullptr || thread->load() < best->load()) best = thread.get();
  }
  if (best == nullptr || (best->load() > 0 && threads_.size() < size_)) {
    auto thread = std::make_unique<IoThread>();
    const int rc = thread->start();
    if (rc < 0) {
      *out_error = rc;
      if (best == nullptr) return nullptr;
    } else {
      best = thread.get();
      threads_.push_back(std::move(thread));
    }
  }
  if (!best->adopt(std::move(splice))) {
    *out_error = UV_ECANCELED;
    return nullptr;
  }
  *out_error = 0;
  return best;
}

void IoThreadPool::shutdown() {
  std::vector<IoThread*> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shut_down_ = true;
    for (auto& thread : threads_) threads.push_back(thread.get());
  }
  for (IoThread* thread : threads) thread->shutdown();
}

}  // namespace tls_splice
