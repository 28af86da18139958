// FIFO: evicts pages in the order they became resident, ignoring accesses. The baseline
// other policies are measured against.
#pragma once

#include "policy/page_flags.hpp"
#include "policy/page_hints.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

// A ring of pages in order of becoming resident. A page freed and made resident again
// before the hand reaches its old entry gets a new entry at the back; its flags count its
// entries so that the hand skips all but the newest. Entries of freed pages are dropped
// lazily, and the ring is compacted when they outnumber half the resident pages, so it
// holds at most 1.5 entries per resident page (plus a constant). Pages declared cold are
// evicted first; the hand requeues hot pages for one lap before it takes them too.
class FifoPolicy final : public Policy {
 public:
  std::string_view name() const override { return "fifo"; }
  void on_resident(uint64_t page) override;
  void on_access(uint64_t) override {}
  void on_gone(uint64_t page) override;
  void scan(size_t want, Scan* out) override;
  void on_hint(uint64_t first_page, uint64_t pages, PageHint hint) override;
  uint64_t resident_pages() const override { return resident_; }
  uint64_t memory_bytes() const override;

 private:
  void compact();
  void compact_if_stale();

  PageFlags flags_;
  PageHints hints_;
  PageRing ring_;
  uint64_t resident_ = 0;
};

}  // namespace extmem::daemon
