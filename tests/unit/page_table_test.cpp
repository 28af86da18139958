#include "client/page_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace extmem::daemon {
namespace {

constexpr uint64_t kChunk = PageTable::kChunkPages;
constexpr uint32_t kNoCluster = PageTable::kNoCluster;
constexpr PageState kAllStates[] = {PageState::kEmpty, PageState::kResident, PageState::kEvicting,
                                    PageState::kEvicted};

using Visit = std::pair<uint64_t, PageState>;

// What touching a new chunk costs, as memory_bytes() reports it.
uint64_t ChunkBytes() {
  PageTable table(kChunk);
  const uint64_t base = table.memory_bytes();
  table.set_state(0, PageState::kResident);
  return table.memory_bytes() - base;
}

std::vector<Visit> Visits(const PageTable& table, uint64_t first, uint64_t count) {
  std::vector<Visit> visits;
  table.for_each_nonempty(
      first, count, [&](uint64_t page, PageState state) { visits.emplace_back(page, state); });
  return visits;
}

bool InMemory(PageState state) {
  return state == PageState::kResident || state == PageState::kEvicting;
}

// ---------------------------------------------------------------------------------------------
// States and counters.

TEST(PageTableTest, EveryPageStartsEmpty) {
  PageTable table(3 * kChunk + 7);
  EXPECT_EQ(table.pages(), 3 * kChunk + 7);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  for (uint64_t page = 0; page < table.pages(); ++page) {
    ASSERT_EQ(table.state(page), PageState::kEmpty) << page;
    ASSERT_EQ(table.cluster(page), kNoCluster) << page;
  }
  EXPECT_TRUE(Visits(table, 0, table.pages()).empty());
}

TEST(PageTableTest, SetAndGetState) {
  PageTable table(4 * kChunk);
  table.set_state(0, PageState::kResident);
  table.set_state(kChunk + 3, PageState::kEvicting);
  table.set_state(kChunk + 5, PageState::kEvicted);
  table.set_state(4 * kChunk - 1, PageState::kResident);
  EXPECT_EQ(table.state(0), PageState::kResident);
  EXPECT_EQ(table.state(kChunk + 3), PageState::kEvicting);
  EXPECT_EQ(table.state(kChunk + 5), PageState::kEvicted);
  EXPECT_EQ(table.state(4 * kChunk - 1), PageState::kResident);
  // Neighbours in the same chunk are untouched.
  EXPECT_EQ(table.state(1), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 2), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 4), PageState::kEmpty);
  EXPECT_EQ(table.state(4 * kChunk - 2), PageState::kEmpty);

  table.set_state(kChunk + 3, PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 3), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 5), PageState::kEvicted);
}

TEST(PageTableTest, ResidentPagesCountsResidentAndEvicting) {
  PageTable table(2 * kChunk);
  table.set_state(1, PageState::kResident);
  table.set_state(2, PageState::kEvicting);
  table.set_state(kChunk + 1, PageState::kResident);
  table.set_state(kChunk + 2, PageState::kEvicted);
  EXPECT_EQ(table.resident_pages(), 3u);
  // A page being written out is still in memory.
  table.set_state(1, PageState::kEvicting);
  EXPECT_EQ(table.resident_pages(), 3u);
  // Once written out it is not.
  table.set_state(1, PageState::kEvicted);
  EXPECT_EQ(table.resident_pages(), 2u);
}

TEST(PageTableTest, SwappedPagesCountsOnlyEvicted) {
  PageTable table(2 * kChunk);
  table.set_state(1, PageState::kResident);
  table.set_state(2, PageState::kEvicting);
  EXPECT_EQ(table.swapped_pages(), 0u);
  table.set_state(3, PageState::kEvicted);
  table.set_state(kChunk + 3, PageState::kEvicted);
  EXPECT_EQ(table.swapped_pages(), 2u);
  table.set_state(2, PageState::kEvicted);
  EXPECT_EQ(table.swapped_pages(), 3u);
  // Restored, and freed by the application.
  table.set_state(3, PageState::kResident);
  table.set_state(kChunk + 3, PageState::kEmpty);
  EXPECT_EQ(table.swapped_pages(), 1u);
  EXPECT_EQ(table.resident_pages(), 2u);
}

