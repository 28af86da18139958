#include "fault/readahead.hpp"

#include <algorithm>
#include <iterator>

namespace extmem::daemon {

bool ReadaheadMarkers::place(uint64_t page, Marker marker) {
  if (markers_.size() >= kMaxMarkers) return false;
  markers_.insert_or_assign(page, marker);
  return true;
}

std::optional<ReadaheadMarkers::Marker> ReadaheadMarkers::take(uint64_t page) {
  auto it = markers_.find(page);
  if (it == markers_.end()) return std::nullopt;
  const Marker marker = it->second;
  markers_.erase(it);
  return marker;
}

uint64_t ReadaheadMarkers::forget(uint64_t first, uint64_t count) {
  const auto begin = markers_.lower_bound(first);
  const auto end = first + count < first ? markers_.end() : markers_.lower_bound(first + count);
  const auto n = static_cast<uint64_t>(std::distance(begin, end));
  markers_.erase(begin, end);
  return n;
}

Readahead::Stream* Readahead::find(uint32_t tid) {
  for (Stream& s : streams_) {
    if (s.used && s.tid == tid) return &s;
  }
  return nullptr;
}

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

void Readahead::follow_stride(Stream& s, uint64_t page) {
  const auto delta = static_cast<int64_t>(page - s.last_fault);
  if (s.faulted && s.stride != 0 && delta % s.stride == 0) {
    // Keeping to the stride: the fault lands one step on, or past the pages read ahead.
    const int64_t steps = delta / s.stride;
    if (steps >= 1 && static_cast<uint64_t>(steps) <= s.stride_ahead + 1) {
      s.stride_faults = std::min(s.stride_faults + 1, kStrideConfirm);
      if (s.stride_faults < kStrideConfirm) return;
      if (s.stride_depth == 0) {
        s.stride_depth = kFirstStrideDepth;
      } else if (static_cast<uint64_t>(steps) == s.stride_ahead + 1) {
        // Every page read ahead was used: a hit.
        if (s.stride_ahead > 0) s.stride_depth = std::min(s.stride_depth * 2, kMaxStrideDepth);
      } else {
        // A page read ahead faulted again: it was evicted before use, a miss.
        s.stride_depth = std::max<uint64_t>(s.stride_depth / 2, 1);
      }
      return;
    }
  }
  const bool followed = s.faulted && (delta == -1 || (delta >= 2 && delta <= kMaxStride) ||
                                      (delta <= -2 && delta >= -kMaxStride));
  s.stride = followed ? delta : 0;
  s.stride_faults = followed ? 2 : 0;
  s.stride_depth = 0;
}

void Readahead::follow_sweep(Stream& s, uint64_t page, bool jump) {
  const uint64_t end = s.sweep_first + kSweepPages;
  if (s.sweeping && page >= s.sweep_first && page < end) {
    s.sweep_reach = std::max(s.sweep_reach, page + 1);
    return;
  }
  if (s.sweeping && page >= end && page - end < kSweepPages) {
    // Reading on past the window's end (markers reach up to a window ahead): a longer run,
    // a sequential reader's, not a window.
    s.sweeping = false;
    s.sweeps = 0;
    return;
  }
  if (!jump) return;
  if (s.sweeping) {
    // Covered: a confirmed sweep reached its marker; an unconfirmed one, the last quarter
    // of its window. A confirmed sweep without a marker shows nothing either way.
    const uint64_t phase = s.sweep_first % kSweepPages;
    if (!confirmed(s) || s.sweep_marked != 0) {
      const bool covered = confirmed(s) ? s.sweep_reach > s.sweep_marked
                                        : s.sweep_reach > s.sweep_first + kSweepPages / 4 * 3;
      if (!covered) {
        s.sweeps = 0;
      } else {
        s.sweeps =
            s.sweeps > 0 && phase == s.sweep_phase ? std::min(s.sweeps + 1, kSweepConfirm) : 1;
        s.sweep_phase = phase;
      }
    }
  }
  // A confirmed sweeper's window is where its windows lie, wherever in it the jump landed
  // (its first pages may have been in memory).
  const uint64_t into = (page - s.sweep_phase) % kSweepPages;
  s.sweeping = true;
  s.sweep_first = confirmed(s) && into <= page ? page - into : page;
  s.sweep_reach = page + 1;
  s.sweep_marked = 0;
}

Readahead::Decision Readahead::on_fault(uint32_t tid, uint64_t page, AccessPattern pattern) {
  Stream& s = stream(tid);
  s.last_use = ++clock_;
  // A hit: the fault lands where the last read ended, or a little further when that read
  // stopped early at pages that were already in memory.
  const bool hit = s.next != 0 && page >= s.next && page - s.next <= s.window;
  follow_sweep(s, page, !hit);
  Decision d{1, 0, 0, 0};
  if (hit) {
    d = {std::min(s.window * 2, kMaxWindow), s.prefetched, 0, 0};
    // A sequential reader's faults come a window apart: not a stride.
    s.stride = 0;
    s.stride_faults = 0;
    s.stride_depth = 0;
  } else {
    if (s.next != 0) {
      // Halve rather than restart: a thread that jumps to a new region and reads it
      // sequentially (2 MiB windows) keeps most of its window.
      d.window = std::max<uint64_t>(s.window / 2, 1);
    }
    follow_stride(s, page);
    if (s.stride_faults >= kStrideConfirm) {
      // The neighbours of a strided fault are not what the thread reads next.
      d.window = 1;
      d.stride = s.stride;
      d.stride_pages = s.stride_depth;
    }
  }
  s.continued = hit;
  s.last_fault = page;
  s.faulted = true;
  s.stride_ahead = 0;
  if (confirmed(s) && s.sweeping && d.stride == 0) {
    d.limit = s.sweep_first + kSweepPages;
    d.sweep = !hit;
  }
  if (pattern == AccessPattern::kRandom) d = {1, d.hits, 0, 0};
  if (pattern == AccessPattern::kSequential) d = {kMaxWindow, d.hits, d.stride, d.stride_pages};
  s.window = d.window;
  s.prefetched = 0;
  return d;
}

void Readahead::on_stride_read(uint32_t tid, uint64_t pages) {
  if (Stream* s = find(tid)) s->stride_ahead = pages;
}

void Readahead::on_sweep_read(uint32_t tid, uint64_t marked, uint64_t end) {
  if (Stream* s = find(tid)) {
    s->next = end;
    s->sweep_marked = marked;
  }
}

void Readahead::on_touch(uint32_t tid, uint64_t page) {
  if (Stream* s = find(tid)) follow_sweep(*s, page, s->sweeping);
}

uint64_t Readahead::limit(uint32_t tid) const {
  for (const Stream& s : streams_) {
    if (s.used && s.tid == tid) {
      return confirmed(s) && s.sweeping ? s.sweep_first + kSweepPages : UINT64_MAX;
    }
  }
  return UINT64_MAX;
}

uint64_t Readahead::on_marker_hit(uint32_t tid, uint64_t page) {
  Stream& s = stream(tid);
  s.last_use = ++clock_;
  follow_sweep(s, page, s.sweeping);
  s.window = std::min(s.window * 2, kMaxWindow);
  return s.window;
}

void Readahead::on_async_read(uint32_t tid, uint64_t first, uint64_t pages) {
  Stream* s = find(tid);
  if (s == nullptr || pages == 0) return;
  s->next = first + pages;
  s->prefetched += pages;
}

void Readahead::on_marker_unused(uint32_t tid) {
  if (Stream* s = find(tid)) {
    s->window = std::max<uint64_t>(s->window / 2, 1);
    s->sweeps = 0;
  }
}

bool Readahead::continues(uint32_t tid) const {
  for (const Stream& s : streams_) {
    if (s.used && s.tid == tid) return s.continued;
  }
  return false;
}

void Readahead::on_read(uint32_t tid, uint64_t page, uint64_t pages) {
  Stream& s = stream(tid);
  s.next = page + pages;
  s.prefetched = pages > 0 ? pages - 1 : 0;
}

}  // namespace extmem::daemon
