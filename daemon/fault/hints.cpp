#include "fault/hints.hpp"

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include "extmem/kernel/memfd.hpp"
#include "reclaim/reclaimer.hpp"

namespace extmem::daemon {

namespace {

using hints::Hint;

// Invalid hints logged per client at most, so a scribbling client cannot flood the log.
constexpr uint64_t kLoggedInvalid = 10;

uint64_t refuse(Client& client, const hints::HintEntry& e, const char* why) {
  if (client.counters().hints_invalid++ < kLoggedInvalid) {
    spdlog::warn("client {}: invalid hint {} ({}) on {:#x}+{:#x}: {}", client.identity().pid,
                 e.hint, hints::hint_name(e.hint), e.addr, e.len, why);
  }
  return 1;
}

AccessPattern pattern_of(uint32_t hint) {
  switch (static_cast<Hint>(hint)) {
    case Hint::kSequential:
      return AccessPattern::kSequential;
    case Hint::kRandom:
      return AccessPattern::kRandom;
    default:
      return AccessPattern::kNormal;
  }
}

// Tells the policy which resident pages of [first, first+count) are cold, one run at a
// time: the policy then never walks the (possibly huge) range itself.
void mark_cold(Client& client, uint64_t first, uint64_t count, uint64_t* resident) {
  uint64_t run_first = 0, run_pages = 0;
  auto flush = [&] {
    if (run_pages != 0) client.policy->on_hint(run_first, run_pages, PageHint::kCold);
    *resident += run_pages;
    run_pages = 0;
  };
  client.pages.for_each_nonempty(first, count, [&](uint64_t page, PageState state) {
    if (!is_resident(state)) return;
    if (run_pages != 0 && run_first + run_pages == page) {
      ++run_pages;
      return;
    }
    flush();
    run_first = page;
    run_pages = 1;
  });
  flush();
}

// Applies one hint; returns the pages of arena it walked (the drain's work measure).
uint64_t apply(Client& client, const hints::HintEntry& e, Pager& pager) {
  if (e.hint > hints::kMaxHint) return refuse(client, e, "unknown hint");
  // DONTNEED is applied by the shim itself (the pages are punched, and we learn of it
  // from the REMOVE event); it is never queued.
  if (e.hint == static_cast<uint32_t>(Hint::kDontNeed)) return refuse(client, e, "not queued");
  if (e.len == 0 || e.addr % kPageSize != 0 || e.len % kPageSize != 0 ||
      e.len > client.arena_size() || e.addr + e.len < e.addr) {
    return refuse(client, e, "not a page-aligned range the size of the arena or less");
  }
  std::unique_lock lock(client.mu);
  const std::vector<Segment> pieces = client.address_map.pieces(e.addr, e.len);
  if (pieces.empty()) return refuse(client, e, "outside the arena");
  const Hint hint = static_cast<Hint>(e.hint);
  uint64_t pageout = 0, walked = 1;
  for (const Segment& piece : pieces) {
    const uint64_t first = piece.offset / kPageSize, count = piece.len / kPageSize;
    if (hint == Hint::kCold || hint == Hint::kPageOut || hint == Hint::kWillNeed) {
      walked += count;
    }
    switch (hint) {
      case Hint::kNormal:
        client.access_advice.set(first, count, AccessPattern::kNormal);
        client.hot_hints.set_hot(first, count, false);
        client.policy->on_hint(first, count, PageHint::kNormal);
        break;
      case Hint::kSequential:
      case Hint::kRandom:
        client.access_advice.set(first, count, pattern_of(e.hint));
        break;
      case Hint::kHot:
        client.hot_hints.set_hot(first, count, true);
        client.policy->on_hint(first, count, PageHint::kHot);
        break;
      case Hint::kCold:
      case Hint::kPageOut:
        client.hot_hints.set_hot(first, count, false);
        client.policy->on_hint(first, count, PageHint::kNormal);  // no longer hot
        mark_cold(client, first, count, &pageout);
        break;
      case Hint::kWillNeed:
        // The lock is released during the reads: `pieces` is our own copy.
        prefetch(lock, client, piece, pager);
        break;
      case Hint::kDontNeed:
        break;
    }
  }
  client.counters().hints_applied++;
  if (hint == Hint::kPageOut && pageout != 0 && pager.reclaimer != nullptr) {
    client.pageout_pages += pageout;
    pager.reclaimer->wake();
  }
  return walked;
}

}  // namespace

Result<std::unique_ptr<HintChannel>> adopt_hint_ring(uint64_t ring_bytes, kernel::UniqueFd memfd,
                                                     kernel::UniqueFd doorbell) {
  if (ring_bytes != sizeof(hints::HintRing)) {
    return Error::make(EINVAL, "hint ring of %llu bytes (this extmemd takes %zu)",
                       static_cast<unsigned long long>(ring_bytes), sizeof(hints::HintRing));
  }
  auto file = kernel::Memfd::adopt(std::move(memfd));
  if (!file) return file.error();
  // The client keeps its copy: without these seals it could shrink the file under our
  // mapping, and our next look at the ring would be a SIGBUS.
  auto seals = file->seals();
  if (!seals) return seals.error();
  if (!(*seals & F_SEAL_SHRINK)) {
    return Error::make(EPERM, "the hint ring memfd is not sealed against shrinking");
  }
  auto size = file->size();
  if (!size) return size.error();
  if (*size != sizeof(hints::HintRing)) {
    return Error::make(EINVAL, "the hint ring memfd holds %zu bytes, not %zu", *size,
                       sizeof(hints::HintRing));
  }
  if (!kernel::is_eventfd(doorbell.get())) {
    return Error::make(EBADF, "the hint doorbell is not an eventfd");
  }
  auto mapping = kernel::SharedMapping::map(file->fd(), sizeof(hints::HintRing), false);
  if (!mapping) return mapping.error();
  return std::make_unique<HintChannel>(std::move(*mapping), std::move(doorbell));
}

void drain_hints(Client& client, Pager& pager, bool wait) {
  HintChannel* channel = client.hints();
  if (channel == nullptr) return;
  std::unique_lock drain(channel->drain_mu, std::defer_lock);
  if (wait) {
    drain.lock();
  } else if (!drain.try_lock()) {
    return;
  }
  size_t taken = 0;
  uint64_t walked = 0;
  // Until the ring is empty with the doorbell armed, or the drain's share is used. A
  // full share leaves the doorbell off: the next look comes soon anyway (the periodic
  // pass), and a client cannot keep a thread here.
  for (bool more = true; more;) {
    channel->consumer.disarm_doorbell();
    hints::HintEntry e;
    while (taken < kMaxHintsPerDrain && walked < kMaxPagesPerDrain &&
           channel->consumer.take({&e, 1}) == 1) {
      ++taken;
      client.counters().hints_received++;
      walked += apply(client, e, pager);
    }
    more =
        taken < kMaxHintsPerDrain && walked < kMaxPagesPerDrain && channel->consumer.arm_doorbell();
  }
  client.counters().hints_ring_full.store(channel->consumer.dropped_full(),
                                          std::memory_order_relaxed);
}

}  // namespace extmem::daemon
