// Who may use extmem, and what the daemon keeps: the client allow-list (and its reload),
// the control socket's group, and the capabilities left once the daemon serves.
#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

constexpr uid_t kNobody = 65534;
constexpr char kRejected[] =
    "uid 65534 is not allowed to use extmem (security.allowed_users/allowed_groups)";

gid_t gid_of(const char* name) {
  const group* entry = getgrnam(name);
  EXPECT_NE(entry, nullptr) << name;
  return entry != nullptr ? entry->gr_gid : 0;
}

// A root-owned config file in the scratch directory, mode 0600: after the daemon dropped
// CAP_DAC_OVERRIDE it can still read it, being its owner.
class ConfigFile {
 public:
  explicit ConfigFile(const ScratchDir& dir) : path_(dir.file("extmemd.toml")) {}
  const std::string& path() const { return path_; }
  void write(const std::string& text) const {
    std::ofstream(path_, std::ios::trunc) << text;
    chmod(path_.c_str(), 0600);
  }

 private:
  std::string path_;
};

// Sends SIGHUP and waits for the n-th reload to be logged (accepted or refused).
void reload(const Daemon& daemon, int n) {
  kill(daemon.pid(), SIGHUP);
  for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(10ms)) {
    const std::string log = daemon.log();
    if (count_occurrences(log, "reloaded ") + count_occurrences(log, "reload: ") >= n) return;
  }
  ADD_FAILURE() << "reload " << n << " was not logged\n" << daemon.log();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

ProcessResult run_as_nobody(const ScratchDir& dir, const Daemon& daemon,
                            std::vector<gid_t> groups = {}) {
  ClientOptions options;
  options.as_nobody = true;
  options.groups = std::move(groups);
  return run_client(dir, daemon, {"alloc-sizes"}, options);
}

void expect_refused(const ProcessResult& r, const Daemon& daemon, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << what << ": " << describe(r);
  EXPECT_NE(r.err.find(std::string("extmemd refused: ") + kRejected), std::string::npos)
      << what << ": " << r.err;
  EXPECT_EQ(r.out, "") << what << ": the program must not run";
  EXPECT_NE(daemon.log().find(kRejected), std::string::npos) << what << "\n" << daemon.log();
}

TEST(Security, OnlyAllowedUsersAndGroupsBecomeClientsAndReloadChangesThat) {
  ScratchDir dir;
  ConfigFile config(dir);
  // Uid 1 (daemon) and group users: not nobody, nor its group nogroup.
  config.write("[security]\nallowed_users = [1]\nallowed_groups = [\"users\"]\n");
  Daemon daemon(dir, {"--config", config.path(), "--lend-uffd"});

  ProcessResult r = run_client(dir, daemon, {"alloc-sizes"});
  EXPECT_EQ(r.exit_code, 0) << "root is always allowed: " << describe(r) << daemon.log();
  expect_refused(run_as_nobody(dir, daemon), daemon, "nobody, in no listed group");
  EXPECT_EQ(count_occurrences(daemon.log(), "rejected client pid"), 1) << daemon.log();
  r = run_as_nobody(dir, daemon, {gid_of("users")});
  EXPECT_EQ(r.exit_code, 0) << "a supplementary group is listed: " << describe(r) << daemon.log();

  // Reloaded after the daemon dropped its capabilities: by user name now.
  config.write("[security]\nallowed_users = [\"nobody\"]\n");
  reload(daemon, 1);
  EXPECT_NE(daemon.log().find("reloaded " + config.path()), std::string::npos) << daemon.log();
  r = run_as_nobody(dir, daemon);
  EXPECT_EQ(r.exit_code, 0) << describe(r) << daemon.log();

  // A bad file changes nothing.
  config.write("[security]\nallowed_users = [\"extmem-no-such-user\"]\n");
  reload(daemon, 2);
  EXPECT_NE(daemon.log().find("security.allowed_users[1]: unknown user 'extmem-no-such-user'"),
            std::string::npos)
      << daemon.log();
  r = run_as_nobody(dir, daemon);
  EXPECT_EQ(r.exit_code, 0) << describe(r) << daemon.log();

  config.write("[security]\nallowed_groups = [\"users\"]\n");
  reload(daemon, 3);
  expect_refused(run_as_nobody(dir, daemon), daemon, "after the reload");
  EXPECT_EQ(count_occurrences(daemon.log(), "rejected client pid"), 2) << daemon.log();

  // No lists: every local user, as before the allow-list existed.
  config.write("");
  reload(daemon, 4);
  r = run_as_nobody(dir, daemon);
  EXPECT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
}

