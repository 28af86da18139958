// extmemctl without a daemon: its command line, failure reports, formatting and `run`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "command_line.hpp"
#include "commands.hpp"
#include "format.hpp"
#include "run_command.hpp"

namespace extmem::ctl {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

Invocation Parse(const std::vector<std::string>& args, const char* env_control = nullptr) {
  ParseResult r = parse_command_line(args, env_control);
  EXPECT_TRUE(r.invocation.has_value()) << r.error;
  return r.invocation.value_or(Invocation{});
}

// The usage error for args; fails the test if they parse.
std::string ParseError(const std::vector<std::string>& args) {
  ParseResult r = parse_command_line(args, nullptr);
  EXPECT_FALSE(r.invocation.has_value()) << "parsed: " << ::testing::PrintToString(args);
  EXPECT_FALSE(r.error.empty());
  return r.error;
}

TEST(CtlCommandLine, GlobalOptionsAndDefaults) {
  Invocation inv = Parse({"status"});
  EXPECT_EQ(inv.command, Command::kStatus);
  EXPECT_EQ(inv.control, "/run/extmem/control.sock");
  EXPECT_EQ(inv.timeout_seconds, 5);
  EXPECT_FALSE(inv.json);

  EXPECT_EQ(Parse({"list"}, "/env/control.sock").control, "/env/control.sock");
  EXPECT_EQ(Parse({"list"}, "").control, "/run/extmem/control.sock");
  inv = Parse({"--control", "/x.sock", "--timeout", "0.5", "--json", "list"}, "/env.sock");
  EXPECT_EQ(inv.command, Command::kList);
  EXPECT_EQ(inv.control, "/x.sock");
  EXPECT_EQ(inv.timeout_seconds, 0.5);
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(Parse({"--control=/y.sock", "check"}).control, "/y.sock");
  // Global options after the command work too.
  inv = Parse({"list", "--json", "--control", "/z.sock"});
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(inv.control, "/z.sock");
}

TEST(CtlCommandLine, HelpAndVersion) {
  EXPECT_EQ(Parse({"-h"}).command, Command::kHelp);
  EXPECT_EQ(Parse({"--help", "bogus"}).command, Command::kHelp);
  EXPECT_EQ(Parse({"--version"}).command, Command::kVersion);
  EXPECT_EQ(Parse({"show", "--help"}).command, Command::kHelp);
  EXPECT_EQ(Parse({"run", "--help", "--", "ls"}).command, Command::kHelp);
  // The help documents every exit status.
  for (const char* code : {"0 ", "1 ", "2 ", "3 ", "126 ", "127 "}) {
    EXPECT_NE(usage().find(std::string("  ") + code), std::string::npos) << code;
  }
}

TEST(CtlCommandLine, Errors) {
  EXPECT_EQ(ParseError({}), "missing command");
  EXPECT_EQ(ParseError({"frobnicate"}), "unknown command 'frobnicate'");
  EXPECT_EQ(ParseError({"--frob", "list"}), "unknown option --frob");
  EXPECT_EQ(ParseError({"list", "--interval", "1"}), "list: unknown option --interval");
  EXPECT_EQ(ParseError({"list", "extra"}), "list: unexpected argument 'extra'");
  EXPECT_EQ(ParseError({"--control"}), "--control needs a value");
  EXPECT_EQ(ParseError({"--control", "", "list"}), "--control needs a path");
  EXPECT_EQ(ParseError({"--json=yes", "list"}), "--json takes no value");
  for (const char* bad : {"0", "-1", "x", "nan", "inf", "3601", "1e300"}) {
    EXPECT_NE(ParseError({"--timeout", bad, "list"}).find("--timeout"), std::string::npos);
  }
}

TEST(CtlCommandLine, Selectors) {
  auto pid = parse_selector("1234");
  ASSERT_TRUE(pid);
  EXPECT_EQ(pid->target_case(), v1::ClientSelector::kPid);
  EXPECT_EQ(pid->pid(), 1234);
  auto name = parse_selector("postgres");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->target_case(), v1::ClientSelector::kExecutable);
  EXPECT_EQ(name->executable(), "postgres");
  // Digits and more is a name.
  EXPECT_EQ(parse_selector("7z")->executable(), "7z");
  EXPECT_EQ(parse_selector("2147483647")->pid(), 2147483647);
  EXPECT_FALSE(parse_selector(""));
  EXPECT_FALSE(parse_selector("0"));
  EXPECT_FALSE(parse_selector("2147483648"));
  EXPECT_FALSE(parse_selector("99999999999999999999"));
}

