// Page-granular range allocator for the shim's arena. Pure bookkeeping: no syscalls, no locking
// (the caller serialises), no exceptions, and no use of the global allocator, because it runs
// inside the malloc/mmap interposers. Metadata nodes come from a caller-supplied page mapper and
// are recycled through a free list, never returned.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>

namespace extmem::shim {

namespace arena_detail {

// Fixed-size slots for the red-black tree nodes of both indexes.
inline constexpr size_t kNodeSlotBytes = 64;
inline constexpr size_t kNodeSlotAlign = alignof(std::max_align_t);
// Bytes requested from map_pages per refill (rounded up to the page size).
inline constexpr size_t kNodeChunkBytes = size_t{64} << 10;

class NodePool {
 public:
  using MapPagesFn = void* (*)(size_t bytes);

  NodePool(MapPagesFn map_pages, size_t page_size) noexcept;
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  // Makes sure `count` slots can be taken without mapping; false if map_pages failed.
  bool reserve(size_t count) noexcept;
  // Never fails: callers reserve first, and running dry anyway is a bug (aborts).
  void* take() noexcept;
  void give(void* slot) noexcept;
  size_t free_slots() const noexcept { return free_count_; }

 private:
  struct FreeSlot {
    FreeSlot* next;
  };

  MapPagesFn map_pages_;
  size_t chunk_bytes_;
  FreeSlot* free_list_ = nullptr;
  size_t free_count_ = 0;
};

// Standard allocator over NodePool, so std::map/std::set never touch operator new.
template <typename T>
class PoolAllocator {
 public:
  using value_type = T;

  explicit PoolAllocator(NodePool* pool) noexcept : pool_(pool) {}
  template <typename U>
  PoolAllocator(const PoolAllocator<U>& other) noexcept : pool_(other.pool()) {}

  T* allocate(size_t count) noexcept {
    static_assert(sizeof(T) <= kNodeSlotBytes, "tree node does not fit a pool slot");
    static_assert(alignof(T) <= kNodeSlotAlign, "tree node over-aligned for a pool slot");
    if (count != 1) __builtin_trap();  // Node-based containers allocate one node at a time.
    return static_cast<T*>(pool_->take());
  }
  void deallocate(T* node, size_t /*count*/) noexcept { pool_->give(node); }

  NodePool* pool() const noexcept { return pool_; }

  template <typename U>
  bool operator==(const PoolAllocator<U>& other) const noexcept {
    return pool_ == other.pool();
  }

 private:
  NodePool* pool_;
};

}  // namespace arena_detail

class ArenaAllocator {
 public:
  using MapPagesFn = void* (*)(size_t bytes);
  using FreedFn = void (*)(void* ctx, uintptr_t start, size_t len);
  struct Range {
    uintptr_t start;
    size_t len;
  };

  // Manages [base, base + size); base and size are page aligned, page_size a power of two.
  // The first `reserved_prefix` bytes (rounded up to pages) are never handed out.
  ArenaAllocator(uintptr_t base, size_t size, MapPagesFn map_pages, size_t reserved_prefix = 0,
                 size_t page_size = 4096) noexcept;
  ArenaAllocator(const ArenaAllocator&) = delete;
  ArenaAllocator& operator=(const ArenaAllocator&) = delete;

  // Start of a block of at least len bytes (rounded up to pages), aligned to `align` (a power of
  // two; values below the page size mean page alignment). 0 if len is 0, align is not a power of
  // two, or arena space or metadata memory ran out.
  // Best fit among the free extents below the last block (lowest address on ties), the top of the
  // arena only when none fits. O(log n), except that an over-aligned request that would otherwise
  // fail scans the free extents before giving up.
  uintptr_t allocate(size_t len, size_t align = 0) noexcept;

  // Length of the block that starts exactly at p, 0 if p is not a block start.
  size_t block_size(uintptr_t p) const noexcept;
  // The block containing p, or {0, 0}.
  Range block_containing(uintptr_t p) const noexcept;
  // p within [base, base + size).
  bool contains(uintptr_t p) const noexcept { return p - base_ < size_; }

  // Frees every allocated page overlapping [addr, addr + len) (munmap semantics: the range may
  // cover parts of blocks, several blocks and free pages). Reports each maximal freed run through
  // on_freed (may be null) before the bookkeeping changes; on_freed must not re-enter the
  // allocator. Returns false, with nothing changed and nothing reported, only if metadata memory
  // ran out.
  bool release(uintptr_t addr, size_t len, FreedFn on_freed, void* ctx) noexcept;

  // Resizes the block starting at p in place. Shrinking reports the freed tail through on_freed
  // (may be null); growing needs the pages right after the block to be free. False (nothing
  // changed) if p is not a block start, new_len is 0, the space is taken, or metadata ran out.
  bool resize_in_place(uintptr_t p, size_t new_len, FreedFn on_freed, void* ctx) noexcept;

  size_t allocated_bytes() const noexcept { return allocated_bytes_; }
  size_t block_count() const noexcept { return blocks_.size(); }
  uintptr_t base() const noexcept { return base_; }
  size_t size() const noexcept { return size_; }

  // O(n) self-check of both indexes, for tests and debug builds.
  bool verify_invariants() const noexcept;

 private:
  // A free extent followed by a block. The free extent after the last block (the "top") is
  // implicit, so an empty arena needs no metadata and the constructor cannot fail.
  struct Gap {
    size_t len;
    uintptr_t start;
    friend auto operator<=>(const Gap&, const Gap&) = default;  // Best fit, then lowest address.
  };
  using BlockMap = std::map<uintptr_t, size_t, std::less<uintptr_t>,
                            arena_detail::PoolAllocator<std::pair<const uintptr_t, size_t>>>;
  using GapSet = std::set<Gap, std::less<Gap>, arena_detail::PoolAllocator<Gap>>;

  uintptr_t arena_end() const noexcept { return base_ + size_; }
  // Start of the implicit top extent.
  uintptr_t top_start() const noexcept;
  bool round_to_pages(size_t len, size_t* rounded) const noexcept;
  // Fits an aligned block of len bytes into [start, start + extent_len)? Sets *block_start.
  bool aligned_fit(uintptr_t start, size_t extent_len, size_t len, size_t align,
                   uintptr_t* block_start) const noexcept;
  // Best-fit interior gap for an aligned request (probing at most probe_limit gaps before
  // falling back to one with enough slack for any start), or gaps_.end().
  GapSet::const_iterator find_gap(size_t len, size_t align, size_t probe_limit,
                                  uintptr_t* block_start) const noexcept;

  uintptr_t base_;
  size_t size_;
  size_t page_size_;
  uintptr_t lowest_start_;  // base + rounded reserved prefix.
  size_t allocated_bytes_ = 0;
  arena_detail::NodePool pool_;  // Declared before the indexes: they hand nodes back on teardown.
  BlockMap blocks_;              // start -> len of every allocated block.
  GapSet gaps_;                  // Every non-empty free extent below the last block.
};

}  // namespace extmem::shim
