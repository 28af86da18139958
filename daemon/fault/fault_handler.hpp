// Resolves one client's userfaultfd events. What a fault needs depends on the page's
// state, not on the kind of fault: an empty page is filled with zeros, an evicted one is
// read back from swap, a resident one records the access and is mapped, a page being
// evicted waits for the eviction (which wakes it). REMOVE/UNMAP/REMAP events keep the
// page table in step with the application.
#pragma once

#include <linux/userfaultfd.h>

#include <mutex>
#include <span>

#include "client/client.hpp"

namespace extmem::daemon {

class SwapDevice;
class Reclaimer;

struct Pager {
  SwapDevice* swap = nullptr;  // none: limits cannot be enforced
  Reclaimer* reclaimer = nullptr;
};

// Handles a batch of events read from the client's userfaultfd, in order.
void handle_events(Client& client, std::span<const uffd_msg> events, Pager& pager);

// Reads the evicted pages of `piece` back ahead of use (WILLNEED): as many as fit under
// the client's limit, in batches of up to 1024 pages with one read per run of
// neighbours, mapped clean.
// Call with the client's lock held; it is released during the reads. Returns the pages
// mapped.
uint64_t prefetch(std::unique_lock<std::mutex>& lock, Client& client, const Segment& piece,
                  Pager& pager);

// Reads every evicted page back (daemon stop). False if any could not be restored.
bool restore_all(Client& client, SwapDevice* swap);

// Drops the swap slot `page` holds, releasing its cluster when it was the last one.
void drop_slot(Client& client, uint64_t page, SwapDevice* swap);

}  // namespace extmem::daemon
