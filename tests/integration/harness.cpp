#include "harness.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;

namespace extmem::testing {

namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string copy_into(const ScratchDir& dir, const char* source, const char* name) {
  std::string target = dir.file(name);
  if (!fs::exists(target)) {
    fs::copy_file(source, target);
    chmod(target.c_str(), 0755);
  }
  return target;
}

}  // namespace

ScratchDir::ScratchDir() {
  // /var/tmp: disk-backed on Debian, so swap files there support O_DIRECT (tmpfs does not).
  char templ[] = "/var/tmp/extmem-test-XXXXXX";
  if (mkdtemp(templ) == nullptr) abort();
  path_ = templ;
  chmod(path_.c_str(), 0755);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string shim_path(const ScratchDir& dir) {
  return copy_into(dir, EXTMEM_SHIM_PATH, "libextmem.so");
}

std::string workload_path(const ScratchDir& dir) {
  return copy_into(dir, EXTMEM_WORKLOAD_PATH, "extmem-workload");
}

std::string hints_path(const ScratchDir& dir) {
  return copy_into(dir, EXTMEM_HINTS_PATH, "extmem-hints");
}

std::string paging_path(const ScratchDir& dir) {
  return copy_into(dir, EXTMEM_PAGING_PATH, "extmem-paging");
}

std::string Daemon::stats() const {
  const std::string marker = "stats: total";
  const int before = count_occurrences(log(), marker);
  kill(pid_, SIGUSR1);
  for (int i = 0; i < 500; ++i) {
    std::string text = log();
    if (count_occurrences(text, marker) > before) {
      size_t start = text.rfind(marker);
      return text.substr(start, text.find('\n', start) - start);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

Daemon::Daemon(const ScratchDir& dir, std::vector<std::string> extra_args, DaemonLaunch launch) {
  socket_path_ = dir.file("extmemd.sock");
  control_path_ = dir.file("control.sock");
  log_path_ = dir.file("extmemd.log");
  std::vector<std::string> argv = {EXTMEMD_PATH,  "--socket",    socket_path_, "--control",
                                   control_path_, "--log-level", "debug"};
  // Never the machine's /etc/extmem/extmemd.toml: an empty file, unless the test has one.
  if (std::find(extra_args.begin(), extra_args.end(), "--config") == extra_args.end()) {
    const std::string empty_config = dir.file("empty.toml");
    close(open(empty_config.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    argv.insert(argv.end(), {"--config", empty_config});
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  argv.insert(argv.begin(), launch.wrapper.begin(), launch.wrapper.end());
  // Built before fork: the child only execs.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    if (!launch.env.contains(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : launch.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  // Ready once it says so (the socket exists before listen() returns).
  if (!launch.ready_log.empty()) wait_for_log(launch.ready_log);
}

Daemon::~Daemon() {
  stop();
}

int Daemon::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 1000; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

void Daemon::crash() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string Daemon::log() const {
  return read_file(log_path_);
}

bool Daemon::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

Started start_process(const ScratchDir& dir, const std::vector<std::string>& argv,
                      const ClientOptions& options) {
  static int counter = 0;
  Started started;
  started.out_path = dir.file("out." + std::to_string(++counter));
  started.err_path = started.out_path + ".err";

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  env.erase("LD_PRELOAD");
  if (options.preload_shim) env["LD_PRELOAD"] = shim_path(dir);
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);

  started.pid = fork();
  if (started.pid == 0) {
    int out = open(started.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int err = open(started.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    if (options.as_nobody && (setgroups(options.groups.size(), options.groups.data()) != 0 ||
                              setgid(kNobody) != 0 || setuid(kNobody) != 0)) {
      _exit(126);
    }
    if (chdir(dir.path().c_str()) != 0) _exit(126);
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  return started;
}

ProcessResult wait_process(const Started& started, std::chrono::seconds timeout) {
  ProcessResult result;
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (waitpid(started.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      kill(started.pid, SIGKILL);
      waitpid(started.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  result.out = read_file(started.out_path);
  result.err = read_file(started.err_path);
  return result;
}

bool wait_for_output(const Started& started, const std::string& needle,
                     std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_file(started.out_path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

ProcessResult run_process(const ScratchDir& dir, const std::vector<std::string>& argv,
                          const ClientOptions& options) {
  return wait_process(start_process(dir, argv, options), options.timeout);
}

std::vector<std::string> client_argv(const ScratchDir& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {workload_path(dir)};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ClientOptions client_options(const Daemon& daemon, ClientOptions options) {
  options.env.emplace("EXTMEM_SOCKET", daemon.socket_path());
  options.env.emplace("EXTMEM_REQUIRED", "1");
  return options;
}

ProcessResult run_client(const ScratchDir& dir, const Daemon& daemon,
                         const std::vector<std::string>& args, ClientOptions options) {
  return run_process(dir, client_argv(dir, args), client_options(daemon, std::move(options)));
}

std::string departure_line(const Daemon& daemon, pid_t pid) {
  const std::regex left("client " + (pid != 0 ? std::to_string(pid) : std::string("\\d+")) +
                        " (exited|disconnected): [^\n]*");
  for (int i = 0; i < 1000; ++i) {
    std::string log = daemon.log();
    std::smatch m;
    if (std::regex_search(log, m, left)) return m.str();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

uint64_t departed_counter(const Daemon& daemon, pid_t pid, const std::string& name) {
  const std::string line = departure_line(daemon, pid);
  std::smatch m;
  if (!std::regex_search(line, m, std::regex("\\b" + name + "=(\\d+)"))) {
    ADD_FAILURE() << "no " << name << " for a departed client " << pid << " in the daemon log";
    return 0;
  }
  return std::stoull(m[1]);
}

uint64_t number_after(const std::string& text, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\\b" + key + "[= ](\\d+)"))) {
    ADD_FAILURE() << "no " << key << " in: " << text;
    return 0;
  }
  return std::stoull(m[1]);
}

std::string describe(const ProcessResult& r) {
  std::ostringstream s;
  s << "exit " << r.exit_code << " signal " << r.signal << (r.timed_out ? " (timed out)" : "")
    << "\n--- stdout\n"
    << r.out << "--- stderr\n"
    << r.err;
  return s.str();
}

int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

}  // namespace extmem::testing
