// CLOCK over an active and an inactive list, the LRU approximation Linux uses, fed by the
// mechanism's reset/access protocol (see Policy::Scan::reset).
#pragma once

#include "policy/page_flags.hpp"
#include "policy/page_hints.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

// Every resident page has exactly one entry, in the inactive or the active ring, and is in
// one of three states: new (resident, never reset: its first touch counts as an access),
// reset (reset and not accessed since) or accessed (accessed since its last reset).
//
// New pages enter the inactive ring. The inactive hand evicts reset pages; resets new
// pages and requeues them, a second chance that keeps pages touched once (a sequential
// scan) from displacing pages used twice; resets accessed pages and promotes them to the
// active ring. Pages read ahead enter it as reset pages: a read-ahead stream's pages are
// used once, and a reset would cost an unmap for each page of every pass; one that is
// used again faults back and then gets its second chance. While the inactive ring holds fewer than
// half as many pages as the active one, so the active ring keeps at most about 2/3 of the pages,
// the active hand runs one step per inactive step: it demotes reset pages to the back of the
// inactive ring (where an access still saves them) and resets and requeues the others.
//
// Heat: a reset costs the application a minor fault (a daemon round trip) on its next
// access, so the active hand resets a page that keeps being used less and less often. An
// active page has a heat of 0 to max_heat (kMaxHeat by default; 0 is plain CLOCK) and is
// reset only on its due laps of the active hand, one in 2^heat (staggered by 2 MiB chunk);
// on the other laps an accessed page is requeued as it is. A page found accessed on a due
// lap gains heat, up to max_heat; a page found reset on any lap (not used in the lap after
// its reset) is demoted with heat 0, as in plain CLOCK. So a page that goes cold is reset
// within about 2^max_heat laps (laps are counted in ring sizes) and demoted on the
// lap after.
//
// In a scan each hand visits each entry its ring held when the scan began at most once, so
// a page is never judged again before its reset could show an access. Once the inactive
// hand has visited all its entries the active hand keeps going, evicting the pages it
// would demote. If that finds no victim, because every page was accessed, the oldest page
// of the inactive ring (else of the active ring) is evicted anyway, so reclaim always
// progresses. A scan asks for at most 4 * want + 1 resets and passes at most 4 * want hot
// pages without a reset, so it costs O(want) steps of O(1) each, plus the stale entries it
// drops.
//
// on_gone only marks the page: hands drop the stale entry when they meet it. A page made
// resident again before that reuses its entry, and the rings are compacted when stale
// entries outnumber half the resident pages, so they hold at most 1.5 entries per
// resident page (plus a constant) and compaction costs O(1) amortized per on_gone.
// Hints: pages declared cold are evicted before the hands move, their entries left
// stale as for pages gone. Hot pages are passed over by both hands (requeued as they
// are) and by the forced eviction, which takes a hot page only when nothing else is left.
//
// Memory: 4 bits per page of the 512-page chunks in use (ring, state and heat packed in
// one of 16 codes) plus 4 to 6 bytes per resident page of rings.
class ClockPolicy final : public Policy {
 public:
  // The largest heat: a page used on every lap is reset once in 2^kMaxHeat laps.
  static constexpr unsigned kMaxHeat = 4;
  explicit ClockPolicy(unsigned max_heat = kMaxHeat);

  std::string_view name() const override { return "clock"; }
  void on_resident(uint64_t page) override;
  void on_read_ahead(uint64_t page) override;
  void on_access(uint64_t page) override;
  void on_gone(uint64_t page) override;
  void scan(size_t want, Scan* out) override;
  void on_hint(uint64_t first_page, uint64_t pages, PageHint hint) override;
  uint64_t resident_pages() const override { return inactive_pages_ + active_pages_; }
  uint64_t memory_bytes() const override;
  // Pages hinted cold and not evicted yet (an upper bound: some may have gone since).
  size_t cold_pending() const { return hints_.cold.size(); }
  bool hinted_hot(uint64_t page) const { return hints_.any_hot() && hints_.hot(page); }

 private:
  // One step of each hand. With `evict_cold` the active hand evicts the pages it would
  // demote. age_active returns whether it passed an accessed page without a reset.
  bool age_active(bool evict_cold, Scan* out);
  void age_inactive(Scan* out);
  void force_victim(Scan* out);
  void evict(PageFlags::Handle h, bool active, Scan* out);
  // Whether the active hand resets an accessed page of this heat on the current lap.
  bool due(uint64_t page, unsigned heat) const;
  void compact();
  void compact_if_stale();
  void take_cold(size_t want, Scan* out);
  bool hot(PageFlags::Handle h) const { return hints_.any_hot() && hints_.hot(flags_.page(h)); }

  unsigned max_heat_;
  PageFlags flags_;
  PageHints hints_;
  PageRing inactive_;
  PageRing active_;
  uint64_t inactive_pages_ = 0;  // resident pages with an entry in inactive_
  uint64_t active_pages_ = 0;
  uint64_t active_laps_ = 0;      // laps of the active hand, counted in ring sizes
  uint64_t active_lap_left_ = 0;  // steps left in the current lap
};

}  // namespace extmem::daemon
