#include "fault/fault_handler.hpp"

#include <unistd.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "reclaim/reclaimer.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

namespace {

using Clock = std::chrono::steady_clock;

// How long a fault waits for reclaim to make room before it is served over the limit.
constexpr auto kRoomTimeout = std::chrono::seconds(2);

void wake(Client& client, uintptr_t start, uint64_t len) {
  auto woken = client.uffd().wake(start, len);
  if (!woken) {
    spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
    client.counters().fault_errors++;
  }
}

// Waits (releasing the lock) until `pages` more fit under the client's limit. Returns
// when they fit, or when they cannot be made to fit (no swap, swap full, timeout): then
// the fault is served over the limit and counted, never refused.
void make_room(std::unique_lock<std::mutex>& lock, Client& client, uint64_t pages, Pager& pager) {
  const uint64_t limit = client.limit_pages();
  if (limit == 0 || client.pages.resident_pages() + pages <= limit) return;
  if (pager.swap == nullptr || pager.reclaimer == nullptr) {
    client.counters().over_limit++;
    return;
  }
  const auto deadline = Clock::now() + kRoomTimeout;
  // The limit may change while we wait (control plane, budget): re-read it each time.
  for (uint64_t now_limit = limit;
       now_limit != 0 && client.pages.resident_pages() + pages > now_limit;
       now_limit = client.limit_pages()) {
    if (pager.reclaimer->swap_full() || Clock::now() >= deadline) {
      if (client.counters().over_limit++ % 1000 == 0 && !pager.reclaimer->swap_full()) {
        spdlog::warn("client {}: reclaim made no room in {} s; serving faults over the limit",
                     client.identity().pid,
                     std::chrono::duration_cast<std::chrono::seconds>(kRoomTimeout).count());
      }
      return;
    }
    pager.reclaimer->wake();
    client.room.wait_for(lock, std::chrono::milliseconds(20));
  }
}

// Fills the empty pages of [first, first+count) with zero pages and maps them; returns
// how many. fallocate never overwrites a page that exists.
uint64_t zero_fill(Client& client, const Segment& segment, uint64_t first, uint64_t count) {
  uint64_t filled = 0;
  uint64_t page = first;
  const uint64_t end = first + count;
  while (page < end) {
    if (client.pages.state(page) != PageState::kEmpty) {
      ++page;
      continue;
    }
    uint64_t run_end = page + 1;
    while (run_end < end && client.pages.state(run_end) == PageState::kEmpty) ++run_end;
    const uint64_t len = (run_end - page) * kPageSize;
    auto allocated = client.memfd().allocate(page * kPageSize, len);
    if (!allocated) {
      spdlog::error("client {}: {}", client.identity().pid, allocated.error().message());
      client.counters().fault_errors++;
      return filled;
    }
    for (uint64_t p = page; p < run_end; ++p) {
      client.pages.set_state(p, PageState::kResident);
      client.policy->on_resident(p);
    }
    // The pages are in the page cache but not mapped: with MINOR registered the next
    // touch of each would fault, so they are mapped (and their waiters woken) at once.
    const uintptr_t addr = segment.start + (page * kPageSize - segment.offset);
    auto mapped = client.uffd().continue_range(addr, len, 0);
    if (!mapped) {
      spdlog::warn("client {}: {}", client.identity().pid, mapped.error().message());
      client.counters().fault_errors++;
    }
    filled += run_end - page;
    page = run_end;
  }
  return filled;
}

void fill_first_touch(std::unique_lock<std::mutex>& lock, Client& client, uintptr_t addr,
                      uint64_t page, Pager& pager) {
  uint64_t window = client.sequential.window_for(page);
  make_room(lock, client, 1, pager);
  const Segment* segment = client.address_map.find(addr);
  if (segment == nullptr || client.pages.state(page) != PageState::kEmpty) {
    wake(client, addr, kPageSize);  // the world changed while we waited
    return;
  }
  const uint64_t segment_end_page = (segment->offset + segment->len) / kPageSize;
  window = std::min(window, segment_end_page - page);
  if (uint64_t limit = client.limit_pages(); limit != 0) {
    uint64_t resident = client.pages.resident_pages();
    window = std::clamp<uint64_t>(limit > resident ? limit - resident : 1, 1, window);
  }
  const uint64_t filled = zero_fill(client, *segment, page, window);
  client.counters().first_touch_faults++;
  client.counters().zero_filled_pages += filled;
  wake(client, addr, kPageSize);
}

// Reads the swap copy of `page` into a 4096-aligned buffer.
bool read_slot(Client& client, uint64_t page, SwapDevice& swap, unsigned char* buffer) {
  kernel::IoRequest read{swap.fd(), buffer, kPageSize,
                         SwapSpace::slot_offset(client.pages.cluster(page), page), false};
  auto ran = swap.run({&read, 1});
  if (ran && read.result == static_cast<int32_t>(kPageSize)) return true;
  spdlog::error("client {}: reading page {} from swap failed: {}", client.identity().pid, page,
                ran ? strerror(-read.result) : ran.error().message());
  client.counters().io_errors++;
  return false;
}

// Reads an evicted page back. A read fault maps it write-protected and keeps its swap slot,
// so it can be evicted again with no write while it stays clean; a write fault maps it
// writable and frees the slot.
void restore(std::unique_lock<std::mutex>& lock, Client& client, uintptr_t addr, uint64_t page,
             bool write, Pager& pager) {
  make_room(lock, client, 1, pager);
  if (client.pages.state(page) != PageState::kEvicted) {
    wake(client, addr, kPageSize);  // restored or freed while we waited; it refaults if needed
    return;
  }
  alignas(4096) static thread_local unsigned char buffer[kPageSize];
  if (!read_slot(client, page, *pager.swap, buffer)) {
    // Never hand the application zeros or stale data: the page stays evicted and the
    // thread retries.
    wake(client, addr, kPageSize);
    return;
  }
  auto copied = client.uffd().copy(addr, buffer, kPageSize, write ? 0 : UFFDIO_COPY_MODE_WP);
  if (!copied) {
    spdlog::error("client {}: {}", client.identity().pid, copied.error().message());
    client.counters().fault_errors++;
    wake(client, addr, kPageSize);
    return;
  }
  if (*copied == kernel::Outcome::kTargetGone) return;
  if (*copied != kernel::Outcome::kDone) {
    // EAGAIN: the address space is changing; the thread refaults. EEXIST would mean a
    // page appeared in a hole only we fill: keep the swapped copy, never guess.
    if (*copied == kernel::Outcome::kAlreadyPresent) {
      spdlog::error("client {}: page {} appeared while evicted", client.identity().pid, page);
      client.counters().fault_errors++;
    }
    wake(client, addr, kPageSize);
    return;
  }
  if (write) {
    client.pages.set_state(page, PageState::kResident);
    drop_slot(client, page, pager.swap);
  } else {
    client.pages.set_state(page, PageState::kResidentClean);
  }
  client.policy->on_resident(page);
  client.counters().major_faults++;
  client.counters().bytes_read += kPageSize;
}

void on_page_fault(std::unique_lock<std::mutex>& lock, Client& client, const uffd_msg& msg,
                   Pager& pager) {
  const auto started = Clock::now();
  const uintptr_t addr = msg.arg.pagefault.address & ~(kPageSize - 1);
  const Segment* segment = client.address_map.find(addr);
  if (segment == nullptr) {
    // Not arena memory as far as we know: wake so the kernel reports it to the thread.
    spdlog::warn("client {}: fault at {:#x} outside the arena", client.identity().pid, addr);
    client.counters().fault_errors++;
    wake(client, addr, kPageSize);
    return;
  }
  const uint64_t page = (segment->offset + (addr - segment->start)) / kPageSize;
  const uint64_t flags = msg.arg.pagefault.flags;
  const PageState state = client.pages.state(page);
  switch (state) {
    case PageState::kEmpty:
      fill_first_touch(lock, client, addr, page, pager);
      break;
    case PageState::kEvicted:
      restore(lock, client, addr, page, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0, pager);
      break;
    case PageState::kEvicting:
      // The eviction ends by removing write protection, which wakes this thread.
      return;
    case PageState::kResident:
    case PageState::kResidentClean: {
      const bool clean = state == PageState::kResidentClean;
      // The resolving ioctl wakes the thread only when it succeeds; otherwise (EEXIST,
      // or EAGAIN while the address space changes) the thread is woken to fault again.
      Result<kernel::Outcome> resolved = kernel::Outcome::kAlreadyPresent;
      if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        client.counters().minor_faults++;
        client.policy->on_access(page);
        // A clean page stays write-protected, so its first write is seen.
        resolved =
            client.uffd().continue_range(addr, kPageSize, clean ? kernel::kContinueModeWp : 0);
      } else if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        // The first write to a clean page (or protection left over from an abandoned
        // eviction): its swap copy is stale from now on.
        client.counters().wp_faults++;
        if (clean) {
          client.pages.set_state(page, PageState::kResident);
          drop_slot(client, page, pager.swap);
        }
        resolved = client.uffd().write_protect(addr, kPageSize, false, false);
      } else {
        client.counters().spurious_faults++;
      }
      if (!resolved) {
        spdlog::warn("client {}: {}", client.identity().pid, resolved.error().message());
        client.counters().fault_errors++;
      }
      if (!resolved || *resolved != kernel::Outcome::kDone) wake(client, addr, kPageSize);
      break;
    }
  }
  client.counters().fault_latency.record(Clock::now() - started);
}

