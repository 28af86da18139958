// Client churn soak: clients are killed with SIGKILL at random points (while their pages are
// evicted and swapped in at four times their limit, and halfway through the handshake) for
// EXTMEM_SOAK_SECONDS (20 by default; run it for 600 or more by hand, see
// docs/RELIABILITY.md). Afterwards the daemon must be back where it started: no client, no
// swap cluster in use, no more descriptors or threads than before, and its memory within a
// tolerance of the baseline.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/uffd.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;

// What the daemon may hold on to beyond the baseline's RSS: glibc keeps memory freed by the
// short-lived handshake threads in its per-thread arenas (up to 8 per core) for reuse rather
// than returning it, so after churn RSS settles a little above a baseline taken after a
// handful of clients, with every allocation freed (+0.8 MiB after 1,400 clients). A leak
// per client grows with the hundreds of clients the soak churns through (thousands when run
// by hand), and leaked descriptors, threads and swap clusters are caught exactly.
constexpr uint64_t kRssToleranceKib = 8 * 1024;

struct Footprint {
  uint64_t rss_kib = 0;
  uint64_t fds = 0;
  uint64_t threads = 0;  // the daemon's own
  // io_uring's io-wq workers (iou-wrk-TID): the kernel starts them for the swap I/O of a
  // thread, and keeps up to two per submitting thread when idle; not the daemon's to end.
  uint64_t io_workers = 0;
  uint64_t clients = 0;
  uint64_t swap_clusters = 0;

  std::string describe() const {
    std::ostringstream s;
    s << "rss " << rss_kib << " KiB, " << fds << " fds, " << threads << " threads (and "
      << io_workers << " io-wq workers), " << clients << " clients, " << swap_clusters
      << " swap clusters in use";
    return s.str();
  }
};

uint64_t field(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) {
    ADD_FAILURE() << "no " << pattern << " in " << text;
    return 0;
  }
  return std::stoull(m[1]);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Footprint footprint(const Daemon& daemon) {
  const std::string proc = "/proc/" + std::to_string(daemon.pid());
  Footprint f;
  f.rss_kib = field(read_text(proc + "/status"), "VmRSS:\\s+(\\d+) kB");
  if (DIR* dir = opendir((proc + "/fd").c_str())) {
    while (const dirent* entry = readdir(dir)) f.fds += entry->d_name[0] != '.';
    closedir(dir);
  }
  if (DIR* dir = opendir((proc + "/task").c_str())) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const std::string name = read_text(proc + "/task/" + entry->d_name + "/comm");
      if (name.empty()) continue;  // exited
      ++(name.rfind("iou-", 0) == 0 ? f.io_workers : f.threads);
    }
    closedir(dir);
  }
  const std::string stats = daemon.stats();
  f.clients = field(stats, "clients=(\\d+)");
  f.swap_clusters = field(stats, "swap_clusters_used=(\\d+)");
  return f;
}

// Each thread of `pid`: its name, where it waits, and its kernel stack; what a leaked thread
// is doing.
std::string describe_threads(pid_t pid) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task/";
  std::string text;
  if (DIR* dir = opendir(task.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const std::string thread = task + entry->d_name;
      std::string name = read_text(thread + "/comm");
      if (!name.empty()) name.pop_back();
      text += std::string(entry->d_name) + " " + name + " in " + read_text(thread + "/wchan") +
              "\n" + read_text(thread + "/stack");
    }
    closedir(dir);
  }
  return text;
}

// Polls until no client is left and nothing exceeds `limit` (handshake threads end on
// their own); returns the last reading.
Footprint settled(const Daemon& daemon, const Footprint& limit, std::chrono::seconds timeout) {
  Footprint f;
  for (auto end = std::chrono::steady_clock::now() + timeout;;) {
    f = footprint(daemon);
    const bool done =
        f.clients == 0 && f.swap_clusters == 0 && f.fds <= limit.fds && f.threads <= limit.threads;
    if (done || std::chrono::steady_clock::now() > end) return f;
    std::this_thread::sleep_for(100ms);
  }
}

// Where a hand-rolled client dies (SIGKILL) in the handshake.
enum class Stage {
  kConnected,      // before sending anything
  kHalfHello,      // after the first half of a hello frame (a short message)
  kHelloUnread,    // after a hello asking for /dev/userfaultfd, before the reply
  kHelloAnswered,  // holding the lent device, before registering
  kRegistering,    // right after sending its userfaultfd and arena: during the checks
};
constexpr int kStages = 5;

