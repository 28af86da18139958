#include "arena_allocator.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace extmem::shim {

namespace {

// Gaps probed in size order for an over-aligned request before jumping to a gap that fits any
// alignment; keeps allocate O(log n).
constexpr size_t kAlignedProbeLimit = 8;

constexpr uintptr_t align_up(uintptr_t value, size_t align) {
  return (value + align - 1) & ~(uintptr_t{align} - 1);
}

}  // namespace

namespace arena_detail {

NodePool::NodePool(MapPagesFn map_pages, size_t page_size) noexcept
    : map_pages_(map_pages),
      chunk_bytes_(align_up(std::max(kNodeChunkBytes, page_size), page_size)) {}

bool NodePool::reserve(size_t count) noexcept {
  while (free_count_ < count) {
    void* chunk = map_pages_ != nullptr ? map_pages_(chunk_bytes_) : nullptr;
    if (chunk == nullptr) return false;
    const uintptr_t chunk_end = reinterpret_cast<uintptr_t>(chunk) + chunk_bytes_;
    uintptr_t slot = align_up(reinterpret_cast<uintptr_t>(chunk), kNodeSlotAlign);
    const size_t before = free_count_;
    for (; slot + kNodeSlotBytes <= chunk_end; slot += kNodeSlotBytes) {
      give(reinterpret_cast<void*>(slot));
    }
    if (free_count_ == before) return false;  // Chunk too small to hold a slot.
  }
  return true;
}

void* NodePool::take() noexcept {
  if (free_list_ == nullptr) __builtin_trap();  // A caller skipped reserve(): a bug.
  FreeSlot* slot = free_list_;
  free_list_ = slot->next;
  --free_count_;
  return slot;
}

void NodePool::give(void* slot) noexcept {
  auto* free_slot = static_cast<FreeSlot*>(slot);
  free_slot->next = free_list_;
  free_list_ = free_slot;
  ++free_count_;
}

}  // namespace arena_detail

ArenaAllocator::ArenaAllocator(uintptr_t base, size_t size, MapPagesFn map_pages,
                               size_t reserved_prefix, size_t page_size) noexcept
    : base_(base),
      size_(size),
      page_size_(page_size),
      lowest_start_(base + (reserved_prefix >= size ? size : align_up(reserved_prefix, page_size))),
      pool_(map_pages, page_size),
      blocks_(BlockMap::key_compare(), BlockMap::allocator_type(&pool_)),
      gaps_(GapSet::key_compare(), GapSet::allocator_type(&pool_)) {
  if (lowest_start_ > arena_end()) lowest_start_ = arena_end();
}

uintptr_t ArenaAllocator::top_start() const noexcept {
  if (blocks_.empty()) return lowest_start_;
  const auto& last = *blocks_.rbegin();
  return last.first + last.second;
}

bool ArenaAllocator::round_to_pages(size_t len, size_t* rounded) const noexcept {
  if (len > SIZE_MAX - (page_size_ - 1)) return false;
  *rounded = align_up(len, page_size_);
  return true;
}

bool ArenaAllocator::aligned_fit(uintptr_t start, size_t extent_len, size_t len, size_t align,
                                 uintptr_t* block_start) const noexcept {
  const uintptr_t aligned = align_up(start, align);
  const size_t lead = aligned - start;  // Wraps to huge on overflow, failing the next test.
  if (lead >= extent_len || len > extent_len - lead) return false;
  *block_start = aligned;
  return true;
}

ArenaAllocator::GapSet::const_iterator ArenaAllocator::find_gap(
    size_t len, size_t align, size_t probe_limit, uintptr_t* block_start) const noexcept {
  auto gap = gaps_.lower_bound(Gap{len, 0});
  for (size_t probes = 0; gap != gaps_.end() && probes < probe_limit; ++gap, ++probes) {
    if (aligned_fit(gap->start, gap->len, len, align, block_start)) return gap;
  }
  if (gap == gaps_.end()) return gap;
  // A gap with `align - page` bytes of slack fits whatever its start.
  const size_t slack = align - page_size_;
  if (len > SIZE_MAX - slack) return gaps_.end();
  gap = gaps_.lower_bound(Gap{len + slack, 0});
  if (gap != gaps_.end()) aligned_fit(gap->start, gap->len, len, align, block_start);
  return gap;
}

