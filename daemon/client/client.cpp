#include "client/client.hpp"

#include <spdlog/spdlog.h>

#include "extmem/units.hpp"

namespace extmem::daemon {

Client::Client(uint64_t id, ClientIdentity identity, kernel::UniqueFd socket,
               kernel::Pidfd pidfd, kernel::Userfaultfd uffd, kernel::Memfd memfd,
               uintptr_t arena_base, uint64_t arena_size, uint64_t dram_limit,
               std::string policy)
    : pages(arena_size / kPageSize),
      address_map(arena_base, arena_size),
      id_(id),
      identity_(std::move(identity)),
      socket_(std::move(socket)),
      pidfd_(std::move(pidfd)),
      uffd_(std::move(uffd)),
      memfd_(std::move(memfd)),
      arena_base_(arena_base),
      arena_size_(arena_size),
      dram_limit_(dram_limit),
      policy_(std::move(policy)) {}

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
  char resident[32], table[32];
  uint64_t resident_pages, table_bytes;
  {
    std::lock_guard lock(mu);
    resident_pages = pages.resident_pages();
    table_bytes = pages.memory_bytes();
  }
  const ClientCounters& c = counters_;
  return fmt::format(
      "pid={} exe={} uid={} resident={} first_touch_faults={} zero_filled_pages={} "
      "spurious_faults={} released_pages={} events(remove={} unmap={} remap={}) "
      "fault_errors={} page_table={}",
      identity_.pid, identity_.exe, identity_.uid,
      format_size(resident_pages * kPageSize, resident, sizeof(resident)),
      c.first_touch_faults.load(), c.zero_filled_pages.load(), c.spurious_faults.load(),
      c.released_pages.load(), c.remove_events.load(), c.unmap_events.load(),
      c.remap_events.load(), c.fault_errors.load(),
      format_size(table_bytes, table, sizeof(table)));
}

}  // namespace extmem::daemon
