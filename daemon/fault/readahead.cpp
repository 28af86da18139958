#include "fault/readahead.hpp"

#include <algorithm>
#include <iterator>

namespace extmem::daemon {

Readahead::Stream& Readahead::stream(uint32_t tid) {
  Stream* oldest = &streams_[0];
  for (Stream& s : streams_) {
    if (s.used && s.tid == tid) return s;
    if (!s.used || (oldest->used && s.last_use < oldest->last_use)) oldest = &s;
  }
  *oldest = Stream{};
  oldest->tid = tid;
  oldest->used = true;
  return *oldest;
}

void RangeAdvice::set(uint64_t first, uint64_t pages, AccessPattern pattern) {
  const uint64_t end = first + pages < first ? UINT64_MAX : first + pages;
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin() && std::prev(it)->second.end > first) --it;
  while (it != ranges_.end() && it->first < end) {
    const uint64_t range_first = it->first;
    const Range range = it->second;
    it = ranges_.erase(it);
    if (range_first < first) ranges_.emplace(range_first, Range{first, range.pattern});
    if (range.end > end) it = ranges_.emplace(end, range).first;
  }
  if (pattern != AccessPattern::kNormal && ranges_.size() < kMaxRanges) {
    ranges_.emplace(first, Range{end, pattern});
  }
}

AccessPattern RangeAdvice::at(uint64_t page) const {
  auto it = ranges_.upper_bound(page);
  if (it == ranges_.begin() || page >= std::prev(it)->second.end) return AccessPattern::kNormal;
  return std::prev(it)->second.pattern;
}

Readahead::Decision Readahead::on_fault(uint32_t tid, uint64_t page, AccessPattern pattern) {
  Stream& s = stream(tid);
  s.last_use = ++clock_;
  // A hit: the fault lands where the last read ended, or a little further when that read
  // stopped early at pages that were already in memory.
  const bool hit = s.next != 0 && page >= s.next && page - s.next <= s.window;
  Decision d{1, 0};
  if (hit) {
    d = {std::min(s.window * 2, kMaxWindow), s.prefetched};
  } else if (s.next != 0) {
    // Halve rather than restart: a thread that jumps to a new region and reads it
    // sequentially (2 MiB windows) keeps most of its window.
    d.window = std::max<uint64_t>(s.window / 2, 1);
  }
  if (pattern == AccessPattern::kRandom) d.window = 1;
  if (pattern == AccessPattern::kSequential) d.window = kMaxWindow;
  s.window = d.window;
  s.prefetched = 0;
  return d;
}

void Readahead::on_read(uint32_t tid, uint64_t page, uint64_t pages) {
  Stream& s = stream(tid);
  s.next = page + pages;
  s.prefetched = pages > 0 ? pages - 1 : 0;
}

}  // namespace extmem::daemon
