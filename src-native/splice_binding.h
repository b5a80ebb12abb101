// Registers the Splice class and the I/O thread pool of this environment on `exports`.
#ifndef TLS_SPLICE_SPLICE_BINDING_H_
#define TLS_SPLICE_SPLICE_BINDING_H_

#include <napi.h>

namespace tls_splice {

void init_splice_binding(Napi::Env env, Napi::Object exports);

}  // namespace tls_splice

#endif  // TLS_SPLICE_SPLICE_BINDING_H_