TEST(CtlCommandLine, Show) {
  Invocation inv = Parse({"show", "42"});
  EXPECT_EQ(inv.command, Command::kShow);
  EXPECT_EQ(inv.selector.pid(), 42);
  EXPECT_EQ(Parse({"show", "redis-server"}).selector.executable(), "redis-server");
  EXPECT_EQ(ParseError({"show"}), "show: missing PID|NAME");
  EXPECT_EQ(ParseError({"show", "1", "2"}), "show: unexpected argument '2'");
  EXPECT_EQ(ParseError({"show", "0"}), "show: '0' is neither a pid nor an executable name");
}

TEST(CtlCommandLine, SetLimit) {
  Invocation inv = Parse({"set-limit", "42", "512M"});
  EXPECT_EQ(inv.command, Command::kSetLimit);
  EXPECT_EQ(inv.selector.pid(), 42);
  EXPECT_EQ(inv.size, 512 * kMiB);
  EXPECT_FALSE(inv.min);
  EXPECT_FALSE(inv.weight);
  EXPECT_EQ(Parse({"set-limit", "app", "2.5G"}).size, 5 * kGiB / 2);
  EXPECT_EQ(Parse({"set-limit", "app", "none"}).size, 0u);
  EXPECT_EQ(Parse({"set-limit", "app", "0"}).size, 0u);
  inv = Parse({"set-limit", "app", "1G", "--min", "256M", "--weight=50"});
  EXPECT_EQ(inv.selector.executable(), "app");
  EXPECT_EQ(inv.min, 256 * kMiB);
  EXPECT_EQ(inv.weight, 50u);
  EXPECT_EQ(Parse({"set-limit", "--weight", "0", "app", "1G"}).weight, 0u);

  EXPECT_EQ(ParseError({"set-limit", "42", "12X"}),
            "set-limit: limit '12X' is not a size (examples: 4096, 64K, 512M, 2.5G, none)");
  EXPECT_EQ(ParseError({"set-limit", "42"}), "set-limit: missing PID|NAME SIZE");
  EXPECT_NE(ParseError({"set-limit", "42", "1G", "--min", "lots"}).find("--min 'lots'"),
            std::string::npos);
  EXPECT_NE(ParseError({"set-limit", "42", "1G", "--weight", "-1"}).find("--weight -1"),
            std::string::npos);
  EXPECT_NE(ParseError({"set-limit", "42", "1G", "--weight", "4294967296"}).find("--weight"),
            std::string::npos);
  EXPECT_EQ(ParseError({"set-limit", "42", "1G", "--min"}), "set-limit: --min needs a value");
}

TEST(CtlCommandLine, SetPolicyAndBudget) {
  Invocation inv = Parse({"set-policy", "42", "fifo"});
  EXPECT_EQ(inv.command, Command::kSetPolicy);
  EXPECT_EQ(inv.selector.pid(), 42);
  EXPECT_EQ(inv.policy, "fifo");
  EXPECT_EQ(ParseError({"set-policy", "42"}), "set-policy: missing PID|NAME POLICY");

  inv = Parse({"set-budget", "8G"});
  EXPECT_EQ(inv.command, Command::kSetBudget);
  EXPECT_EQ(inv.size, 8 * kGiB);
  EXPECT_EQ(Parse({"set-budget", "none"}).size, 0u);
  EXPECT_EQ(ParseError({"set-budget"}), "set-budget: missing SIZE|none");
  EXPECT_EQ(ParseError({"set-budget", "lots"}),
            "set-budget: budget 'lots' is not a size (examples: 4096, 64K, 512M, 2.5G, none)");
  EXPECT_EQ(ParseError({"set-budget", "-1G"}), "set-budget: unknown option -1G");
}

TEST(CtlCommandLine, Top) {
  Invocation inv = Parse({"top"});
  EXPECT_EQ(inv.command, Command::kTop);
  EXPECT_EQ(inv.interval_seconds, 1);
  EXPECT_EQ(inv.iterations, 0u);
  inv = Parse({"top", "--interval", "0.5", "--iterations", "3"});
  EXPECT_EQ(inv.interval_seconds, 0.5);
  EXPECT_EQ(inv.iterations, 3u);
  EXPECT_EQ(ParseError({"top", "--interval", "0.05"}),
            "top: --interval 0.05: not a number of seconds from 0.1 to 3600");
  EXPECT_NE(ParseError({"top", "--interval", "4000"}).find("0.1 to 3600"), std::string::npos);
  EXPECT_NE(ParseError({"top", "--iterations", "0"}).find("positive"), std::string::npos);
  EXPECT_NE(ParseError({"top", "--iterations", "x"}).find("positive"), std::string::npos);
}