TEST(PageTableTest, EveryTransitionKeepsBothCountersRight) {
  for (PageState from : kAllStates) {
    for (PageState to : kAllStates) {
      SCOPED_TRACE(testing::Message()
                   << "from " << static_cast<int>(from) << " to " << static_cast<int>(to));
      PageTable table(2 * kChunk);
      // Bystanders in the same chunk and in another one.
      table.set_state(7, PageState::kResident);
      table.set_state(8, PageState::kEvicted);
      table.set_state(kChunk + 7, PageState::kEvicting);
      table.set_state(5, from);
      table.set_state(5, to);
      EXPECT_EQ(table.state(5), to);
      EXPECT_EQ(table.resident_pages(), 2u + InMemory(to));
      EXPECT_EQ(table.swapped_pages(), 1u + (to == PageState::kEvicted));
    }
  }
}

TEST(PageTableTest, CountsIgnoreRepeatedStates) {
  PageTable table(2 * kChunk);
  table.set_state(5, PageState::kResident);
  table.set_state(5, PageState::kResident);
  EXPECT_EQ(table.resident_pages(), 1u);
  table.set_state(6, PageState::kEvicted);
  table.set_state(6, PageState::kEvicted);
  EXPECT_EQ(table.swapped_pages(), 1u);
  table.set_state(7, PageState::kEvicting);
  table.set_state(7, PageState::kEvicting);
  EXPECT_EQ(table.resident_pages(), 2u);
  table.set_state(5, PageState::kEmpty);
  table.set_state(5, PageState::kEmpty);
  table.set_state(6, PageState::kEmpty);
  table.set_state(6, PageState::kEmpty);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  // Emptying a page of a never-touched chunk must not underflow the counts.
  table.set_state(kChunk + 1, PageState::kEmpty);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Clearing ranges.

TEST(PageTableTest, ClearRangeAcrossChunks) {
  PageTable table(4 * kChunk);
  table.set_state(kChunk - 2, PageState::kResident);
  table.set_state(kChunk - 1, PageState::kEvicted);
  table.set_state(kChunk, PageState::kEvicting);
  table.set_state(kChunk + 1, PageState::kEvicted);
  table.set_state(3 * kChunk, PageState::kResident);
  ASSERT_EQ(table.resident_pages(), 3u);
  ASSERT_EQ(table.swapped_pages(), 2u);

  // [kChunk - 1, kChunk + 1) spans the boundary; pages kChunk - 2 and kChunk + 1 stay.
  table.clear_range(kChunk - 1, 2);
  EXPECT_EQ(table.resident_pages(), 2u);
  EXPECT_EQ(table.swapped_pages(), 1u);
  EXPECT_EQ(table.state(kChunk - 2), PageState::kResident);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 1), PageState::kEvicted);

  // A range over an untouched chunk and already-empty pages is fine, and so is repeating it.
  table.clear_range(0, 4 * kChunk);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  table.clear_range(0, 4 * kChunk);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  EXPECT_TRUE(Visits(table, 0, table.pages()).empty());
}

TEST(PageTableTest, ClearRangeIsClippedToTheTable) {
  PageTable table(kChunk + 10);
  table.set_state(kChunk + 4, PageState::kResident);
  table.set_state(kChunk + 9, PageState::kEvicted);
  table.clear_range(kChunk + 5, 1000);
  EXPECT_EQ(table.state(kChunk + 9), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 4), PageState::kResident);
  EXPECT_EQ(table.swapped_pages(), 0u);
  table.clear_range(kChunk + 10, 5);  // Entirely past the end.
  table.clear_range(UINT64_MAX, UINT64_MAX);
  EXPECT_EQ(table.state(kChunk + 4), PageState::kResident);
  EXPECT_EQ(table.resident_pages(), 1u);
}

TEST(PageTableTest, ClearRangeWithHugeCountClipsToTableEnd) {
  // "Everything from `first` on": first + count wraps around 2^64 and must still clip.
  PageTable table(2 * kChunk);
  table.set_state(4, PageState::kResident);
  table.set_state(10, PageState::kResident);
  table.set_state(kChunk + 10, PageState::kEvicted);
  table.clear_range(5, UINT64_MAX);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  EXPECT_EQ(table.state(4), PageState::kResident);
  EXPECT_EQ(table.state(10), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 10), PageState::kEmpty);
}

