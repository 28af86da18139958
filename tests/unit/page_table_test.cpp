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
// A directory finds the 512 chunks of one GiB of arena.
constexpr uint64_t kDirectoryChunks = 512;
constexpr uint64_t kDirectoryPages = kDirectoryChunks * kChunk;
constexpr PageState kAllStates[] = {PageState::kEmpty, PageState::kResident, PageState::kEvicting,
                                    PageState::kEvicted, PageState::kResidentClean};
constexpr uint64_t kStateCount = sizeof(kAllStates) / sizeof(kAllStates[0]);

using Visit = std::pair<uint64_t, PageState>;

// What touching a new chunk costs, as memory_bytes() reports it, once its GiB's directory
// exists.
uint64_t ChunkBytes() {
  PageTable table(2 * kChunk);
  table.set_state(0, PageState::kResident);
  const uint64_t before = table.memory_bytes();
  table.set_state(kChunk, PageState::kResident);
  return table.memory_bytes() - before;
}

// What touching the first chunk of a GiB costs: its directory and the chunk.
uint64_t FirstChunkBytes() {
  PageTable table(kChunk);
  const uint64_t base = table.memory_bytes();
  table.set_state(0, PageState::kResident);
  return table.memory_bytes() - base;
}

// What a directory costs on its own.
uint64_t DirectoryBytes() {
  return FirstChunkBytes() - ChunkBytes();
}

std::vector<Visit> Visits(const PageTable& table, uint64_t first, uint64_t count) {
  std::vector<Visit> visits;
  table.for_each_nonempty(
      first, count, [&](uint64_t page, PageState state) { visits.emplace_back(page, state); });
  return visits;
}

bool InMemory(PageState state) {
  return state == PageState::kResident || state == PageState::kEvicting ||
         state == PageState::kResidentClean;
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
  table.set_state(2 * kChunk + 9, PageState::kResidentClean);
  EXPECT_EQ(table.state(0), PageState::kResident);
  EXPECT_EQ(table.state(2 * kChunk + 9), PageState::kResidentClean);
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

TEST(PageTableTest, ResidentCleanIsInMemoryAndNotSwapped) {
  PageTable table(2 * kChunk);
  table.set_state(4, PageState::kEvicted);
  ASSERT_EQ(table.swapped_pages(), 1u);
  ASSERT_EQ(table.resident_pages(), 0u);
  // Restored: in memory again and identical to its slot; it no longer counts as swapped.
  table.set_state(4, PageState::kResidentClean);
  EXPECT_EQ(table.state(4), PageState::kResidentClean);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  // Evicted again with no write.
  table.set_state(4, PageState::kEvicted);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 1u);
  // Restored, then written: resident either way.
  table.set_state(4, PageState::kResidentClean);
  table.set_state(4, PageState::kResident);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  // A clean page is a non-empty page: it is visited, and clearing it uncounts it.
  table.set_state(kChunk + 6, PageState::kResidentClean);
  EXPECT_EQ(table.resident_pages(), 2u);
  const std::vector<Visit> visits = {{4, PageState::kResident},
                                     {kChunk + 6, PageState::kResidentClean}};
  EXPECT_EQ(Visits(table, 0, table.pages()), visits);
  table.clear_range(kChunk, kChunk);
  EXPECT_EQ(table.resident_pages(), 1u);
  EXPECT_EQ(table.swapped_pages(), 0u);
  EXPECT_EQ(table.state(kChunk + 6), PageState::kEmpty);
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
      table.set_state(9, PageState::kResidentClean);
      table.set_state(kChunk + 7, PageState::kEvicting);
      table.set_state(5, from);
      EXPECT_EQ(table.resident_pages(), 3u + InMemory(from));
      EXPECT_EQ(table.swapped_pages(), 1u + (from == PageState::kEvicted));
      table.set_state(5, to);
      EXPECT_EQ(table.state(5), to);
      EXPECT_EQ(table.state(9), PageState::kResidentClean);
      EXPECT_EQ(table.resident_pages(), 3u + InMemory(to));
      EXPECT_EQ(table.swapped_pages(), 1u + (to == PageState::kEvicted));
      // Alone in its chunk, the page keeps the chunk (and its directory) exactly while it is
      // non-empty.
      PageTable lone(2 * kChunk);
      const uint64_t base = lone.memory_bytes();
      lone.set_state(kChunk + 5, from);
      lone.set_state(kChunk + 5, to);
      EXPECT_EQ(lone.resident_pages(), uint64_t{InMemory(to)});
      EXPECT_EQ(lone.swapped_pages(), uint64_t{to == PageState::kEvicted});
      EXPECT_EQ(lone.memory_bytes(), base + (to == PageState::kEmpty ? 0 : FirstChunkBytes()));
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

TEST(PageTableTest, FirstChunkInAGiBAlsoCostsADirectory) {
  const uint64_t directory_bytes = DirectoryBytes();
  // 512 chunk pointers and a small counter: 4 KiB per GiB of arena in use.
  EXPECT_GE(directory_bytes, kDirectoryChunks * sizeof(void*));
  EXPECT_LE(directory_bytes, kDirectoryChunks * sizeof(void*) + 64);
  EXPECT_EQ(FirstChunkBytes(), directory_bytes + ChunkBytes());
}

TEST(PageTableTest, SettingEmptyInUntouchedChunkAllocatesNothing) {
  PageTable table(8 * kChunk);
  const uint64_t before = table.memory_bytes();
  table.set_state(3 * kChunk, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), before);
  table.clear_range(0, table.pages());
  EXPECT_EQ(table.memory_bytes(), before);
  table.set_cluster(kChunk, kNoCluster);
  EXPECT_EQ(table.drop_slot(kChunk), 0u);
  EXPECT_EQ(table.memory_bytes(), before);

  // Nor does it in an untouched chunk of a GiB whose directory exists.
  table.set_state(0, PageState::kResident);
  const uint64_t touched = table.memory_bytes();
  table.set_state(3 * kChunk, PageState::kEmpty);
  table.set_cluster(5 * kChunk, kNoCluster);
  EXPECT_EQ(table.drop_slot(6 * kChunk), 0u);
  table.clear_range(kChunk, table.pages());
  EXPECT_EQ(table.memory_bytes(), touched);
  EXPECT_EQ(table.state(0), PageState::kResident);
}