uintptr_t ArenaAllocator::allocate(size_t len, size_t align) noexcept {
  if (len == 0) return 0;
  if (align < page_size_) align = page_size_;
  if ((align & (align - 1)) != 0) return 0;
  size_t rounded = 0;
  if (!round_to_pages(len, &rounded) || rounded > size_) return 0;

  // Interior gaps first (best fit, lowest address on ties); the top only as a last resort keeps
  // the arena compact. The exhaustive scan runs only when the request would fail otherwise.
  uintptr_t block_start = 0;
  auto gap = find_gap(rounded, align, kAlignedProbeLimit, &block_start);
  if (gap == gaps_.end()) {
    const uintptr_t top = top_start();
    if (aligned_fit(top, arena_end() - top, rounded, align, &block_start)) {
      const size_t lead = block_start - top;
      if (!pool_.reserve(lead != 0 ? 2 : 1)) return 0;
      if (lead != 0) gaps_.insert(Gap{lead, top});
      blocks_.emplace_hint(blocks_.end(), block_start, rounded);
      allocated_bytes_ += rounded;
      return block_start;
    }
    gap = find_gap(rounded, align, SIZE_MAX, &block_start);
    if (gap == gaps_.end()) return 0;
  }

  const Gap taken = *gap;
  const size_t lead = block_start - taken.start;
  const uintptr_t block_end = block_start + rounded;
  const size_t trail = taken.start + taken.len - block_end;
  // Erasing the gap hands one node back before the (up to three) inserts.
  if (!pool_.reserve((lead != 0 ? 1 : 0) + (trail != 0 ? 1 : 0))) return 0;
  gaps_.erase(gap);
  if (lead != 0) gaps_.insert(Gap{lead, taken.start});
  if (trail != 0) gaps_.insert(Gap{trail, block_end});
  blocks_.emplace(block_start, rounded);
  allocated_bytes_ += rounded;
  return block_start;
}

size_t ArenaAllocator::block_size(uintptr_t p) const noexcept {
  const auto block = blocks_.find(p);
  return block == blocks_.end() ? 0 : block->second;
}

ArenaAllocator::Range ArenaAllocator::block_containing(uintptr_t p) const noexcept {
  auto block = blocks_.upper_bound(p);
  if (block == blocks_.begin()) return Range{0, 0};
  --block;
  if (p - block->first >= block->second) return Range{0, 0};
  return Range{block->first, block->second};
}

bool ArenaAllocator::release(uintptr_t addr, size_t len, FreedFn on_freed, void* ctx) noexcept {
  // Clip to the arena without overflowing, then widen to whole pages.
  if (len == 0) return true;
  if (addr < base_) {
    if (len <= base_ - addr) return true;
    len -= base_ - addr;
    addr = base_;
  }
  const uintptr_t limit = arena_end();
  if (addr >= limit) return true;
  const uintptr_t lo = addr & ~(uintptr_t{page_size_} - 1);
  const uintptr_t hi = len >= limit - addr ? limit : align_up(addr + len, page_size_);

  auto first = blocks_.upper_bound(lo);
  if (first != blocks_.begin()) {
    const auto prev = std::prev(first);
    if (prev->first + prev->second > lo) first = prev;
  }
  if (first == blocks_.end() || first->first >= hi) return true;  // Nothing allocated there.

  // Pass 1: the shape of the change and how many nodes it erases, so the node reservation is
  // exact and freeing never fails needlessly when metadata is exhausted.
  const bool head_kept = first->first < lo;
  const uintptr_t region_start =
      first == blocks_.begin() ? lowest_start_ : std::prev(first)->first + std::prev(first)->second;
  size_t erased_nodes = 0;
  auto last = first;
  uintptr_t prev_end = head_kept ? first->first : region_start;
  for (auto block = first; block != blocks_.end() && block->first < hi; ++block) {
    if (block->first > prev_end) ++erased_nodes;  // The gap before it.
    prev_end = block->first + block->second;
    if (block->first >= lo && prev_end <= hi) ++erased_nodes;  // The block itself.
    last = block;
  }
  const uintptr_t last_end = last->first + last->second;
  const bool tail_kept = last_end > hi;
  const auto after = std::next(last);
  const bool gap_after_erased = !tail_kept && after != blocks_.end() && after->first > last_end;
  if (gap_after_erased) ++erased_nodes;
  const bool split = head_kept && tail_kept && first == last;
  const bool new_gap_interior = tail_kept || after != blocks_.end();
  const size_t inserted_nodes = (split ? 1 : 0) + (new_gap_interior ? 1 : 0);
  if (inserted_nodes > erased_nodes && !pool_.reserve(inserted_nodes - erased_nodes)) {
    return false;
  }

  // Pass 2: report maximal freed runs while the blocks still describe them.
  if (on_freed != nullptr) {
    uintptr_t run_start = std::max(first->first, lo);
    uintptr_t run_end = run_start;
    for (auto block = first; block != after; ++block) {
      const uintptr_t freed_start = std::max(block->first, lo);
      const uintptr_t freed_end = std::min(block->first + block->second, hi);
      if (freed_start == run_end) {
        run_end = freed_end;
        continue;
      }
      on_freed(ctx, run_start, run_end - run_start);
      run_start = freed_start;
      run_end = freed_end;
    }
    on_freed(ctx, run_start, run_end - run_start);
  }

  // Pass 3: all erases before any insert, so inserts reuse the erased nodes.
  prev_end = head_kept ? first->first : region_start;
  for (auto block = first; block != after; ++block) {
    if (block->first > prev_end) gaps_.erase(Gap{block->first - prev_end, prev_end});
    prev_end = block->first + block->second;
  }
  if (gap_after_erased) gaps_.erase(Gap{after->first - last_end, last_end});

  const uintptr_t new_gap_start = head_kept ? lo : region_start;
  const uintptr_t new_gap_end = tail_kept ? hi : (after != blocks_.end() ? after->first : limit);
  size_t freed_bytes = 0;
  if (split) {
    freed_bytes = hi - lo;
    first->second = lo - first->first;
    blocks_.emplace_hint(after, hi, last_end - hi);
  } else {
    auto block = first;
    if (head_kept) {
      freed_bytes += first->first + first->second - lo;
      first->second = lo - first->first;
      ++block;
    }
    BlockMap::node_type tail_node;
    while (block != after) {
      if (block == last && tail_kept) {
        freed_bytes += hi - block->first;
        tail_node = blocks_.extract(block);  // Re-keyed and reinserted: no new node needed.
        break;
      }
      freed_bytes += block->second;
      block = blocks_.erase(block);
    }
    if (!tail_node.empty()) {
      tail_node.key() = hi;
      tail_node.mapped() = last_end - hi;
      blocks_.insert(after, std::move(tail_node));
    }
  }
  if (new_gap_interior) gaps_.insert(Gap{new_gap_end - new_gap_start, new_gap_start});
  allocated_bytes_ -= freed_bytes;
  return true;
}