// ---------------------------------------------------------------------------------------------
// Memory.

TEST(PageTableTest, TouchedChunkCostsAboutOneBytePerPage) {
  const uint64_t chunk_bytes = ChunkBytes();
  EXPECT_GE(chunk_bytes, kChunk);
  EXPECT_LE(chunk_bytes, kChunk + 64);  // A small header, not 8-byte entries.
}

TEST(PageTableTest, SettingEmptyInUntouchedChunkAllocatesNothing) {
  PageTable table(8 * kChunk);
  const uint64_t before = table.memory_bytes();
  table.set_state(3 * kChunk, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), before);
  table.clear_range(0, table.pages());
  EXPECT_EQ(table.memory_bytes(), before);
}

TEST(PageTableTest, MemoryGrowsPerTouchedChunkAndShrinksWhenChunkEmpties) {
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(8 * kChunk);
  const uint64_t base = table.memory_bytes();

  table.set_state(1, PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  table.set_state(kChunk - 1, PageState::kEvicted);  // Same chunk: no growth.
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  table.set_state(5 * kChunk + 7, PageState::kEvicting);
  EXPECT_EQ(table.memory_bytes(), base + 2 * chunk_bytes);

  // Clearing part of a chunk keeps it; clearing all of it frees it.
  table.clear_range(0, kChunk / 2);
  EXPECT_EQ(table.memory_bytes(), base + 2 * chunk_bytes);
  table.clear_range(0, kChunk);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kEmpty);

  // A range covering a chunk whole (plus neighbours) frees it too.
  table.clear_range(4 * kChunk + 3, 3 * kChunk);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);

  // A freed chunk can be used again.
  table.set_state(kChunk - 1, PageState::kResident);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);

  // Emptying its last page one at a time frees it as well.
  table.set_state(kChunk - 2, PageState::kEvicted);
  table.set_state(kChunk - 1, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  table.set_state(kChunk - 2, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, ClearingWholeShortLastChunkFreesIt) {
  // The last chunk holds only the table's remaining 100 pages; clearing all of them
  // leaves it as empty as any full chunk, so it should be freed as well.
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(kChunk + 100);
  const uint64_t base = table.memory_bytes();
  table.set_state(kChunk + 50, PageState::kResident);
  table.set_state(kChunk + 99, PageState::kEvicted);
  ASSERT_EQ(table.memory_bytes(), base + chunk_bytes);
  table.clear_range(0, table.pages());
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, HugeSparseTableCostsLittle) {
  // 2^26 pages is a 256 GiB arena; a dense table would need 64 MiB even at a byte a page.
  constexpr uint64_t kPages = uint64_t{1} << 26;
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(kPages);
  const uint64_t base = table.memory_bytes();
  EXPECT_LE(base, uint64_t{2} << 20);  // Only the chunk pointers: 8 bytes per 512 pages.

  table.set_state(0, PageState::kResident);
  table.set_state(kPages / 2, PageState::kEvicted);
  table.set_state(kPages - 1, PageState::kEvicting);
  EXPECT_EQ(table.memory_bytes(), base + 3 * chunk_bytes);
  EXPECT_EQ(table.resident_pages(), 2u);
  EXPECT_EQ(table.swapped_pages(), 1u);
  EXPECT_EQ(table.state(kPages - 1), PageState::kEvicting);
  EXPECT_EQ(table.state(kPages - 2), PageState::kEmpty);

  // Clearing the whole table walks the chunk index, not 2^26 entries, and frees everything.
  table.clear_range(0, kPages);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Swap clusters and slots.

TEST(PageTableTest, ClusterIsPerChunk) {
  PageTable table(3 * kChunk);
  EXPECT_EQ(table.cluster(kChunk + 5), kNoCluster);
  table.set_state(kChunk + 5, PageState::kEvicting);
  EXPECT_EQ(table.cluster(kChunk + 5), kNoCluster);  // Touching a chunk does not assign one.

  table.set_cluster(kChunk + 5, 42);
  // Every page of the same 512-page chunk shares it, whatever its own state...
  EXPECT_EQ(table.cluster(kChunk), 42u);
  EXPECT_EQ(table.cluster(kChunk + 5), 42u);
  EXPECT_EQ(table.cluster(2 * kChunk - 1), 42u);
  // ...and the neighbouring chunks do not.
  EXPECT_EQ(table.cluster(kChunk - 1), kNoCluster);
  EXPECT_EQ(table.cluster(2 * kChunk), kNoCluster);

  table.set_cluster(2 * kChunk + 1, 7);
  EXPECT_EQ(table.cluster(2 * kChunk + 300), 7u);
  EXPECT_EQ(table.cluster(kChunk + 300), 42u);

  // Setting it through any page of the chunk replaces it for all of them.
  table.set_cluster(2 * kChunk - 1, 43);
  EXPECT_EQ(table.cluster(kChunk), 43u);
  table.set_cluster(kChunk, kNoCluster);
  EXPECT_EQ(table.cluster(kChunk + 5), kNoCluster);
  EXPECT_EQ(table.cluster(2 * kChunk), 7u);
}

TEST(PageTableTest, DropSlotReturnsSlotsStillHeldInTheChunk) {
  PageTable table(2 * kChunk);
  table.set_state(1, PageState::kEvicting);
  table.set_state(2, PageState::kEvicting);
  table.set_cluster(1, 9);
  table.hold_slot(1);
  table.hold_slot(2);
  table.hold_slot(kChunk - 1);  // Any page of the chunk counts towards the same chunk.
  table.hold_slot(kChunk + 1);  // Another chunk keeps its own count.

  EXPECT_EQ(table.drop_slot(2), 2u);
  EXPECT_EQ(table.drop_slot(kChunk - 1), 1u);
  EXPECT_EQ(table.drop_slot(1), 0u);  // The caller releases cluster 9 now.
  // Pages remain, so the chunk and its cluster id are still there for the caller to clear.
  EXPECT_EQ(table.cluster(1), 9u);
  EXPECT_EQ(table.drop_slot(kChunk + 1), 0u);
}

TEST(PageTableTest, DropSlotWithNoneHeldReturnsZeroAndDoesNotUnderflow) {
  PageTable table(2 * kChunk);
  const uint64_t base = table.memory_bytes();
  // Never-touched chunk: nothing to drop, and nothing is allocated for asking.
  EXPECT_EQ(table.drop_slot(kChunk + 3), 0u);
  EXPECT_EQ(table.memory_bytes(), base);

  // Touched chunk with no slots held.
  table.set_state(3, PageState::kResident);
  EXPECT_EQ(table.drop_slot(3), 0u);
  EXPECT_EQ(table.drop_slot(3), 0u);
  // Had the count wrapped, one hold and one drop would not bring it back to 0.
  table.hold_slot(3);
  EXPECT_EQ(table.drop_slot(3), 0u);
  table.hold_slot(3);
  table.hold_slot(3);
  EXPECT_EQ(table.drop_slot(3), 1u);
  EXPECT_EQ(table.drop_slot(3), 0u);
  EXPECT_EQ(table.drop_slot(3), 0u);
}

TEST(PageTableTest, ChunkWithHeldSlotsSurvivesClearRangeUntilLastSlotDropped) {
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(3 * kChunk);
  const uint64_t base = table.memory_bytes();
  // Two pages of chunk 1 are being evicted into cluster 5 when the application frees them.
  table.set_state(kChunk + 1, PageState::kEvicting);
  table.set_state(kChunk + 2, PageState::kEvicting);
  table.set_cluster(kChunk + 1, 5);
  table.hold_slot(kChunk + 1);
  table.hold_slot(kChunk + 2);
  ASSERT_EQ(table.memory_bytes(), base + chunk_bytes);

  table.clear_range(0, table.pages());
  EXPECT_EQ(table.state(kChunk + 1), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 2), PageState::kEmpty);
  EXPECT_EQ(table.resident_pages(), 0u);
  // All its pages are empty, but its slots are in flight: the chunk and its cluster stay.
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.cluster(kChunk + 400), 5u);
  EXPECT_TRUE(Visits(table, 0, table.pages()).empty());

  EXPECT_EQ(table.drop_slot(kChunk + 1), 1u);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.cluster(kChunk + 1), 5u);
  // The cluster id must be read before the last slot is dropped: dropping it frees the
  // empty chunk, and the id with it.
  ASSERT_EQ(table.cluster(kChunk + 2), 5u);
  EXPECT_EQ(table.drop_slot(kChunk + 2), 0u);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.cluster(kChunk + 2), kNoCluster);
}