// Connects to `path` as nobody with `groups`; returns the errno of connect (0: connected).
// A lent /dev/userfaultfd lets its holder catch kernel-mode faults anywhere in its own
// memory, which vm.unprivileged_userfaultfd=0 withholds from unprivileged users: the daemon
// lends it only when configured to.
TEST(Security, UserfaultfdDeviceIsLentOnlyWhenConfigured) {
  if (read_text("/proc/sys/vm/unprivileged_userfaultfd").starts_with("1")) {
    GTEST_SKIP() << "vm.unprivileged_userfaultfd=1: every user creates a full userfaultfd";
  }
  constexpr char kNotLent[] = "this daemon does not lend /dev/userfaultfd";
  ScratchDir dir;
  {
    Daemon daemon(dir);
    ProcessResult r = run_as_nobody(dir, daemon);  // EXTMEM_REQUIRED=1
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(kNotLent), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("uid 65534 cannot create a full userfaultfd"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "") << "the program must not run";
    EXPECT_NE(daemon.log().find(kNotLent), std::string::npos) << daemon.log();

    ClientOptions options;
    options.as_nobody = true;
    options.env["EXTMEM_REQUIRED"] = "0";
    r = run_client(dir, daemon, {"alloc-sizes"}, options);
    EXPECT_EQ(r.exit_code, 0) << "runs unmanaged: " << describe(r);
    EXPECT_NE(r.err.find("running unmanaged"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("mmap 1048576 unmanaged"), std::string::npos) << r.out;

    r = run_client(dir, daemon, {"alloc-sizes"});
    EXPECT_EQ(r.exit_code, 0) << "root creates its own: " << describe(r);
    EXPECT_NE(r.out.find("mmap 1048576 managed"), std::string::npos) << r.out;
  }
  ScratchDir lending_dir;  // a fresh log: the daemon above also logged that it serves
  Daemon daemon(lending_dir, {"--lend-uffd"});
  ProcessResult r = run_as_nobody(lending_dir, daemon);
  EXPECT_EQ(r.exit_code, 0) << describe(r) << daemon.log();
  EXPECT_NE(r.out.find("mmap 1048576 managed"), std::string::npos) << r.out;
}

int connect_errno_as_nobody(const std::string& path, const std::vector<gid_t>& groups) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(groups.size(), groups.data()) != 0 || setgid(kNobody) != 0 ||
        setuid(kNobody) != 0) {
      _exit(255);
    }
    // gRPC listens on a stream socket.
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    _exit(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 ? 0 : errno);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

// The control plane is for root and the members of control.group: the socket is 0660 and
// chowned to the group (CtlTest.UsersWithoutAccessAreToldSo covers the default, root's group).
TEST(Security, ControlSocketIsForItsGroupOnly) {
  ScratchDir dir;
  ConfigFile config(dir);
  config.write("[control]\ngroup = \"users\"\n");
  Daemon daemon(dir, {"--config", config.path()});
  const gid_t users = gid_of("users");
  struct stat st;
  ASSERT_EQ(stat(daemon.control_path().c_str(), &st), 0) << daemon.log();
  EXPECT_EQ(st.st_gid, users);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  EXPECT_EQ(connect_errno_as_nobody(daemon.control_path(), {}), EACCES);
  EXPECT_EQ(connect_errno_as_nobody(daemon.control_path(), {users}), 0);

  const std::string ctl = dir.file("extmemctl");  // nobody may not enter the build tree
  std::filesystem::copy_file(EXTMEMCTL_PATH, ctl);
  ClientOptions options;
  options.preload_shim = false;
  options.as_nobody = true;
  options.timeout = 60s;
  ProcessResult r = run_process(dir, {ctl, "--control", daemon.control_path(), "list"}, options);
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("no permission to use " + daemon.control_path()), std::string::npos)
      << r.err;
  options.groups = {users};
  r = run_process(dir, {ctl, "--control", daemon.control_path(), "status"}, options);
  EXPECT_EQ(r.exit_code, 0) << "a member of control.group administers extmem: " << describe(r);
}

// A capability set line ("CapEff:\t00000000000a0000") of a /proc status file.
uint64_t status_mask(const std::string& status, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(status, m, std::regex("\n" + key + ":\\s*([0-9a-f]+)"))) {
    ADD_FAILURE() << "no " << key << " in\n" << status;
    return ~uint64_t{0};
  }
  return std::stoull(m[1], nullptr, 16);
}

