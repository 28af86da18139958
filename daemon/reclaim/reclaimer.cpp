#include "reclaim/reclaimer.hpp"

#include <sys/mman.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "fault/fault_handler.hpp"

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

void Reclaimer::start() {
  thread_ = std::thread([this] { run(); });
}

void Reclaimer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reclaimer::wake() {
  {
    std::lock_guard lock(mu_);
    wake_requested_ = true;
  }
  wakeup_.notify_one();
}

void Reclaimer::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wakeup_.wait_for(lock, kPeriod, [this] { return wake_requested_ || stopping_; });
      if (stopping_) return;
      wake_requested_ = false;
    }
    if (swap_full_.load() && swap_.clusters_used() < swap_.clusters_total()) {
      swap_full_.store(false);
    }
    governor_.rebalance();
    for (const auto& client : registry_.snapshot()) {
      const uint64_t limit = client->limit_pages();
      if (limit == 0) continue;
      uint64_t resident;
      {
        std::lock_guard lock(client->mu);
        resident = client->pages.resident_pages();
      }
      if (resident <= high_watermark(limit)) continue;
      const uint64_t low = low_watermark(limit);
      while (resident > low && !swap_full_.load()) {
        uint64_t evicted = evict_batch(*client, std::min(resident - low, kBatchPages));
        client->room.notify_all();
        if (evicted == 0) break;
        std::lock_guard lock(client->mu);
        resident = client->pages.resident_pages();
      }
      client->room.notify_all();
    }
  }
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

// Frees a written (or clean, or all-zero) victim's memory and records where its data is.
// False if the page could not be freed: it then stays resident.
bool Reclaimer::settle_evicted(Client& client, const Victim& v) {
  auto punched = client.memfd().punch_hole(v.page * kPageSize, kPageSize);
  if (!punched) {
    spdlog::error("client {}: {}", client.identity().pid, punched.error().message());
    return false;
  }
  client.counters().evictions++;
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
  return true;
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

  // Write-protect, copy out, write to the slot. Writers block on the protection until the
  // page is gone; the last step wakes them and they fault it back in.
  static constexpr size_t kAlign = 4096;
  std::unique_ptr<unsigned char, decltype(&free)> buffers(
      static_cast<unsigned char*>(aligned_alloc(kAlign, victims.size() * kPageSize)), &free);
  std::vector<kernel::IoRequest> writes;
  writes.reserve(victims.size());
  for (size_t i = 0; i < victims.size(); ++i) {
    Victim& v = victims[i];
    if (v.clean) continue;  // already write-protected, already in its slot
    unsigned char* buf = buffers.get() + i * kPageSize;
    auto protected_ = client.uffd().write_protect(v.addr, kPageSize, true, false);
    if (!protected_ || *protected_ != kernel::Outcome::kDone) {
      spdlog::debug("client {}: page {} not evicted: write-protect {}", client.identity().pid,
                    v.page,
                    protected_ ? kernel::outcome_name(*protected_) : protected_.error().message());
      v.failed = true;
      continue;
    }
    auto n = client.memfd().read_at(buf, kPageSize, v.page * kPageSize);
    if (!n || *n != kPageSize) {
      spdlog::debug("client {}: page {} not evicted: reading it failed", client.identity().pid,
                    v.page);
      v.failed = true;
      continue;
    }
    // A zero page needs no swap: it becomes a hole again and refaults as fresh memory.
    v.zero = all_zero(buf);
    if (v.zero) continue;
    writes.push_back({swap_.fd(), buf, static_cast<uint32_t>(kPageSize),
                      SwapSpace::slot_offset(v.cluster, v.page), true});
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
  uint64_t evicted = 0;
  std::lock_guard lock(client.mu);
  size_t w = 0;
  for (Victim& v : victims) {
    bool written = v.zero || v.clean;
    if (!v.failed && !v.zero && !v.clean) {
      const kernel::IoRequest& req = writes[w++];
      written = io_ok && req.result == static_cast<int32_t>(kPageSize);
      if (!written) {
        client.counters().io_errors++;
        spdlog::error("client {}: writing page {} to swap failed: {}", client.identity().pid,
                      v.page, io_ok ? strerror(-req.result) : "ring failure");
      }
    }
    bool keep_protection = false;
    if (client.pages.state(v.page) != PageState::kEvicting) {
      drop_slot(client, v.page, &swap_);  // freed by the application meanwhile
    } else if (written && settle_evicted(client, v)) {
      ++evicted;
    } else {
      // The page stays resident; its data never left memory.
      if (v.clean) {
        client.pages.set_state(v.page, PageState::kResidentClean);
        keep_protection = true;  // still clean: only wake writers that waited on us
      } else {
        client.pages.set_state(v.page, PageState::kResident);
        drop_slot(client, v.page, &swap_);
      }
      client.policy->on_resident(v.page);
    }
    auto woken = keep_protection ? client.uffd().wake(v.addr, kPageSize)
                                 : client.uffd().write_protect(v.addr, kPageSize, false, false);
    if (!woken) spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
  }
  return evicted;
}

}  // namespace extmem::daemon
