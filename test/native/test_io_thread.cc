// The splice I/O threads name themselves (IoThread::kThreadName), so that `top -H`, perf and
// /proc/<pid>/task/*/comm tell their CPU apart from Node's own threads, all named "node".
#include <dirent.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "../../src-native/io_thread.h"
#include "test_util.h"

using namespace tls_splice;

namespace {

int threads_named(const std::string& name) {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string line;
    if (std::getline(comm, line) && line == name) n++;
  }
  closedir(dir);
  return n;
}

void test_thread_is_named() {
  test::current_case() = "an I/O thread is named tls-splice-io";
  CHECK_EQ(threads_named(IoThread::kThreadName), 0);
  IoThread thread;
  CHECK_EQ(thread.start(), 0);
  // The name is set by the thread itself: wait until a task posted to it ran.
  std::atomic<bool> ran{false};
  CHECK(thread.post([&ran](uv_loop_t*) { ran = true; }));
  for (int i = 0; i < 2000 && !ran; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(ran);
  CHECK_EQ(threads_named(IoThread::kThreadName), 1);
  thread.shutdown();
  CHECK_EQ(threads_named(IoThread::kThreadName), 0);
}

}  // namespace

int main() {
  test_thread_is_named();
  return test::finish("test_io_thread");
}
