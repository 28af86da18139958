// One managed application: who it is, the descriptors it handed over, where its arena
// is mapped, the state of each arena page, its policy, limit and counters.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "client/address_map.hpp"
#include "client/fault_trace.hpp"
#include "client/latency.hpp"
#include "client/page_table.hpp"
#include "client/swap_record.hpp"
#include "extmem/hint_ring.hpp"
#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/pidfd.hpp"
#include "extmem/kernel/uffd.hpp"
#include "fault/readahead.hpp"
#include "policy/page_hints.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

inline constexpr uint64_t kPageSize = 4096;

class SwapDevice;
struct SwapIn;
class PagingRing;

struct ClientIdentity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string exe;  // executable name, for logs and config rules
};

struct ClientCounters {
  std::atomic<uint64_t> first_touch_faults{0};
  std::atomic<uint64_t> zero_filled_pages{0};
  std::atomic<uint64_t> major_faults{0};  // restored from swap
  std::atomic<uint64_t> minor_faults{0};  // access signals after an access-bit reset
  std::atomic<uint64_t> wp_faults{0};
  std::atomic<uint64_t> spurious_faults{0};  // the page was already there: only woken
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> zero_evictions{0};   // all-zero pages dropped without I/O
  std::atomic<uint64_t> clean_evictions{0};  // unchanged since restored: no write
  std::atomic<uint64_t> access_resets{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> released_pages{0};  // freed by the application
  std::atomic<uint64_t> remove_events{0};
  std::atomic<uint64_t> unmap_events{0};
  std::atomic<uint64_t> remap_events{0};
  std::atomic<uint64_t> fault_errors{0};
  std::atomic<uint64_t> io_errors{0};
  std::atomic<uint64_t> swap_full{0};   // evictions refused for want of swap space
  std::atomic<uint64_t> over_limit{0};  // faults served above the limit
  // Read-ahead: pages mapped with a major fault's page, and those of them the faulting
  // thread walked over (its next major fault continued after them).
  // Pages whose swap copy could not be read after kReadAttempts tries: the application
  // gets SIGBUS on them, never wrong data.
  std::atomic<uint64_t> poisoned_pages{0};
  // Pages that could neither be read nor poisoned (a kernel without UFFDIO_POISON): their
  // threads wait while the read is retried.
  std::atomic<uint64_t> stalled_reads{0};
  std::atomic<uint64_t> prefetched_pages{0};
  std::atomic<uint64_t> prefetch_hits{0};
  std::atomic<uint64_t> fault_around_pages{0};
  // Read-ahead markers (see ReadaheadMarkers): placed, touched by the application (a
  // prefetch hit: its run was used), and evicted or freed untouched (a miss).
  // Accuracy: used / placed.
  std::atomic<uint64_t> prefetch_markers{0};
  std::atomic<uint64_t> prefetch_markers_used{0};
  std::atomic<uint64_t> prefetch_markers_unused{0};
  // Hints taken from the client's ring; applied to at least one arena page; refused
  // (unknown hint, range outside the arena); dropped by the client with its ring full
  // (as the client reports it).
  std::atomic<uint64_t> hints_received{0};
  std::atomic<uint64_t> hints_applied{0};
  std::atomic<uint64_t> hints_invalid{0};
  std::atomic<uint64_t> hints_ring_full{0};
  LatencyHistogram fault_latency;
};

// What a client may hold: its own limit (a ceiling, 0 for none), and its claim on the
// global budget. Where the limit came from is shown to operators.
struct ClientTerms {
  uint64_t limit_pages = 0;
  uint64_t min_pages = 0;
  uint32_t weight = 100;
  std::string limit_source;  // "client", "rule at line N", "default", "control"
};

// Counters per second over the last sampling interval.
struct ClientRates {
  double major_faults = 0;
  double first_touch_faults = 0;
  double evictions = 0;
  double bytes_read = 0;
  double bytes_written = 0;
};

// A client's hint ring (see hint_ring.hpp), mapped in the daemon, and its doorbell.
struct HintChannel {
  HintChannel(kernel::SharedMapping mapping_in, kernel::UniqueFd doorbell_in)
      : mapping(std::move(mapping_in)),
        doorbell(std::move(doorbell_in)),
        consumer(static_cast<hints::HintRing*>(mapping.address())) {}
  kernel::SharedMapping mapping;
  kernel::UniqueFd doorbell;
  std::mutex drain_mu;  // one drain at a time; guards `consumer`
  hints::RingConsumer consumer;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(uint64_t id, ClientIdentity identity, kernel::UniqueFd socket, kernel::Pidfd pidfd,
         kernel::Userfaultfd uffd, kernel::Memfd memfd, uintptr_t arena_base, uint64_t arena_size,
         ClientTerms terms, std::unique_ptr<Policy> policy, SwapDevice* swap);
  // Gives the client's swap space back; runs when the last holder lets go, so no
  // eviction or restore of this client is in flight.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  uint64_t id() const { return id_; }
  const ClientIdentity& identity() const { return identity_; }
  int socket_fd() const { return socket_.get(); }
  int pidfd() const { return pidfd_.fd(); }
  const kernel::Pidfd& process() const { return pidfd_; }
  int uffd_fd() const { return uffd_.fd(); }
  kernel::Userfaultfd& uffd() { return uffd_; }
  kernel::Memfd& memfd() { return memfd_; }
  uintptr_t arena_base() const { return arena_base_; }
  uint64_t arena_size() const { return arena_size_; }
  // Pages the client may keep in memory now (its own limit, lowered while a global
  // budget is shared out); 0 means no limit.
  uint64_t limit_pages() const { return limit_pages_.load(std::memory_order_relaxed); }
  void set_limit_pages(uint64_t limit) { limit_pages_.store(limit, std::memory_order_relaxed); }
  ClientTerms terms() const;
  // Changes the terms, and saves them in the swap record for a restarted daemon.
  void set_terms(ClientTerms terms);
  std::chrono::steady_clock::time_point started() const { return started_; }