TEST(PageTableTest, ChunkWithHeldSlotsSurvivesEmptyingItsPagesOneByOne) {
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(2 * kChunk);
  const uint64_t base = table.memory_bytes();
  table.set_state(7, PageState::kEvicted);
  table.set_cluster(7, 11);
  table.hold_slot(7);
  table.set_state(7, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.cluster(7), 11u);
  EXPECT_EQ(table.drop_slot(7), 0u);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, HoldingSlotOnUntouchedChunkAllocatesItUntilDropped) {
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(2 * kChunk);
  const uint64_t base = table.memory_bytes();
  table.hold_slot(kChunk + 9);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.state(kChunk + 9), PageState::kEmpty);
  EXPECT_EQ(table.drop_slot(kChunk + 9), 0u);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, LastSlotDroppedOnChunkWithPagesKeepsIt) {
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(2 * kChunk);
  const uint64_t base = table.memory_bytes();
  // An eviction that failed: the page went back to resident and its slot is dropped.
  table.set_state(3, PageState::kEvicting);
  table.set_cluster(3, 2);
  table.hold_slot(3);
  table.set_state(3, PageState::kResident);
  EXPECT_EQ(table.drop_slot(3), 0u);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.state(3), PageState::kResident);
  EXPECT_EQ(table.cluster(3), 2u);  // Still there until the caller clears it.
  table.set_cluster(3, kNoCluster);
  table.set_state(3, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base);
}

