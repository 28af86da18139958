// extmemd as systemd runs it: on a socket passed by socket activation, reporting its
// state on NOTIFY_SOCKET, and with no capability beyond extmemd.service's bounding set.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "extmem/kernel/fd.hpp"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

// `name` found in $PATH, or "".
std::string find_program(const std::string& name) {
  const char* path = getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

bool has_line(const std::string& datagram, const std::string& line) {
  std::istringstream lines(datagram);
  for (std::string l; std::getline(lines, l);) {
    if (l == line) return true;
  }
  return false;
}

// Where systemd would listen for sd_notify datagrams.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "bind " << path << ": " << strerror(errno);
    }
  }
  const std::string& path() const { return path_; }

  // Reads datagrams until one has `line`; returns it, or nullopt after `timeout`.
  std::optional<std::string> wait_for(const std::string& line, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p = {fd_.get(), POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        return std::nullopt;
      }
      char buf[4096];
      ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
      if (n < 0) return std::nullopt;
      received_.emplace_back(buf, static_cast<size_t>(n));
      if (has_line(received_.back(), line)) return received_.back();
    }
  }

  // Everything received so far, for failure messages.
  std::string history() const {
    std::string text;
    for (const auto& d : received_) text += "[" + d + "]\n";
    return text;
  }

 private:
  std::string path_;
  kernel::UniqueFd fd_;
  std::vector<std::string> received_;
};

// The pid of the first extmem-workload client the daemon registered (uid `uid`), or -1.
pid_t registered_workload(const std::string& log, uid_t uid) {
  std::smatch m;
  const std::regex registered("client (\\d+) \\(extmem-workload, uid " + std::to_string(uid) +
                              "\\) registered");
  return std::regex_search(log, m, registered) ? std::stoi(m[1]) : -1;
}

// A client that is paged: it touches twice its limit, then reads it all back.
const std::vector<std::string> kHoldOverLimit = {"hold", "--mib", "48", "--seconds", "0"};
constexpr const char* kHoldLimit = "24M";

TEST(Systemd, SocketActivatedDaemonServesOnTheInheritedSocket) {
  const std::string activator = find_program("systemd-socket-activate");
  if (activator.empty()) GTEST_SKIP() << "systemd-socket-activate is not installed";
  ScratchDir dir;
  const std::string socket_path = dir.file("extmemd.sock");
  DaemonLaunch launch;
  launch.wrapper = {activator, "--seqpacket", "-l", socket_path};
  // The activator binds and listens, then execs extmemd at the first connection.
  launch.ready_log = "Listening on " + socket_path;
  Daemon daemon(dir, {"--swap", dir.file("swap"), "--swap-size", "64M"}, launch);
  ASSERT_EQ(daemon.socket_path(), socket_path);
  struct stat before;
  ASSERT_EQ(stat(socket_path.c_str(), &before), 0) << daemon.log();
  ASSERT_TRUE(S_ISSOCK(before.st_mode));

  ClientOptions options;
  options.env["EXTMEM_DRAM"] = kHoldLimit;
  ProcessResult r = run_client(dir, daemon, kHoldOverLimit, options);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("hold ok"), std::string::npos) << r.out;
  std::string log = daemon.log();
  EXPECT_NE(log.find("serving clients on the socket passed by the service manager"),
            std::string::npos)
      << log;
  const pid_t pid = registered_workload(log, 0);
  ASSERT_GT(pid, 0) << log;
  EXPECT_GT(departed_counter(daemon, pid, "evictions"), 0u) << daemon.log();

  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
  // The socket belongs to the activator: the daemon neither replaced nor removed it.
  struct stat after;
  ASSERT_EQ(stat(socket_path.c_str(), &after), 0) << "the daemon removed the socket";
  EXPECT_EQ(after.st_ino, before.st_ino) << "the daemon replaced the socket";
}

TEST(Systemd, ReadyIsSentOnceTheDaemonServes) {
  ScratchDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  DaemonLaunch launch;
  launch.env["NOTIFY_SOCKET"] = notify.path();
  launch.ready_log = "";  // READY=1 is the signal under test
  Daemon daemon(dir, {}, launch);

  auto ready = notify.wait_for("READY=1", 10s);
  ASSERT_TRUE(ready) << "no READY=1; received:\n"
                     << notify.history() << "--- daemon log\n"
                     << daemon.log();
  // Ready means serving: a client registers at once, with no wait on the log.
  ProcessResult r = run_client(dir, daemon, {"hold", "--mib", "16", "--seconds", "0"});
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_GT(registered_workload(daemon.log(), 0), 0) << daemon.log();
}

