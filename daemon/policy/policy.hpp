// The eviction policy interface. A policy is a small pure class: it sees arena page
// numbers and access signals, never descriptors or I/O. The mechanism (fault handling,
// reclaim) calls it under the client's lock, so policies need no locking of their own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace extmem::daemon {

// The application's advice on pages (see Policy::on_hint).
enum class PageHint { kNormal, kCold, kHot };

class Policy {
 public:
  virtual ~Policy() = default;

  virtual std::string_view name() const = 0;

  // `page` became resident (first touch or restored from swap). It counts as accessed.
  virtual void on_resident(uint64_t page) = 0;
  // `page` became resident ahead of use (read-ahead): not accessed yet, and its first
  // access is not reported, since it is mapped already.
  virtual void on_read_ahead(uint64_t page) { on_resident(page); }
  // The application touched `page` after the mechanism reset its access bit (see
  // Scan::reset). Only pages that are resident are reported.
  virtual void on_access(uint64_t page) = 0;
  // `page` stopped being resident for a reason of the application's (freed, unmapped).
  // Pages the policy returned as victims are not reported here: returning them already
  // removed them.
  virtual void on_gone(uint64_t page) = 0;

  struct Scan {
    // Pages to evict, best first; the policy forgets them. Victims the mechanism could
    // not evict come back through on_resident.
    std::vector<uint64_t> victims;
    // Pages whose access bit the mechanism must reset (unmap them so that the next
    // access is reported through on_access).
    std::vector<uint64_t> reset;
  };
  // Chooses up to `want` victims among the resident pages, and pages to reset. Returns
  // at least one victim whenever a resident page exists and want > 0, so reclaim always
  // progresses.
  virtual void scan(size_t want, Scan* out) = 0;

  // How many pages, from the evicted `page` on, the mechanism should read when `page`
  // faults: a policy that knows the application scans may ask for more read-ahead than
  // the mechanism's own per-thread detector grants. 0: no opinion. The mechanism caps it.
  virtual uint64_t readahead_hint(uint64_t /*page*/) const { return 0; }

  // The application's advice on [first_page, first_page + pages): kCold, evict those of
  // its pages resident now before any other page; kHot, keep its pages (also those made
  // resident later) while any other page can be evicted; kNormal, forget earlier advice.
  // The mechanism passes kCold for runs of resident pages only, so a policy may walk them.
  virtual void on_hint(uint64_t /*first_page*/, uint64_t /*pages*/, PageHint /*hint*/) {}

  // Resident pages the policy tracks.
  virtual uint64_t resident_pages() const = 0;
  // Daemon memory the policy uses, in bytes.
  virtual uint64_t memory_bytes() const = 0;
};

// Policies are registered by name; adding one is one file and one line in registry.cpp.
std::unique_ptr<Policy> make_policy(std::string_view name);
std::vector<std::string> policy_names();
inline constexpr std::string_view kDefaultPolicy = "clock";

}  // namespace extmem::daemon
