#include "daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "extmem/units.hpp"

namespace extmem::daemon {

namespace {

sigset_t daemon_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  return set;
}

// A listening socket passed by systemd socket activation (sd_listen_fds protocol), or -1.
int inherited_listen_fd() {
  const char* pid = getenv("LISTEN_PID");
  const char* count = getenv("LISTEN_FDS");
  if (pid == nullptr || count == nullptr || atoi(pid) != getpid() || atoi(count) < 1) return -1;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return 3;  // SD_LISTEN_FDS_START
}

}  // namespace

void block_daemon_signals() {
  sigset_t set = daemon_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Daemon::Daemon(Options options, const kernel::Capabilities& caps)
    : options_(std::move(options)), track_access_(!caps.kernel_swap_on) {}

Result<void> Daemon::run() {
  Pager pager;
  if (!options_.swap_path.empty()) {
    auto swap = SwapDevice::open(options_.swap_path, options_.swap_size);
    if (!swap) return swap.error();
    swap_ = std::move(*swap);
    reclaimer_ = std::make_unique<Reclaimer>(registry_, *swap_, track_access_);
    reclaimer_->start();
    pager = {swap_.get(), reclaimer_.get()};
    char size[32];
    spdlog::info("swap {} ({}); access tracking {}", swap_->path(),
                 format_size(swap_->size(), size, sizeof(size)),
                 track_access_ ? "by MADV_PAGEOUT resets" : "off (kernel swap is on)");
  } else {
    spdlog::info("no swap device (--swap): DRAM limits are not enforced");
  }
  fault_loop_ = std::make_unique<FaultLoop>(registry_, options_.fault_threads, pager);
  server_ = std::make_unique<Server>(options_, registry_, *fault_loop_, swap_.get());
  if (auto started = fault_loop_->start(); !started) return started;
  int inherited = inherited_listen_fd();
  if (auto started = server_->start(inherited); !started) return started;
  if (inherited >= 0) {
    spdlog::info("extmemd serving clients on the socket passed by the service manager");
  } else {
    spdlog::info("extmemd serving clients on {}", options_.socket_path);
  }

  sigset_t set = daemon_signals();
  const timespec interval = {static_cast<time_t>(options_.stats_interval), 0};
  for (;;) {
    int sig = sigtimedwait(&set, nullptr, options_.stats_interval != 0 ? &interval : nullptr);
    if (sig < 0) {
      if (errno == EAGAIN) log_stats();
      continue;
    }
    if (sig == SIGUSR1) {
      log_stats();
    } else if (sig == SIGHUP) {
      spdlog::info("SIGHUP: nothing to reload");
    } else {
      spdlog::info("{}: stopping", strsignal(sig));
      break;
    }
  }

  server_->stop();
  if (reclaimer_) reclaimer_->stop();
  fault_loop_->stop();
  // Evicted pages are read back in before the arena is handed back to the kernel, so
  // the applications go on correctly without us.
  for (const auto& client : registry_.snapshot()) {
    if (!restore_all(*client, swap_.get())) {
      spdlog::critical(
          "client {}: pages remain in swap; its arena stays registered and its "
          "faults on them wait for a new extmemd",
          client->identity().pid);
      registry_.remove(client->id());
      continue;
    }
    client->unregister_arena();
    spdlog::info("client {} handed back: {}", client->identity().pid, client->describe());
    registry_.remove(client->id());
  }
  spdlog::info("extmemd stopped");
  return {};
}

void Daemon::log_stats() {
  auto clients = registry_.snapshot();
  uint64_t resident = 0, swapped = 0, evictions = 0, major = 0;
  for (const auto& client : clients) {
    spdlog::info("stats: {}", client->describe());
    std::lock_guard lock(client->mu);
    resident += client->pages.resident_pages();
    swapped += client->pages.swapped_pages();
    evictions += client->counters().evictions.load();
    major += client->counters().major_faults.load();
  }
  char resident_text[32], swapped_text[32];
  std::string swap_use = "none";
  if (swap_) {
    swap_use = fmt::format("{} of {} clusters", swap_->clusters_used(), swap_->clusters_total());
  }
  spdlog::info(
      "stats: total clients={} resident={} swapped={} evictions={} major_faults={} "
      "swap_clusters_used={}",
      clients.size(), format_size(resident * kPageSize, resident_text, 32),
      format_size(swapped * kPageSize, swapped_text, 32), evictions, major, swap_use);
}

}  // namespace extmem::daemon
