#include "client/page_table.hpp"

#include <algorithm>

namespace extmem::daemon {

PageTable::PageTable(uint64_t pages)
    : pages_(pages), chunks_((pages + kChunkPages - 1) / kChunkPages) {}

PageTable::Entry* PageTable::entry(uint64_t page, bool create) {
  auto& chunk = chunks_[page / kChunkPages];
  if (!chunk) {
    if (!create) return nullptr;
    chunk = std::make_unique<Entry[]>(kChunkPages);  // value-initialized: all kEmpty
    ++allocated_chunks_;
  }
  return &chunk[page % kChunkPages];
}

PageState PageTable::state(uint64_t page) const {
  const auto& chunk = chunks_[page / kChunkPages];
  if (!chunk) return PageState::kEmpty;
  return static_cast<PageState>(chunk[page % kChunkPages] & kStateMask);
}

void PageTable::set_state(uint64_t page, PageState state) {
  Entry* e = entry(page, state != PageState::kEmpty);
  if (e == nullptr) return;
  auto old = static_cast<PageState>(*e & kStateMask);
  if (old == PageState::kResident) --resident_;
  if (state == PageState::kResident) ++resident_;
  *e = (*e & ~kStateMask) | static_cast<Entry>(state);
}

uint64_t PageTable::clear_range(uint64_t first, uint64_t count) {
  if (first >= pages_) return 0;
  uint64_t end = first + std::min(count, pages_ - first);
  uint64_t cleared = 0;
  for (uint64_t page = first; page < end;) {
    uint64_t chunk_index = page / kChunkPages;
    uint64_t chunk_end = std::min((chunk_index + 1) * kChunkPages, end);
    auto& chunk = chunks_[chunk_index];
    if (chunk) {
      for (uint64_t p = page; p < chunk_end; ++p) {
        Entry& e = chunk[p % kChunkPages];
        if (static_cast<PageState>(e & kStateMask) == PageState::kResident) ++cleared;
        e = 0;
      }
      uint64_t chunk_limit = std::min((chunk_index + 1) * kChunkPages, pages_);
      if (page % kChunkPages == 0 && chunk_end == chunk_limit) {
        chunk.reset();  // the whole chunk is empty again
        --allocated_chunks_;
      }
    }
    page = chunk_end;
  }
  resident_ -= cleared;
  return cleared;
}

uint64_t PageTable::memory_bytes() const {
  return chunks_.capacity() * sizeof(chunks_[0]) +
         allocated_chunks_ * kChunkPages * sizeof(Entry);
}

}  // namespace extmem::daemon
