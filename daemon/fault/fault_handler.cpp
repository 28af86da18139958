#include "fault/fault_handler.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <spdlog/spdlog.h>

#include "extmem/units.hpp"
#include "fault/paging_ring.hpp"
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

// What a caller of make_room does when the pages cannot be made to fit: serve them over
// the limit anyway (a fault: counted in over_limit), or read only what fits (read-ahead).
enum class Overrun { kServed, kClamped };

// Waits (releasing the lock) until `pages` more fit under the client's limit. Returns
// when they fit, or when they cannot be made to fit (no swap, swap full, timeout): then
// a fault is served over the limit and counted, never refused.
void make_room(std::unique_lock<std::mutex>& lock, Client& client, uint64_t pages, Pager& pager,
               Overrun overrun = Overrun::kServed) {
  const uint64_t limit = client.limit_pages();
  if (limit == 0 || client.pages.resident_pages() + pages <= limit) return;
  if (pager.swap == nullptr || pager.reclaimer == nullptr) {
    if (overrun == Overrun::kServed) client.counters().over_limit++;
    return;
  }
  const auto deadline = Clock::now() + kRoomTimeout;
  // The limit may change while we wait (control plane, budget): re-read it each time.
  for (uint64_t now_limit = limit;
       now_limit != 0 && client.pages.resident_pages() + pages > now_limit;
       now_limit = client.limit_pages()) {
    if (pager.reclaimer->cannot_evict() || Clock::now() >= deadline) {
      if (overrun == Overrun::kClamped) return;
      if (client.counters().over_limit++ % 1000 == 0 && !pager.reclaimer->cannot_evict()) {
        spdlog::warn("client {}: reclaim made no room in {} s; serving faults over the limit",
                     client.identity().pid,
                     std::chrono::duration_cast<std::chrono::seconds>(kRoomTimeout).count());
      }
      return;
    }
    client.room_waiters++;
    pager.reclaimer->wake();
    client.room.wait_for(lock, std::chrono::milliseconds(20));
    client.room_waiters--;
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

// A first touch of thread `tid`: its page and, while the thread's first touches walk
// forward (each populating its own share, say), a growing window after it are zero-filled
// and mapped at once.
void fill_first_touch(std::unique_lock<std::mutex>& lock, Client& client, uintptr_t addr,
                      uint64_t page, uint32_t tid, Pager& pager) {
  uint64_t window = client.zero_fill_ahead.on_fault(tid, page).window;
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
  client.zero_fill_ahead.on_read(tid, page, window);
  client.counters().first_touch_faults++;
  client.counters().zero_filled_pages += filled;
  wake(client, addr, kPageSize);
}

// A major fault waiting for its page to be read from swap.
struct MajorFault {
  uintptr_t addr;
  uint64_t page;
  bool write;
  uint32_t tid;
  Clock::time_point started;
};

// A page whose swap copy keeps failing to read is poisoned: the application gets SIGBUS
// when it touches it, as with the kernel's unreadable swap, and never zeros or stale
// data. A few retries first, since an I/O error may be transient. The page stays
// evicted, so freeing it (REMOVE) still returns its slot. Where it cannot be poisoned
// (a kernel without UFFDIO_POISON), its threads wait and the read is retried every
// second, like I/O on a hard NFS mount: still never wrong data.
constexpr uint32_t kReadAttempts = 3;

// After a failed read of the fault's page: true when its threads must be left waiting
// (the page is stalled) rather than woken to fault again.
bool give_up_after_retries(Client& client, const WaitingFault& fault, const Pager& pager) {
  uint32_t& failures = client.read_failures[fault.page];
  if (++failures < kReadAttempts) return false;
  const pid_t pid = client.identity().pid;
  if (pager.can_poison) {
    auto poisoned = client.uffd().poison(fault.addr, kPageSize);
    if (poisoned && *poisoned == kernel::Outcome::kDone) {
      client.read_failures.erase(fault.page);
      client.counters().poisoned_pages++;
      spdlog::critical(
          "client {}: page {} at {:#x} could not be read from swap in {} tries; it is poisoned "
          "(the application gets SIGBUS if it touches it)",
          pid, fault.page, fault.addr, kReadAttempts);
      return false;  // the poison woke the waiters
    }
    spdlog::error("client {}: poisoning page {}: {}", pid, fault.page,
                  poisoned ? kernel::outcome_name(*poisoned) : poisoned.error().message());
  }
  if (failures == kReadAttempts) {
    client.counters().stalled_reads++;
    spdlog::critical(
        "client {}: page {} at {:#x} could not be read from swap in {} tries and cannot be "
        "poisoned; its threads wait and the read is retried every second",
        pid, fault.page, fault.addr, kReadAttempts);
  }
  client.stalled_reads[fault.page] = fault.addr;
  return true;
}

// Pages that may still come in under the client's limit, counting reads in flight;
// UINT64_MAX without a limit.
uint64_t room_for_reads(Client& client) {
  const uint64_t limit = client.limit_pages();
  if (limit == 0) return UINT64_MAX;
  const uint64_t committed = client.pages.resident_pages() + client.reading.size();
  return limit > committed ? limit - committed : 0;
}

// The most read-ahead pages one group of faults may read beyond the faulting pages.
constexpr uint64_t kMaxPrefetchPerGroup = 1024;

// Marks the pages a COPY filled resident: dirty (slot dropped) when mapped writable,
// else clean with the slot kept, so evicting them again needs no write. The first
// `faulted` were wanted by a fault; the others were read ahead of use.
void settle_mapped(Client& client, uint64_t first, uint64_t pages, bool dirty, Pager& pager,
                   uint64_t faulted) {
  for (uint64_t p = first; p < first + pages; ++p) {
    if (dirty) {
      client.pages.set_state(p, PageState::kResident);
      drop_slot(client, p, pager.swap);
    } else {
      client.pages.set_state(p, PageState::kResidentClean);
    }
    if (p - first < faulted) {
      client.policy->on_resident(p);
    } else {
      client.policy->on_read_ahead(p);
    }
  }
}

// Maps pages [first, first+pages) of a run from buf, writable (dirty) or write-protected
// (clean). Returns how many were mapped, from first on, page-exactly after a partial
// copy; sets *gone when the process or the mapping has gone.
uint64_t map_pages(Client& client, uintptr_t addr, uint64_t first, uint64_t pages,
                   const unsigned char* buf, bool dirty, uint64_t faulted, Pager& pager,
                   bool* gone) {
  auto copied =
      client.uffd().copy_pages(addr, buf, pages * kPageSize, dirty ? 0 : UFFDIO_COPY_MODE_WP);
  if (!copied) {
    spdlog::error("client {}: {}", client.identity().pid, copied.error().message());
    client.counters().fault_errors++;
    return 0;
  }
  const uint64_t mapped = copied->filled / kPageSize;
  settle_mapped(client, first, mapped, dirty, pager, faulted);
  if (copied->outcome == kernel::Outcome::kTargetGone) *gone = true;
  // EEXIST on a page we hold as evicted means a page appeared in a hole only we fill:
  // keep the swapped copy, never guess. EAGAIN: the address space is changing; the rest
  // stays evicted and refaults.
  if (copied->outcome == kernel::Outcome::kAlreadyPresent) {
    spdlog::error("client {}: page {} appeared while evicted", client.identity().pid,
                  first + mapped);
    client.counters().fault_errors++;
  }
  return mapped;
}

// Windows a stream's reads reach past the marker its thread touched.
constexpr uint64_t kWindowsAhead = 3;

// Read-ahead runs of at least this many pages leave a marker.
constexpr uint64_t kMinMarkerRun = 4;

// Leaves `page` of `read` in the memfd unmapped, as a marker of the read's stream (see
// ReadaheadMarkers): its data goes in through the file, so the application's first touch
// is a MINOR fault. The page is resident, clean or dirty as the read's other pages. False
// if it could not be written; the page is then still a hole.
bool place_marker(Client& client, const SwapIn& read, uint64_t page, Pager& pager) {
  const unsigned char* data = read.buffer.data() + (page - read.first) * kPageSize;
  auto written = client.memfd().write_at(data, kPageSize, page * kPageSize);
  if (!written || *written != kPageSize) {
    spdlog::warn("client {}: read-ahead marker at page {}: {}", client.identity().pid, page,
                 written ? "short write" : written.error().message());
    // Never leave part of a page behind a page we hold as evicted.
    if (auto punched = client.memfd().punch_hole(page * kPageSize, kPageSize); !punched) {
      spdlog::error("client {}: {}", client.identity().pid, punched.error().message());
    }
    return false;
  }
  settle_mapped(client, page, 1, read.dirty, pager, 0);
  client.markers.place(page, {read.tid, read.first + read.pages, read.dirty});
  client.counters().prefetch_markers++;
  // Threads that faulted on it while it was read fault again and find it.
  wake(client, read.addr + (page - read.first) * kPageSize, kPageSize);
  return true;
}

// Maps the first `valid` pages of `read` like map_pages; a read-ahead run leaves one page
// as a marker instead, as early as its thread will touch it, so that its stream's next
// reads start a whole run ahead (the kernel's async read-ahead): the page after the
// faulting one in a fault's read, the first page of a read a marker started.
uint64_t map_read(Client& client, const SwapIn& read, uint64_t valid, Pager& pager, bool* gone) {
  const unsigned char* buf = read.buffer.data();
  // The page a fault wanted, the read's first; the others are read ahead of use.
  const uint64_t wanted = std::min<uint64_t>(valid, read.faults.empty() ? 0 : 1);
  if (!read.readahead || valid < kMinMarkerRun ||
      client.markers.size() >= ReadaheadMarkers::kMaxMarkers) {
    return map_pages(client, read.addr, read.first, valid, buf, read.dirty, wanted, pager, gone);
  }
  uint64_t mapped = 0;
  if (wanted > 0) {
    mapped = map_pages(client, read.addr, read.first, wanted, buf, read.dirty, wanted, pager, gone);
    if (mapped < wanted || *gone) return mapped;
  }
  if (place_marker(client, read, read.first + mapped, pager)) ++mapped;
  return mapped + map_pages(client, read.addr + mapped * kPageSize, read.first + mapped,
                            valid - mapped, buf + mapped * kPageSize, read.dirty, 0, pager, gone);
}

// How many pages of `read`, from its first on, may be mapped from what it read: still
// evicted in its cluster, still marked as read by it (nothing freed them meanwhile), and
// still mapped contiguously at its address. The client's lock was released during the
// read.
uint64_t still_evicted(Client& client, const SwapIn& read) {
  const Segment* segment = client.address_map.find(read.addr);
  if (segment == nullptr ||
      segment->offset + (read.addr - segment->start) != read.first * kPageSize) {
    return 0;
  }
  const uint64_t segment_end = (segment->offset + segment->len) / kPageSize;
  uint64_t n = 0;
  while (n < read.pages && read.first + n < segment_end) {
    const uint64_t page = read.first + n;
    auto marked = client.reading.find(page);
    if (marked == client.reading.end() || marked->second != read.id ||
        client.pages.state(page) != PageState::kEvicted ||
        client.pages.cluster(page) != read.cluster) {
      break;
    }
    ++n;
  }
  return n;
}

// A read of the evicted pages [first, first+pages) of one chunk, mapped at addr, its pages
// marked as read by it; null without memory for its buffer.
std::unique_ptr<SwapIn> new_read(Client& client, uint64_t first, uint64_t pages, uintptr_t addr,
                                 bool dirty, Pager& pager) {
  auto buffer = pager.swap->io_buffers().take(pages);
  if (!buffer) return nullptr;
  auto read = std::make_unique<SwapIn>();
  read->client = client.shared_from_this();
  read->id = ++client.last_read_id;
  read->first = first;
  read->pages = pages;
  read->cluster = client.pages.cluster(first);
  read->addr = addr;
  read->dirty = dirty;
  read->request = {pager.swap->fd(), buffer.data(), static_cast<uint32_t>(pages * kPageSize),
                   SwapSpace::slot_offset(read->cluster, first), false};
  read->buffer = std::move(buffer);
  for (uint64_t p = first; p < first + pages; ++p) client.reading[p] = read->id;
  return read;
}

// Reads `pages` (ascending, evicted, none in flight) ahead of use, one read per run of
// neighbours in one chunk, of at most `max_run` pages, mapped writable (`dirty`, for a
// writer) or clean; appends them to `reads`.
void read_pages_ahead(Client& client, const Segment& segment, const std::vector<uint64_t>& pages,
                      bool dirty, std::vector<std::unique_ptr<SwapIn>>* reads, Pager& pager,
                      uint64_t max_run = PageTable::kChunkPages) {
  for (size_t i = 0; i < pages.size();) {
    size_t end = i + 1;
    while (end < pages.size() && end - i < max_run && pages[end] == pages[end - 1] + 1 &&
           pages[end] % PageTable::kChunkPages != 0) {
      ++end;
    }
    const uintptr_t addr = segment.start + (pages[i] * kPageSize - segment.offset);
    if (auto read = new_read(client, pages[i], end - i, addr, dirty, pager)) {
      reads->push_back(std::move(read));
    }
    i = end;
  }
}

// For a thread faulting at a confirmed stride: reads up to `depth` pages at page+stride,
// page+2*stride, ... in its segment ahead (as many as `spare` allows), and tells the
// thread's stream how many of them are in memory or being read.
void read_stride_ahead(Client& client, const MajorFault& fault, const Segment& segment,
                       int64_t stride, uint64_t depth, uint64_t* spare,
                       std::vector<std::unique_ptr<SwapIn>>* reads, Pager& pager) {
  const uint64_t segment_first = segment.offset / kPageSize;
  const uint64_t segment_end = (segment.offset + segment.len) / kPageSize;
  const auto step = static_cast<uint64_t>(stride < 0 ? -stride : stride);
  std::vector<uint64_t> pages;
  uint64_t ahead = 0;
  uint64_t page = fault.page;
  for (; ahead < depth; ++ahead) {
    if (stride < 0 ? page - segment_first < step : segment_end - page <= step) break;
    page = stride < 0 ? page - step : page + step;
    const PageState state = client.pages.state(page);
    if (state == PageState::kEvicting) break;  // it will fault
    if (state != PageState::kEvicted || client.reading.contains(page)) continue;
    if (*spare == 0) break;
    --*spare;
    pages.push_back(page);
  }
  std::sort(pages.begin(), pages.end());
  read_pages_ahead(client, segment, pages, fault.write, reads, pager);
  client.readahead.on_stride_read(fault.tid, ahead);
}

// For a confirmed sweeper's fault (see Readahead): reads the evicted pages of its window
// from `first` to `end` that no read has in flight, as many as `spare` allows, a read per
// run of at most a read-ahead window, appended to `ahead`. The last read long enough for a
// marker carries one, which tells whether the thread swept the window to its end.
void read_sweep_ahead(Client& client, const MajorFault& fault, const Segment& segment,
                      uint64_t first, uint64_t end, uint64_t* spare,
                      std::vector<std::unique_ptr<SwapIn>>* ahead, Pager& pager) {
  std::vector<uint64_t> pages;
  for (uint64_t page = first; page < end && pages.size() < *spare; ++page) {
    if (client.pages.state(page) == PageState::kEvicted && !client.reading.contains(page)) {
      pages.push_back(page);
    }
  }
  const size_t before = ahead->size();
  read_pages_ahead(client, segment, pages, fault.write, ahead, pager, Readahead::kMaxWindow);
  if (ahead->size() == before) return;
  SwapIn* probe = nullptr;  // the last read long enough to leave a marker
  for (size_t i = before; i < ahead->size(); ++i) {
    SwapIn& read = *(*ahead)[i];
    read.tid = fault.tid;
    *spare -= read.pages;
    if (read.pages >= kMinMarkerRun) probe = &read;
  }
  if (probe != nullptr) probe->readahead = true;
  const SwapIn& last = *ahead->back();
  client.readahead.on_sweep_read(fault.tid, probe != nullptr ? probe->first : 0,
                                 last.first + last.pages);
}

// Plans the read for `fault`: its page and the evicted pages after it in its chunk and
// segment that no other read has in flight, as many as the faulting thread's read-ahead
// window and `spare` allow. A thread faulting at a stride gets its next strided pages
// read too, in `ahead`, and a confirmed sweeper the rest of its window.
std::unique_ptr<SwapIn> plan_read(Client& client, const MajorFault& fault, const Segment& segment,
                                  uint64_t* spare, std::vector<std::unique_ptr<SwapIn>>* ahead,
                                  Pager& pager) {
  const Readahead::Decision d =
      client.readahead.on_fault(fault.tid, fault.page, client.access_advice.at(fault.page));
  client.counters().prefetch_hits += d.hits;
  // The policy may know better (a scan it follows); the per-group cap still applies.
  const uint64_t window = std::max(
      d.window, std::min(client.policy->readahead_hint(fault.page), Readahead::kMaxWindow));
  const uint64_t chunk_end = (fault.page / PageTable::kChunkPages + 1) * PageTable::kChunkPages;
  const uint64_t segment_end = (segment.offset + segment.len) / kPageSize;
  const uint64_t end =
      std::min({fault.page + std::min(window, *spare + 1), chunk_end, segment_end, d.limit});
  uint64_t pages = 1;
  while (fault.page + pages < end &&
         client.pages.state(fault.page + pages) == PageState::kEvicted &&
         !client.reading.contains(fault.page + pages)) {
    ++pages;
  }
  auto read = new_read(client, fault.page, pages, fault.addr, fault.write, pager);
  if (!read) return nullptr;
  *spare -= pages - 1;
  client.readahead.on_read(fault.tid, fault.page, pages);
  read->faults.push_back({fault.addr, fault.page, fault.started});
  read->readahead = true;
  read->tid = fault.tid;
  if (d.stride != 0) {
    read_stride_ahead(client, fault, segment, d.stride, d.stride_pages, spare, ahead, pager);
  }
  if (d.sweep) {
    const size_t before = ahead->size();
    read_sweep_ahead(client, fault, segment, fault.page + pages, std::min(d.limit, segment_end),
                     spare, ahead, pager);
    // The sweep's last read carries its marker; one after the faulting page would find the
    // rest of the window in flight already.
    if (ahead->size() > before) read->readahead = false;
  }
  return read;
}

// Maps what `read` read (result: bytes, or -errno) and wakes whoever waits on its pages.
// Called with the client's lock held.
void finish_read(Client& client, SwapIn& read, int32_t result, Pager& pager) {
  bool stalled = false;
  uint64_t mapped = 0;
  bool gone = false;
  if (result != static_cast<int32_t>(read.request.len)) {
    // Nothing of it is mapped: never hand the application zeros or stale data. Its pages
    // stay evicted and their threads retry.
    spdlog::error("client {}: reading pages {}+{} from swap failed: {}", client.identity().pid,
                  read.first, read.pages, strerror(result < 0 ? -result : EIO));
    client.counters().io_errors++;
    pager.swap->note_io_error();
    stalled = !read.faults.empty() && give_up_after_retries(client, read.faults[0], pager);
  } else if (const uint64_t valid = still_evicted(client, read); valid > 0) {
    mapped = map_read(client, read, valid, pager, &gone);
    if (mapped > 0) {
      if (!client.read_failures.empty()) {
        for (uint64_t page = read.first; page < read.first + mapped; ++page) {
          if (auto it = client.read_failures.find(page); it != client.read_failures.end()) {
            if (it->second >= kReadAttempts) {
              spdlog::warn("client {}: page {} read from swap after {} failed tries",
                           client.identity().pid, page, it->second);
            }
            client.read_failures.erase(it);
          }
        }
      }
      client.counters().bytes_read += read.pages * kPageSize;
      if (read.faults.empty()) {  // a WILLNEED hint's
        client.counters().prefetched_pages += mapped;
      } else {
        client.counters().major_faults++;
        client.counters().prefetched_pages += mapped - 1;
      }
    }
  }
  for (uint64_t p = read.first; p < read.first + read.pages; ++p) {
    if (auto marked = client.reading.find(p);
        marked != client.reading.end() && marked->second == read.id) {
      client.reading.erase(marked);
    }
  }
  if (gone) return;
  // The COPY woke the waiters of the pages it filled. Those of the rest (faults on pages
  // of this read taken while it was in flight included) fault again, except the threads
  // of a stalled page, which retry_stalled_reads wakes.
  const uint64_t first_unwoken = stalled ? 1 : mapped;
  if (first_unwoken < read.pages) {
    wake(client, read.addr + first_unwoken * kPageSize, (read.pages - first_unwoken) * kPageSize);
  }
  const auto now = Clock::now();
  for (const WaitingFault& f : read.faults) client.counters().fault_latency.record(now - f.started);
  // Read-ahead may have used the room the watermarks keep: start reclaim early rather
  // than make the next fault wait for it.
  if (const uint64_t limit = client.limit_pages();
      limit != 0 && pager.reclaimer != nullptr &&
      client.pages.resident_pages() > Reclaimer::high_watermark(limit)) {
    pager.reclaimer->wake();
  }
}

// Finishes a completed read now, or, while the paging thread holds events of the client
// it has read but not applied (a read done synchronously during a drain), when it has
// applied them (end_drain): one of them
// may free pages of the read (REMOVE) and the application's punch follows the reading
// of the event, so mapping now could put old data back into a freed page.
void complete_or_defer(Client& client, std::unique_ptr<SwapIn> read, int32_t result, Pager& pager) {
  if (client.uffd_draining) {
    read->result = result;
    client.deferred_reads.push_back(std::move(read));
    return;
  }
  finish_read(client, *read, result, pager);
}

// Starts `reads` on the client's paging ring; those it cannot take are read here, with the
// lock released during the I/O.
void start_reads(std::unique_lock<std::mutex>& lock, Client& client,
                 std::vector<std::unique_ptr<SwapIn>>& reads, Pager& pager) {
  std::vector<std::unique_ptr<SwapIn>> synchronous;
  for (auto& read : reads) {
    if (client.paging_ring != nullptr) read = client.paging_ring->submit(std::move(read));
    if (read) synchronous.push_back(std::move(read));
  }
  if (synchronous.empty()) return;
  std::vector<kernel::IoRequest> requests;
  for (const auto& read : synchronous) requests.push_back(read->request);
  lock.unlock();
  auto ran = pager.swap->run(requests);
  lock.lock();
  if (!ran) spdlog::error("client {}: swap I/O: {}", client.identity().pid, ran.error().message());
  for (size_t i = 0; i < synchronous.size(); ++i) {
    complete_or_defer(client, std::move(synchronous[i]), ran ? requests[i].result : -EIO, pager);
  }
}

// Reads evicted pages back for a group of major faults: one read per faulting page with
// its read-ahead, and one UFFDIO_COPY per read. The reads go to the client's paging ring,
// whose thread (this one) maps each when it completes, so it goes on with the client's
// next events meanwhile; reads the ring cannot take are done here, with the lock released
// during the I/O.
// A read fault maps its run write-protected and keeps the swap slots, so the pages can be
// evicted again with no write while they stay clean. A write fault maps its run writable
// and frees the slots: a thread writing its way through would otherwise take one
// write-protect fault per read-ahead page (measured: half the throughput of sequential
// read-modify-write).
void restore(std::unique_lock<std::mutex>& lock, Client& client, std::vector<MajorFault>& faults,
             Pager& pager) {
  make_room(lock, client, faults.size(), pager);
  std::sort(faults.begin(), faults.end(),
            [](const MajorFault& a, const MajorFault& b) { return a.page < b.page; });
  const uint64_t room = room_for_reads(client);
  uint64_t spare = std::min(kMaxPrefetchPerGroup, room > faults.size() ? room - faults.size() : 0);
  std::vector<std::unique_ptr<SwapIn>> reads;
  std::vector<std::unique_ptr<SwapIn>> ahead;  // strided read-ahead: no fault waits on it
  for (const MajorFault& f : faults) {
    if (client.reading.contains(f.page)) {
      // A read in flight (this group's or an earlier one) covers it and wakes it.
      if (!reads.empty() && f.page < reads.back()->first + reads.back()->pages) {
        reads.back()->faults.push_back({f.addr, f.page, f.started});
      }
      continue;
    }
    const Segment* segment = client.address_map.find(f.addr);
    // Restored or freed while we waited for room: it faults again if it needs to.
    if (segment == nullptr || client.pages.state(f.page) != PageState::kEvicted) {
      wake(client, f.addr, kPageSize);
      continue;
    }
    auto read = plan_read(client, f, *segment, &spare, &ahead, pager);
    if (!read) {
      spdlog::error("client {}: no memory for a swap read buffer", client.identity().pid);
      client.counters().fault_errors++;
      wake(client, f.addr, kPageSize);
      continue;
    }
    reads.push_back(std::move(read));
  }
  for (auto& read : ahead) reads.push_back(std::move(read));
  start_reads(lock, client, reads, pager);
}

// A thread touched the read-ahead marker at `page`: its stream's read-ahead was used, so
// the stream's reads are topped up to kWindowsAhead of its grown windows past the marker,
// as many as fit under the limit. Every read carries a marker, so each window the thread
// enters starts one more: reads stay queued at the device while earlier ones are mapped.
void read_ahead_at_marker(std::unique_lock<std::mutex>& lock, Client& client, uint64_t page,
                          const ReadaheadMarkers::Marker& marker, Pager& pager) {
  client.counters().prefetch_markers_used++;
  const uint64_t window = client.readahead.on_marker_hit(marker.tid, page);
  if (pager.swap == nullptr) return;
  const uintptr_t addr = client.address_map.address_of(marker.next * kPageSize);
  const Segment* segment = addr != 0 ? client.address_map.find(addr) : nullptr;
  if (segment == nullptr) return;
  uint64_t end =
      std::min(page + kWindowsAhead * window, (segment->offset + segment->len) / kPageSize);
  // A confirmed sweeper reads up to its window's end. Otherwise, past the end of the
  // marker's chunk only for a thread whose last major fault continued its reads: a thread
  // that jumped to a 2 MiB window and sweeps it reads nothing in vain past the window's end.
  if (const uint64_t limit = client.readahead.limit(marker.tid); limit != UINT64_MAX) {
    end = std::min(end, limit);
  } else if (!client.readahead.continues(marker.tid)) {
    end = std::min(end, ((marker.next - 1) / PageTable::kChunkPages + 1) * PageTable::kChunkPages);
  }
  // Pages already in memory or being read (earlier windows, the thread's faults, pages
  // reclaim passed over) are passed over.
  auto needed = [&](uint64_t p) {
    return client.pages.state(p) == PageState::kEvicted && !client.reading.contains(p);
  };
  uint64_t first = marker.next;
  bool reading = false;  // the stream's earlier reads are still in flight
  for (; first < end && !needed(first); ++first)
    reading = reading || client.reading.contains(first);
  if (first >= end) return;
  // The stream is established: waiting here for reclaim to make room for its reads costs
  // less than losing it, as its thread would then fault page after page at the limit.
  // No more room than reclaim keeps free (above the high watermark it evicts down to the
  // low one), or the wait would last until make_room gives up.
  const uint64_t want = end - first;
  if (const uint64_t limit = client.limit_pages(); limit != 0 && room_for_reads(client) < want) {
    make_room(lock, client, std::min(want, limit - Reclaimer::high_watermark(limit)), pager,
              Overrun::kClamped);
  }
  const uint64_t room = std::min(want, room_for_reads(client));
  std::vector<uint64_t> pages;
  for (uint64_t p = first; p < end && pages.size() < room; ++p) {
    if (needed(p)) pages.push_back(p);
  }
  // Less than a window (the room reclaim left, the last pages before the target) would
  // split the stream into small reads, each with its marker: while earlier reads are in
  // flight, their markers start the next whole window.
  if (pages.empty() || (pages.size() < window && reading)) return;
  std::vector<std::unique_ptr<SwapIn>> reads;
  read_pages_ahead(client, *segment, pages, marker.dirty, &reads, pager, window);
  if (reads.empty()) return;
  for (const auto& read : reads) {
    read->tid = marker.tid;
    read->readahead = true;
  }
  client.readahead.on_async_read(marker.tid, first,
                                 reads.back()->first + reads.back()->pages - first);
  start_reads(lock, client, reads, pager);
}

// A minor fault: the page is in the memfd, its PTE removed by an access reset to learn
// whether it is still used. A thread walking through such pages (a scan of a resident
// range) would take a round trip per page, so, as the kernel's fault-around does, the
// page's resident neighbours are mapped with it, as many as the thread's window, which
// grows while its minor faults continue where its last mapping ended (Readahead's rule)
// and is one page for random faults. They count as accessed. Clean pages stay
// write-protected, so their first write is seen: each run of one state is one
// UFFDIO_CONTINUE, which stops at the first page still mapped. A read-ahead marker ends
// the run: its own fault is what starts its stream's next read.
Result<kernel::Outcome> continue_around(Client& client, const Segment& segment, uintptr_t addr,
                                        uint64_t page, uint32_t tid) {
  const uint64_t window =
      client.fault_around.on_fault(tid, page, client.access_advice.at(page)).window;
  const uint64_t end = std::min(page + window, (segment.offset + segment.len) / kPageSize);
  uint64_t mapped = 0;
  kernel::Outcome first_outcome = kernel::Outcome::kDone;
  while (page + mapped < end) {
    const uint64_t first = page + mapped;
    const PageState state = client.pages.state(first);
    if (!is_resident(state) || client.markers.contains(first)) break;
    uint64_t run = 1;
    while (first + run < end && client.pages.state(first + run) == state &&
           !client.markers.contains(first + run)) {
      ++run;
    }
    auto filled = client.uffd().continue_pages(
        addr + mapped * kPageSize, run * kPageSize,
        state == PageState::kResidentClean ? kernel::kContinueModeWp : 0);
    if (!filled) {
      if (mapped == 0) return filled.error();
      break;
    }
    if (mapped == 0) first_outcome = filled->outcome;
    mapped += filled->filled / kPageSize;
    if (filled->filled != run * kPageSize) break;
  }
  for (uint64_t p = page; p < page + mapped; ++p) client.policy->on_access(p);
  if (mapped > 1) client.counters().fault_around_pages += mapped - 1;
  client.fault_around.on_read(tid, page, std::max<uint64_t>(mapped, 1));
  client.readahead.on_touch(tid, page);
  return mapped > 0 ? kernel::Outcome::kDone : first_outcome;
}

// The application freed [start, end) (MADV_REMOVE/DONTNEED through the shim): the pages
// are being punched and read as zero from now on. Swap slots of evicted pages are freed;
// pages being evicted keep their slot until the eviction notices.
void forget_pages(Client& client, uint64_t first, uint64_t count, SwapDevice* swap) {
  // Reads in flight must not map what they read for these pages.
  if (!client.reading.empty()) {
    std::erase_if(client.reading, [&](const auto& marked) { return marked.first - first < count; });
  }
  if (!client.markers.empty()) {
    client.counters().prefetch_markers_unused += client.markers.forget(first, count);
  }
  client.pages.for_each_nonempty(first, count, [&](uint64_t page, PageState state) {
    if (is_resident(state)) client.policy->on_gone(page);
    if (state == PageState::kEvicted || state == PageState::kResidentClean) {
      drop_slot(client, page, swap);
    }
    if (state != PageState::kEmpty) client.counters().released_pages++;
  });
  client.pages.clear_range(first, count);
}

// Resolves a fault, except one on an evicted page, which is added to `majors` to be read
// with the others of its group.
void on_page_fault(std::unique_lock<std::mutex>& lock, Client& client, const uffd_msg& msg,
                   Pager& pager, std::vector<MajorFault>* majors) {
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
  if (client.fault_trace) {
    const FaultKind kind = state == PageState::kEmpty                 ? FaultKind::kFirstTouch
                           : !is_resident(state)                      ? FaultKind::kMajor
                           : (flags & UFFD_PAGEFAULT_FLAG_MINOR) != 0 ? FaultKind::kMinor
                                                                      : FaultKind::kWriteProtect;
    client.fault_trace->add({page, msg.arg.pagefault.feat.ptid, kind});
  }
  switch (state) {
    case PageState::kEmpty:
      fill_first_touch(lock, client, addr, page, msg.arg.pagefault.feat.ptid, pager);
      break;
    case PageState::kEvicted:
      majors->push_back({addr, page, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                         msg.arg.pagefault.feat.ptid, started});
      return;  // its latency is recorded when it is restored
    case PageState::kEvicting:
      // The eviction ends by removing write protection, which wakes this thread.
      return;
    case PageState::kResident:
    case PageState::kResidentClean: {
      const bool clean = state == PageState::kResidentClean;
      // The resolving ioctl wakes the thread only when it succeeds; otherwise (EEXIST,
      // or EAGAIN while the address space changes) the thread is woken to fault again.
      Result<kernel::Outcome> resolved = kernel::Outcome::kAlreadyPresent;
      std::optional<ReadaheadMarkers::Marker> marker;
      if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        client.counters().minor_faults++;
        if (!client.markers.empty()) marker = client.markers.take(page);
        if (marker) {
          // Mapped alone, leaving the thread's fault-around window be: a marker lies inside
          // a mapped run, so it says nothing about where the thread's next reset page is.
          client.policy->on_access(page);
          resolved =
              client.uffd().continue_range(addr, kPageSize, clean ? kernel::kContinueModeWp : 0);
        } else {
          resolved = continue_around(client, *segment, addr, page, msg.arg.pagefault.feat.ptid);
        }
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
        // A missing page: the memfd had none here when the thread faulted. Mostly a fill of
        // ours raced with the fault, and mapping finds the page.
        client.counters().spurious_faults++;
        resolved =
            client.uffd().continue_range(addr, kPageSize, clean ? kernel::kContinueModeWp : 0);
        if (resolved && *resolved == kernel::Outcome::kNoPage) {
          // Still none: the application removed it. MADV_REMOVE reports the removal before
          // it punches, and a fill in between (a first-touch window, a fault-around) made the
          // page resident again; the punch then took it. Removed memory reads as zeros.
          forget_pages(client, page, 1, pager.swap);
          fill_first_touch(lock, client, addr, page, msg.arg.pagefault.feat.ptid, pager);
          break;
        }
      }
      if (!resolved) {
        spdlog::warn("client {}: {}", client.identity().pid, resolved.error().message());
        client.counters().fault_errors++;
      }
      if (!resolved || *resolved != kernel::Outcome::kDone) wake(client, addr, kPageSize);
      if (marker) read_ahead_at_marker(lock, client, page, *marker, pager);
      break;
    }
  }
  client.counters().fault_latency.record(Clock::now() - started);
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

uint64_t prefetch(std::unique_lock<std::mutex>& lock, Client& client, const Segment& piece,
                  Pager& pager) {
  if (pager.swap == nullptr) return 0;
  // The room under the limit, and up to half the limit more: "fetch now" is worth
  // evicting other pages for, which reclaim, woken below, does once the reads land.
  const uint64_t limit = client.limit_pages();
  const uint64_t room = limit == 0 ? UINT64_MAX : room_for_reads(client) + limit / 2;
  // Evicted pages no read has in flight, in arena order, as many as there is room for.
  std::vector<uint64_t> pages;
  client.pages.for_each_nonempty(
      piece.offset / kPageSize, piece.len / kPageSize, [&](uint64_t page, PageState state) {
        if (state == PageState::kEvicted && !client.reading.contains(page) && pages.size() < room) {
          pages.push_back(page);
        }
      });
  std::vector<std::unique_ptr<SwapIn>> reads;
  read_pages_ahead(client, piece, pages, false, &reads, pager);
  uint64_t started = 0;
  for (const auto& read : reads) started += read->pages;
  start_reads(lock, client, reads, pager);
  if (limit != 0 && started != 0 && pager.reclaimer != nullptr) pager.reclaimer->wake();
  return started;
}

void drop_slot(Client& client, uint64_t page, SwapDevice* swap) {
  // Read first: dropping the last slot of an emptied chunk frees the chunk.
  const uint32_t cluster = client.pages.cluster(page);
  if (client.pages.drop_slot(page) > 0 || cluster == PageTable::kNoCluster) return;
  if (swap != nullptr) swap->release_cluster(cluster);
  client.pages.set_cluster(page, PageTable::kNoCluster);
}

void finish_swap_in(std::unique_ptr<SwapIn> read, int32_t result, Pager& pager) {
  Client& client = *read->client;
  std::lock_guard lock(client.mu);
  complete_or_defer(client, std::move(read), result, pager);
}

void begin_drain(Client& client) {
  std::lock_guard lock(client.mu);
  client.uffd_draining = true;
}

void end_drain(Client& client, Pager& pager) {
  std::lock_guard lock(client.mu);
  client.uffd_draining = false;
  for (auto& read : client.deferred_reads) finish_read(client, *read, read->result, pager);
  client.deferred_reads.clear();
}

void retry_stalled_reads(Client& client) {
  std::lock_guard lock(client.mu);
  for (const auto& [page, addr] : client.stalled_reads) wake(client, addr, kPageSize);
  client.stalled_reads.clear();
}

bool restore_all(Client& client, SwapDevice* swap) {
  std::lock_guard lock(client.mu);
  if (swap == nullptr) return client.pages.swapped_pages() == 0;
  // Runs of pages in one state, one chunk (so neighbouring slots) and mapped at
  // neighbouring addresses: one read and one UFFDIO_COPY, or one un-protect, per run.
  struct Run {
    uint64_t first;
    uint64_t pages;
    uintptr_t addr;
    PageState state;
  };
  std::vector<Run> runs;
  client.pages.for_each_nonempty(0, client.pages.pages(), [&](uint64_t page, PageState state) {
    if (state != PageState::kEvicted && state != PageState::kResidentClean) return;
    const uintptr_t addr = client.address_map.address_of(page * kPageSize);
    if (!runs.empty()) {
      Run& last = runs.back();
      if (last.state == state && last.first + last.pages == page &&
          page / PageTable::kChunkPages == last.first / PageTable::kChunkPages && addr != 0 &&
          last.addr + last.pages * kPageSize == addr) {
        ++last.pages;
        return;
      }
    }
    runs.push_back({page, 1, addr, state});
  });
  const auto started = Clock::now();
  uint64_t read_pages = 0;
  std::unique_ptr<unsigned char, decltype(&free)> buffer(
      static_cast<unsigned char*>(aligned_alloc(kPageSize, PageTable::kChunkPages * kPageSize)),
      &free);
  if (!buffer) return false;
  for (const Run& run : runs) {
    if (run.addr == 0) return false;
    if (run.state == PageState::kEvicted) {
      kernel::IoRequest read{swap->fd(), buffer.get(), static_cast<uint32_t>(run.pages * kPageSize),
                             SwapSpace::slot_offset(client.pages.cluster(run.first), run.first),
                             false};
      auto ran = swap->run({&read, 1});
      if (!ran || read.result != static_cast<int32_t>(read.len)) {
        spdlog::error("client {}: reading pages {}+{} from swap failed: {}", client.identity().pid,
                      run.first, run.pages,
                      ran ? strerror(read.result < 0 ? -read.result : EIO) : ran.error().message());
        client.counters().io_errors++;
        swap->note_io_error();
        return false;
      }
      auto copied = client.uffd().copy_pages(run.addr, buffer.get(), run.pages * kPageSize, 0);
      if (copied && copied->outcome == kernel::Outcome::kTargetGone) return true;
      if (!copied || copied->outcome != kernel::Outcome::kDone) return false;
      read_pages += run.pages;
    } else if (!client.uffd().write_protect(run.addr, run.pages * kPageSize, false, false)) {
      return false;  // clean pages are write-protected; the kernel will not lift that for us
    }
    for (uint64_t page = run.first; page < run.first + run.pages; ++page) {
      client.pages.set_state(page, PageState::kResident);
      drop_slot(client, page, swap);
    }
  }
  if (read_pages != 0) {
    char size[32];
    spdlog::info(
        "client {}: read {} back from swap in {} ms", client.identity().pid,
        format_size(read_pages * kPageSize, size, sizeof(size)),
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  }
  return true;
}

void handle_events(Client& client, std::span<const uffd_msg> events, Pager& pager) {
  std::unique_lock lock(client.mu);
  std::vector<MajorFault> majors;
  for (size_t i = 0; i < events.size(); ++i) {
    const uffd_msg& msg = events[i];
    switch (msg.event) {
      case UFFD_EVENT_PAGEFAULT:
        on_page_fault(lock, client, msg, pager, &majors);
        // The faults up to the next other event are one group: their reads go together.
        // An event after them (REMOVE, UNMAP, REMAP) is handled after their restores.
        if (!majors.empty() &&
            (i + 1 == events.size() || events[i + 1].event != UFFD_EVENT_PAGEFAULT)) {
          restore(lock, client, majors, pager);
          majors.clear();
        }
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
