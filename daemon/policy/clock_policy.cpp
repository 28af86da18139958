#include "policy/clock_policy.hpp"

#include <algorithm>

namespace extmem::daemon {
namespace {

enum State : uint8_t {
  kGone = 0,  // not resident: the entry is stale
  kNew = 1,
  kReset = 2,
  kAccessed = 3,
};

// A page's 4 flag bits: 0, no ring entry; 1 + state, an entry in the inactive ring; 5, a
// stale entry in the active ring; 6 + 2 * heat + (state == kAccessed), a live entry in the
// active ring. An active page is never new: one back on its stale active entry counts as
// accessed.
struct Entry {
  bool active = false;
  State state = kGone;
  unsigned heat = 0;  // active entries only
};
constexpr uint8_t kActiveGone = 5;
constexpr uint8_t kActiveLive = 6;
static_assert(kActiveLive + 2 * ClockPolicy::kMaxHeat + 1 <= 0xF, "flags are 4 bits");

Entry decode(uint8_t flags) {
  if (flags < kActiveGone) return {false, static_cast<State>(flags - 1), 0};
  if (flags == kActiveGone) return {true, kGone, 0};
  const unsigned code = flags - kActiveLive;
  return {true, (code & 1) ? kAccessed : kReset, code >> 1};
}

uint8_t encode(const Entry& e) {
  if (!e.active) return static_cast<uint8_t>(1 + e.state);
  if (e.state == kGone) return kActiveGone;
  return static_cast<uint8_t>(kActiveLive + 2 * e.heat + (e.state != kReset));
}

constexpr size_t kResetsPerVictim = 4;
// Stale entries tolerated beyond half the resident pages before compacting.
constexpr uint64_t kMinStale = 4096;

}  // namespace

ClockPolicy::ClockPolicy(unsigned max_heat) : max_heat_(std::min(max_heat, kMaxHeat)) {}

void ClockPolicy::on_resident(uint64_t page) {
  const PageFlags::Handle h = flags_.add(page);
  if (const uint8_t flags = flags_.get(h); flags != 0) {
    const Entry e = decode(flags);
    if (e.state != kGone) return;
    // Freed and back before a hand dropped its entry: the entry serves again.
    flags_.set(h, encode({e.active, e.active ? kAccessed : kNew, 0}));
    ++(e.active ? active_pages_ : inactive_pages_);
    return;
  }
  inactive_.push_back(h);
  flags_.set(h, encode({false, kNew, 0}));
  ++inactive_pages_;
}

void ClockPolicy::on_read_ahead(uint64_t page) {
  on_resident(page);
  const PageFlags::Handle h = flags_.add(page);
  if (Entry e = decode(flags_.get(h)); !e.active && e.state == kNew) {
    e.state = kReset;
    flags_.set(h, encode(e));
  }
}

void ClockPolicy::on_access(uint64_t page) {
  const auto h = flags_.find(page);
  if (!h) return;
  const uint8_t flags = flags_.get(*h);
  if (flags == 0) return;
  Entry e = decode(flags);
  if (e.state == kGone) return;
  e.state = kAccessed;
  flags_.set(*h, encode(e));
}

void ClockPolicy::on_gone(uint64_t page) {
  const auto h = flags_.find(page);
  if (!h) return;
  const uint8_t flags = flags_.get(*h);
  if (flags == 0) return;
  const Entry e = decode(flags);
  if (e.state == kGone) return;
  flags_.set(*h, encode({e.active, kGone, 0}));
  --(e.active ? active_pages_ : inactive_pages_);
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
    if (flags != 0 && decode(flags).state != kGone) hints_.cold.push_back(page);
  }
}

void ClockPolicy::take_cold(size_t want, Scan* out) {
  while (out->victims.size() < want && !hints_.cold.empty()) {
    const uint64_t page = hints_.cold.front();
    hints_.cold.pop_front();
    const auto h = flags_.find(page);
    if (!h) continue;
    const uint8_t flags = flags_.get(*h);
    if (flags == 0) continue;
    const Entry e = decode(flags);
    if (e.state == kGone || hot(*h)) continue;
    // Its ring entry goes stale, as a gone page's does.
    out->victims.push_back(page);
    flags_.set(*h, encode({e.active, kGone, 0}));
    --(e.active ? active_pages_ : inactive_pages_);
  }
  compact_if_stale();
}

