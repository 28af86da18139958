#include "client/address_map.hpp"

#include <algorithm>

namespace extmem::daemon {

const Segment* AddressMap::find(uintptr_t addr) const {
  for (const Segment& s : segments_) {
    if (addr - s.start < s.len) return &s;
  }
  return nullptr;
}

uintptr_t AddressMap::address_of(uint64_t offset) const {
  for (const Segment& s : segments_) {
    if (offset - s.offset < s.len) return s.start + (offset - s.offset);
  }
  return 0;
}

std::vector<Segment> AddressMap::pieces(uintptr_t start, uint64_t len) const {
  std::vector<Segment> out;
  uintptr_t end = start + len;
  for (const Segment& s : segments_) {
    uintptr_t lo = std::max(start, s.start);
    uintptr_t hi = std::min(end, s.start + s.len);
    if (lo < hi) out.push_back({lo, hi - lo, s.offset + (lo - s.start)});
  }
  return out;
}

std::vector<Segment> AddressMap::unmap(uintptr_t start, uint64_t len) {
  std::vector<Segment> removed = pieces(start, len);
  std::vector<Segment> kept;
  uintptr_t end = start + len;
  for (const Segment& s : segments_) {
    uintptr_t s_end = s.start + s.len;
    if (s_end <= start || s.start >= end) {
      kept.push_back(s);
      continue;
    }
    if (s.start < start) kept.push_back({s.start, start - s.start, s.offset});
    if (s_end > end) kept.push_back({end, s_end - end, s.offset + (end - s.start)});
  }
  segments_ = std::move(kept);
  return removed;
}

void AddressMap::remap(uintptr_t from, uintptr_t to, uint64_t len) {
  std::vector<Segment> moved = unmap(from, len);
  for (Segment& s : moved) {
    s.start = to + (s.start - from);
    segments_.push_back(s);
  }
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });
}

}  // namespace extmem::daemon
