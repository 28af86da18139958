#include "client/client.hpp"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "extmem/units.hpp"
#include "fault/paging_ring.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

Client::Client(uint64_t id, ClientIdentity identity, kernel::UniqueFd socket, kernel::Pidfd pidfd,
               kernel::Userfaultfd uffd, kernel::Memfd memfd, uintptr_t arena_base,
               uint64_t arena_size, ClientTerms terms, std::unique_ptr<Policy> policy_in,
               SwapDevice* swap)
    : pages(arena_size / kPageSize),
      address_map(arena_base, arena_size),
      policy(std::move(policy_in)),
      id_(id),
      identity_(std::move(identity)),
      socket_(std::move(socket)),
      pidfd_(std::move(pidfd)),
      uffd_(std::move(uffd)),
      memfd_(std::move(memfd)),
      arena_base_(arena_base),
      arena_size_(arena_size),
      limit_pages_(terms.limit_pages),
      swap_(swap),
      terms_(std::move(terms)) {
  last_sample_.at = started_;
}

ClientTerms Client::terms() const {
  std::lock_guard lock(terms_mu_);
  return terms_;
}

void Client::set_terms(ClientTerms terms) {
  std::lock_guard lock(mu);
  {
    std::lock_guard terms_lock(terms_mu_);
    terms_ = std::move(terms);
  }
  save_terms();
}

void Client::save_terms() {
  if (!record_) return;
  const ClientTerms now = terms();
  SwapRecordTerms saved{now.limit_pages, now.min_pages, now.weight, {}};
  const std::string_view name = policy->name();
  memcpy(saved.policy, name.data(), std::min(name.size(), sizeof(saved.policy) - 1));
  record_->save_terms(saved);
}

void Client::sample_rates(std::chrono::steady_clock::time_point now) {
  RateSample sample{now,
                    counters_.major_faults.load(),
                    counters_.first_touch_faults.load(),
                    counters_.evictions.load(),
                    counters_.bytes_read.load(),
                    counters_.bytes_written.load()};
  std::lock_guard lock(rates_mu_);
  const double seconds = std::chrono::duration<double>(now - last_sample_.at).count();
  if (seconds <= 0) return;
  auto rate = [&](uint64_t now_value, uint64_t before) {
    return static_cast<double>(now_value - before) / seconds;
  };
  rates_ = {rate(sample.major_faults, last_sample_.major_faults),
            rate(sample.first_touch_faults, last_sample_.first_touch_faults),
            rate(sample.evictions, last_sample_.evictions),
            rate(sample.bytes_read, last_sample_.bytes_read),
            rate(sample.bytes_written, last_sample_.bytes_written)};
  last_sample_ = sample;
}

ClientRates Client::rates() const {
  std::lock_guard lock(rates_mu_);
  return rates_;
}

void Client::replace_policy(std::unique_ptr<Policy> next) {
  // Page 0 holds the registration nonce and is never offered to a policy.
  pages.for_each_nonempty(1, pages.pages() - 1, [&](uint64_t page, PageState state) {
    if (is_resident(state)) next->on_resident(page);
  });
  hot_hints.for_each_hot(
      [&](uint64_t first, uint64_t count) { next->on_hint(first, count, PageHint::kHot); });
  policy = std::move(next);
  save_terms();
}

bool Client::attach_hints(std::unique_ptr<HintChannel> channel) {
  std::lock_guard lock(hints_mu_);
  if (hints_) return false;
  hints_ = std::move(channel);
  hints_ptr_.store(hints_.get(), std::memory_order_release);
  return true;
}

Client::~Client() {
  if (swap_ != nullptr) swap_->release_all(id_);
  if (record_) record_->remove();
}

void Client::attach_record(std::unique_ptr<SwapRecord> record) {
  record_ = std::move(record);
  pages.attach_record(record_.get());
}

void Client::keep_record() {
  std::lock_guard lock(mu);
  pages.attach_record(nullptr);
  record_.reset();
}

void Client::unregister_arena() {
  std::lock_guard lock(mu);
  for (const Segment& s : address_map.segments()) {
    auto r = uffd_.unregister_range(s.start, s.len);
    // ENOMEM: the address space is already gone (the process is exiting).
    if (!r && r.error().code() != ENOMEM) {
      spdlog::warn("client {}: {}", identity_.pid, r.error().message());
    }
  }
}

std::string Client::describe() {
  char limit[32], resident[32], swapped[32], metadata[32], read[32], written[32];
  uint64_t resident_pages, swapped_pages, metadata_bytes;
  std::string policy_name;
  {
    std::lock_guard lock(mu);
    resident_pages = pages.resident_pages();
    swapped_pages = pages.swapped_pages();
    metadata_bytes = pages.memory_bytes() + policy->memory_bytes() + hot_hints.memory_bytes();
    policy_name = policy->name();
  }
  const ClientCounters& c = counters_;
  uint64_t limit_bytes = limit_pages() * kPageSize;
  return fmt::format(
      "pid={} exe={} uid={} policy={} limit={} resident={} swapped={} swap_clusters={} "
      "faults(first_touch={} major={} minor={} wp={} spurious={}) zero_filled_pages={} "
      "evictions={} clean_evictions={} zero_evictions={} access_resets={} read={} written={} "
      "released_pages={} "
      "events(remove={} unmap={} remap={}) fault_latency(p50<={}us p99<={}us) "
      "errors(fault={} io={}) swap_full={} over_limit={} metadata={} prefetched_pages={} "
      "prefetch_hits={} prefetch_markers(placed={} used={} unused={}) fault_around_pages={} "
      "poisoned_pages={} stalled_reads={} "
      "hints(received={} applied={} invalid={} ring_full={})",
      identity_.pid, identity_.exe, identity_.uid, policy_name,
      limit_bytes ? format_size(limit_bytes, limit, sizeof(limit)) : "none",
      format_size(resident_pages * kPageSize, resident, sizeof(resident)),
      format_size(swapped_pages * kPageSize, swapped, sizeof(swapped)),
      swap_ != nullptr ? swap_->clusters_of(id_) : 0, c.first_touch_faults.load(),
      c.major_faults.load(), c.minor_faults.load(), c.wp_faults.load(), c.spurious_faults.load(),
      c.zero_filled_pages.load(), c.evictions.load(), c.clean_evictions.load(),
      c.zero_evictions.load(), c.access_resets.load(),
      format_size(c.bytes_read.load(), read, sizeof(read)),
      format_size(c.bytes_written.load(), written, sizeof(written)), c.released_pages.load(),
      c.remove_events.load(), c.unmap_events.load(), c.remap_events.load(),
      c.fault_latency.quantile_us(0.5), c.fault_latency.quantile_us(0.99), c.fault_errors.load(),
      c.io_errors.load(), c.swap_full.load(), c.over_limit.load(),
      format_size(metadata_bytes, metadata, sizeof(metadata)), c.prefetched_pages.load(),
      c.prefetch_hits.load(), c.prefetch_markers.load(), c.prefetch_markers_used.load(),
      c.prefetch_markers_unused.load(), c.fault_around_pages.load(), c.poisoned_pages.load(),
      c.stalled_reads.load(), c.hints_received.load(), c.hints_applied.load(),
      c.hints_invalid.load(), c.hints_ring_full.load());
}

}  // namespace extmem::daemon
