// Background reclaim: keeps every client's resident pages between its watermarks by
// evicting the pages its policy chooses. Faults that find their client at the limit wake
// it and wait (direct reclaim); the reclaimer never waits on a fault, so there is no
// cycle to deadlock on. While faults wait, a second thread evicts too, so that a client
// writing faster than one batch at a time can be written out is served by two batches at
// once (one copying out while the other's writes are on the device).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "budget/governor.hpp"
#include "client/registry.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

class Reclaimer {
 public:
  // `track_access`: reset access bits with MADV_PAGEOUT (only valid while kernel swap is
  // off: with it on, PAGEOUT would swap the pages out itself).
  Reclaimer(ClientRegistry& registry, Governor& governor, SwapDevice& swap, bool track_access);
  ~Reclaimer();
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Starts the reclaim threads at nice value `nice` (see paging_thread.hpp).
  void start(int nice);
  void stop();
  void wake();
  // True while the swap device has no free cluster.
  bool swap_full() const { return swap_full_.load(std::memory_order_relaxed); }
  // True while evictions find no free cluster or every swap write fails: waiting for
  // reclaim would not make room.
  bool cannot_evict() const {
    return swap_full() || writes_failing_.load(std::memory_order_relaxed);
  }

  // Watermarks, in pages, for a limit: reclaim starts above high and stops at low.
  static uint64_t high_watermark(uint64_t limit);
  static uint64_t low_watermark(uint64_t limit);

 private:
  struct Victim {
    uint64_t page;
    uintptr_t addr;
    uint32_t cluster;
    bool failed = false;
    bool zero = false;   // all zeros: dropped, not written
    bool clean = false;  // its swap slot already holds its data: not written
  };

  // Waits for a wake-up or the period; false once stopping. `seen`: the caller's count
  // of wake-ups taken.
  bool wait_for_work(uint64_t* seen);
  void run();
  // The second thread's loop: evictions for clients whose faults wait for room.
  void assist();
  void evict_to_low_watermark(Client& client);
  void settle_evicted(Client& client, const Victim& v);
  // Evicts up to a batch of pages; returns how many.
  uint64_t evict_batch(Client& client, uint64_t want);
  void reset_access(Client& client, const std::vector<uint64_t>& pages);

  ClientRegistry& registry_;
  Governor& governor_;
  SwapDevice& swap_;
  bool track_access_;
  std::mutex mu_;
  std::condition_variable wakeup_;
  uint64_t wakes_ = 0;  // under mu_
  bool stopping_ = false;
  std::atomic<bool> swap_full_{false};
  std::atomic<bool> writes_failing_{false};
  std::thread thread_;
  std::thread assistant_;
};

}  // namespace extmem::daemon
