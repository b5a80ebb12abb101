// Registers FdPoller (readiness of an fd on Node's own loop, for the JS engine) and
// setNonBlocking on `exports`.
#ifndef TLS_SPLICE_FD_POLLER_BINDING_H_
#define TLS_SPLICE_FD_POLLER_BINDING_H_

#include <napi.h>

namespace tls_splice {

void init_fd_poller_binding(Napi::Env env, Napi::Object exports);

}  // namespace tls_splice

#endif  // TLS_SPLICE_FD_POLLER_BINDING_H_
