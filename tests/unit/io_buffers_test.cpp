#include "swap/io_buffers.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

namespace extmem::daemon {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHuge = 2 << 20;

uintptr_t address(const IoBuffers::Buffer& b) {
  return reinterpret_cast<uintptr_t>(b.data());
}

TEST(IoBuffersTest, BuffersArePageAlignedAndHoldThePagesAskedFor) {
  auto pool = IoBuffers::create(2 * kHuge);
  for (uint64_t pages : {1, 2, 3, 5, 200, 512, 1000}) {
    auto buffer = pool->take(pages);
    ASSERT_TRUE(buffer) << pages;
    EXPECT_EQ(address(buffer) % kPage, 0u) << pages;
    memset(buffer.data(), 0xab, pages * kPage);  // all of it is ours (checked under ASan)
  }
}

TEST(IoBuffersTest, NoArenaBufferCrossesAHugePage) {
  // A buffer inside one huge page is one physically contiguous segment for the device.
  auto pool = IoBuffers::create(4 * kHuge);
  std::vector<IoBuffers::Buffer> held;
  uint64_t pages_held = 0;
  for (uint64_t pages : {3, 256, 1, 512, 100, 7, 256, 64, 33, 128, 2, 256}) {
    held.push_back(pool->take(pages));
    pages_held += std::bit_ceil(pages);
    const uintptr_t first = address(held.back());
    const uintptr_t last = first + pages * kPage - 1;
    EXPECT_EQ(first / kHuge, last / kHuge) << pages << " pages at " << std::hex << first;
  }
  EXPECT_EQ(pool->arena_bytes(), 4 * kHuge);
  EXPECT_EQ(pool->arena_free_bytes(), 4 * kHuge - pages_held * kPage);
}

TEST(IoBuffersTest, AGivenBackBufferServesTheNextOneOfItsSize) {
  auto pool = IoBuffers::create(kHuge);
  uintptr_t first = 0;
  {
    auto buffer = pool->take(200);
    first = address(buffer);
    EXPECT_EQ(pool->arena_free_bytes(), kHuge - 256 * kPage);
  }
  EXPECT_EQ(pool->arena_free_bytes(), kHuge);
  auto same_size = pool->take(180);  // 180 and 200 pages are both 256-page buffers
  EXPECT_EQ(address(same_size), first);
}

TEST(IoBuffersTest, FreedNeighboursMergeBackIntoAWholeHugePage) {
  auto pool = IoBuffers::create(kHuge);
  uintptr_t start = 0;
  {
    std::vector<IoBuffers::Buffer> small;
    for (int i = 0; i < 512; ++i) small.push_back(pool->take(1));
    start = address(small.front());
    EXPECT_EQ(pool->arena_free_bytes(), 0u);
    // Given back in an order that leaves holes until the last ones.
    for (size_t i = 0; i < small.size(); i += 2) small[i] = {};
    for (size_t i = 1; i < small.size(); i += 2) small[i] = {};
  }
  auto whole = pool->take(512);
  EXPECT_EQ(address(whole), start);  // one block again, not 512 pages scattered
  EXPECT_EQ(pool->arena_free_bytes(), 0u);
}

TEST(IoBuffersTest, BeyondTheArenaBuffersComeFromTheHeap) {
  auto pool = IoBuffers::create(kHuge);
  std::vector<IoBuffers::Buffer> buffers;
  for (int i = 0; i < 6; ++i) {
    buffers.push_back(pool->take(256));
    ASSERT_TRUE(buffers.back()) << i;
    memset(buffers.back().data(), i, 256 * kPage);
  }
  EXPECT_EQ(pool->arena_free_bytes(), 0u);  // two from the arena, four from the heap
  buffers.clear();
  EXPECT_EQ(pool->arena_free_bytes(), kHuge);
  EXPECT_TRUE(pool->take(2048));  // larger than a huge page: the heap's
}

TEST(IoBuffersTest, ABufferOutlivesTheLastOtherHandleOnItsPool) {
  auto pool = IoBuffers::create(kHuge);
  auto buffer = pool->take(8);
  std::weak_ptr<IoBuffers> watch = pool;
  pool.reset();
  EXPECT_FALSE(watch.expired());  // the buffer keeps the pool it goes back to
  IoBuffers::Buffer moved = std::move(buffer);
  EXPECT_FALSE(buffer);
  moved = {};
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace extmem::daemon
