// Daemon crash and restart: extmemd is killed with SIGKILL while its clients page at four
// times their limit; a new extmemd on the same swap file takes them back, and every byte
// the clients read afterwards is what they wrote.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "extmem/v1/control.grpc.pb.h"
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

// The client `pid` as the daemon's control plane lists it, polled until it is there.
std::optional<v1::ClientStats> listed_client(const Daemon& daemon, pid_t pid) {
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
  const auto end = std::chrono::steady_clock::now() + 10s;
  do {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::ListClientsResponse list;
    if (stub->ListClients(&context, {}, &list).ok()) {
      for (const auto& c : list.clients()) {
        if (c.pid() == pid) return c;
      }
    }
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < end);
  return std::nullopt;
}

TEST(Recovery, TermsSetThroughTheControlPlaneSurviveARestart) {
  constexpr uint64_t kMiB = 1 << 20;
  ScratchDir dir;
  auto first = std::make_unique<Daemon>(dir, daemon_args(dir));
  Started client = start_paging(
      dir, *first, {"integrity", "--mib", "48", "--threads", "2", "--seconds", "8"}, "24M");
  ASSERT_TRUE(listed_client(*first, client.pid)) << first->log();
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + first->control_path(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    v1::SetLimitRequest request;
    request.mutable_client()->set_pid(client.pid);
    request.set_limit_bytes(16 * kMiB);
    request.set_min_bytes(4 * kMiB);
    request.set_weight(300);
    v1::SetLimitResponse response;
    grpc::Status s = stub->SetLimit(&context, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  {
    grpc::ClientContext context;
    v1::SetPolicyRequest request;
    request.mutable_client()->set_pid(client.pid);
    request.set_policy("fifo");
    v1::SetPolicyResponse response;
    grpc::Status s = stub->SetPolicy(&context, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::this_thread::sleep_for(1s);
  first->crash();

  Daemon second(dir, daemon_args(dir));
  ASSERT_TRUE(second.wait_for_log("took back 1 client", 10s)) << second.log();
  auto recovered = listed_client(second, client.pid);
  ASSERT_TRUE(recovered) << second.log();
  EXPECT_EQ(recovered->limit_bytes(), 16 * kMiB) << "the limit set live, not the 24M registered";
  EXPECT_EQ(recovered->min_bytes(), 4 * kMiB);
  EXPECT_EQ(recovered->weight(), 300u);
  EXPECT_EQ(recovered->policy(), "fifo");
  EXPECT_EQ(recovered->limit_source(), "recovered");
  ProcessResult r = wait_process(client, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- new daemon\n" << second.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
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

TEST(Recovery, AFailedPagingRingStopsTheDaemonAndItsClientsGoOn) {
  ScratchDir dir;
  DaemonLaunch launch;
  launch.env["EXTMEMD_TEST_FAIL_PAGING_RING"] = "1";  // at the ring's first swap-in read
  Daemon daemon(dir, daemon_args(dir), launch);
  Started client = start_paging(
      dir, daemon, {"integrity", "--mib", "48", "--threads", "2", "--seconds", "4"}, "16M");
  ASSERT_TRUE(daemon.wait_for_log("extmemd stops, handing its clients back", 30s)) << daemon.log();
  // Its faults were left unanswered: the stop reads its pages back and hands it its arena,
  // and the exit status asks the service manager for a restart.
  ASSERT_TRUE(daemon.wait_for_log("extmemd stopped", 30s)) << daemon.log();
  const int status = daemon.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "wait status " << status;
  EXPECT_NE(daemon.log().find("handed back"), std::string::npos) << daemon.log();
  EXPECT_EQ(records_left(dir), 0u);
  ProcessResult r = wait_process(client, 60s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace extmem::testing
