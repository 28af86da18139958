// Per-page state of one client's arena, indexed by arena page (memfd offset / 4096).
// Chunks of 512 pages (2 MiB of arena) are allocated on first use, found through
// directories of 512 chunks (1 GiB) also allocated on first use, so a huge, sparsely used
// arena costs little: one byte per page plus a small chunk header. Each chunk also
// records the swap cluster its evicted pages use, so slot = cluster * 512 + page % 512
// and neighbouring pages are neighbours on the device.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace extmem::daemon {

class SwapRecord;

enum class PageState : uint8_t {
  kEmpty = 0,     // a hole in the memfd: reads as zero, first touch faults to us
  kResident = 1,  // in the memfd's page cache
  kEvicting = 2,  // being written to swap (write-protected; still in memory)
  kEvicted = 3,   // a hole in the memfd; the data is in the chunk's swap cluster
  // In memory, write-protected, and identical to its swap slot (restored and not written
  // since): evicted with no write. A write fault makes it kResident.
  kResidentClean = 4,
};

// Resident and mapped for the application, dirty or clean: what a policy tracks.
inline bool is_resident(PageState s) {
  return s == PageState::kResident || s == PageState::kResidentClean;
}

class PageTable {
 public:
  static constexpr uint64_t kChunkPages = 512;
  static constexpr uint32_t kNoCluster = UINT32_MAX;

  explicit PageTable(uint64_t pages);

  // From now on, which pages are in swap and each chunk's cluster are also written to
  // `record`, which outlives the daemon (see swap_record.hpp). Null: not kept.
  void attach_record(SwapRecord* record) { record_ = record; }
  // Marks a page in swap in the record ahead of its state: eviction does it before it
  // punches the page out of memory, which is when the record must already say so.
  void record_in_swap(uint64_t page, bool in_swap);

  uint64_t pages() const { return pages_; }
  PageState state(uint64_t page) const;
  void set_state(uint64_t page, PageState state);

  // Pages in memory (resident or being evicted) and pages in swap.
  uint64_t resident_pages() const { return resident_; }
  uint64_t swapped_pages() const { return swapped_; }

  // The swap cluster of the page's chunk, or kNoCluster.
  uint32_t cluster(uint64_t page) const;
  void set_cluster(uint64_t page, uint32_t cluster);
  // Slots of the chunk's cluster in use (by evicted pages and evictions in flight).
  void hold_slot(uint64_t page);
  // Returns the slots still held in the chunk; at 0 the caller releases the cluster.
  uint32_t drop_slot(uint64_t page);

  // Calls fn(page, state) for every non-empty page in [first, first+count), in order.
  template <class Fn>
  void for_each_nonempty(uint64_t first, uint64_t count, Fn&& fn) const;
  // Marks [first, first+count) empty (slots are the caller's to drop first).
  void clear_range(uint64_t first, uint64_t count);

  // Daemon memory used by this table.
  uint64_t memory_bytes() const;

 private:
  static constexpr uint64_t kDirectoryChunks = 512;
  static constexpr uint64_t kDirectoryPages = kChunkPages * kDirectoryChunks;
  struct Chunk {
    uint32_t cluster = kNoCluster;
    uint16_t slots_held = 0;
    uint16_t nonempty = 0;
    PageState states[kChunkPages] = {};
  };
  struct Directory {
    uint32_t chunks = 0;  // allocated chunks below
    std::unique_ptr<Chunk> chunk[kDirectoryChunks];
  };
  // Calls fn(chunk, from, to) for each non-empty chunk overlapping [first, first+count).
  template <class Self, class Fn>
  static void visit_chunks(Self& self, uint64_t first, uint64_t count, Fn&& fn);
  const Chunk* find_chunk(uint64_t page) const;
  Chunk* chunk(uint64_t page, bool create);
  void maybe_free(uint64_t page);

  uint64_t pages_;
  SwapRecord* record_ = nullptr;
  uint64_t resident_ = 0;
  uint64_t swapped_ = 0;
  uint64_t allocated_chunks_ = 0;
  uint64_t allocated_directories_ = 0;
  std::vector<std::unique_ptr<Directory>> directories_;
};

template <class Self, class Fn>
void PageTable::visit_chunks(Self& self, uint64_t first, uint64_t count, Fn&& fn) {
  if (first >= self.pages_) return;
  const uint64_t end = first + std::min(count, self.pages_ - first);
  for (uint64_t page = first; page < end;) {
    if (!self.directories_[page / kDirectoryPages]) {  // a whole untouched GiB
      page = std::min((page / kDirectoryPages + 1) * kDirectoryPages, end);
      continue;
    }
    const uint64_t chunk_end = std::min((page / kChunkPages + 1) * kChunkPages, end);
    auto& directory = *self.directories_[page / kDirectoryPages];
    if (auto* c = directory.chunk[page / kChunkPages % kDirectoryChunks].get();
        c != nullptr && c->nonempty > 0) {
      fn(*c, page, chunk_end);
    }
    page = chunk_end;
  }
}

template <class Fn>
void PageTable::for_each_nonempty(uint64_t first, uint64_t count, Fn&& fn) const {
  visit_chunks(*this, first, count, [&](const Chunk& c, uint64_t from, uint64_t to) {
    for (uint64_t p = from; p < to; ++p) {
      PageState s = c.states[p % kChunkPages];
      if (s != PageState::kEmpty) fn(p, s);
    }
  });
}

}  // namespace extmem::daemon
