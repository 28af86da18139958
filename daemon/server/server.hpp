// The client socket: accepts applications, runs the handshake, and hands registered
// clients to the fault loop. Each handshake runs on its own short-lived thread with a
// timeout, so a stalled or hostile client delays nobody else.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "budget/governor.hpp"
#include "client/registry.hpp"
#include "config/options.hpp"
#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_loop.hpp"
#include "server/client_checks.hpp"

namespace extmem::daemon {

class Server {
 public:
  // `access` is read at every handshake; its owner may update it at any time.
  // `kernel_uffd_features`: what UFFDIO_API offers on this kernel (from the probe), so
  // optional features are asked for only where they exist.
  Server(const Options& options, const ClientAccess& access, ClientRegistry& registry,
         Governor& governor, FaultLoop& fault_loop, SwapDevice* swap,
         uint64_t kernel_uffd_features);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on options.socket_path, or adopts an already listening socket (socket
  // activation) when `inherited_fd` >= 0.
  Result<void> start(int inherited_fd = -1);
  void stop();

 private:
  void accept_loop();
  void handshake(kernel::UniqueFd connection);
  Result<std::shared_ptr<Client>> register_client(int connection, kernel::UniqueFd& owned);

  const Options& options_;
  const ClientAccess& access_;
  ClientRegistry& registry_;
  Governor& governor_;
  FaultLoop& fault_loop_;
  SwapDevice* swap_;
  uint64_t uffd_features_;
  kernel::UniqueFd listen_fd_;
  kernel::UniqueFd stop_event_;
  std::thread acceptor_;
  std::atomic<int> handshakes_in_flight_{0};
  bool owns_socket_path_ = false;
};

}  // namespace extmem::daemon
