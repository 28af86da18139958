#include "reclaim/reclaimer.hpp"

#include <sys/mman.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "fault/fault_handler.hpp"
#include "fault/hints.hpp"
#include "paging_thread.hpp"

namespace extmem::daemon {

namespace {

constexpr uint64_t kBatchPages = 256;
constexpr size_t kMaxIovecs = 1024;  // UIO_MAXIOV
constexpr auto kPeriod = std::chrono::milliseconds(20);

bool all_zero(const unsigned char* page) {
  static const unsigned char kZero[kPageSize] = {};
  return memcmp(page, kZero, kPageSize) == 0;
}

// Adjacent pages become one range, so one system call covers a run.
std::vector<iovec> coalesce(std::vector<uintptr_t> addrs) {
  std::sort(addrs.begin(), addrs.end());
  std::vector<iovec> out;
  for (uintptr_t a : addrs) {
    if (!out.empty() &&
        reinterpret_cast<uintptr_t>(out.back().iov_base) + out.back().iov_len == a) {
      out.back().iov_len += kPageSize;
    } else {
      out.push_back({reinterpret_cast<void*>(a), kPageSize});
    }
  }
  return out;
}

}  // namespace

Reclaimer::Reclaimer(ClientRegistry& registry, Governor& governor, SwapDevice& swap,
                     bool track_access)
    : registry_(registry), governor_(governor), swap_(swap), track_access_(track_access) {}

Reclaimer::~Reclaimer() {
  stop();
}

uint64_t Reclaimer::low_watermark(uint64_t limit) {
  uint64_t margin = std::max<uint64_t>(limit / 32, 64);
  return limit > margin ? limit - margin : 1;
}

uint64_t Reclaimer::high_watermark(uint64_t limit) {
  uint64_t low = low_watermark(limit);
  return low + (limit - low) / 2;
}

void Reclaimer::start(int nice) {
  thread_ = std::thread([this, nice] {
    enter_paging_thread("extmemd-reclaim", nice);
    run();
  });
  assistant_ = std::thread([this, nice] {
    enter_paging_thread("extmemd-evict", nice);
    assist();
  });
}

void Reclaimer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (assistant_.joinable()) assistant_.join();
}

void Reclaimer::wake() {
  {
    std::lock_guard lock(mu_);
    ++wakes_;
  }
  wakeup_.notify_all();
}

bool Reclaimer::wait_for_work(uint64_t* seen) {
  std::unique_lock lock(mu_);
  wakeup_.wait_for(lock, kPeriod, [&] { return wakes_ != *seen || stopping_; });
  *seen = wakes_;
  return !stopping_;
}

void Reclaimer::run() {
  uint64_t seen = 0;
  while (wait_for_work(&seen)) {
    if (swap_full_.load() && swap_.clusters_used() < swap_.clusters_total()) {
      swap_full_.store(false);
    }
    governor_.rebalance();
    Pager pager{&swap_, this};
    for (const auto& client : registry_.snapshot()) {
      // The periodic look at the hint ring: hints that need no prompt action (COLD, HOT,
      // SEQUENTIAL...) wait for it rather than ring a doorbell.
      drain_hints(*client, pager, false);
      // PAGEOUT hints: their pages are the policy's first victims.
      for (uint64_t pageout = client->pageout_pages.exchange(0); pageout > 0;) {
        const uint64_t evicted = evict_batch(*client, std::min(pageout, kBatchPages));
        if (evicted == 0) break;
        pageout -= std::min(pageout, evicted);
      }
      evict_to_low_watermark(*client);
    }
  }
}

void Reclaimer::assist() {
  uint64_t seen = 0;
  while (wait_for_work(&seen)) {
    for (const auto& client : registry_.snapshot()) {
      // Only while faults wait at the limit (the first thread is behind), so the two
      // never evict twice the room a client needs.
      while (client->room_waiters.load() != 0 && !swap_full_.load()) {
        const uint64_t evicted = evict_batch(*client, kBatchPages);
        client->room.notify_all();
        if (evicted == 0) break;
      }
    }
  }
}

void Reclaimer::evict_to_low_watermark(Client& client) {
  const uint64_t limit = client.limit_pages();
  if (limit == 0) return;
  uint64_t resident;
  {
    std::lock_guard lock(client.mu);
    resident = client.pages.resident_pages();
  }
  if (resident <= high_watermark(limit)) return;
  const uint64_t low = low_watermark(limit);
  while (resident > low && !swap_full_.load()) {
    uint64_t evicted = evict_batch(client, std::min(resident - low, kBatchPages));
    client.room.notify_all();
    if (evicted == 0) break;
    std::lock_guard lock(client.mu);
    resident = client.pages.resident_pages();
  }
  client.room.notify_all();
}

void Reclaimer::reset_access(Client& client, const std::vector<uint64_t>& addrs) {
  std::vector<iovec> ranges = coalesce(addrs);
  for (size_t i = 0; i < ranges.size(); i += kMaxIovecs) {
    size_t n = std::min(kMaxIovecs, ranges.size() - i);
    auto advised = client.process().madvise({ranges.data() + i, n}, MADV_PAGEOUT);
    if (!advised) {
      spdlog::warn("client {}: {}", client.identity().pid, advised.error().message());
      return;
    }
  }
  client.counters().access_resets += addrs.size();
}