// The application freed [start, end) (MADV_REMOVE/DONTNEED through the shim): the pages
// are being punched and read as zero from now on. Swap slots of evicted pages are freed;
// pages being evicted keep their slot until the eviction notices.
void forget_pages(Client& client, uint64_t first, uint64_t count, SwapDevice* swap) {
  client.pages.for_each_nonempty(first, count, [&](uint64_t page, PageState state) {
    if (is_resident(state)) client.policy->on_gone(page);
    if (state == PageState::kEvicted || state == PageState::kResidentClean) {
      drop_slot(client, page, swap);
    }
    if (state != PageState::kEmpty) client.counters().released_pages++;
  });
  client.pages.clear_range(first, count);
}

void on_remove(Client& client, uintptr_t start, uintptr_t end, Pager& pager) {
  client.counters().remove_events++;
  for (const Segment& piece : client.address_map.pieces(start, end - start)) {
    forget_pages(client, piece.offset / kPageSize, piece.len / kPageSize, pager.swap);
  }
}

// Part of the arena was unmapped behind the shim's back: nothing maps those pages any
// more, so they are freed.
void on_unmap(Client& client, uintptr_t start, uintptr_t end, Pager& pager) {
  client.counters().unmap_events++;
  for (const Segment& piece : client.address_map.unmap(start, end - start)) {
    forget_pages(client, piece.offset / kPageSize, piece.len / kPageSize, pager.swap);
    auto punched = client.memfd().punch_hole(piece.offset, piece.len);
    if (!punched) spdlog::warn("client {}: {}", client.identity().pid, punched.error().message());
  }
}

}  // namespace

