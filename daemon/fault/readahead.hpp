// Window sizing like the kernel's readahead: per faulting thread, the window doubles while
// major faults continue where the previous read ended, or when the thread touches a
// read-ahead marker (a prefetch hit), and halves when faults land elsewhere or a marker is
// evicted untouched (a miss). Threads that fault at a constant stride get the next
// strided pages read ahead. Pure logic; the fault handler clamps what it reads (evicted
// pages of the same chunk, the client's room) and reports back. The same rule sizes the
// zero-fill of first touches and the fault-around of minor faults, where "read" means
// filled or mapped.
//
// Sweeps: a thread that jumps to a new place and reads on from there is sweeping a window.
// Once its last kSweepConfirm sweeps each covered most of a kSweepPages window, at one
// alignment, it is taken to sweep such windows: a fault starting its next one reads the
// whole window at once (rather than ramping up through markers), and no read of its
// stream goes past the window's end (where a window that starts inside one 2 MiB chunk
// ends in the next). A sweep left unfinished, or a marker of it evicted untouched, ends
// that until sweeps are confirmed again.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

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

// Read-ahead markers (the kernel's PG_readahead): one page of a read-ahead run is left in
// memory unmapped, so the thread's first touch of it faults (MINOR) and starts the next
// read of its stream before the thread reaches the end of the run. Bounded: at most
// kMaxMarkers at once; no marker is placed beyond that.
class ReadaheadMarkers {
 public:
  static constexpr size_t kMaxMarkers = 4096;
  struct Marker {
    uint32_t tid;        // the stream (faulting thread) whose read placed it
    uint64_t next;       // the first page after that read
    bool dirty = false;  // that read was for a write: the next one maps writable too
  };
  // False (nothing placed) when full.
  bool place(uint64_t page, Marker marker);
  // Removes and returns the marker at `page`, if any.
  std::optional<Marker> take(uint64_t page);
  // Removes the markers of [first, first+count); returns how many.
  uint64_t forget(uint64_t first, uint64_t count);
  bool contains(uint64_t page) const { return markers_.contains(page); }
  size_t size() const { return markers_.size(); }
  bool empty() const { return markers_.empty(); }

 private:
  std::map<uint64_t, Marker> markers_;
};

class Readahead {
 public:
  static constexpr uint64_t kMaxWindow = 256;  // pages (1 MiB)
  // Threads followed at once; the least recently faulting one is forgotten first.
  static constexpr size_t kStreams = 8;
  // Strides (pages between major faults) that are followed: -1 (backward sequential) and
  // 2..kMaxStride either way; +1 is the sequential window's.
  static constexpr int64_t kMaxStride = 512;
  // Faults at one stride that confirm it (two equal steps).
  static constexpr uint32_t kStrideConfirm = 3;
  // Strided pages read ahead per fault: the first after confirmation, and the most.
  static constexpr uint64_t kFirstStrideDepth = 4;
  static constexpr uint64_t kMaxStrideDepth = 64;
  // The windows that sweeps are recognised in (2 MiB), and how many sweeps in a row, each
  // reaching the last quarter of its window, confirm them.
  static constexpr uint64_t kSweepPages = 512;
  static constexpr uint32_t kSweepConfirm = 2;

  struct Decision {
    uint64_t window;  // pages to read from the faulting page on, at least 1
    // Prefetched pages of this thread's previous read that it has walked over: it now
    // faults at or just past their end.
    uint64_t hits;
    // A confirmed stride (0: none): read `stride_pages` pages page+stride, page+2*stride,
    // ... ahead, then report them with on_stride_read.
    int64_t stride = 0;
    uint64_t stride_pages = 0;
    // Reads for this fault end before this page (UINT64_MAX: no such end).
    uint64_t limit = UINT64_MAX;
    // A confirmed sweeper's fault: read every evicted page from it up to `limit` now, then
    // report the reads with on_sweep_read.
    bool sweep = false;
  };

  // A major fault of thread `tid` (0 when unknown) at `page`. Advice overrides the
  // window: kRandom reads the page alone, kSequential the largest window at once.
  Decision on_fault(uint32_t tid, uint64_t page, AccessPattern pattern = AccessPattern::kNormal);
  // What the fault read: [page, page+pages), page being the faulting page.
  void on_read(uint32_t tid, uint64_t page, uint64_t pages);
  // The strided pages after the fault's page that are now in memory or being read: the
  // next fault of a thread that keeps to the stride comes after them.
  void on_stride_read(uint32_t tid, uint64_t pages);

  // What a sweep's fault started: reads up to `end`, the one carrying the sweep's marker
  // from `marked` on (0: none could carry one).
  void on_sweep_read(uint32_t tid, uint64_t marked, uint64_t end);
  // A minor fault of the thread at `page`: it shows how far the thread's sweep has come.
  void on_touch(uint32_t tid, uint64_t page);

  // The thread touched its read-ahead marker at `page`: a prefetch hit. Grows its window
  // and returns the pages to read next, from the marker's `next` on (for a confirmed
  // sweeper, not past limit(tid)).
  uint64_t on_marker_hit(uint32_t tid, uint64_t page);
  // The page the thread's reads stop before: the end of its sweep's window for a
  // confirmed sweeper, else UINT64_MAX.
  uint64_t limit(uint32_t tid) const;
  // What that read (or none) covered: [first, first+pages).
  void on_async_read(uint32_t tid, uint64_t first, uint64_t pages);
  // A marker of the thread's read-ahead was evicted untouched: a miss; halves its window.
  void on_marker_unused(uint32_t tid);
  // Whether the thread's last major fault continued its reads (rather than jumped): its
  // read-ahead may go on past the end of a 2 MiB chunk.
  bool continues(uint32_t tid) const;

 private:
  struct Stream {
    uint32_t tid = 0;
    bool used = false;
    uint64_t last_use = 0;
    uint64_t next = 0;        // first page after the last read; 0: none yet
    uint64_t window = 1;      // the window granted for the last fault
    uint64_t prefetched = 0;  // pages the last read brought beyond its faulting page
    bool continued = false;   // the last major fault was a hit
    // Stride detection: the last major fault, the step candidate, how many faults in a
    // row kept to it, the strided pages read ahead per fault, and how many were at the
    // last fault.
    uint64_t last_fault = 0;
    bool faulted = false;
    int64_t stride = 0;
    uint32_t stride_faults = 0;
    uint64_t stride_depth = 0;
    uint64_t stride_ahead = 0;
    // The current sweep: the first page of its window, the end of the pages it is known
    // to have reached, and the first page of the read that carries its marker (0: none),
    // which a finished sweep reaches. How many sweeps in a row covered their window, at
    // which alignment (first page modulo kSweepPages).
    bool sweeping = false;
    uint64_t sweep_first = 0;
    uint64_t sweep_reach = 0;
    uint64_t sweep_marked = 0;
    uint32_t sweeps = 0;
    uint64_t sweep_phase = 0;
  };
  Stream& stream(uint32_t tid);
  Stream* find(uint32_t tid);
  // Updates s's stride state for a fault at `page` that did not continue its sequential
  // reads.
  static void follow_stride(Stream& s, uint64_t page);
  static bool confirmed(const Stream& s) { return s.sweeps >= kSweepConfirm; }
  // Notes that the thread reached `page`; `jump`: by a fault that did not continue its
  // reads, which starts a new sweep unless `page` is inside the current one.
  static void follow_sweep(Stream& s, uint64_t page, bool jump);

  std::array<Stream, kStreams> streams_;
  uint64_t clock_ = 0;
};

}  // namespace extmem::daemon