TEST(CtlCommandLine, Run) {
  Invocation inv = Parse({"run", "--limit", "64M", "--policy", "fifo", "--socket", "/s.sock",
                          "--required", "--", "app", "-x", "--limit", "1"});
  EXPECT_EQ(inv.command, Command::kRun);
  EXPECT_EQ(inv.run.limit, 64 * kMiB);
  EXPECT_EQ(inv.run.policy, "fifo");
  EXPECT_EQ(inv.run.socket, "/s.sock");
  EXPECT_TRUE(inv.run.required);
  EXPECT_EQ(inv.run.argv, (std::vector<std::string>{"app", "-x", "--limit", "1"}));
  // Without "--", CMD starts at the first operand.
  inv = Parse({"run", "app", "--json"});
  EXPECT_EQ(inv.run.argv, (std::vector<std::string>{"app", "--json"}));
  EXPECT_FALSE(inv.json);
  EXPECT_FALSE(inv.run.limit);
  EXPECT_FALSE(inv.run.required);

  EXPECT_EQ(ParseError({"run"}), "run: missing CMD");
  EXPECT_EQ(ParseError({"run", "--"}), "run: missing CMD");
  EXPECT_EQ(ParseError({"run", "--limit", "0", "app"}), "run: --limit must be more than 0");
  EXPECT_NE(ParseError({"run", "--limit", "big", "app"}).find("'big' is not a size"),
            std::string::npos);
  EXPECT_EQ(ParseError({"run", "--frob", "app"}), "run: unknown option --frob");
  EXPECT_EQ(ParseError({"run", "--required=no", "app"}), "run: --required takes no value");
}

TEST(CtlCommandLine, ControlTargets) {
  EXPECT_EQ(control_target("/run/extmem/control.sock"), "unix:/run/extmem/control.sock");
  EXPECT_EQ(control_target("rel.sock"), "unix:rel.sock");
  EXPECT_EQ(control_target("unix:/a.sock"), "unix:/a.sock");
  EXPECT_EQ(control_target("dns:host:7000"), "dns:host:7000");
  EXPECT_EQ(control_socket_path("/a.sock"), "/a.sock");
  EXPECT_EQ(control_socket_path("unix:/a.sock"), "/a.sock");
  EXPECT_EQ(control_socket_path("unix:///a.sock"), "/a.sock");
  EXPECT_EQ(control_socket_path("dns:host:7000"), "");
}

TEST(CtlExitStatus, UsageErrorsExitTwo) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(extmemctl_main({}), kExitUsage);
  EXPECT_EQ(extmemctl_main({"frobnicate"}), kExitUsage);
  EXPECT_EQ(extmemctl_main({"set-limit", "1", "12X"}), kExitUsage);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("extmemctl: missing command\nusage: extmemctl [OPTIONS] COMMAND"), 0u) << err;
  EXPECT_NE(err.find("extmemctl: unknown command 'frobnicate'\n"), std::string::npos) << err;
  EXPECT_NE(err.find("extmemctl: set-limit: limit '12X' is not a size"), std::string::npos) << err;
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(extmemctl_main({"--version"}), kExitOk);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "extmemctl 0.1.0\n");
}

TEST(CtlExitStatus, MissingSocketExitsThreeWithAHint) {
  ::testing::internal::CaptureStderr();
  const int code = extmemctl_main({"--control", "/nonexistent/extmem/control.sock", "status"});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, kExitUnreachable);
  EXPECT_EQ(err,
            "extmemctl: cannot reach extmemd at /nonexistent/extmem/control.sock (is it running? "
            "systemctl start extmemd)\n");
}