// ---------------------------------------------------------------------------------------------
// Iteration.

TEST(PageTableTest, ForEachNonemptyVisitsExactlyNonemptyPagesInOrder) {
  PageTable table(4 * kChunk + 20);
  table.set_state(4 * kChunk + 19, PageState::kResident);  // Last page of a short chunk.
  table.set_state(kChunk, PageState::kEvicted);
  table.set_state(0, PageState::kEvicting);
  table.set_state(kChunk - 1, PageState::kResident);
  table.set_state(kChunk + 1, PageState::kResident);
  table.set_state(kChunk + 2, PageState::kEvicted);
  table.set_state(kChunk + 2, PageState::kEmpty);  // Touched, then emptied again.
  table.set_state(3 * kChunk + 8, PageState::kEvicted);

  const std::vector<Visit> all = {{0, PageState::kEvicting},
                                  {kChunk - 1, PageState::kResident},
                                  {kChunk, PageState::kEvicted},
                                  {kChunk + 1, PageState::kResident},
                                  {3 * kChunk + 8, PageState::kEvicted},
                                  {4 * kChunk + 19, PageState::kResident}};
  EXPECT_EQ(Visits(table, 0, table.pages()), all);
  EXPECT_EQ(Visits(table, 0, UINT64_MAX), all);

  // Part of the table: [kChunk - 1, kChunk + 1) spans a chunk boundary.
  const std::vector<Visit> middle = {{kChunk - 1, PageState::kResident},
                                     {kChunk, PageState::kEvicted}};
  EXPECT_EQ(Visits(table, kChunk - 1, 2), middle);
  const std::vector<Visit> tail = {{3 * kChunk + 8, PageState::kEvicted},
                                   {4 * kChunk + 19, PageState::kResident}};
  EXPECT_EQ(Visits(table, kChunk + 2, UINT64_MAX), tail);
  EXPECT_EQ(Visits(table, 3 * kChunk + 8, 1000), tail);

  EXPECT_TRUE(Visits(table, 1, kChunk - 2).empty());
  EXPECT_TRUE(Visits(table, 5, 0).empty());
  EXPECT_TRUE(Visits(table, table.pages(), 10).empty());
  EXPECT_TRUE(Visits(table, UINT64_MAX, UINT64_MAX).empty());
}

TEST(PageTableTest, ForEachNonemptySkipsUntouchedAndEmptyChunks) {
  // 2^26 pages; only a few chunks exist, and one of them holds a slot but no pages.
  constexpr uint64_t kPages = uint64_t{1} << 26;
  PageTable table(kPages);
  table.set_state(kPages - 1, PageState::kEvicted);
  table.set_state(3, PageState::kResident);
  table.set_state(kPages / 2 + 1, PageState::kEvicting);
  table.hold_slot(kPages / 4);

  const std::vector<Visit> expected = {{3, PageState::kResident},
                                       {kPages / 2 + 1, PageState::kEvicting},
                                       {kPages - 1, PageState::kEvicted}};
  EXPECT_EQ(Visits(table, 0, kPages), expected);
}

