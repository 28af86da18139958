#include "policy/clock_policy.hpp"

namespace extmem::daemon {
namespace {

// Flags: bit 0, a ring holds an entry for the page; bit 1, that ring is the active one;
// bits 2-3, the page's state.
constexpr uint8_t kQueued = 1;
constexpr uint8_t kActive = 2;
constexpr unsigned kStateShift = 2;
enum State : uint8_t {
  kGone = 0,  // not resident: the entry is stale
  kNew = 1,
  kReset = 2,
  kAccessed = 3,
};

constexpr size_t kResetsPerVictim = 4;
// Stale entries tolerated beyond half the resident pages before compacting.
constexpr uint64_t kMinStale = 4096;

State state_of(uint8_t flags) {
  return static_cast<State>(flags >> kStateShift);
}
uint8_t with_state(uint8_t flags, State state) {
  return static_cast<uint8_t>((flags & (kQueued | kActive)) | (state << kStateShift));
}

}  // namespace

void ClockPolicy::on_resident(uint64_t page) {
  const PageFlags::Handle h = flags_.add(page);
  const uint8_t flags = flags_.get(h);
  if (flags & kQueued) {
    if (state_of(flags) != kGone) return;
    // Freed and back before a hand dropped its entry: the entry serves again.
    flags_.set(h, with_state(flags, kNew));
    ++((flags & kActive) ? active_pages_ : inactive_pages_);
    return;
  }
  inactive_.push_back(h);
  flags_.set(h, with_state(kQueued, kNew));
  ++inactive_pages_;
}

void ClockPolicy::on_access(uint64_t page) {
  const auto h = flags_.find(page);
  if (!h) return;
  const uint8_t flags = flags_.get(*h);
  if ((flags & kQueued) && state_of(flags) != kGone) flags_.set(*h, with_state(flags, kAccessed));
}

void ClockPolicy::on_gone(uint64_t page) {
  const auto h = flags_.find(page);
  if (!h) return;
  const uint8_t flags = flags_.get(*h);
  if (!(flags & kQueued) || state_of(flags) == kGone) return;
  flags_.set(*h, with_state(flags, kGone));
  --((flags & kActive) ? active_pages_ : inactive_pages_);
  compact_if_stale();
}

void ClockPolicy::compact_if_stale() {
  const uint64_t stale = inactive_.size() + active_.size() - resident_pages();
  if (stale > resident_pages() / 2 + kMinStale) compact();
}

void ClockPolicy::on_hint(uint64_t first_page, uint64_t pages, PageHint hint) {
  hints_.set_hot(first_page, pages, hint == PageHint::kHot);
  if (hint != PageHint::kCold) return;
  const uint64_t end = first_page + pages < first_page ? UINT64_MAX : first_page + pages;
  for (uint64_t page = first_page; page < end; ++page) {
    if (hints_.cold.size() >= resident_pages() + kMinStale) return;
    const auto h = flags_.find(page);
    if (!h) {
      page |= PageFlags::kChunkPages - 1;  // no page of this chunk is resident
      continue;
    }
    const uint8_t flags = flags_.get(*h);
    if ((flags & kQueued) && state_of(flags) != kGone) hints_.cold.push_back(page);
  }
}

void ClockPolicy::take_cold(size_t want, Scan* out) {
  while (out->victims.size() < want && !hints_.cold.empty()) {
    const uint64_t page = hints_.cold.front();
    hints_.cold.pop_front();
    const auto h = flags_.find(page);
    if (!h) continue;
    const uint8_t flags = flags_.get(*h);
    if (!(flags & kQueued) || state_of(flags) == kGone || hot(*h)) continue;
    // Its ring entry goes stale, as a gone page's does.
    out->victims.push_back(page);
    flags_.set(*h, with_state(flags, kGone));
    --((flags & kActive) ? active_pages_ : inactive_pages_);
  }
  compact_if_stale();
}

void ClockPolicy::scan(size_t want, Scan* out) {
  out->victims.clear();
  out->reset.clear();
  if (want == 0 || resident_pages() == 0) return;
  take_cold(want, out);
  const size_t max_resets = kResetsPerVictim * want;
  uint64_t active_lap = active_.size();
  uint64_t inactive_lap = inactive_.size();
  while (out->victims.size() < want && out->reset.size() < max_resets) {
    const bool age = active_lap > 0 && (inactive_lap == 0 || inactive_pages_ * 2 < active_pages_);
    if (!age && inactive_lap == 0) break;
    if (age) {
      --active_lap;
      age_active(inactive_lap == 0, out);
    }
    if (inactive_lap > 0) {
      --inactive_lap;
      age_inactive(out);
    }
  }
  if (out->victims.empty()) force_victim(out);
}

void ClockPolicy::age_active(bool evict_cold, Scan* out) {
  const PageFlags::Handle h = active_.front();
  active_.pop_front();
  const uint8_t flags = flags_.get(h);
  switch (state_of(flags)) {
    case kGone:
      flags_.set(h, 0);
      break;
    case kReset:
      if (hot(h)) {
        active_.push_back(h);
        break;
      }
      if (evict_cold) {
        evict(h, flags, out);
        break;
      }
      flags_.set(h, static_cast<uint8_t>(flags & ~kActive));
      inactive_.push_back(h);
      --active_pages_;
      ++inactive_pages_;
      break;
    case kNew:
    case kAccessed:
      out->reset.push_back(flags_.page(h));
      flags_.set(h, with_state(flags, kReset));
      active_.push_back(h);
      break;
  }
}

void ClockPolicy::age_inactive(Scan* out) {
  const PageFlags::Handle h = inactive_.front();
  inactive_.pop_front();
  const uint8_t flags = flags_.get(h);
  switch (state_of(flags)) {
    case kGone:
      flags_.set(h, 0);
      break;
    case kReset:
      if (hot(h)) {
        inactive_.push_back(h);
        break;
      }
      evict(h, flags, out);
      break;
    case kNew:
      out->reset.push_back(flags_.page(h));
      flags_.set(h, with_state(flags, kReset));
      inactive_.push_back(h);
      break;
    case kAccessed:
      out->reset.push_back(flags_.page(h));
      flags_.set(h, with_state(static_cast<uint8_t>(flags | kActive), kReset));
      active_.push_back(h);
      --inactive_pages_;
      ++active_pages_;
      break;
  }
}

void ClockPolicy::force_victim(Scan* out) {
  // Hot pages only when no other page is left.
  for (const bool spare_hot : {hints_.any_hot(), false}) {
    for (PageRing* ring : {&inactive_, &active_}) {
      for (size_t left = ring->size(); left > 0; --left) {
        const PageFlags::Handle h = ring->front();
        ring->pop_front();
        const uint8_t flags = flags_.get(h);
        if (state_of(flags) == kGone) {
          flags_.set(h, 0);
          continue;
        }
        if (spare_hot && hot(h)) {
          ring->push_back(h);
          continue;
        }
        evict(h, flags, out);
        // The hands may have asked to reset it a moment ago.
        std::erase(out->reset, out->victims.back());
        return;
      }
    }
  }
}

void ClockPolicy::evict(PageFlags::Handle h, uint8_t flags, Scan* out) {
  out->victims.push_back(flags_.page(h));
  --((flags & kActive) ? active_pages_ : inactive_pages_);
  flags_.set(h, 0);
}

void ClockPolicy::compact() {
  for (PageRing* ring : {&inactive_, &active_}) {
    std::erase_if(*ring, [this](PageFlags::Handle h) {
      if (state_of(flags_.get(h)) != kGone) return false;
      flags_.set(h, 0);
      return true;
    });
  }
}

uint64_t ClockPolicy::memory_bytes() const {
  return sizeof(*this) + flags_.memory_bytes() + hints_.memory_bytes() + ring_bytes(inactive_) +
         ring_bytes(active_);
}

}  // namespace extmem::daemon