// Every thread of `pid` (capabilities are per thread) holds exactly `kept` in its effective,
// permitted and bounding sets, nothing inheritable or ambient, and no new privileges. That
// includes io_uring's workers (iou-wrk), which copy the sets of the thread they serve when
// they start, and which the drop cannot reach: none may start before it.
void expect_only_capabilities(pid_t pid, uint64_t kept) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = opendir(task.c_str());
  ASSERT_NE(dir, nullptr) << task;
  int threads = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string status = read_text(task + "/" + entry->d_name + "/status");
    if (status.empty()) continue;  // the thread exited
    ++threads;
    const std::string thread = "thread " + std::string(entry->d_name);
    EXPECT_EQ(status_mask(status, "CapEff"), kept) << thread;
    EXPECT_EQ(status_mask(status, "CapPrm"), kept) << thread;
    EXPECT_EQ(status_mask(status, "CapBnd"), kept) << thread;
    EXPECT_EQ(status_mask(status, "CapInh"), 0u) << thread;
    EXPECT_EQ(status_mask(status, "CapAmb"), 0u) << thread;
    EXPECT_NE(status.find("\nNoNewPrivs:\t1"), std::string::npos) << thread;
  }
  closedir(dir);
  EXPECT_GT(threads, 3);
}

bool kernel_swap_on() {
  std::ifstream swaps("/proc/swaps");
  int lines = 0;
  for (std::string line; std::getline(swaps, line);) ++lines;
  return lines > 1;
}

TEST(Security, DaemonKeepsOnlyWhatPagingNeedsAndStillPagesAndReloads) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the daemon drops nothing otherwise";
  uint64_t kept = uint64_t{1} << CAP_SYS_PTRACE | uint64_t{1} << CAP_SYS_NICE;
  // Swap I/O rings are created per thread, which io_uring_disabled=1 allows only with it.
  if (atoi(read_text("/proc/sys/kernel/io_uring_disabled").c_str()) == 1) {
    kept |= uint64_t{1} << CAP_SYS_ADMIN;
  }
  ScratchDir dir;
  ConfigFile config(dir);
  config.write("[memory]\ndefault_policy = \"clock\"\n");
  Daemon daemon(dir, {"--config", config.path(), "--swap", dir.file("swap"), "--swap-size", "64M",
                      "--lend-uffd"});
  ASSERT_TRUE(daemon.wait_for_log("capabilities: kept ")) << daemon.log();
  EXPECT_NE(daemon.log().find("capabilities: kept CAP_SYS_PTRACE"), std::string::npos)
      << daemon.log();
  expect_only_capabilities(daemon.pid(), kept);

  // An unprivileged client paged over its limit: another user's /proc/PID/maps
  // (CAP_SYS_PTRACE), access resets by process_madvise (CAP_SYS_NICE), /dev/userfaultfd
  // opened and lent (root's own 0600 device: no CAP_DAC_OVERRIDE needed).
  ClientOptions options;
  options.as_nobody = true;
  options.env["EXTMEM_DRAM"] = "16M";
  Started client = start_process(
      dir, {paging_path(dir), "integrity", "--mib", "64", "--threads", "2", "--seconds", "4"},
      client_options(daemon, options));
  ProcessResult r = wait_process(client, 120s);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
  EXPECT_GT(departed_counter(daemon, client.pid, "evictions"), 0u) << daemon.log();
  EXPECT_GT(departed_counter(daemon, client.pid, "major"), 0u) << daemon.log();
  if (!kernel_swap_on()) {
    EXPECT_GT(departed_counter(daemon, client.pid, "access_resets"), 0u) << daemon.log();
  }
  EXPECT_EQ(departed_counter(daemon, client.pid, "fault"), 0u) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, client.pid, "io"), 0u) << daemon.log();

  // SIGHUP still re-reads the (root-owned, 0600) file.
  config.write("[memory]\ndefault_policy = \"fifo\"\n");
  reload(daemon, 1);
  EXPECT_NE(daemon.log().find("reloaded " + config.path()), std::string::npos) << daemon.log();

  // Threads started since (handshakes, gRPC) inherited the reduced sets.
  expect_only_capabilities(daemon.pid(), kept);
  const std::string log = daemon.log();
  EXPECT_EQ(log.find("Operation not permitted"), std::string::npos) << log;
  EXPECT_EQ(log.find("Permission denied"), std::string::npos) << log;
  EXPECT_EQ(daemon.stop(), 0) << daemon.log();

  // --probe runs before any drop, with whatever the caller has.
  ClientOptions plain;
  plain.preload_shim = false;
  r = run_process(dir, {EXTMEMD_PATH, "--probe"}, plain);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

}  // namespace
}  // namespace extmem::testing