void ClockPolicy::scan(size_t want, Scan* out) {
  out->victims.clear();
  out->reset.clear();
  if (want == 0 || resident_pages() == 0) return;
  take_cold(want, out);
  const size_t max_resets = kResetsPerVictim * want;
  // Hot pages the active hand passes without a reset, bounded as the resets are so that
  // a scan stays O(want).
  size_t passed = 0;
  uint64_t active_lap = active_.size();
  uint64_t inactive_lap = inactive_.size();
  while (out->victims.size() < want && out->reset.size() < max_resets && passed < max_resets) {
    const bool age = active_lap > 0 && (inactive_lap == 0 || inactive_pages_ * 2 < active_pages_);
    if (!age && inactive_lap == 0) break;
    if (age) {
      --active_lap;
      if (age_active(inactive_lap == 0, out)) ++passed;
    }
    if (inactive_lap > 0) {
      --inactive_lap;
      age_inactive(out);
    }
  }
  if (out->victims.empty()) force_victim(out);
}

bool ClockPolicy::due(uint64_t page, unsigned heat) const {
  // Staggered by 2 MiB chunk, so that the resets of pages of equal heat spread over laps
  // while the pages of a run that is used together share them: staggered by page, a swept
  // window's pages went different ways and came back as scattered single-page reads.
  return ((active_laps_ + page / PageFlags::kChunkPages) & ((uint64_t{1} << heat) - 1)) == 0;
}

bool ClockPolicy::age_active(bool evict_cold, Scan* out) {
  if (active_lap_left_ == 0) {
    ++active_laps_;
    active_lap_left_ = active_.size();
  }
  --active_lap_left_;
  const PageFlags::Handle h = active_.front();
  active_.pop_front();
  const Entry e = decode(flags_.get(h));
  switch (e.state) {
    case kGone:
      flags_.set(h, 0);
      return false;
    case kReset:
      if (hot(h)) {
        active_.push_back(h);
        return false;
      }
      if (evict_cold) {
        evict(h, true, out);
        return false;
      }
      flags_.set(h, encode({false, kReset, 0}));
      inactive_.push_back(h);
      --active_pages_;
      ++inactive_pages_;
      return false;
    case kNew:
    case kAccessed:
      break;
  }
  const uint64_t page = flags_.page(h);
  active_.push_back(h);
  // Accessed since its reset on its last due lap (found unused on the lap after, it would
  // have been demoted): requeued as it is until its next due lap, which gains it heat.
  if (!due(page, e.heat)) return true;
  out->reset.push_back(page);
  flags_.set(h, encode({true, kReset, std::min(e.heat + 1, max_heat_)}));
  return false;
}

void ClockPolicy::age_inactive(Scan* out) {
  const PageFlags::Handle h = inactive_.front();
  inactive_.pop_front();
  const Entry e = decode(flags_.get(h));
  switch (e.state) {
    case kGone:
      flags_.set(h, 0);
      break;
    case kReset:
      if (hot(h)) {
        inactive_.push_back(h);
        break;
      }
      evict(h, false, out);
      break;
    case kNew:
      out->reset.push_back(flags_.page(h));
      flags_.set(h, encode({false, kReset, 0}));
      inactive_.push_back(h);
      break;
    case kAccessed:
      out->reset.push_back(flags_.page(h));
      flags_.set(h, encode({true, kReset, 0}));
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
        const Entry e = decode(flags_.get(h));
        if (e.state == kGone) {
          flags_.set(h, 0);
          continue;
        }
        if (spare_hot && hot(h)) {
          ring->push_back(h);
          continue;
        }
        evict(h, e.active, out);
        // The hands may have asked to reset it a moment ago.
        std::erase(out->reset, out->victims.back());
        return;
      }
    }
  }
}

void ClockPolicy::evict(PageFlags::Handle h, bool active, Scan* out) {
  out->victims.push_back(flags_.page(h));
  --(active ? active_pages_ : inactive_pages_);
  flags_.set(h, 0);
}

void ClockPolicy::compact() {
  for (PageRing* ring : {&inactive_, &active_}) {
    std::erase_if(*ring, [this](PageFlags::Handle h) {
      if (decode(flags_.get(h)).state != kGone) return false;
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
