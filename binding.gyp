{
  "targets": [
    {
      "target_name": "tls_splice",
      "sources": [
        "src-native/tls_constants.cc",
        "src-native/cipher_suite.cc",
        "src-native/key_schedule.cc",
        "src-native/aead.cc",
        "src-native/cbc.cc",
        "src-native/record_protection.cc",
        "src-native/post_handshake.cc",
        "src-native/record_layer.cc",
        "src-native/framing.cc",
        "src-native/owned_fd.cc",
        "src-native/buffer_arena.cc",
        "src-native/splice.cc",
        "src-native/splice_pump_in.cc",
        "src-native/splice_pump_out.cc",
        "src-native/splice_idle.cc",
        "src-native/io_thread.cc",
        "src-native/splice_binding.cc",
        "src-native/fd_poller_binding.cc",
        "src-native/tun.cc",
        "src-native/binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags_cc": [ "-std=c++17", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter" ],
      "cflags_cc!": [ "-fno-exceptions" ],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "OTHER_CPLUSPLUSFLAGS": [ "-O2", "-Wall" ],
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      }
    }
  ]
}
