#include "daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

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

Daemon::Daemon(Options options)
    : options_(std::move(options)),
      fault_loop_(registry_, options_.fault_threads),
      server_(options_, registry_, fault_loop_) {}

Result<void> Daemon::run() {
  if (auto started = fault_loop_.start(); !started) return started;
  int inherited = inherited_listen_fd();
  if (auto started = server_.start(inherited); !started) return started;
  if (inherited >= 0) {
    spdlog::info("extmemd serving clients on the socket passed by the service manager");
  } else {
    spdlog::info("extmemd serving clients on {}", options_.socket_path);
  }

  sigset_t set = daemon_signals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      log_stats();
    } else if (sig == SIGHUP) {
      spdlog::info("SIGHUP: nothing to reload");
    } else {
      spdlog::info("{}: stopping", strsignal(sig));
      break;
    }
  }

  server_.stop();
  fault_loop_.stop();
  // Every page of every client is resident, so handing the arenas back to the kernel
  // leaves the applications running correctly without us.
  for (const auto& client : registry_.snapshot()) {
    client->unregister_arena();
    spdlog::info("client {} handed back: {}", client->identity().pid, client->describe());
    registry_.remove(client->id());
  }
  spdlog::info("extmemd stopped");
  return {};
}

void Daemon::log_stats() {
  auto clients = registry_.snapshot();
  uint64_t first_touch = 0, zero_filled = 0;
  for (const auto& client : clients) {
    spdlog::info("stats: {}", client->describe());
    first_touch += client->counters().first_touch_faults.load();
    zero_filled += client->counters().zero_filled_pages.load();
  }
  spdlog::info("stats: total clients={} first_touch_faults={} zero_filled_pages={}",
               clients.size(), first_touch, zero_filled);
}

}  // namespace extmem::daemon
