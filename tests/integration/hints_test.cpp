// The hint API end to end: a real extmemd with a swap file, real clients calling
// extmem_advise / extmem_set_policy / extmem_get_stats under the shim.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "extmem/v1/control.grpc.pb.h"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--fault-threads", "2"};
}

ClientOptions limited(const Daemon& daemon, const char* limit, const char* policy = "") {
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = limit;
  if (*policy != '\0') options.env["EXTMEM_POLICY"] = policy;
  return options;
}

std::vector<std::string> hints_argv(const ScratchDir& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {hints_path(dir)};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

void expect_cold_evicted_first_and_hot_kept(const char* policy) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  // Hot, other and cold regions of 8 MiB, oldest first (below the limit and its reclaim
  // margin, so nothing is evicted before the hints), then 16 MiB of pressure under a
  // 32 MiB limit: a little more than 8 MiB must go. By age it would be the hot region and
  // some of the other; with the hints it is the cold region and some of the other.
  ProcessResult r =
      run_process(dir, hints_argv(dir, {"cold-hot", "--mib", "8"}), limited(daemon, "32M", policy));
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_THAT(r.out, HasSubstr("mismatches 0"));
  const uint64_t pages = 8 * 256;
  EXPECT_EQ(number_after(r.out, "hot_resident_pages"), pages) << r.out;
  // Cold pages went first: none is back (nothing touched them until the check).
  EXPECT_EQ(number_after(r.out, "cold_resident_pages"), 0u) << r.out;
  const uint64_t other = number_after(r.out, "other_resident_pages");
  EXPECT_GT(other, 0u) << r.out;
  EXPECT_LT(other, pages) << r.out;
  EXPECT_GE(departed_counter(daemon, 0, "applied"), 2u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, 0, "invalid"), 0u) << daemon.log();
}

TEST(Hints, ColdPagesAreEvictedFirstAndHotPagesStayClock) {
  expect_cold_evicted_first_and_hot_kept("clock");
}

TEST(Hints, ColdPagesAreEvictedFirstAndHotPagesStayFifo) {
  expect_cold_evicted_first_and_hot_kept("fifo");
}

// A policy switch (here by the client itself, after its hints) keeps the hot ranges: the
// new policy spares them as the old one would have.
TEST(Hints, HotRangesOutliveAPolicySwitch) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  ProcessResult r =
      run_process(dir, hints_argv(dir, {"cold-hot", "--mib", "8", "--switch-policy", "fifo"}),
                  limited(daemon, "32M", "clock"));
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_THAT(r.out, HasSubstr("mismatches 0"));
  EXPECT_EQ(number_after(r.out, "hot_resident_pages"), 8u * 256) << r.out;
  EXPECT_THAT(daemon.log(), HasSubstr("policy set to fifo by the client"));
}

TEST(Hints, WillNeedBringsEvictedPagesBackBeforeTheyAreRead) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  const ClientOptions options = limited(daemon, "32M");
  ProcessResult hinted = run_process(dir, hints_argv(dir, {"willneed", "--mib", "16"}), options);
  ASSERT_EQ(hinted.exit_code, 0) << describe(hinted) << "\n--- daemon log\n" << daemon.log();
  EXPECT_THAT(hinted.out, HasSubstr("mismatches 0"));
  const uint64_t evicted = number_after(hinted.out, "evicted_before");
  ASSERT_GT(evicted, 2048u) << hinted.out;  // most of the 4096 pages were out
  EXPECT_GE(number_after(hinted.out, "prefetched"), evicted * 9 / 10) << hinted.out;
  EXPECT_LE(number_after(hinted.out, "read_major_faults"), evicted / 100) << hinted.out;

  // Without the hint the same read takes a major fault per evicted page or so.
  ProcessResult plain = run_process(dir, hints_argv(dir, {"no-willneed", "--mib", "16"}), options);
  ASSERT_EQ(plain.exit_code, 0) << describe(plain);
  EXPECT_GE(number_after(plain.out, "read_major_faults"),
            number_after(plain.out, "evicted_before") / 2)
      << plain.out;
}

