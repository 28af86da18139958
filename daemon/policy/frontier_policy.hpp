// FRONTIER: for applications that scan large arrays over and over (PageRank, iterative
// solvers) while also touching other pages at random. ExtMem's PageRank policy,
// generalised: it finds the scanning streams in the page numbers it is told about, keeps
// a window of pages around each stream's head (the frontier), evicts pages the streams
// have passed, and leaves every other page to CLOCK.
//
// Streams. A page that becomes resident or is accessed right after the head of a
// candidate stream advances it; kConfirm pages in a row confirm it. A confirmed stream
// advances to any page at most kGap past its head (it skips pages already resident).
// Pages that become resident on a confirmed stream are stream pages; all others go to an
// embedded ClockPolicy. Candidates sit in 256 slots by page region, so a random fault displaces a
// given one with probability 1/256; confirmed streams are displaced only by newly
// confirmed ones, least recently advanced first. Random faults between a stream's steps
// thus rarely make the policy lose it.
//
// Victims. Stream pages enter a FIFO guard of `guard` pages per live stream (at most a
// quarter of the resident pages): the pages just behind each head (and any read ahead of
// it) are kept. Leaving the guard they are
// pushed on a stack of passed pages, and victims are taken from its top: the pages a
// stream passed most recently are needed last when the scan comes round again, so a
// cyclic scan larger than memory keeps its first part resident instead of missing on
// every page as under LRU. Only when no passed page is left does CLOCK choose among the
// other pages (and, last, the oldest guarded page), so randomly used pages outlive
// scanned ones.
//
// Adaptive window. A page that becomes resident less than 4 guards behind a confirmed
// head means the application came back to pages the policy just evicted: the guard
// doubles (up to kMaxGuard). Every kShrinkPeriod stream advances without that, it halves
// (down to kMinGuard, which covers the mechanism's largest read-ahead so that read-ahead
// pages are never the first victims). On a major fault continuing a confirmed stream the
// policy asks the mechanism for its largest read-ahead (readahead_hint).
//
// Random reuse. Evicting a scan's freshest pages is wrong for an array a scan writes and
// the application then reads at random (PageRank's contributions): the random reads
// fault on exactly those pages. So the policy remembers the last `resident` stream pages
// it evicted (ghosts); a ghost made resident again off any stream, and not continued
// within a few faults (as a scan resuming over evicted pages is), is a random refault,
// counted per 512-page chunk. At kDemoteRefaults (counts halve every kShrinkPeriod
// stream advances, so a scan resuming in a chunk now and then does not add up) the
// chunk is demoted: its stream pages go to the CLOCK now and whenever they come back,
// until the application frees a page of it. Streams still pass through demoted chunks
// (and get read-ahead there).
//
// Memory: the embedded CLOCK's, plus 4 bits per page of the 512-page chunks holding
// stream pages or ghosts, 4 bytes per stream page of guard and stack and per ghost (at
// most as many as resident pages), and a small map of chunks with random refaults.
#pragma once

#include <array>
#include <unordered_map>
#include <vector>

#include "policy/clock_policy.hpp"
#include "policy/page_flags.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

class FrontierPolicy final : public Policy {
 public:
  static constexpr uint64_t kGap = 64;  // pages a stream may skip (already resident ones)
  static constexpr uint32_t kConfirm = 4;
  static constexpr size_t kStreams = 8;  // confirmed streams followed at once
  // Slots for unconfirmed ones, by region: a random fault displaces a given candidate
  // with probability 1/kCandidates.
  static constexpr size_t kCandidates = 256;
  static constexpr uint64_t kMinGuard = 512;
  static constexpr uint64_t kMaxGuard = 16384;
  static constexpr uint64_t kShrinkPeriod = uint64_t{1} << 16;
  static constexpr uint64_t kHintPages = 256;
  // Random refaults of ghosts that demote their chunk to the CLOCK.
  static constexpr uint8_t kDemoteRefaults = 4;

  std::string_view name() const override { return "frontier"; }
  void on_resident(uint64_t page) override;
  void on_access(uint64_t page) override;
  void on_gone(uint64_t page) override;
  void scan(size_t want, Scan* out) override;
  uint64_t readahead_hint(uint64_t page) const override;
  // Hinted pages leave the streams for the embedded CLOCK, which keeps hot pages and
  // gives up cold ones first.
  void on_hint(uint64_t first_page, uint64_t pages, PageHint hint) override;
  uint64_t resident_pages() const override { return stream_pages_ + clock_.resident_pages(); }
  uint64_t memory_bytes() const override;

  // For tests and stats: the guard per stream, and the confirmed streams live now.
  uint64_t guard() const { return guard_; }
  size_t live_streams() const;
  // Whether the chunk of `page` was demoted for random reuse.
  bool demoted(uint64_t page) const;

  struct Stream {
    uint64_t head = 0;
    uint64_t last_use = 0;  // observation count at the last advance; 0: slot unused
    uint32_t run = 0;       // advances in a row
  };

 private:
  // Follows `page`; true when it continues a confirmed stream.
  bool observe(uint64_t page);
  void note_behind(uint64_t page);
  void push_guarded(PageFlags::Handle h);
  bool pop_victim(Scan* out);
  // Evicts the oldest guarded page; false when there is none.
  bool pop_guarded(Scan* out);
  // Evicts the newest (else oldest) resident page of `ring`, dropping stale entries on
  // the way; false when it has none.
  bool pop_resident(PageRing& ring, bool newest, Scan* out);
  void compact();
  // Evicts a stream page: forgets it but keeps it as a ghost.
  void remember_evicted(uint64_t page);
  // Settles the pending refaults against the page observed now.
  void settle_refaults(uint64_t page);
  // A ghost came back off any stream: counts towards demoting its chunk.
  void note_random_refault(uint64_t page);
  // Hands the stream pages resident in [first, end) to the embedded CLOCK.
  void move_to_clock(uint64_t first, uint64_t end);
  void decay_refaults();

  ClockPolicy clock_;
  PageFlags flags_;  // stream pages only
  PageRing guarded_;
  PageRing passed_;            // a stack: victims come from the back
  uint64_t stream_pages_ = 0;  // resident stream pages
  std::array<Stream, kStreams> streams_{};
  std::array<Stream, kCandidates> candidates_{};
  uint64_t observations_ = 0;
  uint64_t guard_ = kMinGuard;
  uint64_t advances_since_behind_ = 0;
  uint64_t advances_since_decay_ = 0;
  uint32_t last_run_ = 0;  // the stream run of the page observed last
  // Ghosts made resident off any stream lately: random refaults unless a page continues
  // them within kPending observations (threads of a scan interleave).
  static constexpr uint64_t kNoPage = UINT64_MAX;
  static constexpr size_t kPending = 8;
  struct Refault {
    uint64_t page = kNoPage;
    uint64_t at = 0;  // observation count
  };
  std::array<Refault, kPending> pending_{};
  PageFlags ghosts_;     // kGhostNamed | kGhostEvicted, see the .cpp
  PageRing ghost_ring_;  // oldest ghost first
  // Random refaults per chunk (page >> PageFlags::kChunkShift); kDemoted once demoted.
  std::unordered_map<uint64_t, uint8_t> refaults_;
};

}  // namespace extmem::daemon