bool ArenaAllocator::resize_in_place(uintptr_t p, size_t new_len, FreedFn on_freed,
                                     void* ctx) noexcept {
  if (new_len == 0) return false;
  const auto block = blocks_.find(p);
  if (block == blocks_.end()) return false;
  size_t rounded = 0;
  if (!round_to_pages(new_len, &rounded)) return false;
  const size_t old_len = block->second;
  if (rounded == old_len) return true;

  const uintptr_t old_end = p + old_len;
  const auto next = std::next(block);
  const bool has_next = next != blocks_.end();
  const uintptr_t free_end = has_next ? next->first : arena_end();

  if (rounded > old_len) {
    if (rounded - old_len > free_end - old_end) return false;
    const uintptr_t new_end = p + rounded;
    if (has_next) {  // The gap before `next` shrinks; the erase frees the node the insert uses.
      gaps_.erase(Gap{free_end - old_end, old_end});
      if (free_end > new_end) gaps_.insert(Gap{free_end - new_end, new_end});
    }
    block->second = rounded;
    allocated_bytes_ += rounded - old_len;
    return true;
  }

  const uintptr_t new_end = p + rounded;
  if (has_next) {  // The freed tail joins the gap before `next` (the top needs no node).
    const bool had_gap = free_end > old_end;
    if (!had_gap && !pool_.reserve(1)) return false;
    if (had_gap) gaps_.erase(Gap{free_end - old_end, old_end});
    gaps_.insert(Gap{free_end - new_end, new_end});
  }
  block->second = rounded;
  allocated_bytes_ -= old_len - rounded;
  if (on_freed != nullptr) on_freed(ctx, new_end, old_len - rounded);
  return true;
}

bool ArenaAllocator::verify_invariants() const noexcept {
  size_t total = 0;
  size_t interior_gaps = 0;
  uintptr_t prev_end = lowest_start_;
  for (const auto& [start, len] : blocks_) {
    if (len == 0 || (start | len) & (page_size_ - 1)) return false;
    if (start < prev_end || len > arena_end() - start) return false;
    if (start > prev_end) {
      ++interior_gaps;
      if (gaps_.find(Gap{start - prev_end, prev_end}) == gaps_.end()) return false;
    }
    prev_end = start + len;
    total += len;
  }
  return total == allocated_bytes_ && interior_gaps == gaps_.size();
}

}  // namespace extmem::shim