TEST(Systemd, WatchdogReloadAndStopAreNotified) {
  ScratchDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  DaemonLaunch launch;
  launch.env["NOTIFY_SOCKET"] = notify.path();
  launch.env["WATCHDOG_USEC"] = "1000000";
  Daemon daemon(dir, {}, launch);
  ASSERT_TRUE(notify.wait_for("READY=1", 10s)) << notify.history() << daemon.log();

  // systemd kills a service that lets a whole interval pass without a pet; the daemon
  // pets at half of it.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 1s)) << notify.history() << daemon.log();
  }

  kill(daemon.pid(), SIGHUP);
  ASSERT_TRUE(notify.wait_for("RELOADING=1", 10s)) << notify.history() << daemon.log();
  ASSERT_TRUE(notify.wait_for("READY=1", 10s)) << notify.history() << daemon.log();

  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 1s)) << notify.history() << daemon.log();
}

// The capabilities extmemd.service's CapabilityBoundingSet= keeps, as setpriv names them
// ("+sys_ptrace").
std::vector<std::string> unit_capabilities() {
  std::ifstream unit(EXTMEMD_SERVICE_PATH);
  std::vector<std::string> caps;
  for (std::string line; std::getline(unit, line);) {
    const std::string key = "CapabilityBoundingSet=";
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream names(line.substr(key.size()));
    for (std::string name; names >> name;) {
      std::string cap = "+";
      for (char c : name.substr(strlen("CAP_"))) cap += static_cast<char>(tolower(c));
      caps.push_back(cap);
    }
  }
  return caps;
}

bool kernel_swap_on() {
  std::ifstream swaps("/proc/swaps");
  int lines = 0;
  for (std::string line; std::getline(swaps, line);) ++lines;
  return lines > 1;  // a header, then one line per swap area
}

TEST(Systemd, DaemonNeedsNoCapabilityBeyondTheUnitsBoundingSet) {
  const std::string setpriv = find_program("setpriv");
  if (setpriv.empty()) GTEST_SKIP() << "setpriv is not installed";
  const std::vector<std::string> caps = unit_capabilities();
  ASSERT_FALSE(caps.empty()) << "no CapabilityBoundingSet= in " << EXTMEMD_SERVICE_PATH;
  std::string bounding_set = "-all";
  for (const auto& cap : caps) bounding_set += "," + cap;

  ScratchDir dir;
  DaemonLaunch launch;
  // Root's capabilities after exec are the bounding set (inheritable cleared), as under
  // systemd with CapabilityBoundingSet= and NoNewPrivileges=yes.
  launch.wrapper = {setpriv, "--bounding-set=" + bounding_set, "--inh-caps=-all", "--no-new-privs",
                    "--"};
  Daemon daemon(dir, {"--swap", dir.file("swap"), "--swap-size", "64M", "--lend-uffd"}, launch);

  // An unprivileged client under a limit: its /proc/PID/maps is another user's
  // (CAP_SYS_PTRACE), the clock policy's resets use process_madvise (CAP_SYS_NICE), and
  // its userfaultfd comes from the daemon's /dev/userfaultfd.
  ClientOptions options;
  options.as_nobody = true;
  options.env["EXTMEM_DRAM"] = kHoldLimit;
  ProcessResult r = run_client(dir, daemon, kHoldOverLimit, options);
  ASSERT_EQ(r.exit_code, 0) << bounding_set << ": " << describe(r) << "\n--- daemon log\n"
                            << daemon.log();
  const pid_t pid = registered_workload(daemon.log(), 65534);
  ASSERT_GT(pid, 0) << daemon.log();
  EXPECT_GT(departed_counter(daemon, pid, "evictions"), 0u) << daemon.log();
  if (!kernel_swap_on()) {
    EXPECT_GT(departed_counter(daemon, pid, "access_resets"), 0u) << daemon.log();
  }
  const std::string log = daemon.log();
  EXPECT_EQ(log.find("Operation not permitted"), std::string::npos) << bounding_set << "\n" << log;
  EXPECT_EQ(log.find("Permission denied"), std::string::npos) << bounding_set << "\n" << log;
  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
}

}  // namespace
}  // namespace extmem::testing
