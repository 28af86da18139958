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
struct SwapIn;

struct Pager {
  SwapDevice* swap = nullptr;  // none: limits cannot be enforced
  Reclaimer* reclaimer = nullptr;
  // UFFDIO_POISON works: unreadable pages raise SIGBUS rather than wait for the device.
  bool can_poison = false;
  int thread_nice = 0;  // of the threads that serve faults (daemon.paging_nice)
};

// Handles a batch of events read from the client's userfaultfd, in order.
void handle_events(Client& client, std::span<const uffd_msg> events, Pager& pager);

// Maps a swap-in read that completed with `result` (bytes, or -errno): the paging thread
// whose ring carried it calls it.
void finish_swap_in(std::unique_ptr<SwapIn> read, int32_t result, Pager& pager);

// Around a paging thread's reading and applying of a client's events: reads completing
// meanwhile are finished by end_drain, once every event read is applied.
void begin_drain(Client& client);
void end_drain(Client& client, Pager& pager);

// Wakes the threads waiting on pages that could neither be read nor poisoned, so that
// their faults try the read again (called about once a second).
void retry_stalled_reads(Client& client);

// Starts reading the evicted pages of `piece` back ahead of use (WILLNEED): one read per
// run of neighbours in a chunk, mapped clean as each completes; as many pages as fit under
// the client's limit plus half of it (reclaim then evicts others). Call with the client's
// lock held (released only if its paging ring takes no more reads). Returns the pages started.
uint64_t prefetch(std::unique_lock<std::mutex>& lock, Client& client, const Segment& piece,
                  Pager& pager);

// Reads every evicted page back (daemon stop). False if any could not be restored.
bool restore_all(Client& client, SwapDevice* swap);

// Drops the swap slot `page` holds, releasing its cluster when it was the last one.
void drop_slot(Client& client, uint64_t page, SwapDevice* swap);

}  // namespace extmem::daemon
