#include "budget/budget.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

namespace extmem::daemon {
namespace {

constexpr uint64_t kMiB = 256;  // pages

uint64_t sum(const std::vector<uint64_t>& v) {
  return std::accumulate(v.begin(), v.end(), uint64_t{0});
}

TEST(BudgetTest, OneClientWithoutLimitGetsTheWholeBudget) {
  BudgetClaim c{.limit = 0, .min = 0, .weight = 100, .demand = 10 * kMiB};
  EXPECT_EQ(share_budget(1024 * kMiB, {&c, 1}), std::vector<uint64_t>{1024 * kMiB});
}

TEST(BudgetTest, OwnLimitIsACeiling) {
  BudgetClaim c{.limit = 64 * kMiB, .min = 0, .weight = 100, .demand = 500 * kMiB};
  EXPECT_EQ(share_budget(1024 * kMiB, {&c, 1}), std::vector<uint64_t>{64 * kMiB});
}

TEST(BudgetTest, SmallDemandsAreMetAndTheRestGoesToTheHungry) {
  std::vector<BudgetClaim> claims = {
      {.limit = 0, .min = 0, .weight = 100, .demand = 10 * kMiB},
      {.limit = 0, .min = 0, .weight = 100, .demand = 2000 * kMiB},
  };
  auto shares = share_budget(1000 * kMiB, claims);
  EXPECT_GE(shares[0], 10 * kMiB);
  EXPECT_GE(shares[1], 985 * kMiB);
  EXPECT_LE(sum(shares), 1000 * kMiB);
}

TEST(BudgetTest, ContendedBudgetFollowsWeights) {
  std::vector<BudgetClaim> claims = {
      {.limit = 0, .min = 0, .weight = 100, .demand = 4000 * kMiB},
      {.limit = 0, .min = 0, .weight = 300, .demand = 4000 * kMiB},
  };
  auto shares = share_budget(1000 * kMiB, claims);
  // Weights share what is above everyone's 1 MiB floor.
  const uint64_t above_floors = 1000 * kMiB - 2 * kMinSharePages;
  EXPECT_NEAR(static_cast<double>(shares[0]), kMinSharePages + above_floors / 4.0, 2);
  EXPECT_NEAR(static_cast<double>(shares[1]), kMinSharePages + above_floors * 3 / 4.0, 2);
  EXPECT_EQ(sum(shares), 1000 * kMiB);
}

TEST(BudgetTest, MinimumIsGuaranteedUnderPressure) {
  std::vector<BudgetClaim> claims = {
      {.limit = 0, .min = 400 * kMiB, .weight = 1, .demand = 4000 * kMiB},
      {.limit = 0, .min = 0, .weight = 1000, .demand = 4000 * kMiB},
  };
  auto shares = share_budget(1000 * kMiB, claims);
  EXPECT_GE(shares[0], 400 * kMiB);
  EXPECT_LE(sum(shares), 1000 * kMiB);
}

TEST(BudgetTest, MinimumsAboveTheBudgetAreScaledTogether) {
  std::vector<BudgetClaim> claims = {
      {.limit = 0, .min = 600 * kMiB, .weight = 100, .demand = 600 * kMiB},
      {.limit = 0, .min = 1200 * kMiB, .weight = 100, .demand = 1200 * kMiB},
  };
  auto shares = share_budget(900 * kMiB, claims);
  EXPECT_EQ(shares[0], 300 * kMiB);
  EXPECT_EQ(shares[1], 600 * kMiB);
}

TEST(BudgetTest, CappedClientLeavesItsShareToOthers) {
  std::vector<BudgetClaim> claims = {
      {.limit = 100 * kMiB, .min = 0, .weight = 100, .demand = 4000 * kMiB},
      {.limit = 0, .min = 0, .weight = 100, .demand = 4000 * kMiB},
  };
  auto shares = share_budget(1000 * kMiB, claims);
  EXPECT_EQ(shares[0], 100 * kMiB);
  EXPECT_EQ(shares[1], 900 * kMiB);
}

// Invariants on random claims: every share within [floor, ceiling], the sum within the
// budget whenever the floors fit.
TEST(BudgetTest, RandomClaimsKeepTheInvariants) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    const size_t n = 1 + rng() % 8;
    const uint64_t budget = kMinSharePages * n + rng() % (100000);
    std::vector<BudgetClaim> claims(n);
    uint64_t floors = 0;
    for (auto& c : claims) {
      c.limit = rng() % 3 == 0 ? 0 : kMinSharePages + rng() % 50000;
      c.min = rng() % 2 == 0 ? 0 : rng() % 20000;
      c.weight = static_cast<uint32_t>(1 + rng() % 1000);
      c.demand = rng() % 60000;
      uint64_t ceiling = c.limit != 0 ? c.limit : UINT64_MAX;
      floors += std::min(std::max(c.min, kMinSharePages), ceiling);
    }
    auto shares = share_budget(budget, claims);
    ASSERT_EQ(shares.size(), n);
    if (floors <= budget) {
      EXPECT_LE(sum(shares), budget) << "round " << round;
    }
    for (size_t i = 0; i < n; ++i) {
      EXPECT_GE(shares[i], kMinSharePages);
      if (claims[i].limit != 0) EXPECT_LE(shares[i], claims[i].limit) << "round " << round;
      if (floors <= budget && claims[i].min != 0) {
        EXPECT_GE(shares[i],
                  std::min(claims[i].min, claims[i].limit ? claims[i].limit : UINT64_MAX));
      }
    }
  }
}

}  // namespace
}  // namespace extmem::daemon
