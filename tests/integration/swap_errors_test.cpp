// Swap I/O errors, injected in the daemon's I/O layer (EXTMEMD_TEST_FAIL_SWAP; this VM
// has no device-mapper for a real failing device): a failed write keeps the page in
// memory, a page that cannot be read back is poisoned, never returned as zeros.
#include <signal.h>

#include <regex>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "256M"};
}

DaemonLaunch failing(const char* which) {
  DaemonLaunch launch;
  launch.env["EXTMEMD_TEST_FAIL_SWAP"] = which;
  return launch;
}

ProcessResult run_paging(const ScratchDir& dir, const Daemon& daemon,
                         const std::vector<std::string>& args, const char* limit) {
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = limit;
  options.timeout = 120s;
  std::vector<std::string> argv = {paging_path(dir)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(dir, argv, options);
}

// Every read fails: the application dies by SIGBUS on the first page it needs back (as
// with the kernel's unreadable swap), after retries; it never sees zeros, and the daemon
// goes on serving others.
TEST(SwapErrors, UnreadablePagesArePoisonedNotZeroed) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir), failing("read"));
  ProcessResult r = run_paging(
      dir, daemon, {"integrity", "--mib", "64", "--threads", "2", "--seconds", "5"}, "16M");
  EXPECT_EQ(r.signal, SIGBUS) << describe(r) << daemon.log();
  EXPECT_EQ(r.out.find("mismatches"), std::string::npos) << "it went on reading: " << r.out;
  EXPECT_TRUE(daemon.wait_for_log("it is poisoned", 5s)) << daemon.log();
  EXPECT_GE(departed_counter(daemon, 0, "poisoned_pages"), 1u) << daemon.log();
  EXPECT_GE(departed_counter(daemon, 0, "io"), 3u) << daemon.log();

  // Another client that needs no swap is served as before.
  ProcessResult ok = run_paging(
      dir, daemon, {"integrity", "--mib", "8", "--threads", "2", "--seconds", "1"}, "16M");
  EXPECT_EQ(ok.exit_code, 0) << describe(ok);
}

// Every write fails: evictions keep their pages in memory, the client runs over its limit
// with its data intact, and faults do not wait for a reclaim that cannot succeed.
TEST(SwapErrors, FailedWritesKeepPagesInMemory) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir), failing("write"));
  ProcessResult r = run_paging(
      dir, daemon, {"integrity", "--mib", "48", "--threads", "2", "--seconds", "3"}, "16M");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_TRUE(daemon.wait_for_log("fails every write", 5s)) << daemon.log();
  EXPECT_GT(departed_counter(daemon, 0, "io"), 0u) << daemon.log();
  EXPECT_GT(departed_counter(daemon, 0, "over_limit"), 0u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, 0, "major"), 0u) << "nothing was in swap to read";
}

}  // namespace
}  // namespace extmem::testing
