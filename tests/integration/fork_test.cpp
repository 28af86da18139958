// fork under paging: a parent whose managed pages are being evicted and restored forks
// children of every kind; its data stays intact and the daemon keeps serving it.
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

uint64_t number_before(const std::string& text, const std::string& what) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("(\\d+) " + what))) {
    ADD_FAILURE() << "no " << what << " in: " << text;
    return 0;
  }
  return std::stoull(m[1]);
}

TEST(Fork, ChildrenOfEveryKindWhileThePagesArePagedAtFourTimesTheLimit) {
  ScratchDir dir;
  Daemon daemon(dir, {"--swap", dir.file("swapfile"), "--swap-size", "256M"});
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "24M";
  Started parent = start_process(
      dir,
      {paging_path(dir), "fork-while-paging", "--mib", "96", "--threads", "2", "--seconds", "8"},
      options);
  ProcessResult r = wait_process(parent, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("fork-while-paging ok: 96 MiB managed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_GT(number_before(r.out, "own-memory"), 10u) << r.out;
  EXPECT_GT(number_before(r.out, "fork\\+exec"), 10u) << r.out;
  EXPECT_GT(number_before(r.out, "posix_spawn"), 10u) << r.out;
  EXPECT_GT(number_before(r.out, "touchers killed by SIGSEGV"), 10u) << r.out;

  // The parent was paged all along, and without errors.
  EXPECT_GT(departed_counter(daemon, parent.pid, "evictions"), 1000u) << daemon.log();
  EXPECT_GT(departed_counter(daemon, parent.pid, "major"), 100u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, parent.pid, "fault"), 0u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, parent.pid, "io"), 0u) << daemon.log();
  // The exec'd /bin/true children were clients of their own (LD_PRELOAD), and all left.
  bool none_left = false;
  for (auto end = std::chrono::steady_clock::now() + 10s;
       !none_left && std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(50ms)) {
    none_left = daemon.stats().find("clients=0 ") != std::string::npos;
  }
  EXPECT_TRUE(none_left) << daemon.log();
}

}  // namespace
}  // namespace extmem::testing