// ---------------------------------------------------------------------------------------------
// Everything together, against a model.

TEST(PageTableTest, RandomOperationsMatchASimpleModel) {
  constexpr uint64_t kPages = 4 * kChunk + 37;  // Several chunks and a short last one.
  constexpr uint64_t kChunks = (kPages + kChunk - 1) / kChunk;
  const uint64_t chunk_bytes = ChunkBytes();
  PageTable table(kPages);
  const uint64_t base = table.memory_bytes();

  std::vector<PageState> states(kPages, PageState::kEmpty);
  std::vector<uint32_t> slots(kChunks, 0);
  std::vector<uint32_t> clusters(kChunks, kNoCluster);
  // A chunk is kept while it has a non-empty page or a held slot; when freed, its cluster
  // id goes with it. Clusters are only set on live chunks, as the daemon does.
  auto live = [&](uint64_t chunk) {
    if (slots[chunk] > 0) return true;
    const uint64_t end = std::min((chunk + 1) * kChunk, kPages);
    for (uint64_t page = chunk * kChunk; page < end; ++page) {
      if (states[page] != PageState::kEmpty) return true;
    }
    return false;
  };
  auto forget_if_dead = [&](uint64_t chunk) {
    if (!live(chunk)) clusters[chunk] = kNoCluster;
  };

  std::mt19937_64 rng(20240601);
  auto below = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  // Half the time, pick among the first 8 pages of a chunk so pages change state often.
  auto random_page = [&] {
    return below(2) == 0 ? below(kChunks) * kChunk + below(8) : below(kPages);
  };

  for (int op = 0; op < 5000; ++op) {
    SCOPED_TRACE(testing::Message() << "operation " << op);
    const uint64_t kind = below(100);
    const uint64_t page = random_page();
    const uint64_t chunk = page / kChunk;
    if (kind < 65) {
      const PageState state = kAllStates[below(4)];
      table.set_state(page, state);
      states[page] = state;
      forget_if_dead(chunk);
    } else if (kind < 75) {
      const uint64_t count = below(8) == 0 ? UINT64_MAX : below(2 * kChunk);
      table.clear_range(page, count);
      const uint64_t end = page + std::min(count, kPages - page);
      std::fill(states.begin() + page, states.begin() + end, PageState::kEmpty);
      for (uint64_t c = chunk; c < kChunks && c * kChunk < end; ++c) forget_if_dead(c);
    } else if (kind < 85) {
      table.hold_slot(page);
      ++slots[chunk];
    } else if (kind < 95) {
      if (slots[chunk] > 0) --slots[chunk];
      ASSERT_EQ(table.drop_slot(page), slots[chunk]);
      forget_if_dead(chunk);
    } else if (live(chunk)) {
      const uint32_t cluster = below(4) == 0 ? kNoCluster : static_cast<uint32_t>(below(1000));
      table.set_cluster(page, cluster);
      clusters[chunk] = cluster;
    }

    uint64_t resident = 0;
    uint64_t swapped = 0;
    for (PageState state : states) {
      resident += InMemory(state);
      swapped += state == PageState::kEvicted;
    }
    ASSERT_EQ(table.resident_pages(), resident);
    ASSERT_EQ(table.swapped_pages(), swapped);

    if (op % 50 != 0) continue;
    std::vector<Visit> nonempty;
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_EQ(table.state(p), states[p]) << "page " << p;
      if (states[p] != PageState::kEmpty) nonempty.emplace_back(p, states[p]);
    }
    ASSERT_EQ(Visits(table, 0, kPages), nonempty);
    uint64_t live_chunks = 0;
    for (uint64_t c = 0; c < kChunks; ++c) {
      ASSERT_EQ(table.cluster(c * kChunk), clusters[c]) << "chunk " << c;
      live_chunks += live(c);
    }
    ASSERT_EQ(table.memory_bytes(), base + live_chunks * chunk_bytes);
  }
}

}  // namespace
}  // namespace extmem::daemon
