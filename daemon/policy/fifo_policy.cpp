#include "policy/fifo_policy.hpp"

namespace extmem::daemon {
namespace {

// Flags: bit 0, the page is resident; bits 1-3, how many ring entries name it. A page
// freed and back 7 times before the hand moves stops getting entries: it keeps the place
// of its last one.
constexpr uint8_t kResident = 1;
constexpr unsigned kEntriesShift = 1;
constexpr unsigned kMaxEntries = 7;
// Stale entries tolerated beyond half the resident pages before compacting.
constexpr uint64_t kMinStale = 4096;

unsigned entries_of(uint8_t flags) {
  return flags >> kEntriesShift;
}
uint8_t make_flags(bool resident, unsigned entries) {
  return static_cast<uint8_t>((resident ? kResident : 0) | (entries << kEntriesShift));
}

}  // namespace

void FifoPolicy::on_resident(uint64_t page) {
  const PageFlags::Handle h = flags_.add(page);
  const uint8_t flags = flags_.get(h);
  if (flags & kResident) return;
  unsigned entries = entries_of(flags);
  if (entries < kMaxEntries) {
    ring_.push_back(h);
    ++entries;
  }
  flags_.set(h, make_flags(true, entries));
  ++resident_;
}

void FifoPolicy::on_gone(uint64_t page) {
  const auto h = flags_.find(page);
  if (!h || !(flags_.get(*h) & kResident)) return;
  flags_.set(*h, make_flags(false, entries_of(flags_.get(*h))));
  --resident_;
  compact_if_stale();
}

void FifoPolicy::compact_if_stale() {
  if (ring_.size() - resident_ > resident_ / 2 + kMinStale) compact();
}

void FifoPolicy::on_hint(uint64_t first_page, uint64_t pages, PageHint hint) {
  hints_.set_hot(first_page, pages, hint == PageHint::kHot);
  if (hint != PageHint::kCold) return;
  const uint64_t end = first_page + pages < first_page ? UINT64_MAX : first_page + pages;
  for (uint64_t page = first_page; page < end; ++page) {
    if (hints_.cold.size() >= resident_ + kMinStale) return;
    const auto h = flags_.find(page);
    if (!h) {
      page |= PageFlags::kChunkPages - 1;  // no page of this chunk is resident
      continue;
    }
    if (flags_.get(*h) & kResident) hints_.cold.push_back(page);
  }
}

void FifoPolicy::scan(size_t want, Scan* out) {
  out->victims.clear();
  out->reset.clear();
  while (out->victims.size() < want && !hints_.cold.empty()) {
    const uint64_t page = hints_.cold.front();
    hints_.cold.pop_front();
    const auto h = flags_.find(page);
    if (!h || !(flags_.get(*h) & kResident) || hints_.hot(page)) continue;
    // Its entries go stale, as a gone page's do.
    out->victims.push_back(page);
    flags_.set(*h, make_flags(false, entries_of(flags_.get(*h))));
    --resident_;
  }
  compact_if_stale();
  // Hot pages are requeued for one lap of the ring, then taken like any other.
  bool spare_hot = hints_.any_hot();
  uint64_t lap = ring_.size();
  while (out->victims.size() < want && !ring_.empty()) {
    if (spare_hot && lap-- == 0) spare_hot = false;
    const PageFlags::Handle h = ring_.front();
    ring_.pop_front();
    const uint8_t flags = flags_.get(h);
    const unsigned entries = entries_of(flags) - 1;
    const bool resident = flags & kResident;
    if (resident && entries == 0) {
      if (spare_hot && hints_.hot(flags_.page(h))) {
        ring_.push_back(h);
        continue;
      }
      out->victims.push_back(flags_.page(h));
      flags_.set(h, 0);
      --resident_;
    } else {
      flags_.set(h, make_flags(resident, entries));  // a freed page, or a newer entry follows
    }
  }
}

void FifoPolicy::compact() {
  // Oldest first, so a page's count says how many of its entries are still ahead: only the
  // last entry of a resident page stays.
  size_t kept = 0;
  for (const PageFlags::Handle h : ring_) {
    const uint8_t flags = flags_.get(h);
    const bool resident = flags & kResident;
    if (resident && entries_of(flags) == 1) {
      ring_[kept++] = h;
    } else {
      flags_.set(h, make_flags(resident, entries_of(flags) - 1));
    }
  }
  ring_.resize(kept);
}

uint64_t FifoPolicy::memory_bytes() const {
  return sizeof(*this) + flags_.memory_bytes() + hints_.memory_bytes() + ring_bytes(ring_);
}

}  // namespace extmem::daemon
