// The frontier policy: finds scans in the pages it is told about, evicts what the scans
// passed most recently (beyond a guard), keeps randomly used pages, adapts the guard.
#include "policy/frontier_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <unordered_set>
#include <vector>

namespace extmem::daemon {
namespace {

constexpr uint64_t kBase = uint64_t{5} << 32;  // pages above 2^32, as in a large arena

std::vector<uint64_t> evict(FrontierPolicy& policy, size_t want) {
  Policy::Scan scan;
  policy.scan(want, &scan);
  return scan.victims;
}

TEST(FrontierPolicyTest, EvictsWhatTheScanPassedMostRecentlyBeyondTheGuard) {
  FrontierPolicy policy;
  for (uint64_t p = 0; p < 10000; ++p) policy.on_resident(kBase + p);
  EXPECT_EQ(policy.live_streams(), 1u);
  const std::vector<uint64_t> victims = evict(policy, 100);
  ASSERT_EQ(victims.size(), 100u);
  const uint64_t head = kBase + 9999;
  for (size_t i = 0; i < victims.size(); ++i) {
    // The guard behind the head is kept; the pages just before it go first, newest first.
    EXPECT_EQ(victims[i], head - policy.guard() - i);
  }
}

// A loop over 3000 pages in 2000 pages of memory: LRU-like policies miss every page, the
// frontier keeps a part as large as the memory less its guard resident.
TEST(FrontierPolicyTest, CyclicScanLargerThanMemoryKeepsMostOfItResident) {
  FrontierPolicy policy;
  std::unordered_set<uint64_t> resident;
  uint64_t misses = 0;
  for (int round = 0; round < 10; ++round) {
    for (uint64_t p = 0; p < 3000; ++p) {
      if (resident.contains(kBase + p)) continue;
      if (round > 0) ++misses;
      if (resident.size() >= 2000) {
        for (uint64_t v : evict(policy, 16)) ASSERT_EQ(resident.erase(v), 1u);
      }
      resident.insert(kBase + p);
      policy.on_resident(kBase + p);
    }
  }
  // 1000 misses a round plus the guard (a quarter of memory); LRU would take 3000.
  EXPECT_LT(misses, 9 * 1600u);
}

// 200 pages used at random, then a scan of 10000 pages through 2000 pages of memory.
TEST(FrontierPolicyTest, RandomlyUsedPagesOutliveAScan) {
  FrontierPolicy policy;
  std::vector<uint64_t> hot;
  for (uint64_t i = 0; i < 200; ++i) hot.push_back(kBase + (uint64_t{1} << 20) + i * 997);
  for (uint64_t p : hot) policy.on_resident(p);
  std::unordered_set<uint64_t> evicted;
  for (uint64_t p = 0; p < 10000; ++p) {
    policy.on_resident(kBase + p);
    if (policy.resident_pages() > 2000) {
      for (uint64_t v : evict(policy, 8)) evicted.insert(v);
    }
  }
  for (uint64_t p : hot) EXPECT_FALSE(evicted.contains(p)) << p;
  EXPECT_EQ(policy.resident_pages(), 200 + 10000 - evicted.size());
}

TEST(FrontierPolicyTest, StreamSurvivesRandomFaultsBetweenItsSteps) {
  FrontierPolicy policy;
  std::mt19937_64 rng(1);
  for (uint64_t p = 0; p < 1000; ++p) {
    policy.on_resident(kBase + p);
    for (int i = 0; i < 30; ++i) policy.on_resident(kBase + (uint64_t{1} << 24) + rng() % 100000);
  }
  EXPECT_EQ(policy.readahead_hint(kBase + 1000), FrontierPolicy::kHintPages);
  EXPECT_EQ(policy.readahead_hint(kBase + 1000 + FrontierPolicy::kGap + 1), 0u);
  EXPECT_EQ(policy.readahead_hint(kBase + 10), 0u);
}

TEST(FrontierPolicyTest, GuardGrowsWhenTheScanComesBackAndShrinksAfterwards) {
  FrontierPolicy policy;
  uint64_t p = 0;
  for (; p < 5000; ++p) policy.on_resident(kBase + p);
  EXPECT_EQ(policy.guard(), FrontierPolicy::kMinGuard);
  // The application goes back a little behind its head (say, a stencil's previous rows)
  // after the policy evicted those pages.
  ASSERT_EQ(evict(policy, 100).size(), 100u);
  policy.on_resident(kBase + p - FrontierPolicy::kMinGuard - 10);
  EXPECT_EQ(policy.guard(), 2 * FrontierPolicy::kMinGuard);
  // A long scan with no coming back shrinks it again.
  for (uint64_t end = p + 2 * FrontierPolicy::kShrinkPeriod; p < end; ++p) {
    policy.on_resident(kBase + p);
    if (p % 64 == 0) evict(policy, 64);
  }
  EXPECT_EQ(policy.guard(), FrontierPolicy::kMinGuard);
}

TEST(FrontierPolicyTest, FreedStreamPagesAreNeverVictims) {
  FrontierPolicy policy;
  for (uint64_t p = 0; p < 4000; ++p) policy.on_resident(kBase + p);
  for (uint64_t p = 0; p < 4000; p += 2) policy.on_gone(kBase + p);
  EXPECT_EQ(policy.resident_pages(), 2000u);
  std::unordered_set<uint64_t> victims;
  for (int i = 0; i < 100; ++i) {
    for (uint64_t v : evict(policy, 64)) {
      EXPECT_EQ(v % 2, 1u) << v;
      EXPECT_TRUE(victims.insert(v).second);
    }
  }
  EXPECT_EQ(victims.size(), 2000u);
  EXPECT_EQ(policy.resident_pages(), 0u);
}

}  // namespace
}  // namespace extmem::daemon
