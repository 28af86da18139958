#include "fault/fault_handler.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

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
    if (pager.reclaimer->cannot_evict() || Clock::now() >= deadline) {
      if (client.counters().over_limit++ % 1000 == 0 && !pager.reclaimer->cannot_evict()) {
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
  swap.note_io_error();
  return false;
}

// A major fault waiting for its page to be read from swap.
struct MajorFault {
  uintptr_t addr;
  uint64_t page;
  bool write;
  uint32_t tid;
  Clock::time_point started;
  size_t run = SIZE_MAX;  // the read that covers its page, if any
};

// A page whose swap copy keeps failing to read is poisoned: the application gets SIGBUS
// when it touches it, as with the kernel's unreadable swap, and never zeros or stale
// data. A few retries first, since an I/O error may be transient. The page stays
// evicted, so freeing it (REMOVE) still returns its slot.
constexpr uint32_t kReadAttempts = 3;

void give_up_after_retries(Client& client, const MajorFault& fault) {
  if (++client.read_failures[fault.page] < kReadAttempts) return;
  client.read_failures.erase(fault.page);
  auto poisoned = client.uffd().poison(fault.addr, kPageSize);
  if (!poisoned || *poisoned != kernel::Outcome::kDone) {
    spdlog::error("client {}: poisoning page {}: {}", client.identity().pid, fault.page,
                  poisoned ? kernel::outcome_name(*poisoned) : poisoned.error().message());
    return;
  }
  client.counters().poisoned_pages++;
  spdlog::critical(
      "client {}: page {} at {:#x} could not be read from swap in {} tries; it is poisoned "
      "(the application gets SIGBUS if it touches it)",
      client.identity().pid, fault.page, fault.addr, kReadAttempts);
}

// One read of evicted neighbours from swap: [first, first+pages) of one chunk, mapped
// contiguously at addr.
struct Run {
  uint64_t first;
  uint64_t pages;
  uint32_t cluster;
  uintptr_t addr;
  size_t owner;  // the fault it was read for (its page is `first`); SIZE_MAX: a hint's
  unsigned char* buffer = nullptr;
  uint64_t mapped = 0;  // pages from `first` on that were mapped (and their waiters woken)
};

// The most read-ahead pages one group of faults may read beyond the faulting pages, and
// the most one WILLNEED hint reads: this bounds the buffer.
constexpr uint64_t kMaxPrefetchPerGroup = 1024;

// A 4096-aligned buffer of at least `pages` pages, kept per fault thread.
unsigned char* read_buffer(uint64_t pages) {
  struct Buffer {
    std::unique_ptr<unsigned char, decltype(&free)> data{nullptr, &free};
    uint64_t pages = 0;
  };
  static thread_local Buffer buffer;
  if (buffer.pages < pages) {
    buffer.data.reset(static_cast<unsigned char*>(aligned_alloc(kPageSize, pages * kPageSize)));
    buffer.pages = buffer.data ? pages : 0;
  }
  return buffer.data.get();
}

// Marks the pages a COPY filled resident: dirty (slot dropped) when mapped writable,
// else clean with the slot kept, so evicting them again needs no write.
void settle_mapped(Client& client, uint64_t first, uint64_t pages, bool dirty, Pager& pager) {
  for (uint64_t p = first; p < first + pages; ++p) {
    if (dirty) {
      client.pages.set_state(p, PageState::kResident);
      drop_slot(client, p, pager.swap);
    } else {
      client.pages.set_state(p, PageState::kResidentClean);
    }
    client.policy->on_resident(p);
  }
}

// Maps pages [first, first+pages) of a run from buf, writable (dirty) or write-protected
// (clean). Returns how many were mapped, from first on, page-exactly after a partial
// copy; sets *gone when the process or the mapping has gone.
uint64_t map_pages(Client& client, uintptr_t addr, uint64_t first, uint64_t pages,
                   const unsigned char* buf, bool dirty, Pager& pager, bool* gone) {
  auto copied =
      client.uffd().copy_pages(addr, buf, pages * kPageSize, dirty ? 0 : UFFDIO_COPY_MODE_WP);
  if (!copied) {
    spdlog::error("client {}: {}", client.identity().pid, copied.error().message());
    client.counters().fault_errors++;
    return 0;
  }
  const uint64_t mapped = copied->copied / kPageSize;
  settle_mapped(client, first, mapped, dirty, pager);
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

// How many pages of `run`, from its first on, are still evicted in its cluster and mapped
// contiguously at its address: the client's lock was released during the read.
uint64_t still_evicted(Client& client, const Run& run) {
  const Segment* segment = client.address_map.find(run.addr);
  if (segment == nullptr ||
      segment->offset + (run.addr - segment->start) != run.first * kPageSize) {
    return 0;
  }
  const uint64_t segment_end = (segment->offset + segment->len) / kPageSize;
  uint64_t n = 0;
  while (n < run.pages && run.first + n < segment_end &&
         client.pages.state(run.first + n) == PageState::kEvicted &&
         client.pages.cluster(run.first + n) == run.cluster) {
    ++n;
  }
  return n;
}

// Plans the read for `fault`: its page and the evicted pages after it in its chunk and
// segment, as many as the faulting thread's read-ahead window and `spare` allow.
Run plan_run(Client& client, const MajorFault& fault, const Segment& segment, size_t owner,
             uint64_t* spare) {
  const Readahead::Decision d =
      client.readahead.on_fault(fault.tid, fault.page, client.access_advice.at(fault.page));
  client.counters().prefetch_hits += d.hits;
  const uint64_t chunk_end = (fault.page / PageTable::kChunkPages + 1) * PageTable::kChunkPages;
  const uint64_t segment_end = (segment.offset + segment.len) / kPageSize;
  const uint64_t end =
      std::min({fault.page + std::min(d.window, *spare + 1), chunk_end, segment_end});
  uint64_t pages = 1;
  while (fault.page + pages < end &&
         client.pages.state(fault.page + pages) == PageState::kEvicted) {
    ++pages;
  }
  *spare -= pages - 1;
  client.readahead.on_read(fault.tid, fault.page, pages);
  return {fault.page, pages, client.pages.cluster(fault.page), fault.addr, owner};
}

// Only one thread at a time reads a client's evicted pages back (the thread handling its
// faults, or a hint drain for WILLNEED), from planning the reads to mapping them: the
// client's lock is released during the reads, and a page one thread planned must not be
// mapped, written and evicted again by another while its read runs.
class SwapInGuard {
 public:
  SwapInGuard(std::unique_lock<std::mutex>& lock, Client& client) : client_(client) {
    client.swapin_done.wait(lock, [&] { return !client.swapin_busy; });
    client.swapin_busy = true;
  }
  // Runs with the lock held again.
  ~SwapInGuard() {
    client_.swapin_busy = false;
    client_.swapin_done.notify_all();
  }
  SwapInGuard(const SwapInGuard&) = delete;
  SwapInGuard& operator=(const SwapInGuard&) = delete;

 private:
  Client& client_;
};

// Reads `runs` (one read each, all submitted at once, the lock released meanwhile) and
// maps what is still evicted: writable for a run read for a write fault, else
// write-protected with the swap slots kept, so the pages can be evicted again with no
// write while they stay clean. A run with an owner counts as its fault's major fault and
// read-ahead; one without (WILLNEED) as prefetched pages. Returns false when the process
// or its mapping has gone.
bool read_and_map(std::unique_lock<std::mutex>& lock, Client& client, std::vector<Run>& runs,
                  std::span<const MajorFault> faults, Pager& pager) {
  uint64_t total = 0;
  for (const Run& run : runs) total += run.pages;
  unsigned char* buffer = read_buffer(total);
  std::vector<kernel::IoRequest> reads;
  reads.reserve(runs.size());
  bool read_ok = buffer != nullptr;
  if (read_ok && !runs.empty()) {
    unsigned char* next = buffer;
    for (Run& run : runs) {
      run.buffer = next;
      next += run.pages * kPageSize;
      reads.push_back({pager.swap->fd(), run.buffer, static_cast<uint32_t>(run.pages * kPageSize),
                       SwapSpace::slot_offset(run.cluster, run.first), false});
    }
    lock.unlock();
    auto ran = pager.swap->run(reads);
    lock.lock();
    if (!ran) {
      spdlog::error("client {}: swap I/O: {}", client.identity().pid, ran.error().message());
      read_ok = false;
    }
  } else if (!read_ok) {
    spdlog::error("client {}: no memory for a swap read buffer", client.identity().pid);
  }

  bool gone = false;
  for (size_t r = 0; r < runs.size() && !gone; ++r) {
    Run& run = runs[r];
    const bool for_fault = run.owner != SIZE_MAX;
    const kernel::IoRequest* read = read_ok ? &reads[r] : nullptr;
    if (read == nullptr || read->result != static_cast<int32_t>(read->len)) {
      // Nothing of the run is mapped: never hand the application zeros or stale data.
      // Its pages stay evicted and the thread retries.
      spdlog::error("client {}: reading pages {}+{} from swap failed: {}", client.identity().pid,
                    run.first, run.pages,
                    read != nullptr ? strerror(read->result < 0 ? -read->result : EIO) : "no read");
      client.counters().io_errors++;
      pager.swap->note_io_error();
      if (read != nullptr && for_fault) give_up_after_retries(client, faults[run.owner]);
      continue;
    }
    const uint64_t valid = still_evicted(client, run);
    if (valid == 0) continue;
    const bool write = for_fault && faults[run.owner].write;
    const uint64_t mapped =
        map_pages(client, run.addr, run.first, valid, run.buffer, write, pager, &gone);
    run.mapped = mapped;
    if (mapped == 0) continue;
    if (!client.read_failures.empty()) {
      for (uint64_t page = run.first; page < run.first + mapped; ++page) {
        client.read_failures.erase(page);
      }
    }
    client.counters().bytes_read += run.pages * kPageSize;
    if (for_fault) {
      client.counters().major_faults++;
      client.counters().prefetched_pages += mapped - 1;
    } else {
      client.counters().prefetched_pages += mapped;
    }
  }
  return !gone;
}

// Read-ahead may have used the room the watermarks keep: start reclaim early rather than
// make the next fault wait for it.
void reclaim_early(Client& client, Pager& pager) {
  if (const uint64_t limit = client.limit_pages();
      limit != 0 && pager.reclaimer != nullptr &&
      client.pages.resident_pages() > Reclaimer::high_watermark(limit)) {
    pager.reclaimer->wake();
  }
}

// Reads evicted pages back for a group of major faults: one read per faulting page with
// its read-ahead, all submitted at once, and one UFFDIO_COPY per read. A read fault maps
// its run write-protected and keeps the swap slots. A write fault maps its run writable
// and frees the slots: a thread writing its way through would otherwise take one
// write-protect fault per read-ahead page (measured: half the throughput of sequential
// read-modify-write). Every page is checked again after the reads.
void restore(std::unique_lock<std::mutex>& lock, Client& client, std::vector<MajorFault>& faults,
             Pager& pager) {
  make_room(lock, client, faults.size(), pager);
  SwapInGuard guard(lock, client);
  std::sort(faults.begin(), faults.end(),
            [](const MajorFault& a, const MajorFault& b) { return a.page < b.page; });
  uint64_t spare = kMaxPrefetchPerGroup;
  if (const uint64_t limit = client.limit_pages(); limit != 0) {
    const uint64_t after = client.pages.resident_pages() + faults.size();
    spare = std::min(spare, limit > after ? limit - after : 0);
  }
  std::vector<Run> runs;
  for (size_t i = 0; i < faults.size(); ++i) {
    MajorFault& f = faults[i];
    if (!runs.empty() && f.page < runs.back().first + runs.back().pages) {
      f.run = runs.size() - 1;  // another thread's read covers it
      continue;
    }
    const Segment* segment = client.address_map.find(f.addr);
    // Restored or freed while we waited for room; it refaults if it needs to.
    if (segment == nullptr || client.pages.state(f.page) != PageState::kEvicted) continue;
    runs.push_back(plan_run(client, f, *segment, i, &spare));
    f.run = runs.size() - 1;
  }
  if (!read_and_map(lock, client, runs, faults, pager)) return;

  const auto now = Clock::now();
  for (const MajorFault& f : faults) {
    // A COPY that filled the page woke its waiters; every other thread retries.
    if (f.run == SIZE_MAX || f.page >= runs[f.run].first + runs[f.run].mapped) {
      wake(client, f.addr, kPageSize);
    }
    client.counters().fault_latency.record(now - f.started);
  }
  reclaim_early(client, pager);
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
  switch (state) {
    case PageState::kEmpty:
      fill_first_touch(lock, client, addr, page, pager);
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

uint64_t prefetch(std::unique_lock<std::mutex>& lock, Client& client, const Segment& piece,
                  Pager& pager) {
  if (pager.swap == nullptr) return 0;
  uint64_t mapped = 0;
  const uint64_t end = (piece.offset + piece.len) / kPageSize;
  // In batches of kMaxPrefetchPerGroup pages, which bounds the read buffer; each batch
  // takes the room there is under the limit then.
  for (uint64_t first = piece.offset / kPageSize; first < end; first += kMaxPrefetchPerGroup) {
    SwapInGuard guard(lock, client);
    const Segment* segment = client.address_map.find(piece.start);
    if (segment == nullptr || segment->offset + (piece.start - segment->start) != piece.offset) {
      break;  // remapped or unmapped while the lock was released
    }
    uint64_t room = kMaxPrefetchPerGroup;
    if (const uint64_t limit = client.limit_pages(); limit != 0) {
      const uint64_t resident = client.pages.resident_pages();
      room = limit > resident ? limit - resident : 0;
    }
    if (room == 0) break;
    // Runs of evicted neighbours in one chunk (so in one cluster), in arena order.
    std::vector<Run> runs;
    const uint64_t count = std::min(kMaxPrefetchPerGroup, end - first);
    client.pages.for_each_nonempty(first, count, [&](uint64_t page, PageState s) {
      if (s != PageState::kEvicted || room == 0) return;
      --room;
      if (!runs.empty() && runs.back().first + runs.back().pages == page &&
          page % PageTable::kChunkPages != 0) {
        ++runs.back().pages;
        return;
      }
      runs.push_back({page, 1, client.pages.cluster(page),
                      piece.start + (page * kPageSize - piece.offset), SIZE_MAX});
    });
    if (runs.empty()) continue;
    if (!read_and_map(lock, client, runs, {}, pager)) return mapped;
    for (const Run& run : runs) mapped += run.mapped;
  }
  reclaim_early(client, pager);
  return mapped;
}

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
