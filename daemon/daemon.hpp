// extmemd: the client server, the fault loop, reclaim and the swap device they share.
#pragma once

#include <memory>

#include "client/registry.hpp"
#include "config/options.hpp"
#include "extmem/kernel/probe.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_loop.hpp"
#include "reclaim/reclaimer.hpp"
#include "server/server.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

class Daemon {
 public:
  Daemon(Options options, const kernel::Capabilities& caps);

  // Serves until SIGTERM or SIGINT. Expects those signals (and SIGHUP, SIGUSR1) to be
  // blocked in every thread, which block_daemon_signals() does.
  Result<void> run();
  // Logs one line per client and a total.
  void log_stats();

 private:
  Options options_;
  bool track_access_;
  ClientRegistry registry_;
  std::unique_ptr<SwapDevice> swap_;
  std::unique_ptr<Reclaimer> reclaimer_;
  std::unique_ptr<FaultLoop> fault_loop_;
  std::unique_ptr<Server> server_;
};

// Blocks the signals the daemon waits for; call before any thread starts.
void block_daemon_signals();

}  // namespace extmem::daemon
