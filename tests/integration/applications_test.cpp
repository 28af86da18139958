// Real servers from Debian's packages under extmem: redis-server and memcached, each
// started under the shim with a 64 MiB DRAM limit, loaded over its own protocol with about
// four times that much data, and every value read back. The control plane must show the
// data paged: resident memory at the limit, the rest in swap, major faults on the reads.
// docs/APPLICATIONS.md describes the settings these tests use and why.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "extmem/v1/control.grpc.pb.h"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kLimit = 64 * kMiB;
// Resident memory may run ahead of the limit by the evictions in flight.
constexpr uint64_t kResidentSlack = 4 * kMiB;

// The program's path from $PATH (or the sbin directories), "" when it is not installed.
std::string find_program(const std::string& name) {
  const char* env = getenv("PATH");
  std::string path = std::string(env != nullptr ? env : "") + ":/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

bool accepts_connections(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

uint64_t vm_rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::unique_ptr<v1::Control::Stub> connect_control(const Daemon& daemon) {
  return v1::Control::NewStub(
      grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
}

std::optional<v1::ClientStats> client_stats(v1::Control::Stub& stub, pid_t pid) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  v1::ListClientsResponse list;
  if (!stub.ListClients(&context, {}, &list).ok()) return std::nullopt;
  for (const auto& c : list.clients()) {
    if (c.pid() == pid) return c;
  }
  return std::nullopt;
}

// A server process under the shim, on a Unix socket in the scratch directory; stopped
// with SIGTERM (then SIGKILL) when it goes out of scope.
class Server {
 public:
  Server(const ScratchDir& dir, const Daemon& daemon, std::vector<std::string> argv,
         std::string socket_path, std::map<std::string, std::string> env)
      : socket_path_(std::move(socket_path)) {
    ClientOptions options = client_options(daemon);
    options.env["EXTMEM_DRAM"] = std::to_string(kLimit);
    for (auto& [k, v] : env) options.env[k] = v;
    started_ = start_process(dir, argv, options);
  }
  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  pid_t pid() const { return started_.pid; }
  const std::string& socket_path() const { return socket_path_; }

  // Waits until the server accepts connections; false if it exited or did not within 20 s.
  bool wait_ready() const {
    for (int i = 0; i < 400 && running(); ++i) {
      if (accepts_connections(socket_path_)) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  // Not exited (a zombie has exited: its state in /proc/PID/stat is Z).
  bool running() const {
    std::ifstream stat("/proc/" + std::to_string(started_.pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
  }

  ProcessResult stop() {
    if (stopped_) return result_;
    stopped_ = true;
    kill(started_.pid, SIGTERM);
    result_ = wait_process(started_, std::chrono::seconds(20));
    return result_;
  }
  std::string stop_and_describe() { return "--- server\n" + describe(stop()); }

 private:
  std::string socket_path_;
  Started started_;
  bool stopped_ = false;
  ProcessResult result_;
};

// The highest resident memory (control plane) and VmRSS of a client while it runs.
class Sampler {
 public:
  Sampler(const Daemon& daemon, pid_t pid) : stub_(connect_control(daemon)), pid_(pid) {
    thread_ = std::thread([this] {
      while (!done_) {
        sample();
        std::this_thread::sleep_for(100ms);
      }
    });
  }
  ~Sampler() { finish(); }
  void finish() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    sample();
  }
  uint64_t max_resident() const { return max_resident_; }
  uint64_t max_rss() const { return max_rss_; }
  int samples() const { return samples_; }

 private:
  void sample() {
    if (auto c = client_stats(*stub_, pid_)) {
      max_resident_ = std::max<uint64_t>(max_resident_, c->resident_bytes());
      ++samples_;
    }
    max_rss_ = std::max(max_rss_.load(), vm_rss_bytes(pid_));
  }

  std::unique_ptr<v1::Control::Stub> stub_;
  pid_t pid_;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> max_resident_{0};
  std::atomic<uint64_t> max_rss_{0};
  std::atomic<int> samples_{0};
  std::thread thread_;
};

// A helper program run as it is, not under the shim.
ClientOptions unmanaged() {
  ClientOptions options;
  options.preload_shim = false;
  options.timeout = std::chrono::seconds(120);
  return options;
}

struct Dataset {
  const char* proto;
  uint64_t keys;
  uint64_t value_bytes;
  uint64_t bytes() const { return keys * value_bytes; }
};

ProcessResult kvload(const ScratchDir& dir, const Server& server, const Dataset& data,
                     const std::string& command) {
  return run_process(
      dir,
      {EXTMEM_KVLOAD_PATH, "--proto", data.proto, "--socket", server.socket_path(), "--keys",
       std::to_string(data.keys), "--value-bytes", std::to_string(data.value_bytes), command},
      unmanaged());
}

std::vector<std::string> daemon_args(const ScratchDir& dir) {
  return {"--swap", dir.file("swapfile"), "--swap-size", "1G", "--fault-threads", "2"};
}

// Loads `data` into the server, reads every value back, and checks that extmem paged it.
void load_verify_and_expect_paged(const ScratchDir& dir, const Daemon& daemon, Server& server,
                                  const Dataset& data) {
  ASSERT_GE(data.bytes(), 3 * kLimit);
  Sampler sampler(daemon, server.pid());
  ProcessResult load = kvload(dir, server, data, "load");
  ASSERT_EQ(load.exit_code, 0) << describe(load) << server.stop_and_describe();
  ProcessResult verify = kvload(dir, server, data, "verify");
  sampler.finish();
  ASSERT_EQ(verify.exit_code, 0) << describe(verify) << server.stop_and_describe();
  EXPECT_NE(verify.out.find("mismatches 0 missing 0"), std::string::npos) << verify.out;

  auto stub = connect_control(daemon);
  auto stats = client_stats(*stub, server.pid());
  ASSERT_TRUE(stats.has_value()) << "the server is not a client of extmemd\n"
                                 << server.stop_and_describe() << "\n--- daemon log\n"
                                 << daemon.log();
  ASSERT_GT(sampler.samples(), 1);
  EXPECT_LE(sampler.max_resident(), kLimit + kResidentSlack);
  // Most of the data is in swap, and reading it back faulted it in.
  EXPECT_GE(stats->swapped_bytes(), data.bytes() / 2) << stats->DebugString();
  EXPECT_GT(stats->counters().major_faults(), 0u) << stats->DebugString();
  EXPECT_EQ(stats->counters().fault_errors(), 0u) << stats->DebugString();
  EXPECT_EQ(stats->counters().io_errors(), 0u) << stats->DebugString();
  // The values are in managed memory, not beside it: the process never held half of them.
  EXPECT_LT(sampler.max_rss(), data.bytes() / 2);
  EXPECT_TRUE(server.running()) << server.stop_and_describe();
}

// Persistence off: no save points (a BGSAVE forks; see RedisBackgroundSave...).
std::string write_redis_config(const ScratchDir& dir, const std::string& socket) {
  const std::string path = dir.file("redis.conf");
  std::ofstream conf(path);
  conf << "port 0\n"
       << "unixsocket " << socket << "\n"
       << "unixsocketperm 700\n"
       << "save \"\"\n"
       << "appendonly no\n"
       << "dir " << dir.path() << "\n"
       << "daemonize no\n"
       << "logfile \"\"\n";
  return path;
}

// Values of 16 KiB - 6 bytes: with Redis's 6-byte string header each is exactly four
// pages, at or above EXTMEM_MIN_ALLOC=4096, so it is served from the arena.
constexpr Dataset kRedisData{"redis", 16384, 16 * 1024 - 6};  // 256 MiB
const std::map<std::string, std::string> kRedisEnv = {{"EXTMEM_MIN_ALLOC", "4096"}};

TEST(Applications, RedisHoldsFourTimesItsLimitAndReadsEveryValueBack) {
  const std::string redis = find_program("redis-server");
  if (redis.empty()) GTEST_SKIP() << "redis-server is not installed (Debian package redis-server)";
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  const std::string socket = dir.file("redis.sock");
  Server server(dir, daemon, {redis, write_redis_config(dir, socket)}, socket, kRedisEnv);
  ASSERT_TRUE(server.wait_ready()) << server.stop_and_describe() << "\n--- daemon log\n"
                                   << daemon.log();
  load_verify_and_expect_paged(dir, daemon, server, kRedisData);
}

// memcached keeps items in 1 MiB slab pages it mallocs: managed with the default
// EXTMEM_MIN_ALLOC. Its own cache size (-m) must exceed the data, or it evicts items.
TEST(Applications, MemcachedHoldsFourTimesItsLimitAndReadsEveryValueBack) {
  const std::string memcached = find_program("memcached");
  if (memcached.empty()) GTEST_SKIP() << "memcached is not installed (Debian package memcached)";
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  const std::string socket = dir.file("memcached.sock");
  Server server(dir, daemon,
                {memcached, "-u", "root", "-s", socket, "-a", "0700", "-m", "1024", "-t", "2"},
                socket, {});
  ASSERT_TRUE(server.wait_ready()) << server.stop_and_describe() << "\n--- daemon log\n"
                                   << daemon.log();
  load_verify_and_expect_paged(dir, daemon, server, {"memcached", 16384, 16000});  // 250 MiB
}

ProcessResult redis_cli(const ScratchDir& dir, const std::string& socket,
                        const std::vector<std::string>& args) {
  std::vector<std::string> argv = {find_program("redis-cli"), "-s", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(dir, argv, unmanaged());
}

// BGSAVE forks, and a fork() child has no managed memory (README, "fork"): the child dies
// of SIGSEGV on the first value it reads, and Redis reports the failed save. The server
// itself keeps every value, and a foreground SAVE (no fork) writes a complete dump. This
// pins the behaviour docs/APPLICATIONS.md describes.
TEST(Applications, RedisBackgroundSaveFailsButTheServerKeepsItsDataAndSaveWorks) {
  const std::string redis = find_program("redis-server");
  if (redis.empty() || find_program("redis-cli").empty()) {
    GTEST_SKIP() << "redis-server or redis-cli is not installed (Debian package redis-server)";
  }
  ScratchDir dir;
  Daemon daemon(dir, daemon_args(dir));
  const std::string socket = dir.file("redis.sock");
  Server server(dir, daemon, {redis, write_redis_config(dir, socket)}, socket, kRedisEnv);
  ASSERT_TRUE(server.wait_ready()) << server.stop_and_describe();
  const Dataset data{"redis", 2048, 16 * 1024 - 6};  // 32 MiB
  ASSERT_EQ(kvload(dir, server, data, "load").exit_code, 0) << server.stop_and_describe();

  ProcessResult bgsave = redis_cli(dir, socket, {"BGSAVE"});
  ASSERT_EQ(bgsave.exit_code, 0) << describe(bgsave);
  std::string persistence;
  for (int i = 0; i < 200; ++i) {
    persistence = redis_cli(dir, socket, {"INFO", "persistence"}).out;
    if (persistence.find("rdb_bgsave_in_progress:0") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(persistence.find("rdb_last_bgsave_status:err"), std::string::npos) << persistence;
  ProcessResult verify = kvload(dir, server, data, "verify");
  EXPECT_EQ(verify.exit_code, 0) << describe(verify);

  ProcessResult save = redis_cli(dir, socket, {"SAVE"});
  EXPECT_EQ(save.exit_code, 0) << describe(save);
  EXPECT_NE(save.out.find("OK"), std::string::npos) << describe(save);
  ProcessResult check =
      run_process(dir, {find_program("redis-check-rdb"), dir.file("dump.rdb")}, unmanaged());
  EXPECT_EQ(check.exit_code, 0) << describe(check);
  EXPECT_NE(check.out.find(std::to_string(data.keys) + " keys read"), std::string::npos)
      << describe(check);

  ProcessResult stopped = server.stop();
  EXPECT_NE(stopped.out.find("Background saving terminated by signal 11"), std::string::npos)
      << describe(stopped);
}

}  // namespace
}  // namespace extmem::testing
