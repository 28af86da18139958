// The control plane end to end: a real extmemd serving gRPC on its control socket, real
// clients under the shim, and the standard health service.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "extmem/v1/control.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;

std::unique_ptr<v1::Control::Stub> connect(const Daemon& daemon) {
  return v1::Control::NewStub(
      grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
}

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--fault-threads", "2"};
}

std::unique_ptr<grpc::ClientContext> deadline(std::chrono::seconds s = 5s) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + s);
  return context;
}

// The client with `pid`, polled until it registered.
std::optional<v1::ClientStats> find_client(v1::Control::Stub& stub, pid_t pid,
                                           std::chrono::milliseconds timeout = 10s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  do {
    v1::ListClientsResponse list;
    if (stub.ListClients(deadline().get(), {}, &list).ok()) {
      for (const auto& c : list.clients()) {
        if (c.pid() == pid) return c;
      }
    }
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < end);
  return std::nullopt;
}

// Polls the client's resident memory until `done(resident)` holds.
bool wait_resident(v1::Control::Stub& stub, pid_t pid, const std::function<bool(uint64_t)>& done,
                   uint64_t* last, std::chrono::seconds timeout = 10s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  do {
    auto c = find_client(stub, pid, 1s);
    if (c) {
      *last = c->resident_bytes();
      if (done(*last)) return true;
    }
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < end);
  return false;
}

Started start_paging(const ScratchDir& dir, const Daemon& daemon,
                     const std::vector<std::string>& args, const char* limit) {
  ClientOptions options = client_options(daemon);
  if (*limit != '\0') options.env["EXTMEM_DRAM"] = limit;
  std::vector<std::string> argv = {paging_path(dir)};
  argv.insert(argv.end(), args.begin(), args.end());
  return start_process(dir, argv, options);
}

