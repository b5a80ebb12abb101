// Throwing JS errors with a stable `code` from the binding: an ERR_TLS_SPLICE_* code with a
// message, or a libuv error (code "EPIPE", errno, syscall) as Node's own errors carry them.
// Each returns undefined, for `return throw_...(...)` in a binding function.
#ifndef TLS_SPLICE_BINDING_ERRORS_H_
#define TLS_SPLICE_BINDING_ERRORS_H_

#include <napi.h>
#include <uv.h>

#include <string>

namespace tls_splice {

inline Napi::Value throw_coded(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// `uv_error` is a libuv error (negative errno), `syscall` what failed.
inline Napi::Value throw_uv(Napi::Env env, int uv_error, const std::string& syscall) {
  Napi::Error error = Napi::Error::New(env, syscall + " failed: " + uv_strerror(uv_error));
  error.Set("code", Napi::String::New(env, uv_err_name(uv_error)));
  error.Set("errno", Napi::Number::New(env, uv_error));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace tls_splice

#endif  // TLS_SPLICE_BINDING_ERRORS_H_
