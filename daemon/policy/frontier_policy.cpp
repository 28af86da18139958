#include "policy/frontier_policy.hpp"

#include <algorithm>

namespace extmem::daemon {
namespace {

// Flags of a page in the guard or on the stack (0: not a stream page).
constexpr uint8_t kResident = 1;
constexpr uint8_t kStale = 2;  // the page went; its entry is dropped when met
// Stale entries tolerated beyond half the stream pages before compacting.
constexpr uint64_t kMinStale = 4096;
// Flags of a ghost (0: not one).
constexpr uint8_t kGhostNamed = 1;    // ghost_ring_ names the page
constexpr uint8_t kGhostEvicted = 2;  // evicted as a stream page and not back since
constexpr uint64_t kMinGhosts = 4096;
constexpr uint8_t kDemoted = 0xFF;  // a refault count: the chunk is demoted

bool continues(const FrontierPolicy::Stream& s, uint64_t page) {
  return s.last_use != 0 && page > s.head && page - s.head <= FrontierPolicy::kGap;
}

// Candidates live in the slot of their head's kGap-page region, so page p can only
// continue the candidate in the slot of p or of p - 1.
size_t region_slot(uint64_t page) {
  const uint64_t region = page / FrontierPolicy::kGap;
  return static_cast<size_t>((region * 0x9e3779b97f4a7c15ULL) >> 56) % FrontierPolicy::kCandidates;
}

}  // namespace

bool FrontierPolicy::observe(uint64_t page) {
  ++observations_;
  settle_refaults(page);
  Stream* confirmed = nullptr;
  for (Stream& s : streams_) {
    if (continues(s, page)) confirmed = &s;
  }
  if (confirmed != nullptr) {
    confirmed->head = page;
    confirmed->last_use = observations_;
    ++confirmed->run;
    if (++advances_since_behind_ >= kShrinkPeriod) {
      advances_since_behind_ = 0;
      guard_ = std::max(guard_ / 2, kMinGuard);
    }
    if (++advances_since_decay_ >= kShrinkPeriod) {
      advances_since_decay_ = 0;
      decay_refaults();
    }
    last_run_ = confirmed->run;
    return true;
  }
  // A candidate advances only to the very next page, as the mechanism reports a read's
  // pages (and a scan's first touches, and its accesses after resets): random faults
  // almost never do that kConfirm - 1 times in a row.
  Stream candidate{page, observations_, 1};
  for (const size_t slot : {region_slot(page), region_slot(page - 1)}) {
    const Stream& c = candidates_[slot];
    if (c.last_use == 0 || c.head + 1 != page) continue;
    candidate.run = c.run + 1;
    candidates_[slot] = {};
    break;
  }
  if (candidate.run == 1) note_behind(page);
  last_run_ = candidate.run;
  if (candidate.run < kConfirm) {
    candidates_[region_slot(page)] = candidate;
    return false;
  }
  // Confirmed: it displaces the least recently advanced confirmed stream.
  Stream* slot = &streams_[0];
  for (Stream& s : streams_) {
    if (s.last_use < slot->last_use) slot = &s;
  }
  *slot = candidate;
  return true;
}

void FrontierPolicy::note_behind(uint64_t page) {
  // Only a stream still moving counts: random faults long after a scan ended near its
  // last head say nothing about the guard.
  for (const Stream& s : streams_) {
    if (s.last_use != 0 && observations_ - s.last_use < guard_ && page < s.head &&
        s.head - page < 4 * guard_) {
      guard_ = std::min(guard_ * 2, kMaxGuard);
      advances_since_behind_ = 0;
      return;
    }
  }
}

size_t FrontierPolicy::live_streams() const {
  // A stream that made no step while every stream could have gone through its whole
  // guard has ended (a scan that came round again is a new stream).
  const uint64_t idle = 2 * guard_ * kStreams;
  return static_cast<size_t>(std::count_if(streams_.begin(), streams_.end(), [&](const Stream& s) {
    return s.last_use != 0 && observations_ - s.last_use < idle;
  }));
}

void FrontierPolicy::on_resident(uint64_t page) {
  const bool on_stream = observe(page);
  if (const auto g = ghosts_.find(page)) {
    if ((ghosts_.get(*g) & kGhostEvicted) != 0) {
      ghosts_.set(*g, kGhostNamed);
      // Only a page that continues nothing, and is not continued soon, is random.
      if (last_run_ == 1) {
        Refault& slot = pending_[observations_ % kPending];
        if (slot.page != kNoPage) note_random_refault(slot.page);
        slot = {page, observations_};
      }
    }
  }
  if (clock_.hinted_hot(page)) {  // kept by the CLOCK, never a stream victim
    clock_.on_resident(page);
    return;
  }
  if (const auto h = flags_.find(page)) {
    const uint8_t flags = flags_.get(*h);
    if (flags == kResident) return;
    if (flags == kStale && !demoted(page)) {
      // Gone and back before its entry was dropped: the entry serves again.
      flags_.set(*h, kResident);
      ++stream_pages_;
      return;
    }
  }
  if (!on_stream || demoted(page)) {
    clock_.on_resident(page);
    return;
  }
  const PageFlags::Handle h = flags_.add(page);
  flags_.set(h, kResident);
  ++stream_pages_;
  push_guarded(h);
}

void FrontierPolicy::push_guarded(PageFlags::Handle h) {
  guarded_.push_back(h);
  // Never more than a quarter of the resident pages, whatever the streams.
  const uint64_t limit = std::min<uint64_t>(guard_ * std::max<size_t>(live_streams(), 1),
                                            std::max<uint64_t>(resident_pages() / 4, 1));
  while (guarded_.size() > limit) {
    const PageFlags::Handle old = guarded_.front();
    guarded_.pop_front();
    if (flags_.get(old) == kStale) {
      flags_.set(old, 0);
    } else {
      passed_.push_back(old);
    }
  }
}

void FrontierPolicy::on_access(uint64_t page) {
  observe(page);
  // Stream pages are never reset, so only CLOCK's pages are reported.
  clock_.on_access(page);
}

void FrontierPolicy::on_hint(uint64_t first_page, uint64_t pages, PageHint hint) {
  if (hint != PageHint::kNormal) {
    move_to_clock(first_page, first_page + pages < first_page ? UINT64_MAX : first_page + pages);
  }
  clock_.on_hint(first_page, pages, hint);
}

void FrontierPolicy::on_gone(uint64_t page) {
  // Freed memory may be put to another use: its chunk is judged afresh.
  if (!refaults_.empty()) refaults_.erase(page >> PageFlags::kChunkShift);
  const auto h = flags_.find(page);
  if (!h || flags_.get(*h) != kResident) {
    clock_.on_gone(page);
    return;
  }
  flags_.set(*h, kStale);
  --stream_pages_;
  const uint64_t stale = guarded_.size() + passed_.size() - stream_pages_;
  if (stale > stream_pages_ / 2 + kMinStale) compact();
}

bool FrontierPolicy::pop_victim(Scan* out) {
  return pop_resident(passed_, /*newest=*/true, out);
}

bool FrontierPolicy::pop_guarded(Scan* out) {
  return pop_resident(guarded_, /*newest=*/false, out);
}

bool FrontierPolicy::pop_resident(PageRing& ring, bool newest, Scan* out) {
  while (!ring.empty()) {
    const PageFlags::Handle h = newest ? ring.back() : ring.front();
    if (newest) {
      ring.pop_back();
    } else {
      ring.pop_front();
    }
    const bool resident = flags_.get(h) == kResident;
    const uint64_t page = flags_.page(h);
    flags_.set(h, 0);
    if (resident) {
      out->victims.push_back(page);
      --stream_pages_;
      remember_evicted(page);
      return true;
    }
  }
  return false;
}

void FrontierPolicy::scan(size_t want, Scan* out) {
  out->victims.clear();
  out->reset.clear();
  if (want == 0) return;
  // Pages hinted cold go before the pages the streams passed.
  if (const size_t cold = clock_.cold_pending(); cold > 0) {
    Scan first;
    clock_.scan(std::min(want, cold), &first);
    out->victims = std::move(first.victims);
    out->reset = std::move(first.reset);
  }
  while (out->victims.size() < want && pop_victim(out)) {
  }
  if (out->victims.size() < want && clock_.resident_pages() > 0) {
    Scan rest;
    clock_.scan(want - out->victims.size(), &rest);
    for (uint64_t victim : rest.victims) {
      // The CLOCK gives up a page hinted hot only when it has nothing else; a guarded
      // page goes first then.
      if (clock_.hinted_hot(victim) && pop_guarded(out)) {
        clock_.on_resident(victim);
        continue;
      }
      out->victims.push_back(victim);
    }
    out->reset.insert(out->reset.end(), rest.reset.begin(), rest.reset.end());
  }
  // Last resort: the oldest guarded pages.
  while (out->victims.size() < want && pop_guarded(out)) {
  }
}

uint64_t FrontierPolicy::readahead_hint(uint64_t page) const {
  for (const Stream& s : streams_) {
    if (continues(s, page)) return kHintPages;
  }
  return 0;
}

void FrontierPolicy::remember_evicted(uint64_t page) {
  const PageFlags::Handle h = ghosts_.add(page);
  const bool named = (ghosts_.get(h) & kGhostNamed) != 0;
  ghosts_.set(h, kGhostNamed | kGhostEvicted);
  if (named) return;
  ghost_ring_.push_back(h);
  // As many ghosts as resident pages: evictions older than that say nothing about the
  // pages competing for memory now.
  const uint64_t cap = std::max(resident_pages(), kMinGhosts);
  while (ghost_ring_.size() > cap) {
    ghosts_.set(ghost_ring_.front(), 0);
    ghost_ring_.pop_front();
  }
}

void FrontierPolicy::settle_refaults(uint64_t page) {
  for (Refault& r : pending_) {
    if (r.page == kNoPage) continue;
    if (page > r.page && page - r.page <= kGap) {
      r.page = kNoPage;  // continued: a scan (or a thread of one) resuming over evicted pages
    } else if (observations_ - r.at > kPending) {
      note_random_refault(r.page);
      r.page = kNoPage;
    }
  }
}

void FrontierPolicy::note_random_refault(uint64_t page) {
  const uint64_t chunk = page >> PageFlags::kChunkShift;
  uint8_t& count = refaults_[chunk];
  if (count == kDemoted || ++count < kDemoteRefaults) return;
  count = kDemoted;
  move_to_clock(chunk << PageFlags::kChunkShift, (chunk + 1) << PageFlags::kChunkShift);
  // Bounded by the resident pages: counts go first, then (demoted address space far
  // beyond the memory) everything.
  const uint64_t cap = std::max<uint64_t>(resident_pages() / 64, 64);
  if (refaults_.size() > cap)
    std::erase_if(refaults_, [](const auto& e) { return e.second != kDemoted; });
  if (refaults_.size() > cap) refaults_.clear();
}

bool FrontierPolicy::demoted(uint64_t page) const {
  if (refaults_.empty()) return false;
  const auto it = refaults_.find(page >> PageFlags::kChunkShift);
  return it != refaults_.end() && it->second == kDemoted;
}

void FrontierPolicy::move_to_clock(uint64_t first, uint64_t end) {
  for (uint64_t page = first; page < end && stream_pages_ > 0; ++page) {
    const auto h = flags_.find(page);
    if (!h) {
      page |= PageFlags::kChunkPages - 1;  // no stream page in this chunk
      continue;
    }
    if (flags_.get(*h) != kResident) continue;
    flags_.set(*h, kStale);
    --stream_pages_;
    clock_.on_resident(page);
  }
  const uint64_t stale = guarded_.size() + passed_.size() - stream_pages_;
  if (stale > stream_pages_ / 2 + kMinStale) compact();
}

void FrontierPolicy::decay_refaults() {
  for (auto it = refaults_.begin(); it != refaults_.end();) {
    if (it->second != kDemoted && (it->second /= 2) == 0) {
      it = refaults_.erase(it);
    } else {
      ++it;
    }
  }
}

void FrontierPolicy::compact() {
  std::erase_if(guarded_, [this](PageFlags::Handle h) {
    if (flags_.get(h) != kStale) return false;
    flags_.set(h, 0);
    return true;
  });
  std::erase_if(passed_, [this](PageFlags::Handle h) {
    if (flags_.get(h) != kStale) return false;
    flags_.set(h, 0);
    return true;
  });
  passed_.shrink_to_fit();
}

uint64_t FrontierPolicy::memory_bytes() const {
  // A hash node holds a next pointer, the key and the count.
  const uint64_t refaults = refaults_.size() * allocated(2 * sizeof(void*) + sizeof(uint64_t)) +
                            refaults_.bucket_count() * sizeof(void*);
  return sizeof(*this) - sizeof(clock_) + clock_.memory_bytes() + flags_.memory_bytes() +
         ring_bytes(guarded_) + ring_bytes(passed_) + ghosts_.memory_bytes() +
         ring_bytes(ghost_ring_) + refaults;
}

}  // namespace extmem::daemon
