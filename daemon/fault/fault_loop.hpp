// The fault-handling threads: one epoll set over every client's userfaultfd, socket and
// pidfd. A client's userfaultfd is armed one-shot, so one thread at a time drains it and
// its events are handled in the order the kernel queued them.
#pragma once

#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "client/registry.hpp"
#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_handler.hpp"

namespace extmem::daemon {

class FaultLoop {
 public:
  FaultLoop(ClientRegistry& registry, unsigned threads, Pager pager);
  ~FaultLoop();
  FaultLoop(const FaultLoop&) = delete;
  FaultLoop& operator=(const FaultLoop&) = delete;

  Result<void> start();
  void stop();
  // Starts serving a registered client.
  Result<void> add(const std::shared_ptr<Client>& client);
  // Stops serving the client; the last holder closes its descriptors.
  void release(uint64_t id, const char* reason);

 private:
  enum class Source : uint64_t { kUffd = 0, kSocket = 1, kPidfd = 2, kDoorbell = 3 };
  void run();
  void drain_uffd(const std::shared_ptr<Client>& client);
  void on_socket(const std::shared_ptr<Client>& client);
  // Serves one request the client sent after registration; false ends the client.
  bool on_request(const std::shared_ptr<Client>& client, std::span<const std::byte> frame,
                  std::span<kernel::UniqueFd> fds, size_t fd_count);
  Result<void> attach_hints(const std::shared_ptr<Client>& client, const std::byte* payload,
                            size_t len, std::span<kernel::UniqueFd> fds, size_t fd_count);
  void on_doorbell(const std::shared_ptr<Client>& client);
  void rearm(int fd, uint64_t token);

  ClientRegistry& registry_;
  unsigned thread_count_;
  Pager pager_;
  kernel::UniqueFd epoll_;
  kernel::UniqueFd stop_event_;
  std::vector<std::thread> threads_;
};

}  // namespace extmem::daemon
