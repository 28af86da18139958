#include "budget/budget.hpp"

#include <algorithm>

namespace extmem::daemon {

namespace {

constexpr uint64_t kUnbounded = UINT64_MAX;

// Gives out up to `pool` pages by weight, never raising share[i] above cap[i]: repeatedly
// splits what is left among the clients still below their caps; those a split would
// push past their cap take only what they need and drop out.
uint64_t fill_by_weight(uint64_t pool, std::span<const BudgetClaim> claims,
                        const std::vector<uint64_t>& cap, std::vector<uint64_t>& share) {
  auto weight = [&](size_t i) { return std::max<uint64_t>(claims[i].weight, 1); };
  std::vector<size_t> open;
  for (size_t i = 0; i < claims.size(); ++i) {
    if (share[i] < cap[i]) open.push_back(i);
  }
  while (pool > 0 && !open.empty()) {
    uint64_t total_weight = 0;
    for (size_t i : open) total_weight += weight(i);
    std::vector<uint64_t> part(open.size());
    bool someone_capped = false;
    for (size_t k = 0; k < open.size(); ++k) {
      part[k] =
          static_cast<uint64_t>(static_cast<__uint128_t>(pool) * weight(open[k]) / total_weight);
      someone_capped = someone_capped || cap[open[k]] - share[open[k]] <= part[k];
    }
    if (someone_capped) {
      // Satisfy the capped ones first; the rest share what remains next round.
      std::vector<size_t> still_open;
      for (size_t k = 0; k < open.size(); ++k) {
        const size_t i = open[k];
        if (cap[i] - share[i] <= part[k]) {
          pool -= cap[i] - share[i];
          share[i] = cap[i];
        } else {
          still_open.push_back(i);
        }
      }
      open = std::move(still_open);
      continue;
    }
    uint64_t given = 0;
    for (size_t k = 0; k < open.size(); ++k) {
      share[open[k]] += part[k];
      given += part[k];
    }
    pool -= given;
    // Rounding leaves fewer pages than clients: hand them out one each.
    for (size_t k = 0; pool > 0 && k < open.size(); ++k) {
      if (share[open[k]] < cap[open[k]]) {
        ++share[open[k]];
        --pool;
      }
    }
    if (given == 0) break;
  }
  return pool;
}

}  // namespace

std::vector<uint64_t> share_budget(uint64_t budget, std::span<const BudgetClaim> claims) {
  const size_t n = claims.size();
  std::vector<uint64_t> share(n, 0);
  if (n == 0) return share;
  std::vector<uint64_t> ceiling(n);
  for (size_t i = 0; i < n; ++i) {
    ceiling[i] = claims[i].limit != 0 ? std::max(claims[i].limit, kMinSharePages) : kUnbounded;
  }

  // Minimums first, scaled down together when they do not all fit.
  uint64_t floors = 0;
  for (size_t i = 0; i < n; ++i) {
    share[i] = std::min(std::max(claims[i].min, kMinSharePages), ceiling[i]);
    floors += share[i];
  }
  if (floors >= budget) {
    for (size_t i = 0; i < n; ++i) {
      share[i] =
          std::max(static_cast<uint64_t>(static_cast<__uint128_t>(share[i]) * budget / floors),
                   kMinSharePages);
    }
    return share;
  }
  uint64_t pool = budget - floors;

  // Then demands, by weight.
  std::vector<uint64_t> want(n);
  for (size_t i = 0; i < n; ++i)
    want[i] = std::max(std::min(claims[i].demand, ceiling[i]), share[i]);
  pool = fill_by_weight(pool, claims, want, share);

  // Then the rest, by weight, up to each ceiling.
  fill_by_weight(pool, claims, ceiling, share);
  return share;
}

}  // namespace extmem::daemon
