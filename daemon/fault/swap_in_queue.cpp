#include "fault/swap_in_queue.hpp"

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "paging_thread.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

namespace {
// The tag of the no-op that wakes the reaper to stop; reads are tagged by address.
constexpr uint64_t kStopTag = 0;
}  // namespace

Result<std::unique_ptr<SwapInQueue>> SwapInQueue::start(unsigned entries, Pager pager) {
  auto ring = kernel::IoRing::create(entries);
  if (!ring) return ring.error();
  std::unique_ptr<SwapInQueue> queue(new SwapInQueue(std::move(*ring), pager));
  queue->reaper_ = std::thread([q = queue.get()] {
    enter_paging_thread("extmemd-swapin", q->pager_.thread_nice);
    q->run();
  });
  return queue;
}

SwapInQueue::SwapInQueue(kernel::IoRing ring, Pager pager)
    : ring_(std::move(ring)), pager_(pager) {}

SwapInQueue::~SwapInQueue() {
  stop();
}

std::unique_ptr<SwapIn> SwapInQueue::submit(std::unique_ptr<SwapIn> read) {
  std::lock_guard lock(submit_mu_);
  if (stopping_) return read;
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  auto started = ring_.submit(read->request, reinterpret_cast<uint64_t>(read.get()));
  if (!started) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (started.error().code() != EBUSY) {
      spdlog::error("swap-in queue: {}; reading synchronously from now on",
                    started.error().message());
      stopping_ = true;
    }
    return read;
  }
  read.release();  // the reaper owns it now
  return nullptr;
}

void SwapInQueue::stop() {
  {
    std::lock_guard lock(submit_mu_);
    if (!reaper_.joinable()) return;
    stopping_ = true;
    // The reaper leaves once it has seen this and finished every read in flight. A full
    // submission ring (EBUSY) empties as the kernel takes the entries.
    auto nop = ring_.submit_nop(kStopTag);
    for (int tries = 0; !nop && nop.error().code() == EBUSY && tries < 1000; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      nop = ring_.submit_nop(kStopTag);
    }
    if (!nop) {
      spdlog::critical("swap-in queue: cannot stop its thread: {}", nop.error().message());
      reaper_.detach();
      return;
    }
  }
  reaper_.join();
}

void SwapInQueue::run() {
  bool stop_asked = false;
  while (!stop_asked || in_flight_.load(std::memory_order_relaxed) > 0) {
    auto done = ring_.wait_completion();
    if (!done) {
      spdlog::critical("swap-in queue: {}", done.error().message());
      return;
    }
    if (done->tag == kStopTag) {
      stop_asked = true;
      continue;
    }
    std::unique_ptr<SwapIn> read(reinterpret_cast<SwapIn*>(done->tag));
    const int32_t result = pager_.swap->completed(false, done->result);
    finish_swap_in(std::move(read), result, pager_);
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace extmem::daemon
