// Decides what each client may hold: its terms at registration (its own request, the
// config's rules, the defaults), live changes from the control plane, and its share of
// the global DRAM budget, recomputed by every reclaim pass.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "client/registry.hpp"
#include "config/options.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::daemon {

// The smallest DRAM limit a client may have, in bytes.
inline constexpr uint64_t kMinLimitBytes = 1 << 20;

class Governor {
 public:
  // `enforcing`: a swap device exists, so limits can be enforced.
  Governor(ClientRegistry& registry, bool enforcing);

  // Takes the rules, defaults and budget (at start and on reload).
  void configure(const Options& options);

  struct Assignment {
    ClientTerms terms;
    std::string policy;
  };
  // A new client's terms and policy: its own request (0 / empty: none) wins over the
  // first matching rule, which wins over the defaults.
  Assignment assign(const ClientIdentity& identity, uint64_t requested_limit,
                    std::string_view requested_policy) const;

  // In bytes; 0: no global budget.
  uint64_t budget_bytes() const { return budget_pages_.load() * kPageSize; }
  void set_budget(uint64_t bytes);
  bool enforcing() const { return enforcing_; }

  // A client's own limit, and optionally its budget claim, changed live.
  Result<void> set_limit(Client& client, uint64_t limit_bytes, std::optional<uint64_t> min_bytes,
                         std::optional<uint32_t> weight);

  // Sets every client's effective limit from its terms and the budget.
  void rebalance();

 private:
  ClientRegistry& registry_;
  const bool enforcing_;
  std::atomic<uint64_t> budget_pages_{0};
  mutable std::mutex mu_;  // guards the fields below, and serializes rebalances
  std::vector<Rule> rules_;
  uint64_t default_limit_ = 0;
  uint64_t default_min_ = 0;
  uint32_t default_weight_ = 100;
  std::string default_policy_;
};

}  // namespace extmem::daemon
