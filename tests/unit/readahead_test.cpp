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

// Faults of thread 1 at `first`, first+stride, ... (`faults` of them), each reading its
// page alone and `ahead` strided pages ahead once a stride is confirmed; returns the last
// decision.
Readahead::Decision stride_walk(Readahead& r, uint64_t first, int64_t stride, int faults) {
  Readahead::Decision d{};
  uint64_t page = first;
  for (int i = 0; i < faults; ++i) {
    d = r.on_fault(1, page);
    r.on_read(1, page, 1);
    r.on_stride_read(1, d.stride_pages);
    page += static_cast<uint64_t>(stride * static_cast<int64_t>(d.stride_pages + 1));
  }
  return d;
}

TEST(ReadaheadTest, ThreeFaultsAtOneStrideConfirmIt) {
  Readahead r;
  EXPECT_EQ(r.on_fault(1, 1000).stride, 0);
  r.on_read(1, 1000, 1);
  EXPECT_EQ(r.on_fault(1, 1016).stride, 0);
  r.on_read(1, 1016, 1);
  const Readahead::Decision d = r.on_fault(1, 1032);
  EXPECT_EQ(d.stride, 16);
  EXPECT_EQ(d.stride_pages, Readahead::kFirstStrideDepth);
  EXPECT_EQ(d.window, 1u);  // its neighbours are not what it reads next
}

TEST(ReadaheadTest, StrideDepthGrowsWhileTheThreadUsesThePagesReadAhead) {
  Readahead r;
  std::vector<uint64_t> depths;
  uint64_t page = 1000;
  for (int i = 0; i < 10; ++i) {
    const Readahead::Decision d = r.on_fault(1, page);
    depths.push_back(d.stride_pages);
    r.on_read(1, page, 1);
    r.on_stride_read(1, d.stride_pages);
    page += 7 * (d.stride_pages + 1);  // past every page read ahead
  }
  EXPECT_EQ(depths[0], 0u);
  EXPECT_EQ(depths[1], 0u);
  EXPECT_EQ(depths[2], Readahead::kFirstStrideDepth);
  EXPECT_EQ(depths[3], 2 * Readahead::kFirstStrideDepth);
  EXPECT_EQ(depths.back(), Readahead::kMaxStrideDepth);
}

TEST(ReadaheadTest, APageReadAheadFaultingAgainHalvesTheStrideDepth) {
  Readahead r;
  const Readahead::Decision d = stride_walk(r, 1000, 10, 4);
  ASSERT_EQ(d.stride, 10);
  ASSERT_EQ(d.stride_pages, 2 * Readahead::kFirstStrideDepth);
  // The last fault was at 1000 + 10 + 10 + 50; the thread faults two steps on: the second
  // page read ahead was evicted before it got there.
  const Readahead::Decision miss = r.on_fault(1, 1070 + 20);
  EXPECT_EQ(miss.stride, 10);
  EXPECT_EQ(miss.stride_pages, Readahead::kFirstStrideDepth);
}

TEST(ReadaheadTest, BackwardSequentialIsAStride) {
  Readahead r;
  const Readahead::Decision d = stride_walk(r, 5000, -1, 3);
  EXPECT_EQ(d.stride, -1);
  EXPECT_EQ(d.stride_pages, Readahead::kFirstStrideDepth);
  EXPECT_EQ(stride_walk(r, 90000, -Readahead::kMaxStride, 3).stride, -Readahead::kMaxStride);
}

TEST(ReadaheadTest, StridesBeyondTheMaximumAreNotFollowed) {
  Readahead r;
  const Readahead::Decision d = stride_walk(r, 1000, Readahead::kMaxStride + 1, 6);
  EXPECT_EQ(d.stride, 0);
  EXPECT_EQ(d.stride_pages, 0u);
}

TEST(ReadaheadTest, ASequentialReaderIsNoStride) {
  Readahead r;
  uint64_t page = 1000;
  for (int i = 0; i < 20; ++i) {
    const Readahead::Decision d = r.on_fault(1, page);
    EXPECT_EQ(d.stride, 0) << i;
    r.on_read(1, page, d.window);
    page += d.window;  // windows of 256 pages, a constant step
  }
}

TEST(ReadaheadTest, AFaultOffTheStrideEndsIt) {
  Readahead r;
  ASSERT_EQ(stride_walk(r, 1000, 32, 3).stride, 32);
  r.on_stride_read(1, 0);
  EXPECT_EQ(r.on_fault(1, 777777).stride, 0);
  r.on_read(1, 777777, 1);
  // A new stride needs three faults again.
  EXPECT_EQ(r.on_fault(1, 777777 + 40).stride, 0);
}

