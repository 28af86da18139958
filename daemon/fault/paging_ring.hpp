// The io_uring of one paging thread. It polls the descriptors of the clients the thread
// serves (userfaultfd, socket, pidfd, hint doorbell) and carries their swap-in reads, so
// one wait, one io_uring_enter that also submits the reads and poll re-arms queued since
// the last, brings the thread both new faults and finished reads: no reaper thread and no
// epoll round trip per fault. A client's reads do not hold its thread: the faults of its
// other threads are read while earlier reads are in flight, so random faults of two
// threads reach the device together. Reads started by other threads (the reclaimer's
// WILLNEED prefetch) are submitted at once and still finished by the owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "extmem/kernel/io_ring.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_handler.hpp"
#include "swap/io_buffers.hpp"

namespace extmem::daemon {

class Client;

// A fault waiting for a page of a read.
struct WaitingFault {
  uintptr_t addr;
  uint64_t page;
  std::chrono::steady_clock::time_point started;
};

// One read of evicted neighbours: [first, first+pages) of one chunk and cluster, mapped
// contiguously at addr. Its pages are marked in the client's `reading` with its id until
// it finishes; anything that frees them meanwhile clears the mark, so a read never maps
// what it read for pages that changed under it.
struct SwapIn {
  std::shared_ptr<Client> client;
  uint64_t id = 0;
  uint64_t first = 0;
  uint64_t pages = 0;
  uint32_t cluster = 0;
  uintptr_t addr = 0;
  bool dirty = false;  // for a write fault: mapped writable, its slots freed
  // A read-ahead run of thread `tid`'s stream: one of its pages may be left as a marker.
  bool readahead = false;
  uint32_t tid = 0;
  std::vector<WaitingFault> faults;  // faults[0] is the one it was read for, at `first`
  IoBuffers::Buffer buffer;
  kernel::IoRequest request{};
  int32_t result = 0;  // once completed: bytes read, or -errno
};

class PagingRing {
 public:
  // What a completion is for. A read is tagged with its SwapIn's address (aligned, so its
  // low bits are 0); anything else with a client id and its kind in the low 3 bits.
  enum class Kind : uint64_t {
    kRead = 0,
    kUffd = 1,
    kSocket = 2,
    kPidfd = 3,
    kDoorbell = 4,
    kWake = 5,    // a no-op: look at the clients added and at stop
    kIgnore = 6,  // the answer to a poll removal
  };
  static uint64_t tag(uint64_t client_id, Kind kind) {
    return client_id << 3 | static_cast<uint64_t>(kind);
  }
  static Kind kind_of(uint64_t tag) { return static_cast<Kind>(tag & 7); }
  static uint64_t client_of(uint64_t tag) { return tag >> 3; }

  // A ring for up to `reads` swap-in reads in flight (more are read synchronously).
  static Result<std::unique_ptr<PagingRing>> create(unsigned reads, Pager pager);
  PagingRing(const PagingRing&) = delete;
  PagingRing& operator=(const PagingRing&) = delete;

  // Makes the calling thread the ring's owner: it alone waits and finishes reads, and its
  // own requests go in with its next wait.
  void become_owner();

  // Starts `read` (any thread, the client's lock held). Gives it back when it cannot (too
  // many in flight, stopping, or the ring failed): the caller then reads it synchronously.
  std::unique_ptr<SwapIn> submit(std::unique_ptr<SwapIn> read);
  Result<void> poll(int fd, uint32_t events, bool multishot, uint64_t tag);
  // Removes the poll tagged `tag`, if it is still armed.
  void cancel_poll(uint64_t tag);
  // Wakes the owner (a kWake completion).
  Result<void> wake();

  // Owner only: submits what it queued and waits for completions.
  Result<size_t> wait(std::span<kernel::IoRing::Completion> out) {
    return ring_.wait_completions(out);
  }
  // Owner only: submits what it queued, without waiting.
  Result<void> submit_queued() { return ring_.submit_queued(); }
  // Owner only: maps a completed read and wakes its faults; returns the read's client.
  std::shared_ptr<Client> finish_read(const kernel::IoRing::Completion& done);
  // Owner only: refuses new reads from now on; true once none is in flight.
  bool stop_reads();

  // Clients served by the ring's thread, for assigning new ones.
  std::atomic<unsigned> clients{0};
  // Its thread left after the ring failed for good.
  std::atomic<bool> failed{false};
  // Clients added by other threads, whose polls the owner submits itself.
  std::mutex added_mu;
  std::vector<std::shared_ptr<Client>> added;

 private:
  PagingRing(kernel::IoRing ring, unsigned reads, Pager pager);
  kernel::IoRing::Submit submit_mode() const;

  kernel::IoRing ring_;
  unsigned max_reads_;
  Pager pager_;
  std::mutex reads_mu_;
  bool refusing_ = false;   // under reads_mu_
  uint64_t in_flight_ = 0;  // under reads_mu_: reads submitted and not yet finished
};

}  // namespace extmem::daemon
