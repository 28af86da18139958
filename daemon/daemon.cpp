#include "daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "extmem/kernel/capabilities.hpp"
#include "extmem/kernel/sd_notify.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/units.hpp"
#include "recovery/recovery.hpp"

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

// Tells the service manager (Type=notify) how we are; a no-op when not run by one.
void notify_service_manager(const std::string& state) {
  if (auto sent = kernel::sd_notify(state); !sent) {
    spdlog::debug("sd_notify: {}", sent.error().message());
  }
}

}  // namespace

void block_daemon_signals() {
  sigset_t set = daemon_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Daemon::Daemon(Options options, std::vector<std::string> args, const kernel::Capabilities& caps,
               std::string version)
    : options_(std::move(options)),
      client_access_(options_),
      args_(std::move(args)),
      caps_(caps),
      version_(std::move(version)),
      track_access_(!caps.kernel_swap_on) {}

Result<void> Daemon::run() {
  const auto started = std::chrono::steady_clock::now();
  Pager pager;
  pager.thread_nice = options_.paging_nice;
  uint64_t uffd_features = caps_.uffd_features;
  if (getenv("EXTMEMD_TEST_NO_POISON") != nullptr) {
    uffd_features &= ~kernel::kFeaturePoison;
    spdlog::warn("EXTMEMD_TEST_NO_POISON: UFFDIO_POISON is not used (a test setting)");
  }
  if (!options_.swap_path.empty()) {
    auto swap = SwapDevice::open(options_.swap_path, options_.swap_size);
    if (!swap) return swap.error();
    swap_ = std::move(*swap);
    if (const char* fail = getenv("EXTMEMD_TEST_FAIL_SWAP"); fail != nullptr) {
      const std::string which = fail;
      const char* while_exists = getenv("EXTMEMD_TEST_FAIL_SWAP_WHILE");
      swap_->inject_failures(which == "read"    ? SwapDevice::Injected::kReads
                             : which == "write" ? SwapDevice::Injected::kWrites
                                                : SwapDevice::Injected::kNone,
                             while_exists != nullptr ? while_exists : "");
      spdlog::warn("EXTMEMD_TEST_FAIL_SWAP={}: every swap {} fails{}{} (a test setting)", which,
                   which, while_exists != nullptr ? " while this file exists: " : "",
                   while_exists != nullptr ? while_exists : "");
    }
  }
  governor_ = std::make_unique<Governor>(registry_, swap_ != nullptr);
  governor_->configure(options_);
  if (swap_) {
    reclaimer_ = std::make_unique<Reclaimer>(registry_, *governor_, *swap_, track_access_);
    reclaimer_->start(options_.paging_nice);
    pager.swap = swap_.get();
    pager.reclaimer = reclaimer_.get();
    pager.can_poison = (uffd_features & kernel::kFeaturePoison) != 0;
    char size[32];
    spdlog::info("swap {} ({}); access tracking {}", swap_->path(),
                 format_size(swap_->size(), size, sizeof(size)),
                 track_access_ ? "by MADV_PAGEOUT resets" : "off (kernel swap is on)");
  } else {
    spdlog::info("no swap device (--swap): DRAM limits are not enforced");
  }
  if (options_.budget != 0) {
    char budget[32];
    spdlog::info("global DRAM budget {}", format_size(options_.budget, budget, sizeof(budget)));
  }
  fault_loop_ = std::make_unique<FaultLoop>(registry_, options_.fault_threads, pager);
  if (getenv("EXTMEMD_TEST_FAIL_PAGING_RING") != nullptr) {
    fault_loop_->inject_ring_failure();
    spdlog::warn(
        "EXTMEMD_TEST_FAIL_PAGING_RING: a paging ring fails after its first read "
        "(a test setting)");
  }
  server_ = std::make_unique<Server>(options_, client_access_, registry_, *governor_, *fault_loop_,
                                     swap_.get(), uffd_features);
  control_ = std::make_unique<ControlServer>(ControlContext{
      registry_, *governor_, swap_.get(), reclaimer_.get(), caps_, options_, version_, started});
  if (auto started_loop = fault_loop_->start(); !started_loop) return started_loop;
  if (swap_) {
    // Clients of a daemon that died wait for us; take them back before anyone new.
    if (size_t n = recover_clients(registry_, *governor_, *fault_loop_, *swap_); n != 0) {
      spdlog::info("took back {} client{} of a previous extmemd", n, n == 1 ? "" : "s");
    }
  }
  const int inherited = inherited_listen_fd();
  for (const std::string* path : {&options_.control_path, &options_.socket_path}) {
    if (path == &options_.socket_path && inherited >= 0) continue;
    if (auto made = kernel::make_socket_directory(path->c_str(), 0755); !made) return made;
  }
  if (auto control = control_->start(options_); !control) return control;
  // The control socket has its group (CAP_CHOWN), the swap is open. Before the acceptor
  // starts, so the drop's signal interrupts no handshake's timed receive.
  auto dropped = kernel::drop_capabilities(kernel::serving_capabilities());
  if (!dropped) return dropped.error();
  spdlog::info("capabilities: {}", dropped->describe());
  if (auto listening = server_->start(inherited); !listening) return listening;
  if (inherited >= 0) {
    spdlog::info("serving clients on the socket passed by the service manager; control on {}",
                 options_.control_path);
  } else {
    spdlog::info("serving clients on {}; control on {}", options_.socket_path,
                 options_.control_path);
  }
  notify_service_manager("READY=1\nSTATUS=serving, no clients yet");

  sigset_t set = daemon_signals();
  const auto watchdog = kernel::sd_watchdog_interval();
  // Ticks once a second, or at half the watchdog interval when that is shorter.
  auto period = std::chrono::microseconds(1000000);
  if (watchdog) period = std::min(period, *watchdog / 2);
  const timespec tick_period = {static_cast<time_t>(period.count() / 1000000),
                                static_cast<long>(period.count() % 1000000 * 1000)};
  auto last_stats_log = std::chrono::steady_clock::now();
  for (;;) {
    int sig = sigtimedwait(&set, nullptr, &tick_period);
    if (sig < 0) {
      if (fault_loop_->failed()) break;
      tick();
      const auto now = std::chrono::steady_clock::now();
      if (options_.stats_interval != 0 &&
          now - last_stats_log >= std::chrono::seconds(options_.stats_interval)) {
        log_stats();
        last_stats_log = now;
      }
      continue;
    }
    if (sig == SIGUSR1) {
      log_stats();
    } else if (sig == SIGHUP) {
      notify_service_manager("RELOADING=1");
      reload();
      notify_service_manager("READY=1");
    } else {
      spdlog::info("{}: stopping", strsignal(sig));
      break;
    }
  }
  notify_service_manager("STOPPING=1\nSTATUS=stopping: reading swapped pages back");
  stop_serving();
  // A non-zero exit: the service manager restarts us (Restart=on-failure).
  if (fault_loop_->failed()) return Error::make(EIO, "a paging thread failed");
  return {};
}

void Daemon::tick() {
  const auto now = std::chrono::steady_clock::now();
  auto clients = registry_.snapshot();
  for (const auto& client : clients) {
    client->sample_rates(now);
    retry_stalled_reads(*client);
  }
  const MemoryTotals totals = memory_totals(clients);
  char resident_text[32], swapped_text[32];
  notify_service_manager(
      fmt::format("WATCHDOG=1\nSTATUS={} client{}, {} resident, {} swapped", clients.size(),
                  clients.size() == 1 ? "" : "s",
                  format_size(totals.resident_pages * kPageSize, resident_text, 32),
                  format_size(totals.swapped_pages * kPageSize, swapped_text, 32)));
}

void Daemon::reload() {
  auto reloaded = load_options(args_);
  if (!reloaded) {
    spdlog::error("reload: {}; keeping the running configuration", reloaded.error().context());
    return;
  }
  for (const auto& key : restart_required_changes(options_, *reloaded)) {
    spdlog::warn("reload: {} changed; the change takes effect at the next restart", key);
  }
  // Only what can change live; the rest of options_ stays as it started, since other
  // threads read it.
  governor_->configure(*reloaded);
  governor_->rebalance();
  client_access_.update(*reloaded);
  options_.stats_interval = reloaded->stats_interval;
  options_.log_level = reloaded->log_level;
  spdlog::set_level(spdlog::level::from_str(options_.log_level));
  spdlog::info("reloaded {}: {} rule{}",
               reloaded->config_path.empty() ? "the command line" : reloaded->config_path,
               reloaded->rules.size(), reloaded->rules.size() == 1 ? "" : "s");
}

void Daemon::stop_serving() {
  control_->stop();
  server_->stop();
  if (reclaimer_) reclaimer_->stop();
  // Its threads finish the reads in flight before they leave.
  fault_loop_->stop();
  // Evicted pages are read back in before the arena is handed back to the kernel, so
  // the applications go on correctly without us.
  for (const auto& client : registry_.snapshot()) {
    if (!restore_all(*client, swap_.get())) {
      spdlog::critical(
          "client {}: pages remain in swap; its arena stays registered and its "
          "faults on them wait for a new extmemd",
          client->identity().pid);
      client->keep_record();
      registry_.remove(client->id());
      continue;
    }
    client->unregister_arena();
    spdlog::info("client {} handed back: {}", client->identity().pid, client->describe());
    registry_.remove(client->id());
  }
  spdlog::info("extmemd stopped");
}

void Daemon::log_stats() {
  auto clients = registry_.snapshot();
  uint64_t evictions = 0, major = 0;
  for (const auto& client : clients) {
    spdlog::info("stats: {}", client->describe());
    evictions += client->counters().evictions.load();
    major += client->counters().major_faults.load();
  }
  const MemoryTotals totals = memory_totals(clients);
  const uint64_t resident = totals.resident_pages, swapped = totals.swapped_pages;
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