TEST(ReadaheadTest, RandomAdviceReadsNoStride) {
  Readahead r;
  stride_walk(r, 1000, 32, 3);
  // Without the advice, a fault past the pages read ahead would keep to the stride.
  EXPECT_EQ(r.on_fault(1, 1064 + 32 * 5, AccessPattern::kRandom).stride, 0);
}

TEST(ReadaheadTest, AMarkerHitGrowsTheWindowAndItsReadContinuesTheStream) {
  Readahead r;
  walk(r, 1, 1000, 4);  // windows 1 2 4 8: the last read was [1007, 1015)
  EXPECT_EQ(r.on_marker_hit(1, 1008), 16u);
  r.on_async_read(1, 1015, 16);
  EXPECT_EQ(r.on_marker_hit(1, 1015), 32u);
  r.on_async_read(1, 1031, 32);
  // The thread outran its read-ahead: its fault where the reads ended is sequential.
  const Readahead::Decision d = r.on_fault(1, 1063);
  EXPECT_EQ(d.window, 64u);
  EXPECT_EQ(d.hits, 7u + 16u + 32u);
}

TEST(ReadaheadTest, AStreamContinuesUntilItsThreadJumps) {
  Readahead r;
  EXPECT_FALSE(r.continues(1));  // no such stream
  walk(r, 1, 1000, 4);           // its last fault continued its reads
  EXPECT_TRUE(r.continues(1));
  r.on_fault(1, 50000);  // a jump (a new 2 MiB window)
  EXPECT_FALSE(r.continues(1));
  r.on_read(1, 50000, 8);
  r.on_fault(1, 50008);  // and on from there
  EXPECT_TRUE(r.continues(1));
  EXPECT_FALSE(r.continues(2));
}

TEST(ReadaheadTest, AMarkerEvictedUnusedHalvesTheWindow) {
  Readahead r;
  walk(r, 1, 1000, 6);  // the last window: 32
  r.on_marker_unused(1);
  EXPECT_EQ(r.on_marker_hit(1, 1032), 32u);  // 16, doubled
  r.on_marker_unused(2);                     // no such stream: nothing
  EXPECT_EQ(r.on_marker_hit(1, 1032), 64u);
}

// 2 MiB windows starting one page into a kSweepPages-aligned block, as an application's
// windows may lie in the arena.
constexpr uint64_t kW = Readahead::kSweepPages;
uint64_t window_at(uint64_t n) {
  return n * kW + 1;
}

// Thread `tid` jumps to `first` (a major fault) and sweeps on to `reach` (the page of
// its last fault there, a minor one); returns the jump's decision.
Readahead::Decision sweep(Readahead& r, uint32_t tid, uint64_t first, uint64_t reach) {
  const Readahead::Decision d = r.on_fault(tid, first);
  r.on_read(tid, first, d.window);
  r.on_touch(tid, reach);
  return d;
}

TEST(ReadaheadTest, SweptWindowsConfirmASweeperWhoseNextJumpReadsItsWindow) {
  Readahead r;
  for (uint64_t n : {10, 700}) {
    const Readahead::Decision d = sweep(r, 1, window_at(n), window_at(n) + kW - 1);
    EXPECT_FALSE(d.sweep) << n;  // before two sweeps confirm it
    EXPECT_EQ(d.limit, UINT64_MAX) << n;
  }
  // Confirmed: the jump reads its window, even where its first pages were in memory and
  // the fault lands further in.
  Readahead::Decision d = r.on_fault(1, window_at(400) + 100);
  EXPECT_TRUE(d.sweep);
  EXPECT_EQ(d.limit, window_at(401));  // the window's end, one page into the next block
  EXPECT_EQ(r.limit(1), window_at(401));
  EXPECT_EQ(r.limit(2), UINT64_MAX);  // no such stream
  // A fault that continues the window's reads reads no further than its end either.
  r.on_sweep_read(1, window_at(400) + 300, window_at(401) - 1);
  d = r.on_fault(1, window_at(401) - 1);
  EXPECT_FALSE(d.sweep);
  EXPECT_EQ(d.limit, window_at(401));
}

