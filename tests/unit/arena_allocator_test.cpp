#include "arena_allocator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <map>
#include <ostream>
#include <random>
#include <utility>
#include <vector>

namespace extmem::shim {

// In the allocator's namespace (not an unnamed one) so ADL finds them from gtest and std::vector.
static bool operator==(const ArenaAllocator::Range& a, const ArenaAllocator::Range& b) {
  return a.start == b.start && a.len == b.len;
}
static std::ostream& operator<<(std::ostream& out, const ArenaAllocator::Range& range) {
  return out << "{0x" << std::hex << range.start << ", 0x" << range.len << std::dec << "}";
}

namespace {

constexpr size_t kPage = 4096;
constexpr size_t k2MiB = size_t{2} << 20;
// The allocator only does bookkeeping, so the arena is a fake address range never dereferenced.
constexpr uintptr_t kBase = uintptr_t{1} << 40;

// map_pages for tests: real memory (the node pool writes into it), with an optional call budget
// to simulate metadata exhaustion. Chunks are freed in TearDown, after the test's allocators.
std::vector<void*> g_chunks;
long g_map_budget = -1;  // Calls left before failing; -1 is unlimited.
size_t g_map_calls = 0;
size_t g_map_failures = 0;

void* TestMapPages(size_t bytes) {
  if (g_map_budget == 0) {
    ++g_map_failures;
    return nullptr;
  }
  if (g_map_budget > 0) --g_map_budget;
  ++g_map_calls;
  void* chunk = std::aligned_alloc(kPage, (bytes + kPage - 1) / kPage * kPage);
  g_chunks.push_back(chunk);
  return chunk;
}

void* FailingMapPages(size_t /*bytes*/) {
  return nullptr;
}

struct FreedLog {
  std::vector<ArenaAllocator::Range> ranges;
  static void Record(void* ctx, uintptr_t start, size_t len) {
    static_cast<FreedLog*>(ctx)->ranges.push_back({start, len});
  }
};

class ArenaAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_map_budget = -1;
    g_map_calls = 0;
    g_map_failures = 0;
  }
  // Allocators live in the test bodies, so their node memory is no longer in use here.
  void TearDown() override {
    for (void* chunk : g_chunks) std::free(chunk);
    g_chunks.clear();
  }
};

TEST_F(ArenaAllocatorTest, RoundsLengthsUpToWholePages) {
  ArenaAllocator arena(kBase, 64 * kPage, TestMapPages);
  const uintptr_t one_byte = arena.allocate(1);
  EXPECT_EQ(one_byte, kBase);
  EXPECT_EQ(arena.block_size(one_byte), kPage);
  const uintptr_t page_and_byte = arena.allocate(kPage + 1);
  EXPECT_EQ(page_and_byte, kBase + kPage);
  EXPECT_EQ(arena.block_size(page_and_byte), 2 * kPage);
  const uintptr_t exact = arena.allocate(3 * kPage);
  EXPECT_EQ(arena.block_size(exact), 3 * kPage);
  EXPECT_EQ(arena.allocated_bytes(), 6 * kPage);
  EXPECT_EQ(arena.block_count(), 3u);
  EXPECT_EQ(arena.allocate(0), 0u);
  EXPECT_EQ(arena.block_size(exact + kPage), 0u);  // Not a block start.
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, HonoursLargerPageSize) {
  constexpr size_t kBigPage = 16384;
  ArenaAllocator arena(kBase, 16 * kBigPage, TestMapPages, 1, kBigPage);
  const uintptr_t block = arena.allocate(kBigPage + 1);
  EXPECT_EQ(block, kBase + kBigPage);  // The 1-byte prefix reserves a whole page.
  EXPECT_EQ(arena.block_size(block), 2 * kBigPage);
  EXPECT_EQ(arena.allocate(100, 4096) % kBigPage, 0u);  // Sub-page alignment means page alignment.
}