TEST(CtlExitStatus, FailuresByGrpcStatus) {
  Invocation inv;
  inv.control = "/c.sock";
  inv.timeout_seconds = 2.5;
  Failure f = describe_failure(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed"), inv);
  EXPECT_EQ(f.exit_code, kExitUnreachable);
  EXPECT_EQ(f.message, "cannot reach extmemd at /c.sock (is it running? systemctl start extmemd)");
  f = describe_failure(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "late"), inv);
  EXPECT_EQ(f.exit_code, kExitUnreachable);
  EXPECT_EQ(f.message, "extmemd at /c.sock did not answer within 2.5 s");
  for (auto code : {grpc::StatusCode::NOT_FOUND, grpc::StatusCode::INVALID_ARGUMENT,
                    grpc::StatusCode::FAILED_PRECONDITION}) {
    f = describe_failure(grpc::Status(code, "no client has pid 7"), inv);
    EXPECT_EQ(f.exit_code, kExitError);
    EXPECT_EQ(f.message, "no client has pid 7");
  }
}

v1::ClientStats Client(int32_t pid, uint32_t uid, const std::string& exe, uint64_t limit,
                       uint64_t effective, uint64_t resident) {
  v1::ClientStats c;
  c.set_pid(pid);
  c.set_uid(uid);
  c.set_executable(exe);
  c.set_policy("clock");
  c.set_limit_bytes(limit);
  c.set_effective_limit_bytes(effective);
  c.set_resident_bytes(resident);
  c.set_swapped_bytes(3 * kMiB / 2);
  c.set_major_faults_per_second(1520.4);
  c.set_evictions_per_second(7);
  return c;
}

// An uid no passwd entry names.
constexpr uint32_t kNoSuchUid = 3999999;

TEST(CtlFormat, ClientTable) {
  v1::ListClientsResponse response;
  *response.add_clients() = Client(1234, 0, "extmem-paging", 64 * kMiB, 64 * kMiB, 60 * kMiB);
  *response.add_clients() = Client(98765, kNoSuchUid, "db", 2 * kGiB, kGiB, 10 * kGiB);
  *response.add_clients() = Client(7, 0, "x", 0, 0, 100);
  EXPECT_EQ(client_table(response.clients()),
            "  PID  USER     EXE            POLICY            LIMIT  RESIDENT  SWAPPED  MAJ/s  "
            "EVICT/s\n"
            " 1234  root     extmem-paging  clock          64.0 MiB  60.0 MiB  1.5 MiB   1520  "
            "      7\n"
            "98765  3999999  db             clock   1.0 GiB/2.0 GiB  10.0 GiB  1.5 MiB   1520  "
            "      7\n"
            "    7  root     x              clock              none     100 B  1.5 MiB   1520  "
            "      7\n");
  EXPECT_EQ(client_table({}), "no clients\n");
}

TEST(CtlFormat, Limits) {
  EXPECT_EQ(limit_text(Client(1, 0, "a", 64 * kMiB, 64 * kMiB, 0)), "64.0 MiB");
  EXPECT_EQ(limit_text(Client(1, 0, "a", 64 * kMiB, 32 * kMiB, 0)), "32.0 MiB/64.0 MiB");
  EXPECT_EQ(limit_text(Client(1, 0, "a", 0, 32 * kMiB, 0)), "32.0 MiB/none");
  EXPECT_EQ(limit_text(Client(1, 0, "a", 0, 0, 0)), "none");
}

TEST(CtlFormat, Durations) {
  EXPECT_EQ(duration_text(0), "0s");
  EXPECT_EQ(duration_text(59.9), "59s");
  EXPECT_EQ(duration_text(303), "5m 03s");
  EXPECT_EQ(duration_text(7500), "2h 05m");
  EXPECT_EQ(duration_text(3 * 86400 + 4 * 3600 + 5), "3d 04h");
  EXPECT_EQ(duration_text(-1), "0s");
}

