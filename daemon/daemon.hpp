// extmemd: the client server, the fault loop, reclaim, the swap device they share, and
// the control plane.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/registry.hpp"
#include "config/options.hpp"
#include "control/control_service.hpp"
#include "extmem/kernel/probe.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_loop.hpp"
#include "reclaim/reclaimer.hpp"
#include "server/server.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

class Daemon {
 public:
  // `args`: the command line, read again with the config file on SIGHUP.
  Daemon(Options options, std::vector<std::string> args, const kernel::Capabilities& caps,
         std::string version);

  // Serves until SIGTERM or SIGINT. Expects those signals (and SIGHUP, SIGUSR1) to be
  // blocked in every thread, which block_daemon_signals() does.
  Result<void> run();
  // Logs one line per client and a total.
  void log_stats();

 private:
  // Once a second: rates, the service manager's watchdog and status line.
  void tick();
  // SIGHUP: reads the config again; a bad file changes nothing.
  void reload();
  void stop_serving();

  Options options_;
  // Swapped on reload, read by handshakes: options_ itself only changes where that is safe.
  ClientAccess client_access_;
  std::vector<std::string> args_;
  const kernel::Capabilities& caps_;
  std::string version_;
  bool track_access_;
  ClientRegistry registry_;
  std::unique_ptr<SwapDevice> swap_;
  std::unique_ptr<Governor> governor_;
  std::unique_ptr<Reclaimer> reclaimer_;
  std::unique_ptr<FaultLoop> fault_loop_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<ControlServer> control_;
};

// Blocks the signals the daemon waits for; call before any thread starts.
void block_daemon_signals();

}  // namespace extmem::daemon
