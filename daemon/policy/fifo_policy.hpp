// FIFO: evicts pages in the order they became resident, ignoring accesses. The baseline
// other policies are measured against.
#pragma once

#include "policy/page_flags.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

// A ring of pages in order of becoming resident. A page freed and made resident again
// before the hand reaches its old entry gets a new entry at the back; its flags count its
// entries so that the hand skips all but the newest. Entries of freed pages are dropped
// lazily, and the ring is compacted when they outnumber half the resident pages, so it
// holds at most 1.5 entries per resident page (plus a constant).
class FifoPolicy final : public Policy {
 public:
  std::string_view name() const override { return "fifo"; }
  void on_resident(uint64_t page) override;
  void on_access(uint64_t) override {}
  void on_gone(uint64_t page) override;
  void scan(size_t want, Scan* out) override;
  uint64_t resident_pages() const override { return resident_; }
  uint64_t memory_bytes() const override;

 private:
  void compact();

  PageFlags flags_;
  PageRing ring_;
  uint64_t resident_ = 0;
};

}  // namespace extmem::daemon
