#include "swap/swap_space.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace extmem::daemon {
namespace {

constexpr uint64_t kCluster = SwapSpace::kClusterBytes;
constexpr uint32_t kNone = SwapSpace::kNoCluster;

TEST(SwapSpaceTest, DividesTheDeviceIntoWholeClusters) {
  EXPECT_EQ(SwapSpace(10 * kCluster + 4096).clusters_total(), 10u);
  EXPECT_EQ(SwapSpace(kCluster - 1).clusters_total(), 0u);
  SwapSpace empty(0);
  EXPECT_EQ(empty.allocate(1), kNone);
  EXPECT_EQ(empty.clusters_used(), 0u);
}

TEST(SwapSpaceTest, SlotOffsetKeepsArenaNeighboursTogether) {
  EXPECT_EQ(SwapSpace::slot_offset(0, 0), 0u);
  EXPECT_EQ(SwapSpace::slot_offset(0, 511), 511u * 4096);
  EXPECT_EQ(SwapSpace::slot_offset(3, 512 * 7 + 5), (3u * 512 + 5) * 4096);
  EXPECT_EQ(SwapSpace::slot_offset(UINT32_MAX - 1, 511),
            ((uint64_t{UINT32_MAX} - 1) * 512 + 511) * 4096);
}

TEST(SwapSpaceTest, AllocatesEveryClusterOnceThenReportsFull) {
  // 130 clusters: two whole regions of 64 and a partial one.
  SwapSpace space(130 * kCluster);
  std::set<uint32_t> seen;
  for (int i = 0; i < 130; ++i) {
    uint32_t c = space.allocate(i % 7);
    ASSERT_NE(c, kNone) << i;
    ASSERT_LT(c, 130u);
    ASSERT_TRUE(seen.insert(c).second) << "cluster " << c << " handed out twice";
  }
  EXPECT_EQ(space.clusters_used(), 130u);
  EXPECT_EQ(space.allocate(0), kNone);
  EXPECT_EQ(space.allocate(99), kNone);
  EXPECT_EQ(space.clusters_of(99), 0u);
}

TEST(SwapSpaceTest, ReleasedClusterIsReused) {
  SwapSpace space(8 * kCluster);
  for (int i = 0; i < 8; ++i) ASSERT_NE(space.allocate(1), kNone);
  EXPECT_TRUE(space.release(5));
  EXPECT_EQ(space.clusters_used(), 7u);
  EXPECT_EQ(space.clusters_of(1), 7u);
  EXPECT_EQ(space.allocate(2), 5u);
  EXPECT_EQ(space.clusters_of(2), 1u);
  EXPECT_EQ(space.allocate(2), kNone);
}

TEST(SwapSpaceTest, DoubleReleaseIsDetected) {
  SwapSpace space(4 * kCluster);
  uint32_t c = space.allocate(1);
  uint32_t d = space.allocate(1);
  EXPECT_TRUE(space.release(c));
  EXPECT_FALSE(space.release(c));
  EXPECT_FALSE(space.release(3)) << "never allocated";
  EXPECT_FALSE(space.release(4)) << "out of range";
  EXPECT_FALSE(space.release(kNone));
  EXPECT_EQ(space.clusters_used(), 1u);
  EXPECT_EQ(space.clusters_of(1), 1u);
  EXPECT_TRUE(space.release(d));
  EXPECT_EQ(space.clusters_of(1), 0u);
}

TEST(SwapSpaceTest, ReleaseAllFreesOnlyThatOwner) {
  SwapSpace space(200 * kCluster);
  std::vector<uint32_t> a, b;
  for (int i = 0; i < 40; ++i) {
    a.push_back(space.allocate(10));
    b.push_back(space.allocate(20));
    if (i % 3 == 0) b.push_back(space.allocate(20));
  }
  EXPECT_EQ(space.clusters_of(10), 40u);
  EXPECT_EQ(space.clusters_of(20), 54u);
  EXPECT_TRUE(space.release(a[7]));

  EXPECT_EQ(space.release_all(10), 39u);
  EXPECT_EQ(space.clusters_of(10), 0u);
  EXPECT_EQ(space.clusters_of(20), 54u);
  EXPECT_EQ(space.clusters_used(), 54u);
  for (uint32_t c : a) EXPECT_FALSE(space.release(c)) << c;
  for (uint32_t c : b) EXPECT_TRUE(space.release(c)) << c;
  EXPECT_EQ(space.release_all(20), 0u);
  EXPECT_EQ(space.release_all(30), 0u);
  EXPECT_EQ(space.clusters_used(), 0u);
}

TEST(SwapSpaceTest, OneOwnerFillsFromTheBottom) {
  SwapSpace space(300 * kCluster);
  for (uint32_t i = 0; i < 300; ++i) ASSERT_EQ(space.allocate(1), i);
}

TEST(SwapSpaceTest, InterleavedOwnersEachStayContiguous) {
  SwapSpace space(1024 * kCluster);
  std::map<uint64_t, std::vector<uint32_t>> got;
  for (int round = 0; round < 50; ++round) {
    for (uint64_t owner = 1; owner <= 3; ++owner) got[owner].push_back(space.allocate(owner));
  }
  for (const auto& [owner, clusters] : got) {
    for (size_t i = 1; i < clusters.size(); ++i) {
      EXPECT_EQ(clusters[i], clusters[i - 1] + 1) << "owner " << owner << " allocation " << i;
    }
  }
  EXPECT_EQ(got[1][0], 0u) << "low numbers first";
}

TEST(SwapSpaceTest, OwnerReturnsToItsNeighbourhood) {
  SwapSpace space(1024 * kCluster);
  for (int i = 0; i < 10; ++i) space.allocate(1);  // 0..9
  for (int i = 0; i < 10; ++i) space.allocate(2);  // 64..73
  EXPECT_EQ(space.allocate(1), 10u);
  EXPECT_TRUE(space.release(4));
  EXPECT_EQ(space.allocate(1), 11u) << "onwards first";
  for (int i = 12; i < 64; ++i) space.allocate(1);
  EXPECT_EQ(space.allocate(1), 4u) << "then the hole in its region";
  EXPECT_EQ(space.allocate(1), 128u) << "then a fresh region, not owner 2's";
}

// Once every region is in use, new owners get the lowest free cluster.
TEST(SwapSpaceTest, FallsBackToTheLowestFreeCluster) {
  SwapSpace space(128 * kCluster);
  EXPECT_EQ(space.allocate(1), 0u);
  EXPECT_EQ(space.allocate(2), 64u);
  EXPECT_EQ(space.allocate(3), 1u);
  EXPECT_EQ(space.allocate(3), 2u);
  EXPECT_EQ(space.allocate(1), 3u);
}

// The placement rule done the slow way, to check the O(log n) structure against.
class Model {
 public:
  explicit Model(uint32_t clusters) : owner_of_(clusters, kFree) {}

