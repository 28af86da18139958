// extmemd: the client server, the fault loop and the clients they share.
#pragma once

#include "client/registry.hpp"
#include "config/options.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_loop.hpp"
#include "server/server.hpp"

namespace extmem::daemon {

class Daemon {
 public:
  explicit Daemon(Options options);

  // Serves until SIGTERM or SIGINT. Expects those signals (and SIGHUP, SIGUSR1) to be
  // blocked in every thread, which block_daemon_signals() does.
  Result<void> run();
  // Logs one line per client and a total.
  void log_stats();

 private:
  Options options_;
  ClientRegistry registry_;
  FaultLoop fault_loop_;
  Server server_;
};

// Blocks the signals the daemon waits for; call before any thread starts.
void block_daemon_signals();

}  // namespace extmem::daemon
