// The paging threads. Each serves the clients assigned to it (the least loaded thread
// takes a new one) from its own io_uring (PagingRing): polls of each client's
// userfaultfd, socket, pidfd and hint doorbell, and the client's swap-in reads, all
// completing to the one thread. The userfaultfd poll is one-shot, re-armed after a drain
// (queued, so it goes in with the thread's next wait), so the client's events are
// handled in the order the kernel queued them.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "client/registry.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_handler.hpp"
#include "fault/paging_ring.hpp"

namespace extmem::daemon {

class FaultLoop {
 public:
  FaultLoop(ClientRegistry& registry, unsigned threads, Pager pager);
  ~FaultLoop();
  FaultLoop(const FaultLoop&) = delete;
  FaultLoop& operator=(const FaultLoop&) = delete;

  Result<void> start();
  void stop();
  // A paging thread's io_uring failed for good: that thread is gone and its clients'
  // faults go unserved, so the daemon must stop (handing them back) and be restarted.
  bool failed() const;
  // Tests only (EXTMEMD_TEST_FAIL_PAGING_RING): the first ring to finish a swap-in read
  // then fails as if io_uring_enter had.
  void inject_ring_failure() { inject_ring_failure_ = true; }
  // Starts serving a registered client.
  Result<void> add(const std::shared_ptr<Client>& client);
  // Stops serving the client; the last holder closes its descriptors.
  void release(uint64_t id, const char* reason);

 private:
  void run(PagingRing& ring);
  // Starts polling the descriptors of a client added to `ring` (on its thread).
  void arm(PagingRing& ring, const std::shared_ptr<Client>& client);
  // Re-arms one of the client's one-shot polls; false (and the client released) if it
  // cannot.
  bool rearm(PagingRing& ring, const std::shared_ptr<Client>& client, PagingRing::Kind kind);
  // Reads and handles up to `batches` batches of the client's userfaultfd events; false
  // (and the client released) if the userfaultfd failed.
  bool read_uffd(const std::shared_ptr<Client>& client, int batches);
  // The poll of the client's userfaultfd completed: handles its events and re-arms it.
  void drain_uffd(PagingRing& ring, const std::shared_ptr<Client>& client);
  // Between mapping finished reads: handles the faults the client queued meanwhile and
  // submits the reads they start.
  void serve_queued_faults(PagingRing& ring, const std::shared_ptr<Client>& client);
  void on_socket(PagingRing& ring, const std::shared_ptr<Client>& client);
  // Serves one request the client sent after registration; false ends the client.
  bool on_request(const std::shared_ptr<Client>& client, std::span<const std::byte> frame,
                  std::span<kernel::UniqueFd> fds, size_t fd_count);
  Result<void> attach_hints(const std::shared_ptr<Client>& client, const std::byte* payload,
                            size_t len, std::span<kernel::UniqueFd> fds, size_t fd_count);

  ClientRegistry& registry_;
  unsigned thread_count_;
  Pager pager_;
  std::vector<std::unique_ptr<PagingRing>> rings_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> inject_ring_failure_{false};
};

}  // namespace extmem::daemon
