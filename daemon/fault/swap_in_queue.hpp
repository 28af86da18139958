// Swap-in reads in flight. A client's events are handled by one fault thread at a time,
// in order, but its swap-in reads do not hold that thread: they are started here and
// finished by the queue's own thread as each completes. So the faults of a client's other
// threads are read while earlier reads are in flight, and random faults of two threads
// reach the device together instead of one after the other.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "extmem/kernel/io_ring.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_handler.hpp"

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
  std::unique_ptr<unsigned char, decltype(&free)> buffer{nullptr, &free};
  kernel::IoRequest request{};
  int32_t result = 0;  // once completed: bytes read, or -errno
};

class SwapInQueue {
 public:
  static Result<std::unique_ptr<SwapInQueue>> start(unsigned entries, Pager pager);
  ~SwapInQueue();
  SwapInQueue(const SwapInQueue&) = delete;
  SwapInQueue& operator=(const SwapInQueue&) = delete;

  // Starts `read`. Gives it back when it cannot (the queue is full, stopped or its ring
  // failed): the caller then reads it synchronously. Called with the client's lock held.
  std::unique_ptr<SwapIn> submit(std::unique_ptr<SwapIn> read);
  // Waits for every read in flight to finish, then ends the queue's thread.
  void stop();

 private:
  SwapInQueue(kernel::IoRing ring, Pager pager);
  void run();

  kernel::IoRing ring_;
  Pager pager_;
  std::mutex submit_mu_;
  bool stopping_ = false;               // under submit_mu_
  std::atomic<uint64_t> in_flight_{0};  // reads submitted and not yet finished
  std::thread reaper_;
};

}  // namespace extmem::daemon