TEST(ReadaheadTest, AConfirmedSweepIsJudgedByItsMarker) {
  Readahead r;
  for (uint64_t n : {10, 700, 33}) sweep(r, 1, window_at(n), window_at(n) + kW - 1);
  ASSERT_TRUE(r.on_fault(1, window_at(50)).sweep);
  r.on_sweep_read(1, window_at(50) + 256, window_at(51));
  r.on_marker_hit(1, window_at(50) + 256);  // the thread reached the marked read
  ASSERT_TRUE(r.on_fault(1, window_at(90)).sweep);
  r.on_sweep_read(1, window_at(90) + 256, window_at(91));
  r.on_touch(1, window_at(90) + 200);  // and jumps before it reaches the marked read
  const Readahead::Decision d = r.on_fault(1, window_at(300));
  EXPECT_FALSE(d.sweep);
  EXPECT_EQ(d.limit, UINT64_MAX);
}

TEST(ReadaheadTest, AConfirmedSweepWithoutAMarkerKeepsTheSweeper) {
  Readahead r;
  for (uint64_t n : {10, 700, 33}) sweep(r, 1, window_at(n), window_at(n) + kW - 1);
  ASSERT_TRUE(r.on_fault(1, window_at(50)).sweep);
  // The rest of that window was in memory (and mapped): nothing shows how far the
  // thread went.
  EXPECT_TRUE(r.on_fault(1, window_at(90)).sweep);
}

TEST(ReadaheadTest, SweepsAtDifferentAlignmentsDoNotConfirm) {
  Readahead r;
  for (uint64_t first : {10 * kW + 1, 700 * kW + 90, 33 * kW + 200, 60 * kW + 17}) {
    EXPECT_FALSE(sweep(r, 1, first, first + kW - 1).sweep) << first;
  }
}

TEST(ReadaheadTest, ShortSweepsAndRandomFaultsDoNotConfirm) {
  Readahead r;
  for (uint64_t n : {10, 700, 33, 60}) {
    EXPECT_FALSE(sweep(r, 1, window_at(n), window_at(n) + kW / 2).sweep) << n;
  }
  for (uint64_t page : {5000, 90000, 1234, 777777, 4242}) {
    EXPECT_FALSE(r.on_fault(2, page).sweep) << page;
  }
  EXPECT_EQ(r.limit(1), UINT64_MAX);
  EXPECT_EQ(r.limit(2), UINT64_MAX);
}

TEST(ReadaheadTest, ASequentialReaderIsNoSweeperAndHasNoLimit) {
  Readahead r;
  // Its windows, then marker hits, run on across many kSweepPages blocks.
  uint64_t page = 1000;
  for (int i = 0; i < 8; ++i) {
    const Readahead::Decision d = r.on_fault(1, page);
    EXPECT_FALSE(d.sweep);
    EXPECT_EQ(d.limit, UINT64_MAX);
    r.on_read(1, page, d.window);
    page += d.window;
  }
  for (int i = 0; i < 40; ++i) {
    const uint64_t window = r.on_marker_hit(1, page);
    r.on_async_read(1, page, window);
    page += window;
    EXPECT_EQ(r.limit(1), UINT64_MAX) << page;
  }
  EXPECT_FALSE(r.on_fault(1, page).sweep);
}

TEST(ReadaheadTest, AMarkerEvictedUnusedEndsTheSweeper) {
  Readahead r;
  for (uint64_t n : {10, 700, 33}) sweep(r, 1, window_at(n), window_at(n) + kW - 1);
  ASSERT_TRUE(r.on_fault(1, window_at(50)).sweep);
  r.on_marker_unused(1);
  EXPECT_EQ(r.limit(1), UINT64_MAX);
  EXPECT_FALSE(r.on_fault(1, window_at(90)).sweep);
}

TEST(ReadaheadMarkersTest, TakeRemovesAndForgetClearsARange) {
  ReadaheadMarkers m;
  EXPECT_TRUE(m.place(10, {1, 20}));
  EXPECT_TRUE(m.place(30, {2, 40}));
  EXPECT_TRUE(m.place(50, {3, 60}));
  EXPECT_FALSE(m.take(11).has_value());
  const auto taken = m.take(10);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->tid, 1u);
  EXPECT_EQ(taken->next, 20u);
  EXPECT_FALSE(m.take(10).has_value());
  EXPECT_EQ(m.forget(30, 20), 1u);  // [30, 50)
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.forget(0, UINT64_MAX), 1u);
  EXPECT_TRUE(m.empty());
}

TEST(ReadaheadMarkersTest, IsBounded) {
  ReadaheadMarkers m;
  for (uint64_t p = 0; p < ReadaheadMarkers::kMaxMarkers; ++p) ASSERT_TRUE(m.place(p, {1, p + 1}));
  EXPECT_FALSE(m.place(ReadaheadMarkers::kMaxMarkers, {1, 0}));
  EXPECT_EQ(m.size(), ReadaheadMarkers::kMaxMarkers);
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
