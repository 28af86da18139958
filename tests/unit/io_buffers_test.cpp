#include "swap/io_buffers.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace extmem::daemon {
namespace {

constexpr uint64_t kPage = 4096;

TEST(IoBuffersTest, BuffersArePageAlignedAndHoldThePagesAskedFor) {
  auto pool = IoBuffers::create(1 << 20);
  for (uint64_t pages : {1, 2, 3, 5, 200, 512}) {
    auto buffer = pool->take(pages);
    ASSERT_TRUE(buffer) << pages;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % kPage, 0u) << pages;
    memset(buffer.data(), 0xab, pages * kPage);  // all of it is ours (checked under ASan)
  }
}

TEST(IoBuffersTest, AGivenBackBufferServesTheNextReadOfItsSize) {
  auto pool = IoBuffers::create(4 << 20);
  unsigned char* first = nullptr;
  {
    auto buffer = pool->take(200);
    first = buffer.data();
  }
  EXPECT_EQ(pool->retained_bytes(), 256 * kPage);
  auto same_class = pool->take(180);  // 180 and 200 pages are both read into 256
  EXPECT_EQ(same_class.data(), first);
  EXPECT_EQ(pool->retained_bytes(), 0u);
  auto other_class = pool->take(1);
  EXPECT_NE(other_class.data(), first);
}

TEST(IoBuffersTest, KeepsNoMoreThanItsRetainedBytes) {
  auto pool = IoBuffers::create(3 * 64 * kPage);
  std::vector<IoBuffers::Buffer> buffers;
  for (int i = 0; i < 10; ++i) buffers.push_back(pool->take(64));
  buffers.clear();
  EXPECT_EQ(pool->retained_bytes(), 3 * 64 * kPage);
}

TEST(IoBuffersTest, ABufferOutlivesTheLastOtherHandleOnItsPool) {
  auto pool = IoBuffers::create(1 << 20);
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