void drop_slot(Client& client, uint64_t page, SwapDevice* swap) {
  // Read first: dropping the last slot of an emptied chunk frees the chunk.
  const uint32_t cluster = client.pages.cluster(page);
  if (client.pages.drop_slot(page) > 0 || cluster == PageTable::kNoCluster) return;
  if (swap != nullptr) swap->release_cluster(cluster);
  client.pages.set_cluster(page, PageTable::kNoCluster);
}

bool restore_all(Client& client, SwapDevice* swap) {
  std::lock_guard lock(client.mu);
  if (swap == nullptr) return client.pages.swapped_pages() == 0;
  std::vector<std::pair<uint64_t, PageState>> pages;
  client.pages.for_each_nonempty(0, client.pages.pages(), [&](uint64_t page, PageState state) {
    if (state == PageState::kEvicted || state == PageState::kResidentClean) {
      pages.emplace_back(page, state);
    }
  });
  alignas(4096) static unsigned char buffer[kPageSize];
  for (auto [page, state] : pages) {
    const uintptr_t addr = client.address_map.address_of(page * kPageSize);
    if (addr == 0) return false;
    if (state == PageState::kEvicted) {
      if (!read_slot(client, page, *swap, buffer)) return false;
      auto copied = client.uffd().copy(addr, buffer, kPageSize, 0);
      if (copied && *copied == kernel::Outcome::kTargetGone) return true;
      if (!copied || *copied != kernel::Outcome::kDone) return false;
    } else if (!client.uffd().write_protect(addr, kPageSize, false, false)) {
      return false;  // clean pages are write-protected; the kernel will not lift that for us
    }
    client.pages.set_state(page, PageState::kResident);
    drop_slot(client, page, swap);
  }
  return true;
}

void handle_events(Client& client, std::span<const uffd_msg> events, Pager& pager) {
  std::unique_lock lock(client.mu);
  for (const uffd_msg& msg : events) {
    switch (msg.event) {
      case UFFD_EVENT_PAGEFAULT:
        on_page_fault(lock, client, msg, pager);
        break;
      case UFFD_EVENT_REMOVE:
        on_remove(client, msg.arg.remove.start, msg.arg.remove.end, pager);
        break;
      case UFFD_EVENT_UNMAP:
        on_unmap(client, msg.arg.remove.start, msg.arg.remove.end, pager);
        break;
      case UFFD_EVENT_REMAP:
        client.counters().remap_events++;
        client.address_map.remap(msg.arg.remap.from, msg.arg.remap.to, msg.arg.remap.len);
        break;
      case UFFD_EVENT_FORK:
        // Not requested; close the child's descriptor should one arrive anyway.
        close(static_cast<int>(msg.arg.fork.ufd));
        break;
      default:
        spdlog::warn("client {}: unexpected userfaultfd event {}", client.identity().pid,
                     msg.event);
        break;
    }
  }
}

}  // namespace extmem::daemon
