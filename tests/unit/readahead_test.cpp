// The swap-in read-ahead window: grows on sequential faults, shrinks on others, follows
// each faulting thread on its own.
#include "fault/readahead.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace extmem::daemon {
namespace {

// Faults sequentially from `page`, reading each whole window; returns the windows.
std::vector<uint64_t> walk(Readahead& r, uint32_t tid, uint64_t page, int faults) {
  std::vector<uint64_t> windows;
  for (int i = 0; i < faults; ++i) {
    const uint64_t w = r.on_fault(tid, page).window;
    windows.push_back(w);
    r.on_read(tid, page, w);
    page += w;
  }
  return windows;
}

TEST(ReadaheadTest, FirstFaultReadsOnePage) {
  Readahead r;
  EXPECT_EQ(r.on_fault(1, 1000).window, 1u);
}

TEST(ReadaheadTest, WindowDoublesUpToTheMaximumWhileFaultsContinue) {
  Readahead r;
  const std::vector<uint64_t> w = walk(r, 1, 1000, 12);
  EXPECT_EQ(w[0], 1u);
  EXPECT_EQ(w[1], 2u);
  EXPECT_EQ(w[2], 4u);
  EXPECT_EQ(w[8], Readahead::kMaxWindow);
  EXPECT_EQ(w.back(), Readahead::kMaxWindow);
}

TEST(ReadaheadTest, HitsCountThePrefetchedPagesWalkedOver) {
  Readahead r;
  EXPECT_EQ(r.on_fault(1, 1000).hits, 0u);
  r.on_read(1, 1000, 1);
  Readahead::Decision d = r.on_fault(1, 1001);
  EXPECT_EQ(d.hits, 0u);  // nothing was prefetched
  EXPECT_EQ(d.window, 2u);
  r.on_read(1, 1001, 2);
  d = r.on_fault(1, 1003);
  EXPECT_EQ(d.hits, 1u);
  r.on_read(1, 1003, 4);
  EXPECT_EQ(r.on_fault(1, 1007).hits, 3u);
}

TEST(ReadaheadTest, ShortReadStillCountsAFaultJustPastItAsSequential) {
  Readahead r;
  walk(r, 1, 1000, 4);  // windows 1 2 4 8, next expected 1015
  ASSERT_EQ(r.on_fault(1, 1015).window, 16u);
  r.on_read(1, 1015, 5);  // stopped at a resident page
  EXPECT_EQ(r.on_fault(1, 1025).window, 32u);
}

TEST(ReadaheadTest, RandomFaultsShrinkTheWindowToOnePage) {
  Readahead r;
  walk(r, 1, 1000, 10);
  uint64_t page = 1 << 20;
  uint64_t w = 0;
  for (int i = 0; i < 10; ++i) {
    w = r.on_fault(1, page).window;
    r.on_read(1, page, 1);
    page += 100000;
  }
  EXPECT_EQ(w, 1u);
}

TEST(ReadaheadTest, OneMissHalvesTheWindow) {
  Readahead r;
  walk(r, 1, 1000, 10);
  Readahead::Decision d = r.on_fault(1, 500000);
  EXPECT_EQ(d.window, Readahead::kMaxWindow / 2);
  EXPECT_EQ(d.hits, 0u);
}

TEST(ReadaheadTest, RefaultOnTheLastReadIsAMiss) {
  Readahead r;
  walk(r, 1, 1000, 5);  // windows 1..16; the last read was [1015, 1031)
  EXPECT_EQ(r.on_fault(1, 1020).window, 8u);
}

TEST(ReadaheadTest, ThreadsAreFollowedSeparately) {
  Readahead r;
  uint64_t a = 1000, b = 900000;
  uint64_t wa = 0, wb = 0;
  for (int i = 0; i < 6; ++i) {
    wa = r.on_fault(1, a).window;
    r.on_read(1, a, wa);
    a += wa;
    wb = r.on_fault(2, b).window;
    r.on_read(2, b, wb);
    b += wb;
  }
  EXPECT_EQ(wa, 32u);
  EXPECT_EQ(wb, 32u);
}

TEST(ReadaheadTest, LeastRecentlyFaultingThreadIsForgotten) {
  Readahead r;
  walk(r, 1, 1000, 5);
  for (uint32_t tid = 2; tid < 2 + Readahead::kStreams; ++tid) walk(r, tid, tid * 100000, 1);
  EXPECT_EQ(r.on_fault(1, 1031).window, 1u);  // a new stream
}

TEST(ReadaheadTest, AdviceOverridesTheWindow) {
  Readahead r;
  EXPECT_EQ(r.on_fault(1, 100, AccessPattern::kSequential).window, Readahead::kMaxWindow);
  r.on_read(1, 100, Readahead::kMaxWindow);
  // A sequential run under RANDOM advice still reads one page per fault.
  EXPECT_EQ(r.on_fault(1, 100 + Readahead::kMaxWindow, AccessPattern::kRandom).window, 1u);
  r.on_read(1, 100 + Readahead::kMaxWindow, 1);
  EXPECT_EQ(r.on_fault(1, 101 + Readahead::kMaxWindow, AccessPattern::kRandom).window, 1u);
}

TEST(RangeAdviceTest, LaterAdviceReplacesEarlierWhereTheyOverlap) {
  RangeAdvice advice;
  advice.set(100, 100, AccessPattern::kSequential);
  advice.set(150, 100, AccessPattern::kRandom);
  advice.set(120, 10, AccessPattern::kNormal);
  for (uint64_t p : {99, 100, 119, 120, 129, 130, 149, 150, 249, 250}) {
    const AccessPattern want = p < 100 || (p >= 120 && p < 130) || p >= 250 ? AccessPattern::kNormal
                               : p < 150 ? AccessPattern::kSequential
                                         : AccessPattern::kRandom;
    EXPECT_EQ(advice.at(p), want) << p;
  }
  EXPECT_EQ(advice.ranges(), 3u);
  advice.set(0, UINT64_MAX, AccessPattern::kNormal);
  EXPECT_EQ(advice.ranges(), 0u);
}

TEST(RangeAdviceTest, IsBoundedInRanges) {
  RangeAdvice advice;
  for (uint64_t i = 0; i < 2 * RangeAdvice::kMaxRanges; ++i) {
    advice.set(2 * i, 1, AccessPattern::kRandom);
  }
  EXPECT_EQ(advice.ranges(), RangeAdvice::kMaxRanges);
}

}  // namespace
}  // namespace extmem::daemon
