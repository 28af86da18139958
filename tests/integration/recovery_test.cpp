// Daemon crash and restart: extmemd is killed with SIGKILL while its clients page at four
// times their limit; a new extmemd on the same swap file takes them back, and every byte
// the clients read afterwards is what they wrote.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--fault-threads", "2"};
}

Started start_paging(const ScratchDir& dir, const Daemon& daemon,
                     const std::vector<std::string>& args, const char* limit) {
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = limit;
  std::vector<std::string> argv = {paging_path(dir)};
  argv.insert(argv.end(), args.begin(), args.end());
  return start_process(dir, argv, options);
}

// Records of this test's swap file left in /dev/shm.
size_t records_left(const ScratchDir& dir) {
  struct stat st;
  if (stat(dir.file("swapfile").c_str(), &st) != 0) return 0;
  const std::string prefix =
      "extmem." + std::to_string(st.st_dev) + "." + std::to_string(st.st_ino) + ".";
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    n += entry.path().filename().string().starts_with(prefix);
  }
  return n;
}

uint64_t counter(const std::string& log, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(log, m, std::regex(name + "=(\\d+)"))) return 0;
  return std::stoull(m[1]);
}

TEST(Recovery, ClientsSurviveADaemonKilledMidPaging) {
  ScratchDir dir;
  auto first = std::make_unique<Daemon>(dir, daemon_args(dir));
  std::vector<Started> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(start_paging(
        dir, *first, {"integrity", "--mib", "96", "--threads", "2", "--seconds", "10"}, "24M"));
  }
  // Wait until both have pages in swap, then kill the daemon in the middle of it.
  ASSERT_TRUE(first->wait_for_log("registered", 10s)) << first->log();
  const auto paging_deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < paging_deadline &&
         counter(first->stats(), "swapped") == 0) {
    std::this_thread::sleep_for(200ms);
  }
  std::this_thread::sleep_for(2s);
  first->crash();
  EXPECT_EQ(records_left(dir), 2u) << "each client's swap record outlives the daemon";
  // The clients stall on their next fault while no daemon runs.
  std::this_thread::sleep_for(1s);

  const auto restarted = std::chrono::steady_clock::now();
  Daemon second(dir, daemon_args(dir));
  ASSERT_TRUE(second.wait_for_log("took back 2 clients", 10s)) << second.log();
  const auto recovery_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - restarted)
                               .count();
  RecordProperty("recovery_ms", std::to_string(recovery_ms));

  for (const Started& c : clients) {
    ProcessResult r = wait_process(c, 120s);
    ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- new daemon\n" << second.log();
    EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  }
  // Pages read back from swap after the restart prove the records were used.
  EXPECT_GT(departed_counter(second, clients[0].pid, "major") +
                departed_counter(second, clients[1].pid, "major"),
            0u)
      << second.log();
  second.stop();
  EXPECT_EQ(records_left(dir), 0u) << "records of clients that left are removed";
}

TEST(Recovery, RecordsOfExitedClientsAreDropped) {
  ScratchDir dir;
  auto first = std::make_unique<Daemon>(dir, daemon_args(dir));
  Started client = start_paging(
      dir, *first, {"integrity", "--mib", "48", "--threads", "2", "--seconds", "2"}, "16M");
  ASSERT_TRUE(first->wait_for_log("registered", 10s)) << first->log();
  std::this_thread::sleep_for(1s);
  first->crash();
  // Without a daemon the client stalls; killing it leaves only its record behind.
  kill(client.pid, SIGKILL);
  wait_process(client, 10s);
  EXPECT_EQ(records_left(dir), 1u);
  Daemon second(dir, daemon_args(dir));
  EXPECT_TRUE(second.wait_for_log("its record is removed", 5s)) << second.log();
  EXPECT_EQ(records_left(dir), 0u);
}

TEST(Recovery, CleanStopLeavesNoRecord) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  Started client = start_paging(
      dir, daemon, {"integrity", "--mib", "48", "--threads", "2", "--seconds", "3"}, "16M");
  ASSERT_TRUE(daemon.wait_for_log("registered", 10s)) << daemon.log();
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(records_left(dir), 1u);
  // SIGTERM reads every page back and hands the arena to the kernel: the client goes on
  // without a daemon, and nothing is left to recover.
  EXPECT_EQ(daemon.stop(), 0);
  EXPECT_EQ(records_left(dir), 0u);
  ProcessResult r = wait_process(client, 60s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace extmem::testing
