// Sharing one global DRAM budget among clients: a pure function, unit-tested alone.
//
// Each client brings its own limit (a ceiling; 0 for none), a guaranteed minimum, a
// weight and its demand (what it holds now plus room to grow). The budget goes first to
// the minimums, then to demands in proportion to weight (max-min fair: a client that
// needs less than its share leaves the rest to the others), then what is left over is
// spread by weight up to each client's own limit, so a growing client finds room without
// waiting for the next rebalance. When the minimums alone exceed the budget, they are
// scaled down in proportion.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace extmem::daemon {

struct BudgetClaim {
  uint64_t limit = 0;  // pages; 0: no ceiling of its own
  uint64_t min = 0;    // pages guaranteed
  uint32_t weight = 100;
  uint64_t demand = 0;  // pages
};

// The smallest effective limit a client is given, in pages (1 MiB).
inline constexpr uint64_t kMinSharePages = 256;

// Effective limits in pages, one per claim, in order. `budget` is in pages and > 0.
// Each is at least kMinSharePages and at most the claim's own limit (when it has one);
// their sum does not exceed the budget unless kMinSharePages forces it.
std::vector<uint64_t> share_budget(uint64_t budget, std::span<const BudgetClaim> claims);

}  // namespace extmem::daemon
