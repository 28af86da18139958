// Window sizing like the kernel's readahead: per faulting thread, the window doubles while
// faults continue where the previous read ended and halves when they land elsewhere. Pure
// logic; the fault handler clamps the window to what may be read (evicted neighbours of
// the same chunk, the client's room) and reports back. The same rule sizes the fault-around
// of minor faults, where "read" means mapped.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>

namespace extmem::daemon {

// What the application advised about how a range will be read back (extmem_advise,
// madvise SEQUENTIAL/RANDOM).
enum class AccessPattern : uint8_t { kNormal, kSequential, kRandom };

// The advised patterns of page ranges; later advice replaces earlier advice where they
// overlap. At most kMaxRanges ranges: advice beyond that is ignored.
class RangeAdvice {
 public:
  static constexpr size_t kMaxRanges = 4096;
  void set(uint64_t first, uint64_t pages, AccessPattern pattern);
  AccessPattern at(uint64_t page) const;
  size_t ranges() const { return ranges_.size(); }

 private:
  struct Range {
    uint64_t end;
    AccessPattern pattern;
  };
  std::map<uint64_t, Range> ranges_;  // by first page; disjoint
};

class Readahead {
 public:
  static constexpr uint64_t kMaxWindow = 256;  // pages (1 MiB)
  // Threads followed at once; the least recently faulting one is forgotten first.
  static constexpr size_t kStreams = 8;

  struct Decision {
    uint64_t window;  // pages to read from the faulting page on, at least 1
    // Prefetched pages of this thread's previous read that it has walked over: it now
    // faults at or just past their end.
    uint64_t hits;
  };

  // A major fault of thread `tid` (0 when unknown) at `page`. Advice overrides the
  // window: kRandom reads the page alone, kSequential the largest window at once.
  Decision on_fault(uint32_t tid, uint64_t page, AccessPattern pattern = AccessPattern::kNormal);
  // What the fault read: [page, page+pages), page being the faulting page.
  void on_read(uint32_t tid, uint64_t page, uint64_t pages);

 private:
  struct Stream {
    uint32_t tid = 0;
    bool used = false;
    uint64_t last_use = 0;
    uint64_t next = 0;        // first page after the last read; 0: none yet
    uint64_t window = 1;      // the window granted for the last fault
    uint64_t prefetched = 0;  // pages the last read brought beyond its faulting page
  };
  Stream& stream(uint32_t tid);

  std::array<Stream, kStreams> streams_;
  uint64_t clock_ = 0;
};

}  // namespace extmem::daemon