// Records where a written (or clean, or all-zero) victim's data is, once its memory is
// punched out.
void Reclaimer::settle_evicted(Client& client, const Victim& v) {
  client.counters().evictions++;
  if (auto marker = client.markers.take(v.page)) {
    // Its run was read ahead in vain, or too early: the stream reads less ahead.
    client.counters().prefetch_markers_unused++;
    client.readahead.on_marker_unused(marker->tid);
  }
  if (v.zero) {
    client.pages.set_state(v.page, PageState::kEmpty);
    drop_slot(client, v.page, &swap_);
    client.counters().zero_evictions++;
  } else {
    client.pages.set_state(v.page, PageState::kEvicted);
    if (v.clean) {
      client.counters().clean_evictions++;
    } else {
      client.counters().bytes_written += kPageSize;
    }
  }
}

uint64_t Reclaimer::evict_batch(Client& client, uint64_t want) {
  std::vector<Victim> victims;
  std::vector<uint64_t> reset_addrs;
  {
    std::lock_guard lock(client.mu);
    Policy::Scan scan;
    client.policy->scan(want, &scan);
    for (size_t i = 0; i < scan.victims.size(); ++i) {
      const uint64_t page = scan.victims[i];
      const uintptr_t addr = client.address_map.address_of(page * kPageSize);
      const PageState state = client.pages.state(page);
      if (!is_resident(state)) continue;
      if (addr == 0) {
        client.policy->on_resident(page);  // not mapped anywhere: nothing to evict through
        continue;
      }
      if (state == PageState::kResidentClean) {
        client.pages.set_state(page, PageState::kEvicting);
        victims.push_back({page, addr, client.pages.cluster(page), false, false, true});
        continue;
      }
      uint32_t cluster = client.pages.cluster(page);
      if (cluster == PageTable::kNoCluster) {
        cluster = swap_.allocate_cluster(client.id());
        if (cluster == SwapSpace::kNoCluster) {
          if (!swap_full_.exchange(true)) {
            spdlog::warn("swap device {} is full: clients may exceed their limits", swap_.path());
          }
          client.counters().swap_full++;
          for (size_t j = i; j < scan.victims.size(); ++j) {
            PageState s = client.pages.state(scan.victims[j]);
            if (is_resident(s)) {
              client.policy->on_resident(scan.victims[j]);
            }
          }
          break;
        }
        client.pages.set_cluster(page, cluster);
      }
      client.pages.hold_slot(page);
      client.pages.set_state(page, PageState::kEvicting);
      victims.push_back({page, addr, cluster});
    }
    if (track_access_) {
      for (uint64_t page : scan.reset) {
        PageState state = client.pages.state(page);
        if (!is_resident(state)) continue;
        if (uintptr_t addr = client.address_map.address_of(page * kPageSize)) {
          reset_addrs.push_back(addr);
        }
      }
    }
  }
  if (!reset_addrs.empty()) reset_access(client, reset_addrs);
  if (victims.empty()) return 0;

  // In arena order, neighbours become one range for each step below: one system call or
  // one write covers a run of pages (their slots are neighbours too, see SwapSpace).
  std::sort(victims.begin(), victims.end(),
            [](const Victim& a, const Victim& b) { return a.page < b.page; });
  auto follows = [&](size_t i) {
    return i > 0 && victims[i].page == victims[i - 1].page + 1 &&
           victims[i].addr == victims[i - 1].addr + kPageSize;
  };
  // Calls fn(first, end) for each run of neighbours in [0, n) that `in` selects.
  auto for_each_run = [&](auto&& in, auto&& fn) {
    for (size_t i = 0; i < victims.size();) {
      if (!in(victims[i])) {
        ++i;
        continue;
      }
      size_t end = i + 1;
      while (end < victims.size() && in(victims[end]) && follows(end)) ++end;
      fn(i, end);
      i = end;
    }
  };

  // Write-protect, copy out, write to the slot. Writers block on the protection until the
  // page is gone; the last step wakes them and they fault it back in.
  IoBuffers::Buffer buffers = swap_.io_buffers().take(victims.size());
  auto buffer = [&](size_t i) { return buffers.data() + i * kPageSize; };
  auto dirty = [](const Victim& v) { return !v.clean && !v.failed; };
  for_each_run(dirty, [&](size_t first, size_t end) {
    const uint64_t len = (end - first) * kPageSize;
    bool ok = static_cast<bool>(buffers);  // without memory for it, the pages stay
    if (ok) {
      auto protected_ = client.uffd().write_protect(victims[first].addr, len, true, false);
      ok = protected_ && *protected_ == kernel::Outcome::kDone;
    }
    if (ok) {
      auto n = client.memfd().read_at(buffer(first), len, victims[first].page * kPageSize);
      ok = n && *n == len;
    }
    if (!ok) {
      spdlog::debug(
          "client {}: pages {}+{} not evicted: no buffer, or write-protect or read failed",
          client.identity().pid, victims[first].page, end - first);
      for (size_t i = first; i < end; ++i) victims[i].failed = true;
      return;
    }
    // A zero page needs no swap: it becomes a hole again and refaults as fresh memory.
    for (size_t i = first; i < end; ++i) victims[i].zero = all_zero(buffer(i));
  });

  // Neighbouring slots whose data lies side by side in the buffer: one write.
  std::vector<kernel::IoRequest> writes;
  std::vector<size_t> write_of(victims.size(), SIZE_MAX);
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    if (v.failed || v.zero || v.clean) continue;
    const uint64_t offset = SwapSpace::slot_offset(v.cluster, v.page);
    if (!writes.empty() && write_of[i - 1] == writes.size() - 1 &&
        writes.back().offset + writes.back().len == offset) {
      writes.back().len += static_cast<uint32_t>(kPageSize);
    } else {
      writes.push_back({swap_.fd(), buffer(i), static_cast<uint32_t>(kPageSize), offset, true});
    }
    write_of[i] = writes.size() - 1;
  }
  bool io_ok = true;
  if (!writes.empty()) {
    auto ran = swap_.run(writes);
    if (!ran) {
      spdlog::error("swap I/O: {}", ran.error().message());
      io_ok = false;
    }
  }

  // Each page is settled under the lock, protection lifted last: a fault that restores
  // the page must come after the un-protect, or the un-protect would make a freshly
  // restored clean page writable behind our back.
  std::lock_guard lock(client.mu);
  uint64_t write_failures = 0, writes_done = 0;
  int write_error = EIO;
  for (size_t i = 0; i < victims.size(); ++i) {
    Victim& v = victims[i];
    bool written = v.zero || v.clean;
    if (write_of[i] != SIZE_MAX) {
      const kernel::IoRequest& req = writes[write_of[i]];
      written = io_ok && req.result == static_cast<int32_t>(req.len);
      if (written) {
        ++writes_done;
      } else {
        ++write_failures;
        if (io_ok && req.result < 0) write_error = -req.result;
      }
    }
    v.failed = !written || client.pages.state(v.page) != PageState::kEvicting;
  }
  if (write_failures != 0) {
    // The pages stay in memory, their data never left it.
    client.counters().io_errors += write_failures;
    swap_.note_io_error();
    spdlog::error("client {}: writing {} page{} to swap failed: {}; they stay in memory",
                  client.identity().pid, write_failures, write_failures == 1 ? "" : "s",
                  io_ok ? strerror(write_error) : "ring failure");
  }
  if (writes_done != 0) {
    if (writes_failing_.exchange(false)) spdlog::info("swap writes succeed again");
  } else if (write_failures != 0 && !writes_failing_.exchange(true)) {
    spdlog::critical("swap device {} fails every write: clients may exceed their limits",
                     swap_.path());
  }
  auto settle = [](const Victim& v) { return !v.failed; };
  for_each_run(settle, [&](size_t first, size_t end) {
    // A daemon that dies after the punch must still find these pages in swap.
    for (size_t i = first; i < end; ++i) {
      if (!victims[i].zero) client.pages.record_in_swap(victims[i].page, true);
    }
    auto punched =
        client.memfd().punch_hole(victims[first].page * kPageSize, (end - first) * kPageSize);
    if (!punched) {
      spdlog::error("client {}: {}", client.identity().pid, punched.error().message());
      for (size_t i = first; i < end; ++i) {
        victims[i].failed = true;
        client.pages.record_in_swap(victims[i].page, false);
      }
    }
  });
  uint64_t evicted = 0;
  for (Victim& v : victims) {
    if (client.pages.state(v.page) != PageState::kEvicting) {
      drop_slot(client, v.page, &swap_);  // freed by the application meanwhile
    } else if (!v.failed) {
      settle_evicted(client, v);
      ++evicted;
    } else {
      // The page stays resident; its data never left memory.
      if (v.clean) {
        client.pages.set_state(v.page, PageState::kResidentClean);
      } else {
        client.pages.set_state(v.page, PageState::kResident);
        drop_slot(client, v.page, &swap_);
      }
      client.policy->on_resident(v.page);
    }
  }
  // A clean page that stays resident is still clean: its writers are only woken. Every
  // other page is unprotected, which wakes its writers.
  auto keeps_protection = [&](const Victim& v) {
    return v.clean && client.pages.state(v.page) == PageState::kResidentClean;
  };
  for (const Victim& v : victims) {
    if (!keeps_protection(v)) continue;
    auto woken = client.uffd().wake(v.addr, kPageSize);
    if (!woken) spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
  }
  for_each_run([&](const Victim& v) { return !keeps_protection(v); },
               [&](size_t first, size_t end) {
                 auto woken = client.uffd().write_protect(victims[first].addr,
                                                          (end - first) * kPageSize, false, false);
                 if (!woken) {
                   spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
                 }
               });
  return evicted;
}

}  // namespace extmem::daemon
