#include "fault/paging_ring.hpp"

#include <spdlog/spdlog.h>

#include "swap/swap_device.hpp"

namespace extmem::daemon {

namespace {

// The ring the calling thread owns, if any.
thread_local const PagingRing* owned_ring = nullptr;

// Completions waiting to be reaped: polls need no submission entry while armed, so a
// ring serving many clients holds more of them than it has entries.
constexpr unsigned kCompletionEntries = 4096;

}  // namespace

Result<std::unique_ptr<PagingRing>> PagingRing::create(unsigned reads, Pager pager) {
  auto ring = kernel::IoRing::create(reads, kCompletionEntries);
  if (!ring) return ring.error();
  return std::unique_ptr<PagingRing>(new PagingRing(std::move(*ring), reads, pager));
}

PagingRing::PagingRing(kernel::IoRing ring, unsigned reads, Pager pager)
    : ring_(std::move(ring)), max_reads_(reads), pager_(pager) {}

void PagingRing::become_owner() {
  owned_ring = this;
}

kernel::IoRing::Submit PagingRing::submit_mode() const {
  // The owner's requests start with its next wait, one system call for all; another
  // thread's must start now, since the owner may be asleep.
  return owned_ring == this ? kernel::IoRing::Submit::kWithNextWait : kernel::IoRing::Submit::kNow;
}

std::unique_ptr<SwapIn> PagingRing::submit(std::unique_ptr<SwapIn> read) {
  std::lock_guard lock(reads_mu_);
  if (refusing_ || in_flight_ >= max_reads_) return read;
  auto started =
      ring_.queue_read(read->request, reinterpret_cast<uint64_t>(read.get()), submit_mode());
  if (!started) {
    if (started.error().code() != EBUSY) {
      spdlog::error("paging ring: {}; reading synchronously from now on",
                    started.error().message());
      refusing_ = true;
    }
    return read;
  }
  ++in_flight_;
  read.release();  // finish_read owns it now
  return nullptr;
}

Result<void> PagingRing::poll(int fd, uint32_t events, bool multishot, uint64_t tag) {
  return ring_.queue_poll(fd, events, multishot, tag, submit_mode());
}

void PagingRing::cancel_poll(uint64_t tag) {
  auto removed = ring_.queue_poll_remove(tag, PagingRing::tag(0, Kind::kIgnore), submit_mode());
  if (!removed) spdlog::warn("paging ring: removing a poll: {}", removed.error().message());
}

Result<void> PagingRing::wake() {
  return ring_.queue_nop(tag(0, Kind::kWake), kernel::IoRing::Submit::kNow);
}

std::shared_ptr<Client> PagingRing::finish_read(const kernel::IoRing::Completion& done) {
  std::unique_ptr<SwapIn> read(reinterpret_cast<SwapIn*>(done.tag));
  std::shared_ptr<Client> client = read->client;
  const int32_t result = pager_.swap->completed(false, done.result);
  finish_swap_in(std::move(read), result, pager_);
  std::lock_guard lock(reads_mu_);
  --in_flight_;
  return client;
}

bool PagingRing::stop_reads() {
  std::lock_guard lock(reads_mu_);
  refusing_ = true;
  return in_flight_ == 0;
}

}  // namespace extmem::daemon