// Forks a process that speaks the wire protocol up to `stage` and dies there.
pid_t die_in_handshake(const Daemon& daemon, Stage stage) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  auto fd = kernel::connect_unix(daemon.socket_path().c_str());
  if (!fd) _exit(1);
  std::byte frame[wire::kMaxFrame];
  wire::Hello hello;
  hello.flags = wire::kHelloWantsUffdDevice;
  const size_t len = wire::encode(hello, frame);
  if (stage != Stage::kConnected) {
    const size_t part = stage == Stage::kHalfHello ? len / 2 : len;
    (void)kernel::send_message(fd->get(), {frame, part}, {});
  }
  if (stage == Stage::kHelloAnswered || stage == Stage::kRegistering) {
    kernel::UniqueFd device[1];
    (void)kernel::receive_message(fd->get(), {frame, sizeof(frame)}, device);
  }
  if (stage == Stage::kRegistering) {
    constexpr size_t kArena = 1 << 20;
    auto uffd = kernel::Userfaultfd::create(O_CLOEXEC | O_NONBLOCK);
    auto memfd = kernel::Memfd::create("extmem-arena", MFD_CLOEXEC);
    if (!uffd || !memfd || !memfd->truncate(kArena)) _exit(1);
    void* arena = mmap(nullptr, kArena, PROT_READ | PROT_WRITE, MAP_SHARED, memfd->fd(), 0);
    if (arena == MAP_FAILED) _exit(1);
    wire::Register reg;
    reg.arena_base = reinterpret_cast<uintptr_t>(arena);
    reg.arena_size = kArena;
    const int fds[2] = {uffd->fd(), memfd->fd()};
    (void)kernel::send_message(fd->get(), {frame, wire::encode(reg, frame)}, fds);
  }
  raise(SIGKILL);
  _exit(1);
}

void reap(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// A paging client at four times its limit, restoring and evicting from the start.
Started start_pager(const ScratchDir& dir, const Daemon& daemon, bool as_nobody) {
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "16M";
  options.as_nobody = as_nobody;
  return start_process(
      dir, {paging_path(dir), "integrity", "--mib", "64", "--threads", "2", "--seconds", "600"},
      options);
}

unsigned soak_seconds() {
  const char* text = getenv("EXTMEM_SOAK_SECONDS");
  return text != nullptr && atoi(text) > 0 ? static_cast<unsigned>(atoi(text)) : 20;
}

TEST(Churn, KilledClientsLeaveNothingBehind) {
  ScratchDir dir;
  Daemon daemon(dir, {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--lend-uffd"});

  // Warm-up: what a first client creates once and keeps (a swap I/O ring in each fault and
  // reclaim thread, malloc arenas) belongs to the baseline.
  for (bool as_nobody : {false, true}) {
    Started pager = start_pager(dir, daemon, as_nobody);
    std::this_thread::sleep_for(1500ms);
    kill(pager.pid, SIGKILL);
    wait_process(pager, 10s);
  }
  for (int stage = 0; stage < kStages; ++stage) {
    reap(die_in_handshake(daemon, static_cast<Stage>(stage)));
  }
  Footprint anything;
  anything.fds = anything.threads = UINT64_MAX;
  const Footprint baseline = settled(daemon, anything, 30s);
  ASSERT_EQ(baseline.clients, 0u) << baseline.describe() << "\n" << daemon.log();

  const unsigned seconds = soak_seconds();
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::vector<Started> pagers;
  uint64_t killed = 0, handshakes = 0, registrations = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    while (pagers.size() < 3) pagers.push_back(start_pager(dir, daemon, rng() % 2 == 0));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 800));
    const size_t victim = rng() % pagers.size();
    kill(pagers[victim].pid, SIGKILL);
    const ProcessResult r = wait_process(pagers[victim], 10s);
    // A pager that failed on its own (a wrong page) instead of being killed is a bug.
    ASSERT_EQ(r.signal, SIGKILL) << describe(r) << "\n--- daemon log\n" << daemon.log();
    pagers.erase(pagers.begin() + static_cast<long>(victim));
    ++killed;
    reap(die_in_handshake(daemon, static_cast<Stage>(rng() % kStages)));
    ++handshakes;
  }
  for (const Started& pager : pagers) {
    kill(pager.pid, SIGKILL);
    wait_process(pager, 10s);
    ++killed;
  }
  registrations = count_occurrences(daemon.log(), ") registered");

  const Footprint after = settled(daemon, baseline, 30s);
  std::ostringstream summary;
  summary << seconds << " s (seed " << seed << "): " << killed << " pagers killed ("
          << registrations << " registrations), " << handshakes
          << " handshakes abandoned\nbaseline: " << baseline.describe()
          << "\nafter:    " << after.describe();
  std::cout << summary.str() << std::endl;
  EXPECT_EQ(after.clients, 0u) << summary.str();
  EXPECT_EQ(after.swap_clusters, 0u) << summary.str();
  EXPECT_LE(after.fds, baseline.fds) << summary.str();
  EXPECT_LE(after.threads, baseline.threads) << summary.str() << "\n"
                                             << describe_threads(daemon.pid());
  EXPECT_LE(after.rss_kib, baseline.rss_kib + kRssToleranceKib) << summary.str();
  EXPECT_GT(killed, seconds / 2) << summary.str();
  EXPECT_EQ(daemon.log().find("critical"), std::string::npos) << daemon.log();

  // And it still pages correctly.
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "16M";
  ProcessResult r = run_process(
      dir, {paging_path(dir), "integrity", "--mib", "64", "--threads", "2", "--seconds", "2"},
      options);
  EXPECT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("mismatches 0"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace extmem::testing
