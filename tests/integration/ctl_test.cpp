// extmemctl end to end: the real CLI against a real extmemd and real clients.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--fault-threads", "2"};
}

ClientOptions ctl_options(std::map<std::string, std::string> env = {}) {
  ClientOptions options;
  options.preload_shim = false;
  options.env = std::move(env);
  options.timeout = 60s;
  return options;
}

std::vector<std::string> ctl_argv(const std::string& control,
                                  const std::vector<std::string>& args) {
  std::vector<std::string> argv = {EXTMEMCTL_PATH, "--control", control};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// extmemctl --control <the daemon's control socket> args...
ProcessResult ctl(const ScratchDir& dir, const Daemon& daemon,
                  const std::vector<std::string>& args) {
  return run_process(dir, ctl_argv(daemon.control_path(), args), ctl_options());
}

// Polls `extmemctl list --json` until client `pid` is in it; returns the last output.
std::string wait_listed(const ScratchDir& dir, const Daemon& daemon, pid_t pid) {
  const std::string needle = "\"pid\":" + std::to_string(pid) + ",";
  std::string out;
  for (auto end = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(50ms)) {
    ProcessResult r = ctl(dir, daemon, {"list", "--json"});
    out = r.out;
    if (r.exit_code == 0 && out.find(needle) != std::string::npos) break;
  }
  return out;
}

// Client `pid`'s part of a ListClientsResponse in JSON: up to the next client; "" if
// it is not there.
std::string client_json(const std::string& list, pid_t pid) {
  size_t start = list.find("{\"pid\":" + std::to_string(pid) + ",");
  if (start == std::string::npos) return "";
  return list.substr(start, list.find("{\"pid\":", start + 1) - start);
}

// A client holding 32 MiB under a 64 MiB limit until it is killed.
struct HeldClient {
  Started process;
  HeldClient(const ScratchDir& dir, const Daemon& daemon) {
    ClientOptions options = client_options(daemon);
    options.env["EXTMEM_DRAM"] = "64M";
    process = start_process(dir, client_argv(dir, {"hold", "--mib", "32"}), options);
  }
  ~HeldClient() {
    kill(process.pid, SIGKILL);
    wait_process(process, 10s);
  }
  bool ready() const { return wait_for_output(process, "ready", 30s); }
};

TEST(CtlTest, RunRegistersUnderTheLimitAndDataChecksPass) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  // Working set twice the limit: pages go to swap and come back checked.
  Started run = start_process(
      dir,
      {EXTMEMCTL_PATH, "run", "--limit", "64M", "--socket", daemon.socket_path(), "--required",
       "--", paging_path(dir), "integrity", "--mib", "128", "--threads", "2", "--seconds", "5"},
      ctl_options({{"EXTMEM_SHIM", ""}}));  // the shim next to extmemctl in the build tree
  // `run` execs the command: its pid is the client's.
  const std::string list = wait_listed(dir, daemon, run.pid);
  const std::string client = client_json(list, run.pid);
  ASSERT_FALSE(client.empty()) << list << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(client.find("\"executable\":\"extmem-paging\""), std::string::npos) << client;
  EXPECT_NE(client.find("\"limit_bytes\":\"67108864\""), std::string::npos) << client;
  EXPECT_NE(client.find("\"limit_source\":\"client\""), std::string::npos) << client;

  ProcessResult table = ctl(dir, daemon, {"list"});
  EXPECT_EQ(table.exit_code, 0) << describe(table);
  EXPECT_NE(table.out.find("PID  USER  EXE            POLICY     LIMIT"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find(std::to_string(run.pid) + "  root  extmem-paging  clock   64.0 MiB"),
            std::string::npos)
      << table.out;
  ProcessResult status = ctl(dir, daemon, {"status"});
  EXPECT_EQ(status.exit_code, 0) << describe(status);
  EXPECT_NE(status.out.find("clients        1\n"), std::string::npos) << status.out;

  ProcessResult r = wait_process(run, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_GT(departed_counter(daemon, run.pid, "evictions"), 0u) << daemon.log();
}

TEST(CtlTest, RunReportsCommandsThatCannotRun) {
  ScratchDir dir;
  ProcessResult r =
      run_process(dir, {EXTMEMCTL_PATH, "run", "--", dir.file("missing")}, ctl_options());
  EXPECT_EQ(r.exit_code, 127) << describe(r);
  EXPECT_NE(r.err.find("extmemctl: cannot execute " + dir.file("missing")), std::string::npos)
      << r.err;
  r = run_process(dir, {EXTMEMCTL_PATH, "run", "--", dir.path()}, ctl_options());
  EXPECT_EQ(r.exit_code, 126) << describe(r);
}

TEST(CtlTest, InspectAndChangeAClient) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  HeldClient held(dir, daemon);
  ASSERT_TRUE(held.ready()) << describe(wait_process(held.process, 1s));
  const pid_t pid = held.process.pid;
  const std::string id = std::to_string(pid);
  ASSERT_FALSE(client_json(wait_listed(dir, daemon, pid), pid).empty()) << daemon.log();

  ProcessResult r = ctl(dir, daemon, {"list"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find(id + "  root  extmem-workload  clock   64.0 MiB"), std::string::npos)
      << r.out;

  r = ctl(dir, daemon, {"show", id});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  for (const std::string& line :
       {"pid            " + id + "\n", std::string("executable     extmem-workload\n"),
        std::string("user           root (uid 0, gid 0)\n"),
        std::string("limit          64.0 MiB (client)\n"), std::string("policy         clock\n"),
        std::string("counters\n"), std::string("  first_touch_faults ")}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " in\n" << r.out;
  }
  r = ctl(dir, daemon, {"--json", "show", "extmem-workload"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out.find("{\"clients\":[{\"pid\":" + id + ","), 0u) << r.out;

  r = ctl(dir, daemon, {"set-limit", id, "32M"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "pid " + id + " (extmem-workload): limit 32.0 MiB, min 0 B, weight 100\n");
  r = ctl(dir, daemon, {"show", id});
  EXPECT_NE(r.out.find("limit          32.0 MiB (control)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("effective      32.0 MiB\n"), std::string::npos) << r.out;

  r = ctl(dir, daemon, {"set-limit", "extmem-workload", "48M", "--min", "16M", "--weight", "50"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "pid " + id + " (extmem-workload): limit 48.0 MiB, min 16.0 MiB, weight 50\n");

  r = ctl(dir, daemon, {"set-policy", id, "fifo"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "pid " + id + " (extmem-workload): policy fifo\n");
  r = ctl(dir, daemon, {"show", id});
  EXPECT_NE(r.out.find("policy         fifo\n"), std::string::npos) << r.out;

  r = ctl(dir, daemon, {"set-budget", "1G"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "budget: 1.0 GiB\n");
  r = ctl(dir, daemon, {"status"});
  EXPECT_NE(r.out.find("budget         1.0 GiB\n"), std::string::npos) << r.out;
  r = ctl(dir, daemon, {"set-budget", "none"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "budget: none\n");
}

TEST(CtlTest, StatusCheckAndTop) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  HeldClient held(dir, daemon);
  ASSERT_TRUE(held.ready()) << describe(wait_process(held.process, 1s));
  const std::string id = std::to_string(held.process.pid);
  ASSERT_FALSE(client_json(wait_listed(dir, daemon, held.process.pid), held.process.pid).empty());

  ProcessResult r = ctl(dir, daemon, {"status"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  for (const std::string& line :
       {std::string("extmemd "), std::string("health         SERVING\n"),
        "pid            " + std::to_string(daemon.pid()) + "\n", std::string("clients        1\n"),
        "swap           " + dir.file("swapfile") + ": ", std::string(" of 512.0 MiB used\n"),
        std::string("kernel swap    o"), "client socket  " + daemon.socket_path() + "\n",
        "control        " + daemon.control_path() + "\n"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " in\n" << r.out;
  }
  // $EXTMEM_CONTROL instead of --control.
  r = run_process(dir, {EXTMEMCTL_PATH, "status", "--json"},
                  ctl_options({{"EXTMEM_CONTROL", daemon.control_path()}}));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("\"pid\":" + std::to_string(daemon.pid()) + ","), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(",\"health\":\"SERVING\"}\n"), std::string::npos) << r.out;

  r = ctl(dir, daemon, {"check"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out.find("CAPABILITY "), 0u) << r.out;
  EXPECT_NE(r.out.find("\nuserfaultfd "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all required capabilities present\n"), std::string::npos) << r.out;

  // Not a terminal: plain snapshots separated by a blank line, no escape codes.
  r = ctl(dir, daemon, {"top", "--iterations", "2", "--interval", "0.2"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(count_occurrences(r.out, "extmemd "), 2) << r.out;
  EXPECT_EQ(count_occurrences(r.out, "\n\nextmemd "), 1) << r.out;
  EXPECT_EQ(count_occurrences(r.out, "\n" + id + "  root  extmem-workload"), 2) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;

  r = ctl(dir, daemon, {"top", "--json", "--iterations", "3", "--interval", "0.1"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(count_occurrences(r.out, "\n"), 3) << r.out;
  EXPECT_EQ(count_occurrences(r.out, "{\"unix_time_ms\":"), 3) << r.out;
}

TEST(CtlTest, TopEndsCleanlyOnSigintAndReportsADaemonThatGoesAway) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  Started top = start_process(dir, ctl_argv(daemon.control_path(), {"top", "--interval", "0.2"}),
                              ctl_options());
  ASSERT_TRUE(wait_for_output(top, "extmemd ", 10s)) << describe(wait_process(top, 1s));
  kill(top.pid, SIGINT);
  ProcessResult r = wait_process(top, 10s);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.err, "");

  top = start_process(dir, ctl_argv(daemon.control_path(), {"top", "--interval", "0.2"}),
                      ctl_options());
  ASSERT_TRUE(wait_for_output(top, "extmemd ", 10s)) << describe(wait_process(top, 1s));
  daemon.stop();
  r = wait_process(top, 20s);
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("extmemctl: lost the connection to extmemd at " + daemon.control_path()),
            std::string::npos)
      << r.err;
}

TEST(CtlTest, ErrorsHaveClearMessagesAndExitCodes) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  HeldClient held(dir, daemon);
  ASSERT_TRUE(held.ready()) << describe(wait_process(held.process, 1s));
  const std::string id = std::to_string(held.process.pid);
  ASSERT_FALSE(client_json(wait_listed(dir, daemon, held.process.pid), held.process.pid).empty());

  // Unknown pid: the daemon's NOT_FOUND.
  ProcessResult r = ctl(dir, daemon, {"show", "999999"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_EQ(r.err.find("extmemctl: "), 0u) << r.err;
  EXPECT_NE(r.err.find("999999"), std::string::npos) << r.err;
  r = ctl(dir, daemon, {"set-limit", "999999", "32M"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("999999"), std::string::npos) << r.err;
  r = ctl(dir, daemon, {"show", "no-such-program"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("no-such-program"), std::string::npos) << r.err;

  // Unknown policy: the daemon's INVALID_ARGUMENT names the known ones.
  r = ctl(dir, daemon, {"set-policy", id, "lru-k"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("lru-k"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("clock"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fifo"), std::string::npos) << r.err;

  // Usage errors never reach the daemon.
  r = ctl(dir, daemon, {"set-limit", id, "12X"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("extmemctl: set-limit: limit '12X' is not a size"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("usage: extmemctl"), std::string::npos) << r.err;
  r = ctl(dir, daemon, {"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("extmemctl: unknown command 'frobnicate'"), std::string::npos) << r.err;
  r = ctl(dir, daemon, {"show"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);

  // The daemon stopped: its socket is gone.
  const std::string unreachable = "extmemctl: cannot reach extmemd at " + daemon.control_path() +
                                  " (is it running? systemctl start extmemd)\n";
  daemon.stop();
  for (const char* command : {"status", "list", "check"}) {
    r = ctl(dir, daemon, {command});
    EXPECT_EQ(r.exit_code, 3) << command << ": " << describe(r);
    EXPECT_EQ(r.err, unreachable) << command;
  }
}

TEST(CtlTest, UsersWithoutAccessAreToldSo) {
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));            // the control socket is 0660 root:root
  const std::string copy = dir.file("extmemctl");  // nobody may not enter the build tree
  std::filesystem::copy_file(EXTMEMCTL_PATH, copy);
  ClientOptions options = ctl_options();
  options.as_nobody = true;
  ProcessResult r = run_process(dir, {copy, "--control", daemon.control_path(), "list"}, options);
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_EQ(r.err, "extmemctl: no permission to use " + daemon.control_path() +
                       " (extmemd's control socket is for root and its control group)\n");
}

TEST(CtlTest, StaleSocketFileIsUnreachable) {
  // A socket file nobody listens on (a daemon killed with SIGKILL leaves one): gRPC's
  // connection is refused.
  ScratchDir dir;
  const std::string path = dir.file("stale.sock");
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
  close(fd);
  ProcessResult r = run_process(dir, ctl_argv(path, {"list"}), ctl_options());
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_EQ(r.err, "extmemctl: cannot reach extmemd at " + path +
                       " (is it running? systemctl start extmemd)\n");
}

}  // namespace
}  // namespace extmem::testing
