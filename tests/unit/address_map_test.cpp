#include "client/address_map.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <vector>

namespace extmem::daemon {

// In the map's namespace so that gtest finds them through ADL.
bool operator==(const Segment& a, const Segment& b) {
  return a.start == b.start && a.len == b.len && a.offset == b.offset;
}
std::ostream& operator<<(std::ostream& out, const Segment& s) {
  return out << std::hex << "{start 0x" << s.start << ", len 0x" << s.len << ", offset 0x"
             << s.offset << "}" << std::dec;
}

namespace {

constexpr uint64_t kPage = 4096;
// Addresses are bookkeeping only; nothing is mapped there.
constexpr uintptr_t kBase = uintptr_t{0x7f0000000000};
constexpr uint64_t kLen = 16 * kPage;

using Segments = std::vector<Segment>;

TEST(AddressMapTest, StartsAsOneSegmentAtOffsetZero) {
  AddressMap map(kBase, kLen);
  EXPECT_EQ(map.segments(), (Segments{{kBase, kLen, 0}}));
}

TEST(AddressMapTest, FindInsideAndOutside) {
  AddressMap map(kBase, kLen);
  ASSERT_NE(map.find(kBase), nullptr);
  EXPECT_EQ(map.find(kBase)->start, kBase);
  EXPECT_NE(map.find(kBase + kLen - 1), nullptr);
  EXPECT_NE(map.find(kBase + 5 * kPage + 17), nullptr);
  EXPECT_EQ(map.find(kBase - 1), nullptr);
  EXPECT_EQ(map.find(kBase + kLen), nullptr);
  EXPECT_EQ(map.find(0), nullptr);
  EXPECT_EQ(map.find(UINTPTR_MAX), nullptr);
}

TEST(AddressMapTest, PiecesClipToTheArena) {
  AddressMap map(kBase, kLen);
  // Starting before the arena: clipped at its start.
  EXPECT_EQ(map.pieces(kBase - 2 * kPage, 3 * kPage), (Segments{{kBase, kPage, 0}}));
  // Inside: the offset follows the address.
  EXPECT_EQ(map.pieces(kBase + 5 * kPage, kPage),
            (Segments{{kBase + 5 * kPage, kPage, 5 * kPage}}));
  // Running past the end: clipped at its end.
  EXPECT_EQ(map.pieces(kBase + 14 * kPage, 10 * kPage),
            (Segments{{kBase + 14 * kPage, 2 * kPage, 14 * kPage}}));
  // Covering it all, and not touching it at all.
  EXPECT_EQ(map.pieces(kBase - kPage, kLen + 2 * kPage), (Segments{{kBase, kLen, 0}}));
  EXPECT_TRUE(map.pieces(kBase + kLen, kPage).empty());
  EXPECT_TRUE(map.pieces(kBase - kPage, kPage).empty());
  EXPECT_TRUE(map.pieces(kBase, 0).empty());
}

TEST(AddressMapTest, UnmapHeadKeepsTheTailWithItsOffset) {
  AddressMap map(kBase, kLen);
  EXPECT_EQ(map.unmap(kBase, 3 * kPage), (Segments{{kBase, 3 * kPage, 0}}));
  EXPECT_EQ(map.segments(), (Segments{{kBase + 3 * kPage, 13 * kPage, 3 * kPage}}));
  EXPECT_EQ(map.find(kBase + kPage), nullptr);
}

TEST(AddressMapTest, UnmapMiddleSplitsInTwo) {
  AddressMap map(kBase, kLen);
  EXPECT_EQ(map.unmap(kBase + 4 * kPage, 2 * kPage),
            (Segments{{kBase + 4 * kPage, 2 * kPage, 4 * kPage}}));
  EXPECT_EQ(map.segments(),
            (Segments{{kBase, 4 * kPage, 0}, {kBase + 6 * kPage, 10 * kPage, 6 * kPage}}));
  EXPECT_EQ(map.find(kBase + 5 * kPage), nullptr);
  ASSERT_NE(map.find(kBase + 7 * kPage), nullptr);
  EXPECT_EQ(map.find(kBase + 7 * kPage)->offset, 6 * kPage);
  // Pieces across the hole come back as two, each with its own offset.
  EXPECT_EQ(
      map.pieces(kBase + 3 * kPage, 4 * kPage),
      (Segments{{kBase + 3 * kPage, kPage, 3 * kPage}, {kBase + 6 * kPage, kPage, 6 * kPage}}));
}

TEST(AddressMapTest, UnmapTailKeepsTheHead) {
  AddressMap map(kBase, kLen);
  EXPECT_EQ(map.unmap(kBase + 12 * kPage, 100 * kPage),
            (Segments{{kBase + 12 * kPage, 4 * kPage, 12 * kPage}}));
  EXPECT_EQ(map.segments(), (Segments{{kBase, 12 * kPage, 0}}));
}

TEST(AddressMapTest, UnmapAcrossSeveralSegmentsReturnsEachPiece) {
  AddressMap map(kBase, kLen);
  map.unmap(kBase + 4 * kPage, kPage);
  map.unmap(kBase + 8 * kPage, kPage);
  // Segments now: [0,4) [5,8) [9,16). Unmap [2,11).
  EXPECT_EQ(map.unmap(kBase + 2 * kPage, 9 * kPage),
            (Segments{{kBase + 2 * kPage, 2 * kPage, 2 * kPage},
                      {kBase + 5 * kPage, 3 * kPage, 5 * kPage},
                      {kBase + 9 * kPage, 2 * kPage, 9 * kPage}}));
  EXPECT_EQ(map.segments(),
            (Segments{{kBase, 2 * kPage, 0}, {kBase + 11 * kPage, 5 * kPage, 11 * kPage}}));
}

TEST(AddressMapTest, UnmapEverythingLeavesNoSegments) {
  AddressMap map(kBase, kLen);
  EXPECT_EQ(map.unmap(kBase - kPage, kLen + 2 * kPage), (Segments{{kBase, kLen, 0}}));
  EXPECT_TRUE(map.segments().empty());
  EXPECT_EQ(map.find(kBase), nullptr);
}

TEST(AddressMapTest, UnmapOfUnmappedRangeIsANoOp) {
  AddressMap map(kBase, kLen);
  map.unmap(kBase + 4 * kPage, 2 * kPage);
  const Segments before = map.segments();
  EXPECT_TRUE(map.unmap(kBase + 4 * kPage, 2 * kPage).empty());  // The hole itself.
  EXPECT_TRUE(map.unmap(kBase + kLen, 8 * kPage).empty());       // Past the arena.
  EXPECT_TRUE(map.unmap(kBase - 8 * kPage, 8 * kPage).empty());  // Ends where it starts.
  EXPECT_EQ(map.segments(), before);
}

TEST(AddressMapTest, RemapMovesAPieceKeepingItsArenaOffset) {
  AddressMap map(kBase, kLen);
  const uintptr_t to = kBase + 0x100000000;
  map.remap(kBase + 4 * kPage, to, 2 * kPage);
  EXPECT_EQ(map.segments(), (Segments{{kBase, 4 * kPage, 0},
                                      {kBase + 6 * kPage, 10 * kPage, 6 * kPage},
                                      {to, 2 * kPage, 4 * kPage}}));
  EXPECT_EQ(map.find(kBase + 4 * kPage), nullptr);
  ASSERT_NE(map.find(to + kPage), nullptr);
  EXPECT_EQ(map.find(to + kPage)->offset, 4 * kPage);
  EXPECT_EQ(map.pieces(to + kPage, kPage), (Segments{{to + kPage, kPage, 5 * kPage}}));
}

TEST(AddressMapTest, RemapToALowerAddressKeepsSegmentsSorted) {
  AddressMap map(kBase, kLen);
  const uintptr_t to = kBase - 0x100000000;
  map.remap(kBase + 12 * kPage, to, 4 * kPage);
  EXPECT_EQ(map.segments(), (Segments{{to, 4 * kPage, 12 * kPage}, {kBase, 12 * kPage, 0}}));
}

TEST(AddressMapTest, RemapOverAHoleMovesOnlyTheMappedPieces) {
  AddressMap map(kBase, kLen);
  map.unmap(kBase + 2 * kPage, kPage);
  // Move [1,4): pages 1 and 3 are arena, page 2 is a hole, and stays one after the move.
  const uintptr_t to = kBase + 0x40000000;
  map.remap(kBase + kPage, to, 3 * kPage);
  EXPECT_EQ(map.segments(), (Segments{{kBase, kPage, 0},
                                      {kBase + 4 * kPage, 12 * kPage, 4 * kPage},
                                      {to, kPage, kPage},
                                      {to + 2 * kPage, kPage, 3 * kPage}}));
  EXPECT_EQ(map.find(to + kPage), nullptr);
}

TEST(AddressMapTest, RemapBackRestoresTheOriginalPieces) {
  AddressMap map(kBase, kLen);
  const uintptr_t to = kBase + 0x40000000;
  map.remap(kBase + 4 * kPage, to, 4 * kPage);
  map.remap(to, kBase + 4 * kPage, 4 * kPage);
  // Same coverage and offsets, though no longer one merged segment.
  EXPECT_EQ(map.pieces(kBase, kLen), (Segments{{kBase, 4 * kPage, 0},
                                               {kBase + 4 * kPage, 4 * kPage, 4 * kPage},
                                               {kBase + 8 * kPage, 8 * kPage, 8 * kPage}}));
}

TEST(AddressMapTest, RemapOfUnmappedRangeChangesNothing) {
  AddressMap map(kBase, kLen);
  map.remap(kBase + kLen, kBase + 0x40000000, 4 * kPage);
  EXPECT_EQ(map.segments(), (Segments{{kBase, kLen, 0}}));
}

}  // namespace
}  // namespace extmem::daemon
