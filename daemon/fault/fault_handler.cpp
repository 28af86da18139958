#include "fault/fault_handler.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

namespace extmem::daemon {

namespace {

void wake(Client& client, uintptr_t start, uint64_t len) {
  auto woken = client.uffd().wake(start, len);
  if (!woken) {
    spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
    client.counters().fault_errors++;
  }
}

// Fills the empty pages of [first, first+count) with zero pages; returns how many.
// fallocate never overwrites a page that exists, so a racing fill is harmless.
uint64_t zero_fill(Client& client, uint64_t first, uint64_t count) {
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
    auto allocated =
        client.memfd().allocate(page * kPageSize, (run_end - page) * kPageSize);
    if (!allocated) {
      spdlog::error("client {}: {}", client.identity().pid, allocated.error().message());
      client.counters().fault_errors++;
      return filled;
    }
    for (uint64_t p = page; p < run_end; ++p) client.pages.set_state(p, PageState::kResident);
    filled += run_end - page;
    page = run_end;
  }
  return filled;
}

void on_page_fault(Client& client, const uffd_msg& msg) {
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
  if (client.pages.state(page) != PageState::kEmpty) {
    // Already resolved (a window filled it, or another thread's fault did): the thread
    // only needs waking. fallocate re-creates the page should it have vanished.
    client.counters().spurious_faults++;
    (void)client.memfd().allocate(page * kPageSize, kPageSize);
    wake(client, addr, kPageSize);
    return;
  }
  const uint64_t segment_end_page = (segment->offset + segment->len) / kPageSize;
  const uint64_t window = std::min(client.sequential.window_for(page), segment_end_page - page);
  const uint64_t filled = zero_fill(client, page, window);
  client.counters().first_touch_faults++;
  client.counters().zero_filled_pages += filled;
  wake(client, addr, window * kPageSize);
}

// The application freed [start, end) (MADV_REMOVE/DONTNEED through the shim): the pages
// are being punched and read as zero from now on.
void on_remove(Client& client, uintptr_t start, uintptr_t end) {
  client.counters().remove_events++;
  for (const Segment& piece : client.address_map.pieces(start, end - start)) {
    client.counters().released_pages +=
        client.pages.clear_range(piece.offset / kPageSize, piece.len / kPageSize);
  }
}

// Part of the arena was unmapped behind the shim's back: nothing maps those pages any
// more, so they are freed.
void on_unmap(Client& client, uintptr_t start, uintptr_t end) {
  client.counters().unmap_events++;
  for (const Segment& piece : client.address_map.unmap(start, end - start)) {
    client.counters().released_pages +=
        client.pages.clear_range(piece.offset / kPageSize, piece.len / kPageSize);
    auto punched = client.memfd().punch_hole(piece.offset, piece.len);
    if (!punched) spdlog::warn("client {}: {}", client.identity().pid, punched.error().message());
  }
}

}  // namespace

void handle_events(Client& client, std::span<const uffd_msg> events) {
  std::lock_guard lock(client.mu);
  for (const uffd_msg& msg : events) {
    switch (msg.event) {
      case UFFD_EVENT_PAGEFAULT:
        on_page_fault(client, msg);
        break;
      case UFFD_EVENT_REMOVE:
        on_remove(client, msg.arg.remove.start, msg.arg.remove.end);
        break;
      case UFFD_EVENT_UNMAP:
        on_unmap(client, msg.arg.remove.start, msg.arg.remove.end);
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
