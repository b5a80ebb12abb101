// Generates the malformed-record fixtures (fixtures/*.bin + fixtures/MANIFEST) and the fuzz
// seed corpora (test/fuzz/corpus/<target>/). Run by `make fixtures`; the output is committed.
//
// Every fixture is the byte stream a server sends to a client, sealed with the fixed test keys
// of test_util.h (make_keys, sequence numbers 0/0). MANIFEST says, per fixture, what the
// client's record layer must end with: the outcome, the error code, the alert to send, how many
// tickets it skipped, and the SHA-256 of the application data it delivered.
// test_fixtures.cc replays them whole, byte by byte and in odd chunks.
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <string>

#include "record_harness.h"

using namespace tls_splice;
using test::Bytes;

namespace {

struct Fixture {
  std::string name;
  uint16_t suite;
  Bytes stream;
};

const Bytes kData = {'f', 'i', 'x', 't', 'u', 'r', 'e', ' ', 'd', 'a', 't', 'a'};

void write_file(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

std::vector<Fixture> build() {
  std::vector<Fixture> out;
  for (const uint16_t suite : {0x1301, 0x1303, 0xC02F, 0xCCA8}) {
    const bool tls13 = suite < 0x2000;
    const TlsVersion v = tls13 ? TlsVersion::kTls13 : TlsVersion::kTls12;
    const std::string prefix = std::string(tls13 ? "tls13" : "tls12") +
                               (suite == 0x1303 || suite == 0xCCA8 ? "-chacha20-" : "-aes128gcm-");
    auto add = [&](const std::string& name, const std::function<Bytes(test::Session&)>& make) {
      test::Session s(v, suite);
      if (!s.ok) std::abort();
      out.push_back(Fixture{prefix + name, suite, make(s)});
    };
    add("valid-data-close", [](test::Session& s) {
      return test::concat({s.seal_data(kData), s.seal_alert(1, 0)});
    });
    add("bad-tag", [](test::Session& s) {
      const Bytes good = s.seal_data(kData);  // sealed first: sequence 0
      Bytes r = s.seal_data(kData);
      r.back() ^= 0x01;
      return test::concat({good, r});
    });
    add("bad-body", [](test::Session& s) {
      Bytes r = s.seal_data(kData);
      r[5 + 8] ^= 0x80;
      return r;
    });
    add("unknown-outer-type", [](test::Session& s) {
      Bytes r = s.seal_data(kData);
      r[0] = 24;
      return r;
    });
    add("bad-version", [](test::Session& s) {
      Bytes r = s.seal_data(kData);
      r[2] = 1;
      return r;
    });
    add("oversize-length", [tls13](test::Session&) {
      const size_t len = (tls13 ? kMaxTls13CiphertextLength : kMaxTls12CiphertextLength) + 1;
      return Bytes{23, 3, 3, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
    });
    add("shorter-than-tag", [](test::Session&) {
      return Bytes{23, 3, 3, 0, 5, 1, 2, 3, 4, 5};
    });
    add("truncated", [](test::Session& s) {
      const Bytes good = s.seal_data(kData);
      Bytes r = s.seal_data(kData);
      r.resize(r.size() - 3);  // the stream ends inside the second record
      return test::concat({good, r});
    });
    add("empty-record-flood", [](test::Session& s) {
      Bytes in;
      for (int i = 0; i < 40; i++) {
        const Bytes r = s.seal_data({});
        in.insert(in.end(), r.begin(), r.end());
      }
      return in;
    });
    add("fatal-alert", [](test::Session& s) {
      return test::concat({s.seal_data(kData), s.seal_alert(2, 40)});
    });
    add("data-after-close-notify", [](test::Session& s) {
      return test::concat({s.seal_data(kData), s.seal_alert(1, 0), s.seal_data(kData)});
    });
    add("alert-two-messages", [](test::Session& s) {
      return s.peer.seal(ContentType::kAlert, Bytes{1, 0, 1, 0});
    });
    if (tls13) {
      add("all-zero-inner", [](test::Session& s) {
        return test::seal_tls13_inner(s.keys.server, 0, Bytes(20, 0));
      });
      add("unknown-inner-type", [](test::Session& s) {
        return test::seal_tls13_inner(s.keys.server, 0, Bytes{1, 2, 3, 0x42});
      });
      add("padding-overflow", [](test::Session& s) {
        Bytes inner = {'x', 23};
        inner.resize(kMaxPlaintextLength + 2, 0);
        return test::seal_tls13_inner(s.keys.server, 0, inner);
      });
      add("key-update-flood", [](test::Session& s) {
        Bytes in;
        for (int i = 0; i < 33; i++) {
          const Bytes r = s.seal_key_update(0);
          in.insert(in.end(), r.begin(), r.end());
        }
        return in;
      });
      add("key-update-requested", [](test::Session& s) {
        return test::concat({s.seal_key_update(1), s.seal_data(kData)});
      });
      add("key-update-bad-value", [](test::Session& s) {
        return s.seal_handshake(Bytes{24, 0, 0, 1, 7});
      });
      add("key-update-bad-length", [](test::Session& s) {
        return s.seal_handshake(Bytes{24, 0, 0, 2, 0, 0});
      });
      add("key-update-not-at-boundary", [](test::Session& s) {
        return s.seal_handshake(Bytes{24, 0, 0, 1, 0, 4, 0});
      });
      add("ticket-in-3-records", [](test::Session& s) {
        const Bytes t = test::new_session_ticket(300);
        return test::concat({s.seal_handshake(Bytes(t.begin(), t.begin() + 2)),
                             s.seal_handshake(Bytes(t.begin() + 2, t.begin() + 150)),
                             s.seal_handshake(Bytes(t.begin() + 150, t.end())),
                             s.seal_data(kData)});
      });
      add("ticket-interleaved", [](test::Session& s) {
        const Bytes t = test::new_session_ticket(300);
        return test::concat({s.seal_handshake(Bytes(t.begin(), t.begin() + 150)),
                             s.seal_data(kData),
                             s.seal_handshake(Bytes(t.begin() + 150, t.end()))});
      });
      add("ticket-malformed", [](test::Session& s) {
        return s.seal_handshake(test::new_session_ticket(0));
      });
      add("certificate-request", [](test::Session& s) {
        return s.seal_handshake(Bytes{13, 0, 0, 4, 0, 0, 0, 0});
      });
    } else {
      add("warning-alert-flood", [](test::Session& s) {
        Bytes in;
        for (int i = 0; i < 5; i++) {
          const Bytes r = s.seal_alert(1, 112);
          in.insert(in.end(), r.begin(), r.end());
        }
        return in;
      });
      add("hello-request", [](test::Session& s) {
        return test::concat({s.seal_handshake(Bytes{0, 0, 0, 0}), s.seal_data(kData)});
      });
      add("hello-request-flood", [](test::Session& s) {
        Bytes in;
        for (int i = 0; i < 5; i++) {
          const Bytes r = s.seal_handshake(Bytes{0, 0, 0, 0});
          in.insert(in.end(), r.begin(), r.end());
        }
        return in;
      });
      add("change-cipher-spec", [](test::Session& s) {
        return test::concat({s.seal_data(kData), Bytes{20, 3, 3, 0, 1, 1}});
      });
    }
  }
  return out;
}

// A post_handshake fuzz script op (see test/fuzz/fuzz_post_handshake.cc).
void op(Bytes& script, uint8_t code, const Bytes& payload) {
  script.push_back(code);
  script.push_back(static_cast<uint8_t>(payload.size() >> 8));
  script.push_back(static_cast<uint8_t>(payload.size()));
  script.insert(script.end(), payload.begin(), payload.end());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "fixtures";
  const std::string corpus = argc > 2 ? argv[2] : "../fuzz/corpus";
  mkdir(dir.c_str(), 0755);
  for (const char* t : {"", "/record_open", "/post_handshake", "/framing"}) {
    mkdir((corpus + t).c_str(), 0755);
  }
  std::ofstream manifest(dir + "/MANIFEST");
  manifest << "# file suite outcome error_code alert tickets data_sha256 -- generated by "
              "make_fixtures.cc; replayed by test_fixtures.cc\n";
  const auto& suites = test::all_suites();
  for (const Fixture& f : build()) {
    write_file(dir + "/" + f.name + ".bin", f.stream);
    const TlsVersion v = f.suite < 0x2000 ? TlsVersion::kTls13 : TlsVersion::kTls12;
    test::Session s(v, f.suite);
    const test::FeedResult fr = test::feed(s.client, f.stream);
    test::Sha256 sha;
    sha.update(fr.data.data(), fr.data.size());
    const ReadOutcome final_outcome = fr.ended_need_more && fr.last != ReadOutcome::kError &&
                                              fr.last != ReadOutcome::kCloseNotify
                                          ? ReadOutcome::kNeedMore
                                          : fr.last;
    char suite_hex[8];
    std::snprintf(suite_hex, sizeof(suite_hex), "%04x", f.suite);
    const char* code = record_error_code(s.client.error());
    manifest << f.name << ".bin " << suite_hex << " " << test::outcome_name(final_outcome) << " "
             << (*code ? code : "-") << " "
             << (s.client.alert_to_send() == AlertDescription::kNone
                     ? "-"
                     : alert_name(static_cast<uint8_t>(s.client.alert_to_send())))
             << " "
             << s.client.stats().tickets_in << " " << sha.hex_digest() << "\n";
    // record_open seed: the setup byte for this suite, client role, whole input.
    for (size_t i = 0; i < suites.size(); i++) {
      if (suites[i].id == f.suite) {
        Bytes seed = {static_cast<uint8_t>(i)};
        seed.insert(seed.end(), f.stream.begin(), f.stream.end());
        write_file(corpus + "/record_open/" + f.name, seed);
      }
    }
  }

  // post_handshake seeds: scripts of the protocol's post-handshake messages.
  const Bytes ticket = test::new_session_ticket(64);
  struct Script {
    const char* name;
    uint8_t setup;
    std::function<void(Bytes&)> ops;
  };
  const Script scripts[] = {
      {"tls13-ticket-split-data", 0, [&](Bytes& s) {
         op(s, 0, Bytes(ticket.begin(), ticket.begin() + 5));
         op(s, 0, Bytes(ticket.begin() + 5, ticket.end()));
         op(s, 1, kData);
         op(s, 6, kData);
       }},
      {"tls13-key-update-requested", 2, [&](Bytes& s) {
         op(s, 0, Bytes{24, 0, 0, 1, 1});
         op(s, 1, kData);
         op(s, 6, kData);
         op(s, 0, Bytes{24, 0, 0, 1, 0});
         op(s, 2, Bytes{1, 0});
       }},
      {"tls13-ticket-then-key-update", 1, [&](Bytes& s) {
         op(s, 0, test::concat({ticket, Bytes{24, 0, 0, 1, 1}}));
         op(s, 6, kData);
       }},
      {"tls13-cert-request", 0, [&](Bytes& s) { op(s, 0, Bytes{13, 0, 0, 4, 0, 0, 0, 0}); }},
      {"tls13-inner-types", 0, [&](Bytes& s) {
         op(s, 4 | (23 << 3), Bytes{1, 2, 0, 0});
         op(s, 4 | (21 << 3), Bytes{1, 90});
         op(s, 4 | (22 << 3), Bytes{24, 0, 0, 1, 0});
       }},
      {"tls13-server-role", 8, [&](Bytes& s) {
         op(s, 0, Bytes{24, 0, 0, 1, 1});
         op(s, 6, kData);
         op(s, 1, kData);
       }},
      {"tls12-hello-request", 3, [&](Bytes& s) {
         op(s, 0, Bytes{0, 0, 0, 0});
         op(s, 1, kData);
         op(s, 6, kData);
         op(s, 2, Bytes{1, 112});
       }},
      {"tls12-server-client-hello", 8 | 5, [&](Bytes& s) {
         op(s, 0, Bytes{1, 0, 0, 4, 3, 3, 0, 0});
         op(s, 6, kData);
       }},
      {"assembler", 0, [&](Bytes& s) {
         op(s, 7, Bytes(ticket.begin(), ticket.begin() + 3));
         op(s, 7, Bytes(ticket.begin() + 3, ticket.end()));
         op(s, 7, Bytes{4, 0xff, 0xff, 0xff});
       }},
  };
  for (const Script& sc : scripts) {
    Bytes s = {sc.setup};
    sc.ops(s);
    write_file(corpus + "/post_handshake/" + sc.name, s);
  }

  // framing seeds: config bytes, then a stream of packets.
  auto ipv4 = [](size_t total) {
    Bytes p(total, 0x11);
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>(total >> 8);
    p[3] = static_cast<uint8_t>(total);
    return p;
  };
  auto ipv6 = [](size_t payload) {
    Bytes p(40 + payload, 0x22);
    p[0] = 0x60;
    p[4] = static_cast<uint8_t>(payload >> 8);
    p[5] = static_cast<uint8_t>(payload);
    return p;
  };
  write_file(corpus + "/framing/ip-v4-v6", test::concat({Bytes{0, 0x05, 0xdc}, ipv4(60), ipv6(20),
                                                         ipv4(20)}));
  write_file(corpus + "/framing/ip-linux-pi-partial", test::concat({Bytes{2, 0xff, 0xff}, ipv4(1500),
                                                                    Bytes{0x60, 0, 0}}));
  write_file(corpus + "/framing/ip-utun-v6", test::concat({Bytes{4, 0x05, 0x00}, ipv6(1000)}));
  write_file(corpus + "/framing/u16be", Bytes{1, 0x05, 0xdc, 0, 3, 'a', 'b', 'c', 0, 1, 'z', 0, 9});
  write_file(corpus + "/framing/ip-bad-ihl", Bytes{0, 0xff, 0xff, 0x43, 0, 0, 40});
  std::printf("fixtures written to %s, corpora to %s\n", dir.c_str(), corpus.c_str());
  return 0;
}