TEST(PageTableTest, MemoryGrowsPerTouchedChunkAndShrinksWhenChunkEmpties) {
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(8 * kChunk);
  const uint64_t base = table.memory_bytes();

  // The first chunk also brings the directory; later ones cost a chunk each.
  table.set_state(1, PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  table.set_state(kChunk - 1, PageState::kEvicted);  // Same chunk: no growth.
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  table.set_state(5 * kChunk + 7, PageState::kEvicting);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + 2 * chunk_bytes);

  // Clearing part of a chunk keeps it; clearing all of it frees it, but not the directory,
  // which still has a chunk.
  table.clear_range(0, kChunk / 2);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + 2 * chunk_bytes);
  table.clear_range(0, kChunk);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kEmpty);

  // A range covering the last chunk whole (plus neighbours) frees it, and the directory.
  table.clear_range(4 * kChunk + 3, 3 * kChunk);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);

  // A freed chunk (and directory) can be used again.
  table.set_state(kChunk - 1, PageState::kResident);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);

  // Emptying its last page one at a time frees it as well.
  table.set_state(kChunk - 2, PageState::kResidentClean);
  table.set_state(kChunk - 1, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  table.set_state(kChunk - 2, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, ClearingWholeShortLastChunkFreesIt) {
  // The last chunk holds only the table's remaining 100 pages; clearing all of them
  // leaves it as empty as any full chunk, so it should be freed as well.
  PageTable table(kChunk + 100);
  const uint64_t base = table.memory_bytes();
  table.set_state(kChunk + 50, PageState::kResident);
  table.set_state(kChunk + 99, PageState::kEvicted);
  ASSERT_EQ(table.memory_bytes(), base + FirstChunkBytes());
  table.clear_range(0, table.pages());
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, TouchingTwoGiBRegionsAllocatesTwoDirectoriesAndClearingFreesBoth) {
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(3 * kDirectoryPages);
  const uint64_t base = table.memory_bytes();

  table.set_state(5, PageState::kResident);                       // GiB 0.
  table.set_state(2 * kDirectoryPages + 7, PageState::kEvicted);  // GiB 2.
  EXPECT_EQ(table.memory_bytes(), base + 2 * (directory_bytes + chunk_bytes));
  EXPECT_EQ(table.state(5), PageState::kResident);
  EXPECT_EQ(table.state(2 * kDirectoryPages + 7), PageState::kEvicted);
  EXPECT_EQ(table.state(kDirectoryPages + 5), PageState::kEmpty);  // GiB 1 stays untouched.
  const std::vector<Visit> visits = {{5, PageState::kResident},
                                     {2 * kDirectoryPages + 7, PageState::kEvicted}};
  EXPECT_EQ(Visits(table, 0, table.pages()), visits);

  // Clearing one GiB frees its chunk and its directory; the other keeps both.
  table.clear_range(0, kDirectoryPages);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  EXPECT_EQ(table.state(2 * kDirectoryPages + 7), PageState::kEvicted);
  table.clear_range(2 * kDirectoryPages, kDirectoryPages);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);

  // Both again, freed by one range over the whole table.
  table.set_state(5, PageState::kResidentClean);
  table.set_state(2 * kDirectoryPages + 7, PageState::kEvicting);
  ASSERT_EQ(table.memory_bytes(), base + 2 * (directory_bytes + chunk_bytes));
  table.clear_range(0, UINT64_MAX);
  EXPECT_EQ(table.memory_bytes(), base);

  // And by emptying the pages one at a time.
  table.set_state(5, PageState::kResident);
  table.set_state(2 * kDirectoryPages + 7, PageState::kEvicted);
  table.set_state(5, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  table.set_state(2 * kDirectoryPages + 7, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_TRUE(Visits(table, 0, table.pages()).empty());
}

TEST(PageTableTest, DirectoryIsFreedOnlyWithItsLastChunk) {
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(2 * kDirectoryPages);
  const uint64_t base = table.memory_bytes();

  // Three chunks of GiB 1: its first, a middle one and its last; each kept a different way.
  const uint64_t first = kDirectoryPages;
  const uint64_t middle = kDirectoryPages + 100 * kChunk + 3;
  const uint64_t last = 2 * kDirectoryPages - 1;
  table.set_state(first, PageState::kResident);
  table.hold_slot(middle);
  table.set_state(last, PageState::kEvicted);
  table.set_cluster(last, 4);
  ASSERT_EQ(table.memory_bytes(), base + directory_bytes + 3 * chunk_bytes);

  table.set_state(first, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + 2 * chunk_bytes);
  table.set_state(last, PageState::kEmpty);  // Its cluster id alone does not keep the chunk.
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  EXPECT_EQ(table.cluster(last), kNoCluster);
  // The last chunk of the directory goes with its last slot, and the directory with it.
  EXPECT_EQ(table.drop_slot(middle), 0u);
  EXPECT_EQ(table.memory_bytes(), base);

  // A chunk made only by setting a cluster is freed by unsetting it, directory included.
  table.set_cluster(first + 3, 8);
  EXPECT_EQ(table.memory_bytes(), base + directory_bytes + chunk_bytes);
  EXPECT_EQ(table.cluster(first), 8u);
  table.set_cluster(first + 3, kNoCluster);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, PagesEitherSideOfADirectoryBoundary) {
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(2 * kDirectoryPages);
  const uint64_t base = table.memory_bytes();
  table.set_state(kDirectoryPages - 1, PageState::kResident);
  table.set_state(kDirectoryPages, PageState::kEvicted);
  table.set_cluster(kDirectoryPages - 1, 1);
  table.set_cluster(kDirectoryPages, 2);
  EXPECT_EQ(table.memory_bytes(), base + 2 * (directory_bytes + chunk_bytes));
  EXPECT_EQ(table.state(kDirectoryPages - 1), PageState::kResident);
  EXPECT_EQ(table.state(kDirectoryPages), PageState::kEvicted);
  EXPECT_EQ(table.state(kDirectoryPages - 2), PageState::kEmpty);
  EXPECT_EQ(table.state(kDirectoryPages + 1), PageState::kEmpty);
  EXPECT_EQ(table.cluster(kDirectoryPages - kChunk), 1u);
  EXPECT_EQ(table.cluster(kDirectoryPages + kChunk - 1), 2u);
  EXPECT_EQ(table.cluster(0), kNoCluster);
  EXPECT_EQ(table.cluster(kDirectoryPages + kChunk), kNoCluster);

  const std::vector<Visit> both = {{kDirectoryPages - 1, PageState::kResident},
                                   {kDirectoryPages, PageState::kEvicted}};
  EXPECT_EQ(Visits(table, kDirectoryPages - 1, 2), both);
  EXPECT_EQ(Visits(table, 0, table.pages()), both);

  // One range across the boundary empties a chunk in each directory, freeing both.
  table.clear_range(kDirectoryPages - 1, 2);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.swapped_pages(), 0u);
}

TEST(PageTableTest, HugeSparseTableCostsLittle) {
  // 2^34 pages is a 64 TiB arena; a dense table would need 16 GiB even at a byte a page, and
  // a flat array of chunk pointers 256 MiB.
  constexpr uint64_t kPages = uint64_t{1} << 34;
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(kPages);
  const uint64_t base = table.memory_bytes();
  EXPECT_LT(base, uint64_t{1} << 20);  // Only the directory pointers: 8 bytes per GiB.

  // Three GiBs touched: three directories and three chunks.
  table.set_state(0, PageState::kResident);
  table.set_state(kPages / 2, PageState::kEvicted);
  table.set_state(kPages - 1, PageState::kEvicting);
  EXPECT_EQ(table.memory_bytes(), base + 3 * (directory_bytes + chunk_bytes));
  // Another chunk in an already-touched GiB costs only the chunk.
  table.set_state(kPages / 2 + kChunk, PageState::kResidentClean);
  EXPECT_EQ(table.memory_bytes(), base + 3 * directory_bytes + 4 * chunk_bytes);
  EXPECT_EQ(table.resident_pages(), 3u);
  EXPECT_EQ(table.swapped_pages(), 1u);
  EXPECT_EQ(table.state(kPages - 1), PageState::kEvicting);
  EXPECT_EQ(table.state(kPages - 2), PageState::kEmpty);
  EXPECT_EQ(table.state(kPages / 2 + kChunk), PageState::kResidentClean);
  const std::vector<Visit> visits = {{0, PageState::kResident},
                                     {kPages / 2, PageState::kEvicted},
                                     {kPages / 2 + kChunk, PageState::kResidentClean},
                                     {kPages - 1, PageState::kEvicting}};
  EXPECT_EQ(Visits(table, 0, kPages), visits);

  // Clearing the whole table frees everything.
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
  // The first chunk of a GiB also brings its directory.
  const uint64_t chunk_bytes = FirstChunkBytes();
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
  // The first chunk of a GiB also brings its directory.
  const uint64_t chunk_bytes = FirstChunkBytes();
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
  // The first chunk of a GiB also brings its directory.
  const uint64_t chunk_bytes = FirstChunkBytes();
  PageTable table(2 * kChunk);
  const uint64_t base = table.memory_bytes();
  table.hold_slot(kChunk + 9);
  EXPECT_EQ(table.memory_bytes(), base + chunk_bytes);
  EXPECT_EQ(table.state(kChunk + 9), PageState::kEmpty);
  EXPECT_EQ(table.drop_slot(kChunk + 9), 0u);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, LastSlotDroppedOnChunkWithPagesKeepsIt) {
  // The first chunk of a GiB also brings its directory.
  const uint64_t chunk_bytes = FirstChunkBytes();
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
  // Three GiBs, the last one short, with a short last chunk. The operations use a few chunks
  // of each GiB (its edges and a middle one), so directories come and go as well.
  constexpr uint64_t kPages = 2 * kDirectoryPages + 3 * kChunk + 37;
  constexpr uint64_t kChunks = (kPages + kChunk - 1) / kChunk;
  constexpr uint64_t kDirectories = (kPages + kDirectoryPages - 1) / kDirectoryPages;
  const std::vector<uint64_t> used = {0, 1, 2, 300, 511, 512, 513, 1023, 1024, 1025, kChunks - 1};
  const uint64_t chunk_bytes = ChunkBytes();
  const uint64_t directory_bytes = DirectoryBytes();
  PageTable table(kPages);
  const uint64_t base = table.memory_bytes();

  std::vector<PageState> states(kPages, PageState::kEmpty);
  std::vector<uint32_t> slots(kChunks, 0);
  std::vector<uint32_t> clusters(kChunks, kNoCluster);
  auto chunk_end = [&](uint64_t chunk) { return std::min((chunk + 1) * kChunk, kPages); };
  // A chunk is kept while it has a non-empty page or a held slot; when freed, its cluster
  // id goes with it. Clusters are only set on live chunks, as the daemon does. A directory
  // is kept while it has a live chunk.
  auto live = [&](uint64_t chunk) {
    if (slots[chunk] > 0) return true;
    for (uint64_t page = chunk * kChunk; page < chunk_end(chunk); ++page) {
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
    const uint64_t chunk = used[below(used.size())];
    const uint64_t size = chunk_end(chunk) - chunk * kChunk;
    return chunk * kChunk + (below(2) == 0 ? below(8) : below(size));
  };

  for (int op = 0; op < 5000; ++op) {
    SCOPED_TRACE(testing::Message() << "operation " << op);
    const uint64_t kind = below(100);
    const uint64_t page = random_page();
    const uint64_t chunk = page / kChunk;
    if (kind < 60) {
      // Empty a third of the time, so chunks and directories are freed often.
      const PageState state = below(3) == 0 ? PageState::kEmpty : kAllStates[below(kStateCount)];
      table.set_state(page, state);
      states[page] = state;
      forget_if_dead(chunk);
    } else if (kind < 72) {
      // Mostly within a chunk or two; sometimes to the end, or across a directory boundary.
      const uint64_t pick = below(8);
      const uint64_t count = pick == 0   ? UINT64_MAX
                             : pick == 1 ? below(2 * kDirectoryPages)
                                         : below(2 * kChunk);
      table.clear_range(page, count);
      const uint64_t end = page + std::min(count, kPages - page);
      std::fill(states.begin() + page, states.begin() + end, PageState::kEmpty);
      for (uint64_t c : used) {
        if (c >= chunk && c * kChunk < end) forget_if_dead(c);
      }
    } else if (kind < 80) {
      // Fewer holds than drops, or held slots would pile up and pin every chunk.
      table.hold_slot(page);
      ++slots[chunk];
    } else if (kind < 93) {
      if (slots[chunk] > 0) --slots[chunk];
      ASSERT_EQ(table.drop_slot(page), slots[chunk]);
      forget_if_dead(chunk);
    } else if (kind < 96) {
      // Drain the page's GiB: clear it and drop every slot its chunks hold. Its directory
      // must go.
      const uint64_t first = page / kDirectoryPages * kDirectoryPages;
      table.clear_range(first, kDirectoryPages);
      std::fill(states.begin() + first, states.begin() + std::min(first + kDirectoryPages, kPages),
                PageState::kEmpty);
      for (uint64_t c : used) {
        if (c / kDirectoryChunks != first / kDirectoryPages) continue;
        while (slots[c] > 0) {
          --slots[c];
          ASSERT_EQ(table.drop_slot(c * kChunk), slots[c]);
        }
        forget_if_dead(c);
      }
    } else if (live(chunk)) {
      const uint32_t cluster = below(4) == 0 ? kNoCluster : static_cast<uint32_t>(below(1000));
      table.set_cluster(page, cluster);
      clusters[chunk] = cluster;
    }

    // Pages outside the used chunks are never touched, so they stay empty.
    uint64_t resident = 0;
    uint64_t swapped = 0;
    for (uint64_t c : used) {
      for (uint64_t p = c * kChunk; p < chunk_end(c); ++p) {
        resident += InMemory(states[p]);
        swapped += states[p] == PageState::kEvicted;
      }
    }
    ASSERT_EQ(table.resident_pages(), resident);
    ASSERT_EQ(table.swapped_pages(), swapped);

    uint64_t live_chunks = 0;
    std::vector<bool> live_directory(kDirectories, false);
    for (uint64_t c : used) {
      if (live(c)) {
        ++live_chunks;
        live_directory[c / kDirectoryChunks] = true;
      }
    }
    const auto live_directories =
        static_cast<uint64_t>(std::count(live_directory.begin(), live_directory.end(), true));
    ASSERT_EQ(table.memory_bytes(),
              base + live_directories * directory_bytes + live_chunks * chunk_bytes);

    if (op % 50 != 0) continue;
    std::vector<Visit> nonempty;
    for (uint64_t c : used) {
      for (uint64_t p = c * kChunk; p < chunk_end(c); ++p) {
        ASSERT_EQ(table.state(p), states[p]) << "page " << p;
        if (states[p] != PageState::kEmpty) nonempty.emplace_back(p, states[p]);
      }
    }
    ASSERT_EQ(Visits(table, 0, kPages), nonempty);
    for (uint64_t c : used) {
      ASSERT_EQ(table.cluster(c * kChunk), clusters[c]) << "chunk " << c;
    }
  }
}

}  // namespace
}  // namespace extmem::daemon