TEST(ControlTest, StatusAndHealthAnswer) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  v1::GetStatusResponse status;
  grpc::Status s = stub->GetStatus(deadline().get(), {}, &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.pid(), daemon.pid());
  EXPECT_EQ(status.swap_path(), dir.file("swapfile"));
  EXPECT_EQ(status.swap_size_bytes(), 512 * kMiB);
  EXPECT_EQ(status.client_socket(), daemon.socket_path());
  EXPECT_GT(status.capabilities_size(), 5);
  EXPECT_NE(std::find(status.policies().begin(), status.policies().end(), "clock"),
            status.policies().end());

  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckResponse answer;
  s = health->Check(deadline().get(), {}, &answer);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(answer.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(ControlTest, ControlSocketHasTheConfiguredMode) {
  ScratchDir dir;
  std::vector<std::string> args = daemon_args(dir);
  args.insert(args.end(), {"--control-mode", "0600"});
  Daemon daemon(dir, args);
  struct stat st;
  ASSERT_EQ(stat(daemon.control_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  daemon.stop();
  EXPECT_NE(access(daemon.control_path().c_str(), F_OK), 0) << "the socket outlived the daemon";
}

TEST(ControlTest, ListShowsEveryClient) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  Started a = start_paging(dir, daemon, {"integrity", "--mib", "32", "--seconds", "4"}, "64M");
  Started b = start_paging(dir, daemon, {"integrity", "--mib", "16", "--seconds", "4"}, "");
  auto ca = find_client(*stub, a.pid);
  auto cb = find_client(*stub, b.pid);
  ASSERT_TRUE(ca && cb) << daemon.log();
  EXPECT_EQ(ca->executable(), "extmem-paging");
  EXPECT_EQ(ca->limit_bytes(), 64 * kMiB);
  EXPECT_EQ(ca->effective_limit_bytes(), 64 * kMiB);
  EXPECT_EQ(ca->limit_source(), "client");
  EXPECT_EQ(ca->policy(), "clock");
  EXPECT_EQ(ca->uid(), getuid());
  EXPECT_EQ(cb->limit_bytes(), 0u);
  EXPECT_EQ(cb->limit_source(), "default");

  v1::GetClientRequest one;
  one.mutable_client()->set_executable("extmem-paging");
  v1::GetClientResponse both;
  ASSERT_TRUE(stub->GetClient(deadline().get(), one, &both).ok());
  EXPECT_EQ(both.clients_size(), 2);

  for (const Started& p : {a, b}) {
    ProcessResult r = wait_process(p, 60s);
    EXPECT_EQ(r.exit_code, 0) << describe(r);
  }
}

// The limit changes while the application runs: resident memory follows it down and up,
// and every byte the application reads back is what it wrote.
TEST(ControlTest, LiveLimitMovesResidentMemoryAndKeepsData) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  Started client = start_paging(
      dir, daemon, {"integrity", "--mib", "128", "--threads", "2", "--seconds", "14"}, "256M");
  ASSERT_TRUE(find_client(*stub, client.pid)) << daemon.log();
  uint64_t resident = 0;
  ASSERT_TRUE(wait_resident(
      *stub, client.pid, [](uint64_t r) { return r > 96 * kMiB; }, &resident))
      << "resident " << resident;

  v1::SetLimitRequest shrink;
  shrink.mutable_client()->set_pid(client.pid);
  shrink.set_limit_bytes(32 * kMiB);
  v1::SetLimitResponse changed;
  grpc::Status s = stub->SetLimit(deadline().get(), shrink, &changed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(changed.clients_size(), 1);
  EXPECT_EQ(changed.clients(0).limit_bytes(), 32 * kMiB);
  EXPECT_EQ(changed.clients(0).limit_source(), "control");
  EXPECT_TRUE(wait_resident(
      *stub, client.pid, [](uint64_t r) { return r <= 33 * kMiB; }, &resident, 5s))
      << "resident " << resident << " after lowering the limit to 32M";

  v1::SetLimitRequest grow = shrink;
  grow.set_limit_bytes(256 * kMiB);
  ASSERT_TRUE(stub->SetLimit(deadline().get(), grow, &changed).ok());
  EXPECT_TRUE(wait_resident(
      *stub, client.pid, [](uint64_t r) { return r > 96 * kMiB; }, &resident, 8s))
      << "resident " << resident << " after raising the limit to 256M";

  ProcessResult r = wait_process(client, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
}

TEST(ControlTest, LivePolicyChangeKeepsData) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  Started client = start_paging(
      dir, daemon, {"integrity", "--mib", "96", "--threads", "2", "--seconds", "6"}, "32M");
  ASSERT_TRUE(find_client(*stub, client.pid)) << daemon.log();
  std::this_thread::sleep_for(1s);
  v1::SetPolicyRequest req;
  req.mutable_client()->set_pid(client.pid);
  req.set_policy("fifo");
  v1::SetPolicyResponse changed;
  grpc::Status s = stub->SetPolicy(deadline().get(), req, &changed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(changed.clients_size(), 1);
  EXPECT_EQ(changed.clients(0).policy(), "fifo");
  ProcessResult r = wait_process(client, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_NE(daemon.log().find("policy set to fifo"), std::string::npos);
}

TEST(ControlTest, BadRequestsGetClearStatusCodes) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  Started client = start_paging(dir, daemon, {"integrity", "--mib", "8", "--seconds", "3"}, "");
  ASSERT_TRUE(find_client(*stub, client.pid)) << daemon.log();

  v1::SetLimitRequest req;
  v1::SetLimitResponse out;
  req.mutable_client()->set_pid(999999);
  req.set_limit_bytes(64 * kMiB);
  grpc::Status s = stub->SetLimit(deadline().get(), req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("999999"), std::string::npos) << s.error_message();

  req.mutable_client()->set_executable("no-such-program");
  s = stub->SetLimit(deadline().get(), req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  req.mutable_client()->set_pid(client.pid);
  req.set_limit_bytes(4096);
  s = stub->SetLimit(deadline().get(), req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("minimum"), std::string::npos) << s.error_message();

  v1::SetLimitRequest unnamed;
  s = stub->SetLimit(deadline().get(), unnamed, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::SetPolicyRequest policy;
  v1::SetPolicyResponse policy_out;
  policy.mutable_client()->set_pid(client.pid);
  policy.set_policy("lru-of-my-dreams");
  s = stub->SetPolicy(deadline().get(), policy, &policy_out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("clock"), std::string::npos) << s.error_message();

  v1::SetBudgetRequest budget;
  v1::SetBudgetResponse budget_out;
  budget.set_budget_bytes(1000);
  s = stub->SetBudget(deadline().get(), budget, &budget_out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ProcessResult r = wait_process(client, 60s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

TEST(ControlTest, LimitsNeedASwapDevice) {
  ScratchDir dir;
  Daemon daemon(dir);
  auto stub = connect(daemon);
  Started client = start_paging(dir, daemon, {"integrity", "--mib", "8", "--seconds", "2"}, "");
  ASSERT_TRUE(find_client(*stub, client.pid)) << daemon.log();
  v1::SetLimitRequest req;
  req.mutable_client()->set_pid(client.pid);
  req.set_limit_bytes(64 * kMiB);
  v1::SetLimitResponse out;
  grpc::Status s = stub->SetLimit(deadline().get(), req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("swap"), std::string::npos) << s.error_message();
  ProcessResult r = wait_process(client, 60s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

// Two clients under one budget: together they stay within it, each keeps its data.
TEST(ControlTest, GlobalBudgetBoundsAllClients) {
  ScratchDir dir;
  std::vector<std::string> args = daemon_args(dir);
  args.insert(args.end(), {"--budget", "96M"});
  Daemon daemon(dir, args);
  auto stub = connect(daemon);
  Started a = start_paging(dir, daemon,
                           {"integrity", "--mib", "96", "--threads", "2", "--seconds", "8"}, "");
  Started b = start_paging(dir, daemon,
                           {"integrity", "--mib", "96", "--threads", "2", "--seconds", "8"}, "");
  ASSERT_TRUE(find_client(*stub, a.pid) && find_client(*stub, b.pid)) << daemon.log();
  uint64_t worst = 0;
  // Sampled while both run: effective limits sum to the budget, and resident memory
  // follows within the reclaim slack.
  for (int i = 0; i < 40; ++i) {
    v1::ListClientsResponse list;
    ASSERT_TRUE(stub->ListClients(deadline().get(), {}, &list).ok());
    uint64_t resident = 0, effective = 0;
    for (const auto& c : list.clients()) {
      resident += c.resident_bytes();
      effective += c.effective_limit_bytes();
    }
    if (list.clients_size() == 2) {
      EXPECT_LE(effective, 96 * kMiB);
    }
    worst = std::max(worst, resident);
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LE(worst, 100 * kMiB) << "resident memory of both clients over a 96M budget";
  for (const Started& p : {a, b}) {
    ProcessResult r = wait_process(p, 120s);
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  }

  v1::SetBudgetRequest budget;
  budget.set_budget_bytes(0);
  v1::SetBudgetResponse out;
  ASSERT_TRUE(stub->SetBudget(deadline().get(), budget, &out).ok());
  EXPECT_EQ(out.budget_bytes(), 0u);
}

TEST(ControlTest, WatchStreamsSnapshots) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  auto stub = connect(daemon);
  Started client = start_paging(dir, daemon, {"integrity", "--mib", "8", "--seconds", "3"}, "");
  ASSERT_TRUE(find_client(*stub, client.pid)) << daemon.log();
  grpc::ClientContext context;
  v1::WatchStatsRequest req;
  req.set_interval_ms(100);
  auto reader = stub->WatchStats(&context, req);
  v1::StatsSnapshot snapshot;
  int seen = 0;
  int64_t last_time = 0;
  while (seen < 3 && reader->Read(&snapshot)) {
    EXPECT_GE(snapshot.unix_time_ms(), last_time);
    last_time = snapshot.unix_time_ms();
    EXPECT_EQ(snapshot.status().pid(), daemon.pid());
    ++seen;
  }
  EXPECT_EQ(seen, 3);
  context.TryCancel();
  while (reader->Read(&snapshot)) {
  }
  reader->Finish();
  ProcessResult r = wait_process(client, 60s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

// Rules in the config give defaults by executable name; SIGHUP re-reads the file, and a
// broken file leaves the running configuration in place.
TEST(ControlTest, ConfigRulesAndReload) {
  ScratchDir dir;
  const std::string config = dir.file("extmemd.toml");
  auto write_config = [&](const std::string& text) { std::ofstream(config) << text; };
  write_config("[[rule]]\nexe = \"extmem-paging\"\nlimit = \"48M\"\npolicy = \"fifo\"\n");
  std::vector<std::string> args = daemon_args(dir);
  args.insert(args.end(), {"--config", config});
  Daemon daemon(dir, args);
  auto stub = connect(daemon);

  auto limit_of_new_client = [&](const char* expect_policy) -> uint64_t {
    Started c = start_paging(dir, daemon, {"integrity", "--mib", "4", "--seconds", "1"}, "");
    auto stats = find_client(*stub, c.pid);
    ProcessResult r = wait_process(c, 60s);
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    if (!stats) {
      ADD_FAILURE() << daemon.log();
      return 0;
    }
    EXPECT_EQ(stats->policy(), expect_policy);
    return stats->limit_bytes();
  };
  EXPECT_EQ(limit_of_new_client("fifo"), 48 * kMiB);

  write_config("[[rule]]\nexe = \"extmem-paging\"\nlimit = \"40M\"\n");
  kill(daemon.pid(), SIGHUP);
  ASSERT_TRUE(daemon.wait_for_log("reloaded")) << daemon.log();
  EXPECT_EQ(limit_of_new_client("clock"), 40 * kMiB);

  write_config("[[rule]]\nexe = \"extmem-paging\"\nlimit = \"lots\"\n");
  kill(daemon.pid(), SIGHUP);
  ASSERT_TRUE(daemon.wait_for_log("keeping the running configuration")) << daemon.log();
  EXPECT_NE(daemon.log().find("extmemd.toml:3:"), std::string::npos) << daemon.log();
  EXPECT_EQ(limit_of_new_client("clock"), 40 * kMiB);
}

}  // namespace
}  // namespace extmem::testing
