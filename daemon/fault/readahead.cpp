#include "fault/readahead.hpp"

#include <algorithm>

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

Readahead::Decision Readahead::on_fault(uint32_t tid, uint64_t page) {
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
