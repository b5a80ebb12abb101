// Replays the malformed-record fixtures (fixtures/*.bin, made by make_fixtures.cc) through a
// client record layer -- whole, one byte at a time, and in 7-byte pieces -- and checks each ends
// as fixtures/MANIFEST says (outcome, error code, alert, tickets skipped, data delivered).
// The MANIFEST is reviewed by hand against the RFCs; a behaviour change shows up here.
#include <fstream>
#include <sstream>
#include <string>

#include "record_harness.h"

using namespace tls_splice;
using test::Bytes;

namespace {

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

int main() {
  const char* dir_env = std::getenv("FIXTURES_DIR");
  const std::string dir = dir_env ? dir_env : "fixtures";
  std::ifstream manifest(dir + "/MANIFEST");
  REQUIRE(manifest.good());
  std::string line;
  int count = 0;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string file, suite_hex, outcome, code, alert, data_sha;
    uint64_t tickets = 0;
    in >> file >> suite_hex >> outcome >> code >> alert >> tickets >> data_sha;
    test::begin_case(file);
    const uint16_t suite = static_cast<uint16_t>(std::stoul(suite_hex, nullptr, 16));
    const TlsVersion v = suite < 0x2000 ? TlsVersion::kTls13 : TlsVersion::kTls12;
    const Bytes stream = read_file(dir + "/" + file);
    CHECK(!stream.empty());
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{7}}) {
      test::Session s(v, suite);
      REQUIRE(s.ok);
      const test::FeedResult fr = test::feed(s.client, stream, chunk);
      const ReadOutcome final_outcome = fr.ended_need_more && fr.last != ReadOutcome::kError &&
                                                fr.last != ReadOutcome::kCloseNotify
                                            ? ReadOutcome::kNeedMore
                                            : fr.last;
      CHECK_STR(test::outcome_name(final_outcome), outcome);
      const char* got_code = record_error_code(s.client.error());
      CHECK_STR(*got_code ? got_code : "-", code);
      CHECK_STR(s.client.alert_to_send() == AlertDescription::kNone
                    ? "-"
                    : alert_name(static_cast<uint8_t>(s.client.alert_to_send())),
                alert);
      CHECK_U64(s.client.stats().tickets_in, tickets);
      test::Sha256 sha;
      sha.update(fr.data.data(), fr.data.size());
      CHECK_STR(sha.hex_digest(), data_sha);
    }
    count++;
  }
  CHECK(count >= 40);
  return test::finish("test_fixtures");
}
