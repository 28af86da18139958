#include "recovery/recovery.hpp"

#include <sys/sysmacros.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "server/client_checks.hpp"

namespace extmem::daemon {

namespace {

// Where the process maps the arena's memfd.
Result<std::vector<Segment>> arena_segments(pid_t pid, dev_t dev, ino_t ino) {
  auto mappings = file_mappings(pid, dev, ino);
  if (!mappings) return mappings.error();
  std::vector<Segment> segments;
  for (const FileMapping& m : *mappings) segments.push_back({m.start, m.end - m.start, m.offset});
  return segments;
}

Result<kernel::UniqueFd> take_back(const kernel::Pidfd& process, uint64_t dev, uint64_t ino,
                                   const char* what) {
  auto number = process.find_fd(static_cast<dev_t>(dev), static_cast<ino_t>(ino));
  if (!number) {
    return Error::make(number.error().code(), "the process no longer holds its %s", what);
  }
  return process.take_fd(*number);
}

// Rebuilds the client's page table: pages with data in the memfd are resident (whatever
// the record says: the memfd is the truth for them), holes the record marks as in swap
// are evicted, and their clusters are charged to the client again.
Result<void> rebuild_pages(Client& client, SwapRecord& record, SwapDevice& swap) {
  PageTable& pages = client.pages;
  const uint64_t arena_pages = client.arena_size() / kPageSize;
  for (uint64_t offset = 0; offset < client.arena_size();) {
    auto data = client.memfd().next_data(offset);
    if (!data) return data.error();
    if (*data >= client.arena_size()) break;
    auto hole = client.memfd().next_hole(*data);
    if (!hole) return hole.error();
    const uint64_t end = std::min(*hole, client.arena_size());
    for (uint64_t page = *data / kPageSize; page < (end + kPageSize - 1) / kPageSize; ++page) {
      pages.set_state(page, PageState::kResident);
      if (record.in_swap(page)) record.set_in_swap(page, false);
      // Page 0 holds the registration nonce and is never offered to a policy.
      if (page != 0) client.policy->on_resident(page);
    }
    offset = end;
  }
  for (uint64_t chunk = 0; chunk < record.chunk_count(); ++chunk) {
    const uint32_t cluster = record.cluster(chunk);
    if (cluster == SwapRecord::kNoCluster) continue;
    const uint64_t first = chunk * SwapRecord::kChunkPages;
    const uint64_t last = std::min(first + SwapRecord::kChunkPages, arena_pages);
    uint64_t evicted = 0;
    for (uint64_t page = first; page < last; ++page) evicted += record.in_swap(page);
    if (evicted == 0) {
      record.set_cluster(chunk, SwapRecord::kNoCluster);  // only clean copies: not needed
      continue;
    }
    if (!swap.claim_cluster(cluster, client.id())) {
      return Error::make(EEXIST, "swap cluster %u of page %" PRIu64 " is claimed twice", cluster,
                         first);
    }
    pages.set_cluster(first, cluster);
    for (uint64_t page = first; page < last; ++page) {
      if (!record.in_swap(page)) continue;
      pages.set_state(page, PageState::kEvicted);
      pages.hold_slot(page);
    }
  }
  return {};
}

Result<std::shared_ptr<Client>> recover(SwapRecord& record, ClientRegistry& registry,
                                        SwapDevice& swap) {
  const SwapRecordHeader& h = record.header();
  auto process = kernel::Pidfd::open(h.pid);
  if (!process) return Error::make(ESRCH, "process %d is gone", h.pid);
  auto started = kernel::process_start_time(h.pid);
  if (!started || *started != h.start_time) {
    return Error::make(ESRCH, "process %d is gone (its pid was reused)", h.pid);
  }
  auto uffd_fd = take_back(*process, h.uffd_device, h.uffd_inode, "userfaultfd");
  if (!uffd_fd) return uffd_fd.error();
  auto memfd_fd = take_back(*process, h.memfd_device, h.memfd_inode, "arena memfd");
  if (!memfd_fd) return memfd_fd.error();
  auto uffd = kernel::Userfaultfd::adopt(std::move(*uffd_fd));
  if (!uffd) return uffd.error();
  auto memfd = kernel::Memfd::adopt(std::move(*memfd_fd));
  if (!memfd) return memfd.error();
  auto segments =
      arena_segments(h.pid, static_cast<dev_t>(h.memfd_device), static_cast<ino_t>(h.memfd_inode));
  if (!segments) return segments.error();

  // As they last were: set at registration, or changed later through the control plane.
  const SwapRecordTerms saved = record.terms();
  std::unique_ptr<Policy> policy = make_policy(saved.policy);
  if (!policy) policy = make_policy(kDefaultPolicy);
  ClientIdentity identity{h.pid, h.uid, 0, executable_name(h.pid)};
  ClientTerms terms{saved.limit_pages, saved.min_pages, saved.weight, "recovered"};
  auto client = std::make_shared<Client>(registry.next_id(), std::move(identity),
                                         kernel::UniqueFd(), std::move(*process), std::move(*uffd),
                                         std::move(*memfd), h.arena_base, h.arena_size,
                                         std::move(terms), std::move(policy), &swap);
  std::lock_guard lock(client->mu);
  client->address_map = AddressMap(std::move(*segments));
  if (auto rebuilt = rebuild_pages(*client, record, swap); !rebuilt) return rebuilt.error();
  return client;
}

// Threads may wait on faults the old daemon read but never resolved, and on write
// protection it set to evict pages it never finished: lifting the protection (every
// page in memory counts as written from now on) and waking the arena lets each of them
// fault again, to us.
void wake_everything(Client& client) {
  for (const Segment& s : client.address_map.segments()) {
    auto unprotected = client.uffd().write_protect(s.start, s.len, false, false);
    if (!unprotected)
      spdlog::warn("client {}: {}", client.identity().pid, unprotected.error().message());
    auto woken = client.uffd().wake(s.start, s.len);
    if (!woken) spdlog::warn("client {}: {}", client.identity().pid, woken.error().message());
  }
}

}  // namespace

Result<std::unique_ptr<SwapRecord>> create_swap_record(Client& client, SwapDevice& swap,
                                                       std::string_view policy) {
  SwapRecordHeader h;
  h.pid = client.identity().pid;
  h.uid = client.identity().uid;
  auto started = kernel::process_start_time(h.pid);
  if (!started) return started.error();
  h.start_time = *started;
  h.arena_base = client.arena_base();
  h.arena_size = client.arena_size();
  dev_t dev;
  ino_t ino;
  if (auto id = kernel::file_identity(client.uffd_fd(), &dev, &ino); !id) return id.error();
  h.uffd_device = dev;
  h.uffd_inode = ino;
  if (auto id = client.memfd().identity(&dev, &ino); !id) return id.error();
  h.memfd_device = dev;
  h.memfd_inode = ino;
  if (auto id = kernel::file_identity(swap.fd(), &dev, &ino); !id) return id.error();
  h.swap_device = dev;
  h.swap_inode = ino;
  const ClientTerms terms = client.terms();
  h.limit_pages = terms.limit_pages;
  h.min_pages = terms.min_pages;
  h.weight = terms.weight;
  snprintf(h.policy, sizeof(h.policy), "%.*s", static_cast<int>(policy.size()), policy.data());
  return SwapRecord::create(h);
}

size_t recover_clients(ClientRegistry& registry, Governor& governor, FaultLoop& fault_loop,
                       SwapDevice& swap) {
  dev_t swap_dev;
  ino_t swap_ino;
  if (auto id = kernel::file_identity(swap.fd(), &swap_dev, &swap_ino); !id) {
    spdlog::error("recovery: {}", id.error().message());
    return 0;
  }
  size_t recovered = 0;
  for (const std::string& name : SwapRecord::list(swap_dev, swap_ino)) {
    const auto began = std::chrono::steady_clock::now();
    auto record = SwapRecord::open(name);
    if (!record) {
      spdlog::error("recovery: {}; left in /dev/shm", record.error().message());
      continue;
    }
    const SwapRecordHeader& h = (*record)->header();
    if (h.swap_device != swap_dev || h.swap_inode != swap_ino) {
      spdlog::critical(
          "recovery: client {} has pages in another swap file than {}; its record {} is left "
          "for an extmemd started with that file",
          h.pid, swap.path(), name);
      continue;
    }
    auto client = recover(**record, registry, swap);
    if (!client) {
      if (client.error().code() == ESRCH) {
        spdlog::info("recovery: {}; its record is removed", client.error().context());
        (*record)->remove();
      } else {
        // Its faults on pages in swap wait for a daemon that can serve them: reading
        // zeros instead would be worse. The record stays for the next attempt.
        spdlog::critical("recovery: client {} cannot be taken back: {}; record {} kept", h.pid,
                         client.error().message(), name);
      }
      continue;
    }
    // Before the client is in the registry: once there, reclaim may start evicting its
    // pages, and lifting every write protection after that would unprotect a page between
    // its eviction's copy and its punch, losing what the application writes meanwhile.
    // Its threads fault again into the userfaultfd's queue, read once it is polled.
    {
      std::lock_guard lock((*client)->mu);
      wake_everything(**client);
    }
    (*client)->attach_record(std::move(*record));
    registry.add(*client);
    governor.rebalance();
    if (auto added = fault_loop.add(*client); !added) {
      spdlog::critical("recovery: client {}: {}", h.pid, added.error().message());
      registry.remove((*client)->id());
      (*client)->keep_record();
      continue;
    }
    ++recovered;
    spdlog::info("recovered client {} ({}) in {} ms: {}", h.pid, (*client)->identity().exe,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - began)
                     .count(),
                 (*client)->describe());
  }
  return recovered;
}

}  // namespace extmem::daemon
