// Pure pieces of the paging mechanism: watermarks, the first-touch window, the latency
// histogram.
#include <gtest/gtest.h>

#include "client/client.hpp"
#include "client/latency.hpp"
#include "reclaim/reclaimer.hpp"

namespace extmem::daemon {
namespace {

TEST(WatermarksTest, LowBelowHighBelowLimitForEveryLimit) {
  for (uint64_t limit : {256ULL, 1000ULL, 4096ULL, 262144ULL, 1ULL << 30}) {
    const uint64_t low = Reclaimer::low_watermark(limit);
    const uint64_t high = Reclaimer::high_watermark(limit);
    EXPECT_LT(low, high) << limit;
    EXPECT_LT(high, limit) << limit;
    EXPECT_GE(low, 1u) << limit;
  }
}

TEST(WatermarksTest, GapIsAboutThreePercentButAtLeast64Pages) {
  EXPECT_EQ(Reclaimer::low_watermark(256), 256u - 64u);
  EXPECT_EQ(Reclaimer::low_watermark(262144), 262144u - 262144u / 32);
}

TEST(LatencyHistogramTest, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.quantile_us(0.5), 0u);
}

TEST(LatencyHistogramTest, QuantilesAreBucketUpperBounds) {
  LatencyHistogram h;
  for (int i = 0; i < 98; ++i) h.record(std::chrono::microseconds(10));
  h.record(std::chrono::microseconds(3000));
  h.record(std::chrono::microseconds(3000));
  EXPECT_EQ(h.quantile_us(0.5), 16u);  // 10 us falls in (8, 16]
  EXPECT_EQ(h.quantile_us(0.99), 4096u);
  EXPECT_GE(h.quantile_us(0.99), 3000u);
}

}  // namespace
}  // namespace extmem::daemon
