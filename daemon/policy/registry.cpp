#include "policy/policy.hpp"

#include <array>

#include "policy/clock_policy.hpp"
#include "policy/fifo_policy.hpp"
#include "policy/frontier_policy.hpp"

namespace extmem::daemon {
namespace {

struct Entry {
  std::string_view name;
  std::unique_ptr<Policy> (*make)();
};

template <typename P>
std::unique_ptr<Policy> make() {
  return std::make_unique<P>();
}

// Adding a policy: its file, and one line here.
constexpr std::array kPolicies = {
    Entry{"clock", &make<ClockPolicy>},
    Entry{"fifo", &make<FifoPolicy>},
    Entry{"frontier", &make<FrontierPolicy>},
};

}  // namespace

std::unique_ptr<Policy> make_policy(std::string_view name) {
  for (const Entry& entry : kPolicies) {
    if (entry.name == name) return entry.make();
  }
  return nullptr;
}

std::vector<std::string> policy_names() {
  std::vector<std::string> names;
  for (const Entry& entry : kPolicies) names.emplace_back(entry.name);
  return names;
}

}  // namespace extmem::daemon