TEST_F(ArenaAllocatorTest, AlignsToRequestedPowerOfTwo) {
  ArenaAllocator arena(kBase, 1024 * kPage, TestMapPages, kPage);
  EXPECT_EQ(arena.allocate(kPage, 16), kBase + kPage);  // Below page size: page alignment.
  const uintptr_t aligned = arena.allocate(kPage, 16 * kPage);
  EXPECT_EQ(aligned % (16 * kPage), 0u);
  EXPECT_EQ(aligned, kBase + 16 * kPage);
  EXPECT_EQ(arena.allocate(kPage, 3 * kPage), 0u);  // Not a power of two.
  EXPECT_EQ(arena.block_count(), 2u);
  // The alignment padding is free and reused, lowest address first.
  EXPECT_EQ(arena.allocate(kPage), kBase + 2 * kPage);
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, ReservedPrefixIsNeverHandedOut) {
  constexpr size_t kPages = 32;
  ArenaAllocator arena(kBase, kPages * kPage, TestMapPages, 3 * kPage + 1);  // Rounds to 4 pages.
  EXPECT_EQ(arena.allocate((kPages - 4) * kPage + 1), 0u);
  const uintptr_t all = arena.allocate((kPages - 4) * kPage);
  EXPECT_EQ(all, kBase + 4 * kPage);
  EXPECT_EQ(arena.allocate(1), 0u);
  FreedLog log;
  ASSERT_TRUE(arena.release(kBase, kPages * kPage, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 1u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{kBase + 4 * kPage, (kPages - 4) * kPage}));
}

TEST_F(ArenaAllocatorTest, ContainsCoversExactlyTheArena) {
  ArenaAllocator arena(kBase, 8 * kPage, TestMapPages);
  EXPECT_TRUE(arena.contains(kBase));
  EXPECT_TRUE(arena.contains(kBase + 8 * kPage - 1));
  EXPECT_FALSE(arena.contains(kBase - 1));
  EXPECT_FALSE(arena.contains(kBase + 8 * kPage));
  EXPECT_EQ(arena.base(), kBase);
  EXPECT_EQ(arena.size(), 8 * kPage);
}

