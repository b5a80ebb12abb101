// FdPoller: readiness of an fd on Node's own loop, for the JS engine. A character device (a TUN)
// cannot be a net.Socket, and fs reads on it block a libuv pool thread until a packet comes (a
// few spliced TUNs would starve every fs call of the process). With FdPoller the JS engine reads
// and writes a non-blocking fd only when it is ready, on the main thread.
//
//   const poller = new FdPoller(fd, (status, events) => ...);  // throws EPERM if not pollable
//   poller.start(events)   // 1 readable, 2 writable, 3 both; replaces the previous interest
//   poller.stop()
//   poller.close()         // idempotent; the fd is never closed by the poller
//   setNonBlocking(fd, on) -> whether O_NONBLOCK was set before
#include "fd_poller_binding.h"

#include "binding_errors.h"

#include <errno.h>
#include <fcntl.h>
#include <uv.h>

#include <string>

namespace tls_splice {
namespace {

// Lives until libuv has let go of the handle, which may be after the JS object is collected.
struct PollState {
  uv_poll_t poll;
  Napi::FunctionReference callback;
  std::unique_ptr<Napi::AsyncContext> context;
  bool closing = false;
};

void on_closed(uv_handle_t* handle) { delete static_cast<PollState*>(handle->data); }

void close_state(PollState* state) {
  if (state == nullptr || state->closing) return;
  state->closing = true;
  uv_poll_stop(&state->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&state->poll), on_closed);
}

void on_poll(uv_poll_t* handle, int status, int events) {
  PollState* state = static_cast<PollState*>(handle->data);
  if (state->closing || state->callback.IsEmpty()) return;
  Napi::Env env = state->callback.Env();
  Napi::HandleScope scope(env);
  // MakeCallback: an entry into JS from the loop, so microtasks and async hooks run as usual.
  state->callback.MakeCallback(env.Global(),
                               {Napi::Number::New(env, status), Napi::Number::New(env, events)},
                               *state->context);
}

class FdPoller : public Napi::ObjectWrap<FdPoller> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "FdPoller",
                       {InstanceMethod<&FdPoller::start>("start"),
                        InstanceMethod<&FdPoller::stop>("stop"),
                        InstanceMethod<&FdPoller::close>("close")});
  }

  explicit FdPoller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdPoller>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsFunction()) {
      throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "new FdPoller(fd, callback)");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      throw_uv(env, UV_EINVAL, "napi_get_uv_event_loop");
      return;
    }
    auto* state = new PollState();
    const int rc = uv_poll_init(loop, &state->poll, info[0].As<Napi::Number>().Int32Value());
    if (rc < 0) {
      delete state;
      throw_uv(env, rc, "uv_poll_init");  // EPERM: a regular file or /dev/null, never blocks
      return;
    }
    state->poll.data = state;
    state->callback = Napi::Persistent(info[1].As<Napi::Function>());
    state->context = std::make_unique<Napi::AsyncContext>(env, "tls-splice:FdPoller");
    state_ = state;
  }

  ~FdPoller() override { close_state(state_); }

 private:
  Napi::Value start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_ == nullptr || state_->closing) return env.Undefined();
    const int events = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    const int rc = events == 0 ? uv_poll_stop(&state_->poll)
                               : uv_poll_start(&state_->poll, events & (UV_READABLE | UV_WRITABLE),
                                               on_poll);
    if (rc < 0) return throw_uv(env, rc, "uv_poll_start");
    return env.Undefined();
  }

  Napi::Value stop(const Napi::CallbackInfo& info) {
    if (state_ != nullptr && !state_->closing) uv_poll_stop(&state_->poll);
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    close_state(state_);
    state_ = nullptr;
    return info.Env().Undefined();
  }

  PollState* state_ = nullptr;
};

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsBoolean()) {
    return throw_coded(env, "ERR_TLS_SPLICE_INVALID_ARG", "setNonBlocking(fd, on)");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return throw_uv(env, -errno, "fcntl");
  const int wanted = info[1].As<Napi::Boolean>().Value() ? (flags | O_NONBLOCK)
                                                         : (flags & ~O_NONBLOCK);
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) < 0) return throw_uv(env, -errno, "fcntl");
  return Napi::Boolean::New(env, (flags & O_NONBLOCK) != 0);
}

}  // namespace

void init_fd_poller_binding(Napi::Env env, Napi::Object exports) {
  exports.Set("FdPoller", FdPoller::define(env));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
}

}  // namespace tls_splice