  // Computes the rates since the previous call; the daemon calls it once a second.
  void sample_rates(std::chrono::steady_clock::time_point now);
  ClientRates rates() const;

  // Replaces the policy and tells the new one about every resident page and the hot
  // ranges; saves its name in the swap record. Call with `mu` held.
  void replace_policy(std::unique_ptr<Policy> next);
  ClientCounters& counters() { return counters_; }
  // The hint ring, once the client attached one (at most once).
  HintChannel* hints() const { return hints_ptr_.load(std::memory_order_acquire); }
  // False if the client has a ring already.
  bool attach_hints(std::unique_ptr<HintChannel> channel);
  // Pages PAGEOUT hints asked reclaim to evict now (cold pages first).
  std::atomic<uint64_t> pageout_pages{0};
  // Its shim decodes Stats with the marker counters (wire::kHelloReadsMarkerStats); set
  // at registration.
  bool reads_marker_stats = false;
  bool exited() const { return pidfd_.exited(); }

  // Page state, mappings and policy; guarded by `mu`.
  std::mutex mu;
  PageTable pages;
  AddressMap address_map;
  // Per-thread windows, all by Readahead's rule: pages read with a major fault, zero-filled
  // with a first touch, mapped with a minor fault (continue_around).
  Readahead readahead;
  Readahead zero_fill_ahead;
  Readahead fault_around;
  RangeAdvice access_advice;  // SEQUENTIAL/RANDOM hints, steering `readahead`
  ReadaheadMarkers markers;   // resident, unmapped; see place_marker in fault_handler.cpp
  std::unique_ptr<Policy> policy;
  // Where this client's faults are recorded (extmemd --record-faults); null: nowhere.
  std::unique_ptr<FaultTraceFile> fault_trace;
  // Failed swap reads per evicted page, until it is read or poisoned.
  std::unordered_map<uint64_t, uint32_t> read_failures;
  // Pages with a swap-in read in flight, and the id of that read (see SwapIn).
  std::unordered_map<uint64_t, uint64_t> reading;
  uint64_t last_read_id = 0;
  // Its paging thread is reading and applying this client's events; reads completing
  // meanwhile wait in deferred_reads (see begin_drain).
  bool uffd_draining = false;
  std::vector<std::unique_ptr<SwapIn>> deferred_reads;
  // Unreadable pages that cannot be poisoned, by page: the faulting address, whose
  // threads are left waiting until retry_stalled_reads wakes them to try again.
  // The ranges the application declared hot, kept across policy switches (the new
  // policy is told them again).
  HotRanges hot_hints;
  std::unordered_map<uint64_t, uintptr_t> stalled_reads;
  // The ring of the paging thread serving the client, which carries its swap-in reads;
  // set when the thread is assigned.
  PagingRing* paging_ring = nullptr;
  // Signalled when reclaim freed memory for this client.
  std::condition_variable room;
  // Faults waiting on `room`: reclaim is behind this client.
  std::atomic<unsigned> room_waiters{0};

  // Keeps which pages are in swap where a restarted daemon finds them; removed when the
  // client is gone. Call before the client is shared.
  void attach_record(std::unique_ptr<SwapRecord> record);
  // The daemon stops with pages of this client still in swap: its record stays for the
  // next daemon instead of being removed.
  void keep_record();

  // Hands the arena back to the kernel while the application still runs (daemon stop,
  // client detaching): it must never be left registered with nobody serving it.
  void unregister_arena();
  // One line: pid, name, limit, memory and counters.
  std::string describe();

 private:
  // Writes the terms and the policy's name to the swap record, if any. Call with `mu` held.
  void save_terms();

  uint64_t id_;
  ClientIdentity identity_;
  kernel::UniqueFd socket_;
  kernel::Pidfd pidfd_;
  kernel::Userfaultfd uffd_;
  kernel::Memfd memfd_;
  uintptr_t arena_base_;
  uint64_t arena_size_;
  std::atomic<uint64_t> limit_pages_;
  SwapDevice* swap_;
  std::unique_ptr<SwapRecord> record_;  // under mu once shared
  ClientCounters counters_;
  std::mutex hints_mu_;
  std::unique_ptr<HintChannel> hints_;
  std::atomic<HintChannel*> hints_ptr_{nullptr};
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  mutable std::mutex terms_mu_;
  ClientTerms terms_;

  struct RateSample {
    std::chrono::steady_clock::time_point at;
    uint64_t major_faults = 0, first_touch_faults = 0, evictions = 0, bytes_read = 0,
             bytes_written = 0;
  };
  mutable std::mutex rates_mu_;
  RateSample last_sample_;
  ClientRates rates_;
};

}  // namespace extmem::daemon