TEST_F(ArenaAllocatorTest, PrefersBestFitThenLowestAddressThenTop) {
  ArenaAllocator arena(kBase, 64 * kPage, TestMapPages);
  // Holes of 5, 2, 3 and 2 pages, in address order, separated by one-page blocks.
  const size_t holes[] = {5, 2, 3, 2};
  std::vector<uintptr_t> hole_starts;
  uintptr_t next = kBase;
  for (size_t pages : holes) {
    hole_starts.push_back(next);
    ASSERT_EQ(arena.allocate(pages * kPage), next);
    ASSERT_EQ(arena.allocate(kPage), next + pages * kPage);
    next += (pages + 1) * kPage;
  }
  for (size_t i = 0; i < std::size(holes); ++i) {
    ASSERT_TRUE(arena.release(hole_starts[i], holes[i] * kPage, nullptr, nullptr));
  }
  EXPECT_EQ(arena.allocate(2 * kPage), hole_starts[1]);  // Exact fit, lower of two.
  EXPECT_EQ(arena.allocate(2 * kPage), hole_starts[3]);
  EXPECT_EQ(arena.allocate(kPage), hole_starts[2]);      // Smallest hole that fits.
  EXPECT_EQ(arena.allocate(4 * kPage), hole_starts[0]);  // The 3-page remainder is too small.
  EXPECT_EQ(arena.allocate(3 * kPage), next);            // Top only when no hole fits.
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, ExhaustionReturnsZero) {
  ArenaAllocator arena(kBase, 16 * kPage, TestMapPages);
  EXPECT_EQ(arena.allocate(17 * kPage), 0u);
  EXPECT_EQ(arena.allocate(SIZE_MAX), 0u);
  EXPECT_EQ(arena.allocate(SIZE_MAX - kPage), 0u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(arena.allocate(kPage), kBase + i * kPage);
  EXPECT_EQ(arena.allocate(1), 0u);
  EXPECT_EQ(arena.allocated_bytes(), 16 * kPage);
  // Free pages that are not contiguous do not satisfy a larger request.
  ASSERT_TRUE(arena.release(kBase + 3 * kPage, kPage, nullptr, nullptr));
  ASSERT_TRUE(arena.release(kBase + 9 * kPage, kPage, nullptr, nullptr));
  EXPECT_EQ(arena.allocate(2 * kPage), 0u);
  EXPECT_EQ(arena.allocate(kPage), kBase + 3 * kPage);
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, FreedNeighboursCoalesceBackToOneExtent) {
  constexpr size_t kPages = 4096;
  ArenaAllocator arena(kBase, kPages * kPage, TestMapPages, 2 * kPage);
  std::mt19937_64 rng(7);
  std::vector<uintptr_t> blocks;
  for (;;) {
    const uintptr_t block = arena.allocate((rng() % 16 + 1) * kPage - rng() % kPage);
    if (block == 0) break;
    blocks.push_back(block);
  }
  ASSERT_GT(blocks.size(), 100u);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  for (uintptr_t block : blocks) {
    ASSERT_TRUE(arena.release(block, arena.block_size(block), nullptr, nullptr));
    ASSERT_TRUE(arena.verify_invariants());
  }
  EXPECT_EQ(arena.block_count(), 0u);
  EXPECT_EQ(arena.allocated_bytes(), 0u);
  EXPECT_EQ(arena.allocate((kPages - 2) * kPage), kBase + 2 * kPage);
}

TEST_F(ArenaAllocatorTest, PartialReleaseSplitsBlock) {
  ArenaAllocator arena(kBase, 64 * kPage, TestMapPages);
  const uintptr_t block = arena.allocate(10 * kPage);
  const uintptr_t after = arena.allocate(kPage);
  FreedLog log;
  ASSERT_TRUE(arena.release(block + 3 * kPage, 2 * kPage, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 1u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{block + 3 * kPage, 2 * kPage}));
  EXPECT_EQ(arena.block_count(), 3u);
  EXPECT_EQ(arena.block_size(block), 3 * kPage);
  EXPECT_EQ(arena.block_size(block + 5 * kPage), 5 * kPage);
  EXPECT_EQ(arena.block_size(after), kPage);
  EXPECT_EQ(arena.block_containing(block + 4 * kPage).len, 0u);
  EXPECT_EQ(arena.block_containing(block + 7 * kPage + 5),
            (ArenaAllocator::Range{block + 5 * kPage, 5 * kPage}));
  EXPECT_EQ(arena.allocated_bytes(), 9 * kPage);
  EXPECT_TRUE(arena.verify_invariants());

  // Unaligned address and length cover every page they touch: here the first and last pages.
  log.ranges.clear();
  ASSERT_TRUE(arena.release(block + 10, 1, FreedLog::Record, &log));
  ASSERT_TRUE(arena.release(block + 10 * kPage - 1, 1, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 2u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{block, kPage}));
  EXPECT_EQ(log.ranges[1], (ArenaAllocator::Range{block + 9 * kPage, kPage}));
  EXPECT_EQ(arena.block_size(block), 0u);
  EXPECT_EQ(arena.block_size(block + kPage), 2 * kPage);
  EXPECT_EQ(arena.block_size(block + 5 * kPage), 4 * kPage);
  EXPECT_TRUE(arena.verify_invariants());

  // The hole in the middle is reused before the top of the arena.
  EXPECT_EQ(arena.allocate(2 * kPage), block + 3 * kPage);
}

TEST_F(ArenaAllocatorTest, ReleaseAcrossBlocksReportsMaximalRuns) {
  ArenaAllocator arena(kBase, 64 * kPage, TestMapPages);
  const uintptr_t a = arena.allocate(4 * kPage);
  const uintptr_t b = arena.allocate(4 * kPage);
  const uintptr_t c = arena.allocate(4 * kPage);
  const uintptr_t d = arena.allocate(4 * kPage);
  ASSERT_TRUE(arena.release(b, 4 * kPage, nullptr, nullptr));
  FreedLog log;
  // Tail of a, the already free b, all of c and the head of d (adjacent to c: one run).
  ASSERT_TRUE(arena.release(a + 2 * kPage, 11 * kPage, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 2u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{a + 2 * kPage, 2 * kPage}));
  EXPECT_EQ(log.ranges[1], (ArenaAllocator::Range{c, 5 * kPage}));
  EXPECT_EQ(arena.block_size(a), 2 * kPage);
  EXPECT_EQ(arena.block_size(d + kPage), 3 * kPage);
  EXPECT_EQ(arena.block_count(), 2u);
  EXPECT_EQ(arena.allocated_bytes(), 5 * kPage);
  EXPECT_TRUE(arena.verify_invariants());

  // Releasing only free pages, or outside the arena, reports nothing and succeeds.
  log.ranges.clear();
  EXPECT_TRUE(arena.release(b, 4 * kPage, FreedLog::Record, &log));
  EXPECT_TRUE(arena.release(kBase - 8 * kPage, 8 * kPage, FreedLog::Record, &log));
  EXPECT_TRUE(arena.release(kBase + 64 * kPage, SIZE_MAX, FreedLog::Record, &log));
  EXPECT_TRUE(log.ranges.empty());
  // A range starting below the arena and running past its end frees everything.
  ASSERT_TRUE(arena.release(kBase - kPage, SIZE_MAX, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 2u);
  EXPECT_EQ(arena.block_count(), 0u);
  EXPECT_EQ(arena.allocate(64 * kPage), kBase);
}

TEST_F(ArenaAllocatorTest, ResizeInPlaceGrowsAndShrinks) {
  ArenaAllocator arena(kBase, 32 * kPage, TestMapPages);
  const uintptr_t a = arena.allocate(2 * kPage);
  const uintptr_t b = arena.allocate(2 * kPage);
  ASSERT_TRUE(arena.release(b, 2 * kPage, nullptr, nullptr));
  const uintptr_t c = arena.allocate(kPage, 8 * kPage);  // Leaves b's pages free between a and c.
  ASSERT_EQ(c, kBase + 8 * kPage);

  FreedLog log;
  EXPECT_TRUE(arena.resize_in_place(a, 4 * kPage, FreedLog::Record, &log));
  EXPECT_EQ(arena.block_size(a), 4 * kPage);
  EXPECT_TRUE(arena.resize_in_place(a, 8 * kPage, FreedLog::Record, &log));  // Up to c exactly.
  EXPECT_FALSE(arena.resize_in_place(a, 8 * kPage + 1, FreedLog::Record, &log));
  EXPECT_EQ(arena.block_size(a), 8 * kPage);
  EXPECT_TRUE(log.ranges.empty());
  EXPECT_EQ(arena.allocated_bytes(), 9 * kPage);

  EXPECT_TRUE(arena.resize_in_place(a, 3 * kPage - 100, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 1u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{a + 3 * kPage, 5 * kPage}));
  EXPECT_EQ(arena.block_size(a), 3 * kPage);
  EXPECT_EQ(arena.allocated_bytes(), 4 * kPage);
  EXPECT_TRUE(arena.verify_invariants());
  // The freed tail is reusable.
  EXPECT_EQ(arena.allocate(5 * kPage), a + 3 * kPage);

  // The last block grows into the top, up to the arena end.
  EXPECT_TRUE(arena.resize_in_place(c, 24 * kPage, nullptr, nullptr));
  EXPECT_FALSE(arena.resize_in_place(c, 24 * kPage + 1, nullptr, nullptr));
  EXPECT_FALSE(arena.resize_in_place(c, SIZE_MAX, nullptr, nullptr));
  EXPECT_TRUE(arena.resize_in_place(c, 24 * kPage, nullptr, nullptr));  // Same size: no-op.

  EXPECT_FALSE(arena.resize_in_place(c + kPage, kPage, nullptr, nullptr));  // Not a block start.
  EXPECT_FALSE(arena.resize_in_place(c, 0, nullptr, nullptr));
  EXPECT_EQ(arena.block_size(c), 24 * kPage);
  EXPECT_EQ(arena.allocated_bytes(), 32 * kPage);
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, TwoMiBAlignment) {
  constexpr size_t kSize = 64 << 20;
  ArenaAllocator arena(kBase, kSize, TestMapPages, kPage);
  const uintptr_t huge = arena.allocate(3 * kPage, k2MiB);
  EXPECT_EQ(huge, kBase + k2MiB);
  const uintptr_t huge2 = arena.allocate(k2MiB + 1, k2MiB);
  EXPECT_EQ(huge2, kBase + 2 * k2MiB);
  EXPECT_EQ(arena.block_size(huge2), k2MiB + kPage);
  // The alignment padding serves small requests, smallest padding gap (best fit) first.
  EXPECT_EQ(arena.allocate(kPage), kBase + k2MiB + 3 * kPage);
  EXPECT_EQ(arena.allocate(k2MiB - 3 * kPage), kBase + kPage);
  for (int i = 0; i < 20; ++i) {
    const uintptr_t block = arena.allocate(k2MiB, k2MiB);
    ASSERT_NE(block, 0u);
    EXPECT_EQ(block % k2MiB, 0u);
  }
  EXPECT_TRUE(arena.verify_invariants());
  EXPECT_EQ(arena.allocate(kSize, k2MiB), 0u);
}

TEST_F(ArenaAllocatorTest, AlignedRequestFindsTheOnlyFittingGap) {
  // Many same-size gaps sort before the only 2 MiB aligned one and the top is full, so the
  // bounded probe misses it and only the fallback scan finds it.
  constexpr size_t kPages = 1024;
  ArenaAllocator arena(kBase, kPages * kPage, TestMapPages);
  for (size_t i = 0; i < kPages; ++i) ASSERT_EQ(arena.allocate(kPage), kBase + i * kPage);
  for (size_t i = 1; i <= 12; ++i) {
    ASSERT_TRUE(arena.release(kBase + i * 10 * kPage, 2 * kPage, nullptr, nullptr));
  }
  ASSERT_TRUE(arena.release(kBase + k2MiB, 2 * kPage, nullptr, nullptr));
  EXPECT_EQ(arena.allocate(3 * kPage), 0u);
  EXPECT_EQ(arena.allocate(2 * kPage, k2MiB), kBase + k2MiB);
  EXPECT_EQ(arena.allocate(kPage, k2MiB), 0u);
  EXPECT_EQ(arena.allocate(2 * kPage), kBase + 10 * kPage);
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, WithoutMetadataMemoryOperationsFailCleanly) {
  ArenaAllocator arena(kBase, 64 * kPage, FailingMapPages);
  EXPECT_EQ(arena.allocate(kPage), 0u);
  EXPECT_TRUE(arena.release(kBase, 64 * kPage, nullptr, nullptr));  // Nothing to free.
  EXPECT_EQ(arena.block_count(), 0u);
  EXPECT_TRUE(arena.verify_invariants());
}

TEST_F(ArenaAllocatorTest, MetadataExhaustionLeavesStateUnchanged) {
  g_map_budget = 1;
  ArenaAllocator arena(kBase, size_t{1} << 30, TestMapPages);
  const uintptr_t big = arena.allocate(4 * kPage);
  ASSERT_EQ(big, kBase);
  std::vector<uintptr_t> pages;
  for (;;) {
    const uintptr_t page = arena.allocate(kPage);
    if (page == 0) break;
    pages.push_back(page);
  }
  ASSERT_EQ(g_map_calls, 1u);
  ASSERT_GT(g_map_failures, 0u);
  ASSERT_GT(pages.size(), 100u);
  const size_t blocks = arena.block_count();
  const size_t bytes = arena.allocated_bytes();
  auto expect_unchanged = [&] {
    EXPECT_EQ(arena.block_count(), blocks);
    EXPECT_EQ(arena.allocated_bytes(), bytes);
    EXPECT_TRUE(arena.verify_invariants());
  };
  expect_unchanged();

  // Splitting a block needs two new nodes: refused, nothing reported.
  FreedLog log;
  EXPECT_FALSE(arena.release(big + kPage, kPage, FreedLog::Record, &log));
  EXPECT_TRUE(log.ranges.empty());
  EXPECT_EQ(arena.block_size(big), 4 * kPage);
  expect_unchanged();
  // Shrinking a block whose successor is adjacent needs a gap node: refused.
  EXPECT_FALSE(arena.resize_in_place(big, kPage, FreedLog::Record, &log));
  EXPECT_TRUE(log.ranges.empty());
  expect_unchanged();
  EXPECT_EQ(arena.allocate(kPage, 64 * kPage), 0u);  // Would need a block and a gap node.
  expect_unchanged();

  // Freeing a whole interior block trades its node for a gap node, so it still works...
  const uintptr_t hole = pages[pages.size() / 2];
  ASSERT_TRUE(arena.release(hole, kPage, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 1u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{hole, kPage}));
  EXPECT_TRUE(arena.verify_invariants());
  // ...and an exact fit into that hole trades the gap node back.
  EXPECT_EQ(arena.allocate(kPage), hole);
  EXPECT_TRUE(arena.verify_invariants());
  // Freeing the last block returns a node (its space joins the top), enabling one shrink.
  ASSERT_TRUE(arena.release(pages.back(), kPage, nullptr, nullptr));
  log.ranges.clear();
  EXPECT_TRUE(arena.resize_in_place(big, kPage, FreedLog::Record, &log));
  ASSERT_EQ(log.ranges.size(), 1u);
  EXPECT_EQ(log.ranges[0], (ArenaAllocator::Range{big + kPage, 3 * kPage}));
  EXPECT_TRUE(arena.verify_invariants());

  // With metadata memory again, everything works.
  g_map_budget = -1;
  ASSERT_TRUE(arena.release(big + kPage, kPage, nullptr, nullptr));  // Nothing allocated there.
  for (int i = 0; i < 2000; ++i) ASSERT_NE(arena.allocate(kPage, 2 * kPage), 0u);
  const uintptr_t block = arena.allocate(3 * kPage);
  ASSERT_TRUE(arena.release(block + kPage, kPage, nullptr, nullptr));
  EXPECT_EQ(arena.block_size(block + 2 * kPage), kPage);
  EXPECT_TRUE(arena.verify_invariants());
  EXPECT_GT(g_map_calls, 1u);
}

// Shadow model: blocks as a plain map plus a per-page bitmap, updated the naive way.
class ShadowArena {
 public:
  ShadowArena(size_t pages, size_t prefix_pages)
      : pages_(pages), prefix_pages_(prefix_pages), allocated_(pages, false) {}

  uintptr_t end() const { return kBase + pages_ * kPage; }
  const std::map<uintptr_t, size_t>& blocks() const { return blocks_; }
  bool page_allocated(uintptr_t addr) const { return allocated_[(addr - kBase) / kPage]; }

  size_t allocated_bytes() const {
    size_t total = 0;
    for (const auto& [start, len] : blocks_) total += len;
    return total;
  }

  bool range_free(uintptr_t start, size_t len) const {
    for (uintptr_t page = start; page < start + len; page += kPage) {
      if (page_allocated(page)) return false;
    }
    return true;
  }

  void add(uintptr_t start, size_t len) {
    blocks_[start] = len;
    for (uintptr_t page = start; page < start + len; page += kPage) set(page, true);
  }

  bool aligned_fit_exists(size_t len, size_t align) const {
    const uintptr_t lowest = kBase + prefix_pages_ * kPage;
    for (uintptr_t start = (lowest + align - 1) / align * align; start + len <= end();
         start += align) {
      if (range_free(start, len)) return true;
    }
    return false;
  }

  // Same clipping as the allocator documents: pages touched by [addr, addr+len) in the arena.
  std::vector<ArenaAllocator::Range> release(uintptr_t addr, size_t len) {
    std::vector<ArenaAllocator::Range> runs;
    if (len == 0 || addr >= end()) return runs;
    const uintptr_t from = std::max(addr, kBase);
    const uintptr_t to = len >= end() - addr ? end() : addr + len;
    if (from >= to) return runs;
    const uintptr_t lo = from / kPage * kPage;
    const uintptr_t hi = (to + kPage - 1) / kPage * kPage;
    for (uintptr_t page = lo; page < hi; page += kPage) {
      if (!page_allocated(page)) continue;
      if (!runs.empty() && runs.back().start + runs.back().len == page) {
        runs.back().len += kPage;
      } else {
        runs.push_back({page, kPage});
      }
    }
    std::map<uintptr_t, size_t> kept;
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      const uintptr_t start = it->first;
      const uintptr_t block_end = start + it->second;
      if (block_end <= lo || start >= hi) {
        ++it;
        continue;
      }
      if (start < lo) kept[start] = lo - start;
      if (block_end > hi) kept[hi] = block_end - hi;
      it = blocks_.erase(it);
    }
    blocks_.insert(kept.begin(), kept.end());
    for (uintptr_t page = lo; page < hi; page += kPage) set(page, false);
    return runs;
  }

  void resize(uintptr_t start, size_t old_len, size_t new_len) {
    blocks_[start] = new_len;
    for (uintptr_t page = start + std::min(old_len, new_len);
         page < start + std::max(old_len, new_len); page += kPage) {
      set(page, new_len > old_len);
    }
  }

 private:
  void set(uintptr_t page, bool value) { allocated_[(page - kBase) / kPage] = value; }

  size_t pages_;
  size_t prefix_pages_;
  std::vector<bool> allocated_;
  std::map<uintptr_t, size_t> blocks_;
};

void ExpectMatchesModel(const ArenaAllocator& arena, const ShadowArena& model, bool check_pages) {
  ASSERT_TRUE(arena.verify_invariants());
  ASSERT_EQ(arena.block_count(), model.blocks().size());
  ASSERT_EQ(arena.allocated_bytes(), model.allocated_bytes());
  for (const auto& [start, len] : model.blocks()) ASSERT_EQ(arena.block_size(start), len);
  if (!check_pages) return;
  for (uintptr_t page = kBase; page < model.end(); page += kPage) {
    const ArenaAllocator::Range range = arena.block_containing(page + 17);
    if (!model.page_allocated(page)) {
      ASSERT_EQ(range.len, 0u);
      continue;
    }
    auto block = model.blocks().upper_bound(page);
    --block;
    ASSERT_EQ(range.start, block->first);
    ASSERT_EQ(range.len, block->second);
  }
}

struct RandomRun {
  uint64_t seed;
  int operations;
  size_t max_block_pages;
  size_t max_release_pages;
  size_t allocate_percent;
  size_t release_percent;  // The rest are resizes.
  long map_budget;         // -1: unlimited metadata memory.
};

void RunRandomized(const RandomRun& run) {
  constexpr size_t kPages = 2048;
  constexpr size_t kPrefixPages = 3;
  g_map_budget = run.map_budget;
  g_map_calls = 0;
  g_map_failures = 0;
  ArenaAllocator arena(kBase, kPages * kPage, TestMapPages, kPrefixPages * kPage - 5);
  ShadowArena model(kPages, kPrefixPages);
  std::mt19937_64 rng(run.seed);
  auto uniform = [&](size_t lo, size_t hi) { return lo + rng() % (hi - lo + 1); };
  const size_t aligns[] = {0, 1, kPage, 4 * kPage, 16 * kPage, 128 * kPage};
  size_t allocations = 0;
  size_t exhaustions = 0;
  size_t freed_runs = 0;
  size_t resizes = 0;
  size_t metadata_failures = 0;

  auto random_block = [&]() -> std::pair<uintptr_t, size_t> {
    if (model.blocks().empty()) return {kBase + uniform(0, kPages - 1) * kPage, 0};
    auto it = model.blocks().begin();
    std::advance(it, uniform(0, model.blocks().size() - 1));
    return *it;
  };

  for (int op = 0; op < run.operations; ++op) {
    SCOPED_TRACE(::testing::Message() << "seed " << run.seed << " op " << op);
    const size_t kind = uniform(0, 99);
    if (kind < run.allocate_percent) {
      const size_t len = uniform(1, run.max_block_pages * kPage);
      const size_t align = aligns[uniform(0, std::size(aligns) - 1)];
      const size_t rounded = (len + kPage - 1) / kPage * kPage;
      const size_t effective_align = std::max(align, kPage);
      const uintptr_t block = arena.allocate(len, align);
      if (block == 0) {
        if (model.aligned_fit_exists(rounded, effective_align)) {
          ASSERT_GT(g_map_failures, 0u) << "allocation failed although space was free";
          ++metadata_failures;
        } else {
          ++exhaustions;
        }
      } else {
        ASSERT_EQ(block % effective_align, 0u);
        ASSERT_GE(block, kBase + kPrefixPages * kPage);
        ASSERT_LE(block + rounded, model.end());
        ASSERT_TRUE(model.range_free(block, rounded)) << "overlaps an allocated block";
        model.add(block, rounded);
        ++allocations;
      }
    } else if (kind < run.allocate_percent + run.release_percent) {
      // A whole block, or a random range, possibly unaligned, spanning blocks, free pages and
      // the arena edges.
      uintptr_t addr;
      size_t len;
      if (kind % 3 == 0) {
        const auto [start, block_len] = random_block();
        addr = start;
        len = block_len;
      } else {
        addr = kBase - 4 * kPage + uniform(0, (kPages + 8) * kPage);
        len = uniform(0, run.max_release_pages * kPage);
      }
      ShadowArena released = model;
      const std::vector<ArenaAllocator::Range> expected = released.release(addr, len);
      FreedLog log;
      if (!arena.release(addr, len, FreedLog::Record, &log)) {
        ASSERT_GT(g_map_failures, 0u);
        ASSERT_TRUE(log.ranges.empty());
        ++metadata_failures;
      } else {
        ASSERT_EQ(log.ranges, expected);
        model = std::move(released);
        freed_runs += log.ranges.size();
      }
    } else {
      auto [start, old_len] = random_block();
      const size_t new_len = uniform(0, 2 * run.max_block_pages * kPage);
      const size_t rounded = (new_len + kPage - 1) / kPage * kPage;
      FreedLog log;
      const bool resized = arena.resize_in_place(start, new_len, FreedLog::Record, &log);
      bool expected = old_len != 0 && new_len != 0;
      if (expected && rounded > old_len) {
        expected =
            start + rounded <= model.end() && model.range_free(start + old_len, rounded - old_len);
      }
      if (resized != expected) {
        ASSERT_FALSE(resized) << "resized into allocated space";
        ASSERT_GT(g_map_failures, 0u) << "resize failed although possible";
        ++metadata_failures;
      } else if (resized) {
        if (rounded < old_len) {
          ASSERT_EQ(log.ranges.size(), 1u);
          ASSERT_EQ(log.ranges[0], (ArenaAllocator::Range{start + rounded, old_len - rounded}));
        } else {
          ASSERT_TRUE(log.ranges.empty());
        }
        model.resize(start, old_len, rounded);
        ++resizes;
      }
      if (!resized) {
        ASSERT_TRUE(log.ranges.empty());
      }
    }
    ExpectMatchesModel(arena, model, op % 64 == 0);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // The run must have exercised the interesting paths, or it proves little.
  EXPECT_GT(allocations, static_cast<size_t>(run.operations) / 10);
  EXPECT_GT(exhaustions, 0u);
  EXPECT_GT(freed_runs, static_cast<size_t>(run.operations) / 10);
  EXPECT_GT(resizes, static_cast<size_t>(run.operations) / 50);
  if (run.map_budget >= 0) {
    EXPECT_GT(metadata_failures, 0u);
  }

  // Freeing everything leaves one extent: the whole arena past the prefix is allocatable.
  g_map_budget = -1;
  ASSERT_TRUE(arena.release(kBase, kPages * kPage, nullptr, nullptr));
  EXPECT_EQ(arena.block_count(), 0u);
  EXPECT_EQ(arena.allocated_bytes(), 0u);
  EXPECT_EQ(arena.allocate((kPages - kPrefixPages) * kPage), kBase + kPrefixPages * kPage);
}

TEST_F(ArenaAllocatorTest, RandomizedAgainstShadowModel) {
  for (uint64_t seed : {1u, 2u, 3u}) RunRandomized({seed, 4000, 24, 96, 45, 35, -1});
}

TEST_F(ArenaAllocatorTest, RandomizedSmallBlocksUnderMetadataPressure) {
  // Tiny blocks and short releases push the node count past one pool chunk (1024 nodes), whose
  // refill then fails.
  for (uint64_t seed : {11u, 12u}) RunRandomized({seed, 8000, 2, 6, 65, 20, 1});
}

}  // namespace
}  // namespace extmem::shim
