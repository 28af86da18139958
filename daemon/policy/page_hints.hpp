// What the application advised about its pages, kept for a policy: the ranges it declared
// hot, and the resident pages it declared cold, oldest first. Bounded: at most
// kMaxHotRanges hot ranges (later hot hints are ignored), and the policy bounds the cold
// queue by its resident pages.
#pragma once

#include <cstdint>
#include <deque>
#include <iterator>
#include <map>

#include "policy/page_flags.hpp"

namespace extmem::daemon {

// The ranges of pages declared hot.
class HotRanges {
 public:
  static constexpr size_t kMaxHotRanges = 4096;

  // Marks [first, first+pages) hot, or not hot.
  void set_hot(uint64_t first, uint64_t pages, bool hot) {
    const uint64_t end = first + pages < first ? UINT64_MAX : first + pages;
    auto it = hot_.upper_bound(first);
    if (it != hot_.begin() && std::prev(it)->second > first) --it;
    while (it != hot_.end() && it->first < end) {
      const uint64_t range_first = it->first, range_end = it->second;
      it = hot_.erase(it);
      if (range_first < first) hot_.emplace(range_first, first);
      if (range_end > end) it = hot_.emplace(end, range_end).first;
    }
    if (hot && hot_.size() < kMaxHotRanges) hot_.emplace(first, end);
  }

  bool any_hot() const { return !hot_.empty(); }
  bool hot(uint64_t page) const {
    if (hot_.empty()) return false;
    auto it = hot_.upper_bound(page);
    return it != hot_.begin() && page < std::prev(it)->second;
  }

  // fn(first, pages) for each hot range, in page order.
  template <typename Fn>
  void for_each_hot(Fn&& fn) const {
    for (const auto& [first, end] : hot_) fn(first, end - first);
  }

  uint64_t memory_bytes() const {
    // A map node: three pointers and a colour, then the pair.
    return hot_.size() * allocated(4 * sizeof(void*) + 2 * sizeof(uint64_t));
  }

 private:
  std::map<uint64_t, uint64_t> hot_;  // first -> end, disjoint
};

class PageHints : public HotRanges {
 public:
  uint64_t memory_bytes() const {
    return HotRanges::memory_bytes() +
           (cold.size() / 64 + 1) * (allocated(512) + 2 * sizeof(void*));
  }

  // Pages declared cold while resident, oldest first; entries may be stale.
  std::deque<uint64_t> cold;
};

}  // namespace extmem::daemon
