// The frontier policy: finds scans in the pages it is told about, evicts what the scans
// passed most recently (beyond a guard), keeps randomly used pages, adapts the guard.
#include "policy/frontier_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <unordered_map>
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

// A small mechanism: resident pages with reset bits, reclaim in batches at a limit.
class Memory {
 public:
  Memory(Policy& policy, size_t limit) : policy_(policy), limit_(limit) {}
  // Returns whether the reference missed (the page had been evicted).
  bool touch(uint64_t page) {
    if (auto it = resident_.find(page); it != resident_.end()) {
      if (it->second) policy_.on_access(page);
      it->second = false;
      return false;
    }
    while (resident_.size() >= limit_) {
      Policy::Scan scan;
      policy_.scan(32, &scan);
      for (uint64_t v : scan.victims) EXPECT_EQ(resident_.erase(v), 1u);
      for (uint64_t r : scan.reset) resident_[r] = true;
    }
    resident_.emplace(page, false);
    policy_.on_resident(page);
    return !seen_.insert(page).second;
  }
  // The application frees a page; false if it was not resident.
  bool free(uint64_t page) {
    if (resident_.erase(page) == 0) return false;
    policy_.on_gone(page);
    return true;
  }

 private:
  Policy& policy_;
  size_t limit_;
  std::unordered_map<uint64_t, bool> resident_;
  std::unordered_set<uint64_t> seen_;
};

// PageRank's mix: each iteration writes an array by a scan (while scanning another), then
// reads it at random while scanning a third. Evicting what the write passed most recently
// evicts what the random reads need next; their refaults demote the array's chunks to the
// CLOCK, which keeps them, while the scanned arrays stay streams.
// Returns the random reads' misses per iteration.
std::vector<uint64_t> pagerank_like(Memory& memory) {
  constexpr uint64_t kWritten = kBase;              // 1536 pages (3 chunks), read at random
  constexpr uint64_t kRead = kBase + (1 << 16);     // 3072 pages, scanned with the write
  constexpr uint64_t kScanned = kBase + (1 << 20);  // 12000 pages
  std::mt19937_64 rng(7);
  std::vector<uint64_t> random_misses;
  for (int iteration = 0; iteration < 8; ++iteration) {
    for (uint64_t p = 0; p < 1536; ++p) {
      memory.touch(kRead + 2 * p);
      memory.touch(kRead + 2 * p + 1);
      memory.touch(kWritten + p);
    }
    uint64_t misses = 0;
    for (uint64_t p = 0; p < 12000; ++p) {
      memory.touch(kScanned + p);
      for (int i = 0; i < 2; ++i) misses += memory.touch(kWritten + rng() % 1536);
    }
    random_misses.push_back(misses);
  }
  return random_misses;
}

TEST(FrontierPolicyTest, AnArrayWrittenByAScanAndReadAtRandomIsLearnedFromRefaults) {
  FrontierPolicy frontier;
  Memory with_frontier(frontier, 4000);
  const std::vector<uint64_t> frontier_misses = pagerank_like(with_frontier);
  ClockPolicy clock;
  Memory with_clock(clock, 4000);
  const std::vector<uint64_t> clock_misses = pagerank_like(with_clock);
  // The randomly read array is demoted (where it refaulted), the scanned ones are not.
  uint64_t demoted = 0;
  for (uint64_t p = 0; p < 1536; p += 512) demoted += frontier.demoted(kBase + p);
  EXPECT_GE(demoted, 1u);
  for (uint64_t p = 0; p < 12000; p += 64)
    EXPECT_FALSE(frontier.demoted(kBase + (1 << 20) + p)) << p;
  for (uint64_t p = 0; p < 3072; p += 64)
    EXPECT_FALSE(frontier.demoted(kBase + (1 << 16) + p)) << p;
  // Once learned, it stays resident: no more misses than under CLOCK.
  for (size_t i = 0; i < frontier_misses.size(); ++i) {
    std::cout << "iteration " << i << ": random misses frontier " << frontier_misses[i]
              << ", clock " << clock_misses[i] << "\n";
  }
  for (size_t i = 1; i < frontier_misses.size(); ++i) {
    EXPECT_LE(frontier_misses[i], clock_misses[i]) << "iteration " << i;
  }
}

// Freeing a page of a demoted chunk gives the chunk a fresh start: the memory may be put
// to another use.
TEST(FrontierPolicyTest, FreeingMemoryForgetsTheDemotion) {
  FrontierPolicy policy;
  Memory memory(policy, 4000);
  pagerank_like(memory);
  uint64_t chunk = kBase;
  while (chunk < kBase + 1536 && !policy.demoted(chunk)) chunk += 512;
  ASSERT_LT(chunk, kBase + 1536) << "no chunk demoted";
  memory.touch(chunk + 7);
  ASSERT_TRUE(memory.free(chunk + 7));
  EXPECT_FALSE(policy.demoted(chunk));
}

// A scan coming back to pages it had evicted, round after round, is no random reuse.
TEST(FrontierPolicyTest, AScanResumingOverEvictedPagesIsNotDemoted) {
  FrontierPolicy policy;
  Memory memory(policy, 2000);
  for (int round = 0; round < 20; ++round) {
    for (uint64_t p = 0; p < 3000; ++p) memory.touch(kBase + p);
  }
  for (uint64_t p = 0; p < 3000; p += 64) EXPECT_FALSE(policy.demoted(kBase + p)) << p;
}

}  // namespace
}  // namespace extmem::daemon