std::unique_ptr<v1::Control::Stub> connect(const Daemon& daemon) {
  return v1::Control::NewStub(
      grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
}

std::optional<v1::ClientStats> control_view(const Daemon& daemon, pid_t pid) {
  auto stub = connect(daemon);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  v1::GetClientRequest request;
  request.mutable_client()->set_pid(pid);
  v1::GetClientResponse response;
  if (!stub->GetClient(&context, request, &response).ok() || response.clients_size() != 1) {
    return std::nullopt;
  }
  return response.clients(0);
}

TEST(Hints, GetStatsMatchesTheControlPlane) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  Started client = start_process(dir, hints_argv(dir, {"stats"}), limited(daemon, "8M"));
  ASSERT_TRUE(wait_for_output(client, "ready", 30s)) << daemon.log();
  auto view = control_view(daemon, client.pid);
  kill(client.pid, SIGTERM);
  ProcessResult r = wait_process(client, 30s);
  ASSERT_TRUE(view.has_value()) << daemon.log();
  EXPECT_THAT(r.out, HasSubstr("mismatches 0"));
  const v1::Counters& c = view->counters();
  EXPECT_EQ(number_after(r.out, "size"), 152u);  // sizeof(struct extmem_stats)
  EXPECT_EQ(number_after(r.out, "limit_bytes"), view->effective_limit_bytes());
  EXPECT_EQ(number_after(r.out, "resident_bytes"), view->resident_bytes());
  EXPECT_EQ(number_after(r.out, "swapped_bytes"), view->swapped_bytes());
  EXPECT_EQ(number_after(r.out, "first_touch_faults"), c.first_touch_faults());
  EXPECT_EQ(number_after(r.out, "major_faults"), c.major_faults());
  EXPECT_EQ(number_after(r.out, "evictions"), c.evictions());
  EXPECT_EQ(number_after(r.out, "hints_received"), c.hints_received());
  EXPECT_EQ(number_after(r.out, "hints_applied"), c.hints_applied());
  EXPECT_EQ(c.hints_applied(), 2u);
  EXPECT_GT(c.first_touch_faults(), 0u);
  EXPECT_GT(c.major_faults(), 0u);
  EXPECT_GT(c.evictions(), 0u);
  EXPECT_THAT(r.out, HasSubstr("policy " + view->policy()));
}

TEST(Hints, SetPolicyChangesWhatExtmemctlShowsAndUnknownPoliciesAreRefused) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  Started client =
      start_process(dir, hints_argv(dir, {"set-policy", "fifo"}), limited(daemon, "64M", "clock"));
  ASSERT_TRUE(wait_for_output(client, "ready", 30s)) << daemon.log();
  ClientOptions ctl_options;
  ctl_options.preload_shim = false;
  ProcessResult show = run_process(
      dir, {EXTMEMCTL_PATH, "--control", daemon.control_path(), "show", std::to_string(client.pid)},
      ctl_options);
  kill(client.pid, SIGTERM);
  ProcessResult r = wait_process(client, 30s);
  EXPECT_THAT(r.out, HasSubstr("set_policy fifo -> 0"));
  EXPECT_THAT(r.out, HasSubstr("policy fifo"));
  ASSERT_EQ(show.exit_code, 0) << describe(show);
  EXPECT_THAT(show.out, ::testing::ContainsRegex("policy +fifo"));

  Started unknown =
      start_process(dir, hints_argv(dir, {"set-policy", "lru"}), limited(daemon, "64M", "clock"));
  ASSERT_TRUE(wait_for_output(unknown, "ready", 30s)) << daemon.log();
  kill(unknown.pid, SIGTERM);
  r = wait_process(unknown, 30s);
  EXPECT_THAT(r.out, HasSubstr("set_policy lru -> -1 errno EINVAL"));
  EXPECT_THAT(r.out, HasSubstr("policy clock"));
}

TEST(Hints, WithoutADaemonEveryCallReportsENODEVAndTheProgramRuns) {
  ScratchDir dir;
  ClientOptions options;
  options.env["EXTMEM_SOCKET"] = dir.file("nobody-listens.sock");
  ProcessResult r = run_process(dir, hints_argv(dir, {"no-daemon"}), options);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("failures 0"));
  EXPECT_THAT(r.out, HasSubstr("status 0"));
  EXPECT_THAT(r.out, HasSubstr("mismatches 0"));
}

TEST(Hints, TheDocumentedExampleRunsWithAndWithoutADaemon) {
  ScratchDir dir;
  {
    Daemon daemon(dir, daemon_args(dir));
    ProcessResult r = run_process(dir, {EXTMEM_HINTS_EXAMPLE_PATH}, limited(daemon, "48M"));
    ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
    EXPECT_THAT(r.out, HasSubstr("policy clock"));
    EXPECT_THAT(r.out, ::testing::ContainsRegex("hints applied [1-4]"));
  }
  ClientOptions options;
  options.env["EXTMEM_SOCKET"] = dir.file("nobody-listens.sock");
  ProcessResult r = run_process(dir, {EXTMEM_HINTS_EXAMPLE_PATH}, options);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("hints are ignored"));
}

}  // namespace
}  // namespace extmem::testing