TEST(CtlFormat, ClientDetailShowsEveryCounter) {
  v1::ClientStats c = Client(1234, 0, "extmem-paging", 64 * kMiB, 32 * kMiB, 60 * kMiB);
  c.set_limit_source("rule at line 12");
  c.set_min_bytes(16 * kMiB);
  c.set_weight(100);
  c.set_swap_clusters(3);
  c.mutable_counters()->set_major_faults(77);
  c.mutable_counters()->set_over_limit(5);
  c.mutable_counters()->set_prefetch_markers(200);
  c.mutable_counters()->set_prefetch_markers_used(187);
  c.mutable_counters()->set_prefetch_markers_unused(9);
  c.mutable_fault_latency()->set_p99_us(128);
  const std::string text = client_detail(c);
  for (const char* line :
       {"pid            1234\n", "user           root (uid 0, gid 0)\n",
        "limit          64.0 MiB (rule at line 12)\n", "effective      32.0 MiB\n",
        "min            16.0 MiB\n", "weight         100\n", "swap clusters  3 (6.0 MiB)\n",
        "  major_faults             77\n", "  over_limit               5\n",
        "  first_touch_faults       0\n", "p99 128 us",
        "prefetch       accuracy 93% (187 of 200 read-ahead markers used, 9 evicted or freed "
        "unused)\n",
        "  prefetch_markers_used    187\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }
}

TEST(CtlFormat, ClientDetailSaysWhenNoMarkerWasPlaced) {
  const std::string text = client_detail(Client(1, 0, "random", 0, 0, kMiB));
  EXPECT_NE(text.find("prefetch       no read-ahead markers placed\n"), std::string::npos) << text;
}

TEST(CtlFormat, SnapshotSortsByResident) {
  v1::StatsSnapshot snapshot;
  snapshot.mutable_status()->set_version("0.1.0");
  snapshot.mutable_status()->set_clients(3);
  *snapshot.add_clients() = Client(1, 0, "small", 0, 0, kMiB);
  *snapshot.add_clients() = Client(2, 0, "large", 0, 0, 3 * kMiB);
  *snapshot.add_clients() = Client(3, 0, "medium", 0, 0, 2 * kMiB);
  const std::string text = snapshot_text(snapshot);
  EXPECT_NE(text.find("clients 3  resident"), std::string::npos) << text;
  EXPECT_NE(text.find("swap none (limits are not enforced)"), std::string::npos) << text;
  EXPECT_LT(text.find("large"), text.find("medium"));
  EXPECT_LT(text.find("medium"), text.find("small"));
}

TEST(CtlFormat, StatusAndCapabilities) {
  v1::GetStatusResponse s;
  s.set_version("0.1.0");
  s.set_pid(99);
  s.set_swap_path("/var/lib/extmem/swap");
  s.set_swap_size_bytes(16 * kGiB);
  s.set_swap_used_bytes(512 * kMiB);
  s.add_policies("clock");
  s.add_policies("fifo");
  auto* uffd = s.add_capabilities();
  uffd->set_name("userfaultfd");
  uffd->set_present(true);
  uffd->set_required(true);
  auto* wp = s.add_capabilities();
  wp->set_name("uffd_wp_async");
  wp->set_required(false);
  wp->set_detail("Linux 6.7");

  const std::string text = status_text(s, "SERVING", "/c.sock");
  for (const char* line :
       {"extmemd 0.1.0\n", "health         SERVING\n", "pid            99\n",
        "budget         none\n",
        "swap           /var/lib/extmem/swap: 512.0 MiB of 16.0 GiB used\n", "kernel swap    off\n",
        "config         none\n", "policies       clock, fifo\n", "control        /c.sock\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }

  EXPECT_TRUE(all_required_present(s));
  EXPECT_EQ(capabilities_text(s),
            "CAPABILITY     PRESENT        DETAIL\n"
            "userfaultfd    yes\n"
            "uffd_wp_async  no (optional)  Linux 6.7\n"
            "all required capabilities present\n");
  uffd->set_present(false);
  EXPECT_FALSE(all_required_present(s));
  EXPECT_NE(capabilities_text(s).find("missing required: userfaultfd\n"), std::string::npos);
  EXPECT_EQ(capabilities_json(s).find("{\"capabilities\":[{\"name\":\"userfaultfd\""), 0u)
      << capabilities_json(s);
  EXPECT_NE(capabilities_json(s).find("\"all_required_present\":false}"), std::string::npos);
}

TEST(CtlFormat, JsonKeepsFieldNamesAndZeros) {
  v1::ListClientsResponse response;
  *response.add_clients() = Client(1234, 0, "extmem-paging", 64 * kMiB, 64 * kMiB, 0);
  const std::string json = to_json(response);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_NE(json.find("\"pid\":1234"), std::string::npos) << json;
  EXPECT_NE(json.find("\"effective_limit_bytes\":\"67108864\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"resident_bytes\":\"0\""), std::string::npos) << json;
  EXPECT_EQ(to_json(v1::ListClientsResponse()), "{\"clients\":[]}");

  v1::GetStatusResponse s;
  s.set_version("0.1.0");
  const std::string status = status_json(s, "SERVING");
  EXPECT_EQ(status.front(), '{');
  EXPECT_NE(status.find("\"version\":\"0.1.0\","), std::string::npos) << status;
  // Zero values are kept, and health is added as the last field.
  EXPECT_NE(status.find("\"client_socket\":\"\","), std::string::npos) << status;
  EXPECT_TRUE(status.ends_with(",\"health\":\"SERVING\"}")) << status;
}

// A scratch directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/extmemctl-test-XXXXXX";
    path_ = mkdtemp(templ);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path path() const { return path_; }
  // Creates an empty file (and its directories) at `relative`; returns its normal path.
  std::string touch(const fs::path& relative) const {
    fs::path file = (path_ / relative).lexically_normal();
    fs::create_directories(file.parent_path());
    std::ofstream(file).put('\0');
    return file.string();
  }

 private:
  fs::path path_;
};

TEST(CtlShim, ExplicitShimWinsAndNeverFallsBack) {
  TempDir dir;
  const std::string bin = (dir.path() / "bin").string();
  dir.touch(fs::path("bin") / kInstalledShimFromBindir);
  const std::string explicit_shim = dir.touch("custom/libextmem.so");
  std::string error;
  EXPECT_EQ(find_shim(explicit_shim.c_str(), bin, &error), explicit_shim) << error;

  // Relative in the environment, absolute in LD_PRELOAD.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path());
  EXPECT_EQ(find_shim("custom/libextmem.so", bin, &error), explicit_shim) << error;
  fs::current_path(cwd);

  const std::string missing = (dir.path() / "nope.so").string();
  EXPECT_EQ(find_shim(missing.c_str(), bin, &error), std::nullopt);
  EXPECT_EQ(error, "EXTMEM_SHIM=" + missing + " is not a file");
}

TEST(CtlShim, InstalledBeforeBuildTree) {
  TempDir dir;
  // A build tree: <build>/ctl/extmemctl and <build>/shim/libextmem.so.
  const std::string ctl_dir = (dir.path() / "ctl").string();
  fs::create_directories(ctl_dir);
  std::string error;
  EXPECT_EQ(find_shim("", ctl_dir, &error), std::nullopt);
  EXPECT_NE(error.find("cannot find libextmem.so"), std::string::npos) << error;
  EXPECT_NE(error.find("set EXTMEM_SHIM"), std::string::npos) << error;

  const std::string build_shim = dir.touch("shim/libextmem.so");
  EXPECT_EQ(find_shim(nullptr, ctl_dir, &error), build_shim) << error;
  const std::string installed = dir.touch(fs::path("ctl") / kInstalledShimFromBindir);
  EXPECT_EQ(find_shim(nullptr, ctl_dir, &error), installed) << error;
}

TEST(CtlShim, InstalledPathIsRelativeToTheBinDirectory) {
  EXPECT_TRUE(std::string(kInstalledShimFromBindir).starts_with("../")) << kInstalledShimFromBindir;
  EXPECT_TRUE(std::string(kInstalledShimFromBindir).ends_with("/libextmem.so"));
}

TEST(CtlRun, Environment) {
  RunOptions options;
  auto env = run_environment(options, "/lib/libextmem.so", nullptr);
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"LD_PRELOAD", "/lib/libextmem.so"}}));
  options.limit = 64 * kMiB;
  options.policy = "fifo";
  options.socket = "/s.sock";
  options.required = true;
  env = run_environment(options, "/lib/libextmem.so", "/other.so");
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"LD_PRELOAD", "/lib/libextmem.so:/other.so"},
                                                     {"EXTMEM_DRAM", "67108864"},
                                                     {"EXTMEM_POLICY", "fifo"},
                                                     {"EXTMEM_SOCKET", "/s.sock"},
                                                     {"EXTMEM_REQUIRED", "1"}}));
  EXPECT_EQ(run_environment(RunOptions{}, "/s.so", "")["LD_PRELOAD"], "/s.so");
}

TEST(CtlRun, CommandsThatCannotRunExitLikeAShell) {
  TempDir dir;
  RunOptions options;
  ::testing::internal::CaptureStderr();
  options.argv = {"extmemctl-no-such-command"};
  EXPECT_EQ(exec_under_shim(options, "/s.so"), kExitCommandNotFound);
  options.argv = {(dir.path() / "missing").string()};
  EXPECT_EQ(exec_under_shim(options, "/s.so"), kExitCommandNotFound);
  options.argv = {dir.touch("not-executable")};
  EXPECT_EQ(exec_under_shim(options, "/s.so"), kExitNotExecutable);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("extmemctl: extmemctl-no-such-command: command not found\n"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("not-executable: Permission denied\n"), std::string::npos) << err;
}

}  // namespace
}  // namespace extmem::ctl
