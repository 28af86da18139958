#include "budget/governor.hpp"

#include <cinttypes>

#include "budget/budget.hpp"

namespace extmem::daemon {

namespace {

// Room a client is assumed to want beyond what it holds, so a growing client's share
// grows with it between rebalances.
uint64_t demand_of(uint64_t resident) {
  return resident + std::max<uint64_t>(resident / 8, 2048);
}

// Faults waiting for room go on at once when the limit rises; reclaim brings a lowered
// limit down on its next pass.
void apply_limit(Client& client, uint64_t pages) {
  const uint64_t before = client.limit_pages();
  client.set_limit_pages(pages);
  if (before != 0 && (pages == 0 || pages > before)) client.room.notify_all();
}

}  // namespace

Governor::Governor(ClientRegistry& registry, bool enforcing)
    : registry_(registry), enforcing_(enforcing) {}

void Governor::configure(const Options& options) {
  {
    std::lock_guard lock(mu_);
    rules_ = options.rules;
    default_limit_ = options.default_limit / kPageSize;
    default_min_ = options.default_min / kPageSize;
    default_weight_ = options.default_weight;
    default_policy_ = options.default_policy;
  }
  budget_pages_.store(options.budget / kPageSize);
}

Governor::Assignment Governor::assign(const ClientIdentity& identity, uint64_t requested_limit,
                                      std::string_view requested_policy) const {
  std::lock_guard lock(mu_);
  Assignment a;
  a.terms = {default_limit_, default_min_, default_weight_, "default"};
  a.policy = default_policy_;
  for (const Rule& rule : rules_) {
    if (!rule.matches(identity.exe, identity.uid)) continue;
    if (rule.limit) a.terms.limit_pages = *rule.limit / kPageSize;
    if (rule.min) a.terms.min_pages = *rule.min / kPageSize;
    if (rule.weight) a.terms.weight = *rule.weight;
    if (rule.policy) a.policy = *rule.policy;
    a.terms.limit_source = "rule at line " + std::to_string(rule.line);
    break;
  }
  if (requested_limit != 0) {
    a.terms.limit_pages = requested_limit / kPageSize;
    a.terms.limit_source = "client";
  }
  if (!requested_policy.empty()) a.policy = requested_policy;
  if (!enforcing_) a.terms.limit_pages = 0;
  return a;
}

void Governor::set_budget(uint64_t bytes) {
  budget_pages_.store(bytes / kPageSize);
  rebalance();
}

Result<void> Governor::set_limit(Client& client, uint64_t limit_bytes,
                                 std::optional<uint64_t> min_bytes,
                                 std::optional<uint32_t> weight) {
  if (!enforcing_) {
    return Error::make(EOPNOTSUPP,
                       "extmemd has no swap device (--swap), so it cannot enforce limits");
  }
  if (limit_bytes != 0 && limit_bytes < kMinLimitBytes) {
    return Error::make(EINVAL, "a limit of %" PRIu64 " bytes is below the minimum of 1M",
                       limit_bytes);
  }
  ClientTerms terms = client.terms();
  terms.limit_pages = limit_bytes / kPageSize;
  if (min_bytes) terms.min_pages = *min_bytes / kPageSize;
  if (weight) {
    if (*weight == 0 || *weight > 10000) {
      return Error::make(EINVAL, "a weight must be from 1 to 10000, not %u", *weight);
    }
    terms.weight = *weight;
  }
  if (terms.limit_pages != 0 && terms.min_pages > terms.limit_pages) {
    return Error::make(EINVAL, "the minimum exceeds the limit");
  }
  terms.limit_source = "control";
  client.set_terms(std::move(terms));
  rebalance();
  return {};
}

void Governor::rebalance() {
  if (!enforcing_) return;
  std::lock_guard lock(mu_);
  auto clients = registry_.snapshot();
  const uint64_t budget = budget_pages_.load();
  if (budget == 0) {
    for (const auto& client : clients) apply_limit(*client, client->terms().limit_pages);
    return;
  }
  std::vector<BudgetClaim> claims;
  claims.reserve(clients.size());
  for (const auto& client : clients) {
    ClientTerms terms = client->terms();
    uint64_t resident;
    {
      std::lock_guard client_lock(client->mu);
      resident = client->pages.resident_pages();
    }
    claims.push_back({terms.limit_pages, terms.min_pages, terms.weight, demand_of(resident)});
  }
  std::vector<uint64_t> shares = share_budget(budget, claims);
  for (size_t i = 0; i < clients.size(); ++i) apply_limit(*clients[i], shares[i]);
}

}  // namespace extmem::daemon