  uint32_t expected(uint64_t owner) const {
    auto n = static_cast<uint32_t>(owner_of_.size());
    if (auto it = last_.find(owner); it != last_.end()) {
      uint32_t start = it->second / 64 * 64;
      uint32_t end = std::min(start + 64, n);
      for (uint32_t c = it->second + 1; c < end; ++c) {
        if (owner_of_[c] == kFree) return c;
      }
      for (uint32_t c = start; c <= it->second; ++c) {
        if (owner_of_[c] == kFree) return c;
      }
    }
    for (uint32_t start = 0; start < n; start += 64) {
      bool empty = true;
      for (uint32_t c = start; c < std::min(start + 64, n); ++c) empty &= owner_of_[c] == kFree;
      if (empty) return start;
    }
    for (uint32_t c = 0; c < n; ++c) {
      if (owner_of_[c] == kFree) return c;
    }
    return kNone;
  }
  void allocated(uint32_t c, uint64_t owner) {
    owner_of_[c] = owner;
    last_[owner] = c;
    ++count_[owner];
  }
  void released(uint32_t c) {
    uint64_t owner = owner_of_[c];
    owner_of_[c] = kFree;
    if (--count_[owner] == 0) {
      count_.erase(owner);
      last_.erase(owner);
    }
  }
  uint64_t owner_of(uint32_t c) const { return owner_of_[c]; }
  uint64_t count(uint64_t owner) const {
    auto it = count_.find(owner);
    return it == count_.end() ? 0 : it->second;
  }
  static constexpr uint64_t kFree = UINT64_MAX;

 private:
  std::vector<uint64_t> owner_of_;
  std::map<uint64_t, uint32_t> last_;
  std::map<uint64_t, uint64_t> count_;
};

TEST(SwapSpaceTest, MatchesASlowModelUnderRandomUse) {
  // Over 4096 clusters, so the free set has three levels; not a multiple of 64.
  constexpr uint32_t kClusters = 4500;
  SwapSpace space(kClusters * kCluster + 12345);
  Model model(kClusters);
  std::mt19937_64 rng(7);
  uint64_t used = 0;
  uint64_t fulls = 0;
  uint64_t empties = 0;
  for (int step = 0; step < 60000; ++step) {
    uint64_t owner = rng() % 12;
    uint64_t op = rng() % 100;
    // Filling phases alternate with draining ones, so the space is seen full and empty.
    bool filling = (step / 10000) % 2 == 0;
    if (op < (filling ? 95u : 20u)) {
      uint32_t want = model.expected(owner);
      uint32_t got = space.allocate(owner);
      ASSERT_EQ(got, want) << "step " << step << " owner " << owner;
      if (got == kNone) {
        ++fulls;
      } else {
        model.allocated(got, owner);
        ++used;
      }
    } else if (filling || op < 99) {
      auto c = static_cast<uint32_t>(rng() % kClusters);
      // Usually a held cluster (the next one up), sometimes whatever c is.
      for (uint32_t i = 0; i < kClusters && op % 4 != 0; ++i) {
        if (model.owner_of((c + i) % kClusters) != Model::kFree) {
          c = (c + i) % kClusters;
          break;
        }
      }
      bool held = model.owner_of(c) != Model::kFree;
      ASSERT_EQ(space.release(c), held) << "step " << step << " cluster " << c;
      if (held) {
        model.released(c);
        --used;
      }
    } else {
      uint64_t expected = model.count(owner);
      ASSERT_EQ(space.release_all(owner), expected) << "step " << step;
      for (uint32_t c = 0; c < kClusters; ++c) {
        if (model.owner_of(c) == owner) model.released(c);
      }
      used -= expected;
    }
    ASSERT_EQ(space.clusters_used(), used);
    ASSERT_EQ(space.clusters_of(owner), model.count(owner));
    if (used == 0) ++empties;
  }
  EXPECT_GT(fulls, 0u) << "never full";
  EXPECT_GT(empties, 0u) << "never empty";
}

}  // namespace
}  // namespace extmem::daemon
