// Swap I/O errors, injected in the daemon's I/O layer (EXTMEMD_TEST_FAIL_SWAP; this VM
// has no device-mapper for a real failing device): a failed write keeps the page in
// memory, a page that cannot be read back is poisoned, never returned as zeros.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

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

// The state letter of /proc/PID/stat ('Z' once it has exited), or '?' when gone.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end = stat.rfind(')');
  return end == std::string::npos || end + 2 >= stat.size() ? '?' : stat[end + 2];
}

// Where a page can be neither read nor poisoned (a kernel without UFFDIO_POISON), the
// application waits, as on a hard NFS mount, and goes on with the right data once the
// device reads again.
TEST(SwapErrors, UnreadablePagesThatCannotBePoisonedWaitForTheDevice) {
  ScratchDir dir;
  const std::string device_fails = dir.file("device-fails");
  std::ofstream(device_fails) << "reads fail while this file exists\n";
  DaemonLaunch launch = failing("read");
  launch.env["EXTMEMD_TEST_FAIL_SWAP_WHILE"] = device_fails;
  launch.env["EXTMEMD_TEST_NO_POISON"] = "1";
  Daemon daemon(dir, daemon_args(dir), launch);
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "16M";
  Started client = start_process(
      dir, {paging_path(dir), "integrity", "--mib", "64", "--threads", "2", "--seconds", "3"},
      options);
  ASSERT_TRUE(daemon.wait_for_log("cannot be poisoned", 60s)) << daemon.log();
  std::this_thread::sleep_for(3s);  // longer than the run: only the stall keeps it alive
  const char state = process_state(client.pid);
  EXPECT_TRUE(state != 'Z' && state != '?') << "it should wait for the device: " << state;
  EXPECT_EQ(daemon.log().find("it is poisoned"), std::string::npos) << daemon.log();

  std::filesystem::remove(device_fails);
  ProcessResult r = wait_process(client, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_TRUE(daemon.wait_for_log("failed tries", 5s)) << daemon.log();
  EXPECT_GE(departed_counter(daemon, client.pid, "stalled_reads"), 1u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, client.pid, "poisoned_pages"), 0u) << daemon.log();
  // Waiting, not spinning: a few tries per stalled page and second, not thousands.
  EXPECT_LE(departed_counter(daemon, client.pid, "io"), 60u) << departure_line(daemon, client.pid);
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
