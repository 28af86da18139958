// Integration-test harness: a real extmemd process on a private socket, and real client
// processes started under LD_PRELOAD=libextmem.so, optionally as an unprivileged user.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace extmem::testing {

// A scratch directory every user can enter, removed at destruction. The shim and the
// workload are copied into it so an unprivileged client can run them wherever the
// build tree lives.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
  bool timed_out = false;
};

struct ClientOptions {
  std::map<std::string, std::string> env;  // added to (or replacing) the test's environment
  bool preload_shim = true;
  bool as_nobody = false;
  std::vector<gid_t> groups;  // the supplementary groups of an as_nobody process
  std::chrono::seconds timeout{300};
};

// How a Daemon starts, beyond its arguments.
struct DaemonLaunch {
  // Put before extmemd's command line, e.g. {"systemd-socket-activate", "--seqpacket",
  // "-l", PATH}; it must exec extmemd in its own process.
  std::vector<std::string> wrapper;
  std::map<std::string, std::string> env;  // added to (or replacing) the test's environment
  // The constructor returns once the log contains this; empty: at once.
  std::string ready_log = "serving clients";
};

class Daemon {
 public:
  explicit Daemon(const ScratchDir& dir, std::vector<std::string> extra_args = {},
                  DaemonLaunch launch = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& control_path() const { return control_path_; }
  std::string log() const;
  // Waits until the log contains `needle`.
  bool wait_for_log(const std::string& needle,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // The daemon's "stats: total ..." line, freshly asked for with SIGUSR1.
  std::string stats() const;
  // Sends SIGTERM and waits; returns the exit status.
  int stop();
  // SIGKILL, as a crash would: nothing of the daemon runs after it.
  void crash();

 private:
  pid_t pid_ = -1;
  std::string socket_path_;
  std::string control_path_;
  std::string log_path_;
};

// Copies of the build's shim and workload inside `dir`.
std::string shim_path(const ScratchDir& dir);
std::string workload_path(const ScratchDir& dir);
std::string paging_path(const ScratchDir& dir);
std::string hints_path(const ScratchDir& dir);

// A started process whose stdout and stderr go to files.
struct Started {
  pid_t pid = -1;
  std::string out_path;
  std::string err_path;
};
Started start_process(const ScratchDir& dir, const std::vector<std::string>& argv,
                      const ClientOptions& options);
ProcessResult wait_process(const Started& started, std::chrono::seconds timeout);
// Waits until the process's stdout contains `needle`.
bool wait_for_output(const Started& started, const std::string& needle,
                     std::chrono::milliseconds timeout);
// Runs argv to completion, capturing stdout and stderr.
ProcessResult run_process(const ScratchDir& dir, const std::vector<std::string>& argv,
                          const ClientOptions& options);
// The workload with `args` as a client of `daemon` (EXTMEM_REQUIRED=1).
std::vector<std::string> client_argv(const ScratchDir& dir, const std::vector<std::string>& args);
ClientOptions client_options(const Daemon& daemon, ClientOptions options = {});
ProcessResult run_client(const ScratchDir& dir, const Daemon& daemon,
                         const std::vector<std::string>& args, ClientOptions options = {});

// Waits (up to 10 s) until the daemon logged that client `pid` (0: any client) left, and
// returns that line; "" if it did not.
std::string departure_line(const Daemon& daemon, pid_t pid);
// A counter ("name=123") from the departure line of client `pid` (0: any client); a test
// failure when there is none.
uint64_t departed_counter(const Daemon& daemon, pid_t pid, const std::string& name);
// The number after "key " or "key=" in `text` (a client's output, a stats line); a test
// failure and 0 when there is none.
uint64_t number_after(const std::string& text, const std::string& key);

std::string describe(const ProcessResult& r);
int count_occurrences(const std::string& text, const std::string& needle);

}  // namespace extmem::testing
