#include "client/page_table.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace extmem::daemon {
namespace {

constexpr uint64_t kChunk = PageTable::kChunkPages;
// One chunk of 8-byte entries: what touching a new chunk costs.
constexpr uint64_t kChunkBytes = kChunk * sizeof(uint64_t);

TEST(PageTableTest, EveryPageStartsEmpty) {
  PageTable table(3 * kChunk + 7);
  EXPECT_EQ(table.pages(), 3 * kChunk + 7);
  EXPECT_EQ(table.resident_pages(), 0u);
  for (uint64_t page = 0; page < table.pages(); ++page) {
    ASSERT_EQ(table.state(page), PageState::kEmpty) << page;
  }
}

TEST(PageTableTest, SetAndGetState) {
  PageTable table(4 * kChunk);
  table.set_state(0, PageState::kResident);
  table.set_state(kChunk + 3, PageState::kResident);
  table.set_state(4 * kChunk - 1, PageState::kResident);
  EXPECT_EQ(table.state(0), PageState::kResident);
  EXPECT_EQ(table.state(kChunk + 3), PageState::kResident);
  EXPECT_EQ(table.state(4 * kChunk - 1), PageState::kResident);
  // Neighbours in the same chunk are untouched.
  EXPECT_EQ(table.state(1), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 2), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 4), PageState::kEmpty);

  table.set_state(kChunk + 3, PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 3), PageState::kEmpty);
}

TEST(PageTableTest, ResidentCountIgnoresRepeatedStates) {
  PageTable table(2 * kChunk);
  table.set_state(5, PageState::kResident);
  table.set_state(5, PageState::kResident);
  EXPECT_EQ(table.resident_pages(), 1u);
  table.set_state(6, PageState::kResident);
  EXPECT_EQ(table.resident_pages(), 2u);
  table.set_state(5, PageState::kEmpty);
  table.set_state(5, PageState::kEmpty);
  EXPECT_EQ(table.resident_pages(), 1u);
  // Emptying a page of a never-touched chunk must not underflow the count.
  table.set_state(kChunk + 1, PageState::kEmpty);
  EXPECT_EQ(table.resident_pages(), 1u);
}

TEST(PageTableTest, SettingEmptyInUntouchedChunkAllocatesNothing) {
  PageTable table(8 * kChunk);
  const uint64_t before = table.memory_bytes();
  table.set_state(3 * kChunk, PageState::kEmpty);
  EXPECT_EQ(table.memory_bytes(), before);
}

TEST(PageTableTest, ClearRangeAcrossChunksReturnsResidentPagesCleared) {
  PageTable table(4 * kChunk);
  for (uint64_t page : {kChunk - 2, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk}) {
    table.set_state(page, PageState::kResident);
  }
  ASSERT_EQ(table.resident_pages(), 5u);

  // [kChunk - 1, kChunk + 1) spans the boundary; pages kChunk - 2 and kChunk + 1 stay.
  EXPECT_EQ(table.clear_range(kChunk - 1, 2), 2u);
  EXPECT_EQ(table.resident_pages(), 3u);
  EXPECT_EQ(table.state(kChunk - 2), PageState::kResident);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk), PageState::kEmpty);
  EXPECT_EQ(table.state(kChunk + 1), PageState::kResident);

  // A range over an untouched chunk and already-empty pages counts only resident ones.
  EXPECT_EQ(table.clear_range(0, 4 * kChunk), 3u);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.clear_range(0, 4 * kChunk), 0u);
}

TEST(PageTableTest, ClearRangeIsClippedToTheTable) {
  PageTable table(kChunk + 10);
  table.set_state(kChunk + 9, PageState::kResident);
  EXPECT_EQ(table.clear_range(kChunk + 5, 1000), 1u);
  EXPECT_EQ(table.state(kChunk + 9), PageState::kEmpty);
  EXPECT_EQ(table.clear_range(kChunk + 10, 5), 0u);  // Entirely past the end.
}

TEST(PageTableTest, ClearRangeWithHugeCountClipsToTableEnd) {
  // "Everything from `first` on": first + count wraps around 2^64 and must still clip.
  PageTable table(2 * kChunk);
  table.set_state(10, PageState::kResident);
  table.set_state(kChunk + 10, PageState::kResident);
  EXPECT_EQ(table.clear_range(5, UINT64_MAX), 2u);
  EXPECT_EQ(table.resident_pages(), 0u);
  EXPECT_EQ(table.state(10), PageState::kEmpty);
}

TEST(PageTableTest, MemoryGrowsPerTouchedChunkAndShrinksWhenChunkCleared) {
  PageTable table(8 * kChunk);
  const uint64_t base = table.memory_bytes();

  table.set_state(1, PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + kChunkBytes);
  table.set_state(kChunk - 1, PageState::kResident);  // Same chunk: no growth.
  EXPECT_EQ(table.memory_bytes(), base + kChunkBytes);
  table.set_state(5 * kChunk + 7, PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + 2 * kChunkBytes);

  // Clearing part of a chunk keeps it; clearing all of it frees it.
  table.clear_range(0, kChunk / 2);
  EXPECT_EQ(table.memory_bytes(), base + 2 * kChunkBytes);
  EXPECT_EQ(table.clear_range(0, kChunk), 1u);
  EXPECT_EQ(table.memory_bytes(), base + kChunkBytes);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kEmpty);

  // A range covering a chunk whole (plus neighbours) frees it too.
  table.clear_range(4 * kChunk + 3, 3 * kChunk);
  EXPECT_EQ(table.memory_bytes(), base);
  EXPECT_EQ(table.resident_pages(), 0u);

  // A freed chunk can be used again.
  table.set_state(kChunk - 1, PageState::kResident);
  EXPECT_EQ(table.state(kChunk - 1), PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + kChunkBytes);
}

TEST(PageTableTest, ClearingWholeShortLastChunkFreesIt) {
  // The last chunk holds only the table's remaining 100 pages; clearing all of them
  // leaves it as empty as any full chunk, so it should be freed as well.
  PageTable table(kChunk + 100);
  const uint64_t base = table.memory_bytes();
  table.set_state(kChunk + 50, PageState::kResident);
  ASSERT_EQ(table.memory_bytes(), base + kChunkBytes);
  EXPECT_EQ(table.clear_range(0, table.pages()), 1u);
  EXPECT_EQ(table.memory_bytes(), base);
}

TEST(PageTableTest, HugeSparseTableCostsLittle) {
  // 2^26 pages is a 256 GiB arena; a dense table would need 512 MiB.
  constexpr uint64_t kPages = uint64_t{1} << 26;
  PageTable table(kPages);
  const uint64_t base = table.memory_bytes();
  EXPECT_LE(base, uint64_t{2} << 20);  // Only the chunk pointers: 8 bytes per 512 pages.

  table.set_state(0, PageState::kResident);
  table.set_state(kPages / 2, PageState::kResident);
  table.set_state(kPages - 1, PageState::kResident);
  EXPECT_EQ(table.memory_bytes(), base + 3 * kChunkBytes);
  EXPECT_EQ(table.resident_pages(), 3u);
  EXPECT_EQ(table.state(kPages - 1), PageState::kResident);
  EXPECT_EQ(table.state(kPages - 2), PageState::kEmpty);

  // Clearing the whole table walks the chunk index, not 2^26 entries, and frees everything.
  EXPECT_EQ(table.clear_range(0, kPages), 3u);
  EXPECT_EQ(table.memory_bytes(), base);
}

}  // namespace
}  // namespace extmem::daemon
