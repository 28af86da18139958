// Per-page state of one client's arena, indexed by arena page (memfd offset / 4096).
// Chunks are allocated on first use, so a huge, sparsely used arena costs little.
// One 8-byte entry per page: the state in the low bits, room for a swap slot above them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace extmem::daemon {

enum class PageState : uint8_t {
  kEmpty = 0,     // a hole in the memfd: reads as zero, first touch faults to us
  kResident = 1,  // in the memfd's page cache
};

class PageTable {
 public:
  static constexpr uint64_t kChunkPages = 512;

  explicit PageTable(uint64_t pages);

  uint64_t pages() const { return pages_; }
  PageState state(uint64_t page) const;
  void set_state(uint64_t page, PageState state);
  // Marks [first, first+count) empty; returns how many pages were resident.
  uint64_t clear_range(uint64_t first, uint64_t count);
  uint64_t resident_pages() const { return resident_; }
  // Daemon memory used by this table.
  uint64_t memory_bytes() const;

 private:
  using Entry = uint64_t;
  static constexpr Entry kStateMask = 0x7;

  Entry* entry(uint64_t page, bool create);

  uint64_t pages_;
  uint64_t resident_ = 0;
  uint64_t allocated_chunks_ = 0;
  std::vector<std::unique_ptr<Entry[]>> chunks_;
};

}  // namespace extmem::daemon
