#include "client/page_table.hpp"

#include <algorithm>

#include "client/swap_record.hpp"

namespace extmem::daemon {

namespace {

bool in_memory(PageState s) {
  return is_resident(s) || s == PageState::kEvicting;
}

}  // namespace

PageTable::PageTable(uint64_t pages)
    : pages_(pages), directories_((pages + kDirectoryPages - 1) / kDirectoryPages) {}

const PageTable::Chunk* PageTable::find_chunk(uint64_t page) const {
  const auto& d = directories_[page / kDirectoryPages];
  return d ? d->chunk[page / kChunkPages % kDirectoryChunks].get() : nullptr;
}

PageTable::Chunk* PageTable::chunk(uint64_t page, bool create) {
  auto& d = directories_[page / kDirectoryPages];
  if (!d) {
    if (!create) return nullptr;
    d = std::make_unique<Directory>();
    ++allocated_directories_;
  }
  auto& c = d->chunk[page / kChunkPages % kDirectoryChunks];
  if (!c && create) {
    c = std::make_unique<Chunk>();
    ++d->chunks;
    ++allocated_chunks_;
  }
  return c.get();
}

void PageTable::maybe_free(uint64_t page) {
  auto& d = directories_[page / kDirectoryPages];
  if (!d) return;
  auto& c = d->chunk[page / kChunkPages % kDirectoryChunks];
  if (c && c->nonempty == 0 && c->slots_held == 0) {
    c.reset();
    --allocated_chunks_;
    if (--d->chunks == 0) {
      d.reset();
      --allocated_directories_;
    }
  }
}

PageState PageTable::state(uint64_t page) const {
  const Chunk* c = find_chunk(page);
  return c ? c->states[page % kChunkPages] : PageState::kEmpty;
}

void PageTable::set_state(uint64_t page, PageState state) {
  Chunk* c = chunk(page, state != PageState::kEmpty);
  if (c == nullptr) return;
  PageState& entry = c->states[page % kChunkPages];
  PageState old = entry;
  if (old == state) return;
  resident_ += in_memory(state) - in_memory(old);
  swapped_ += (state == PageState::kEvicted) - (old == PageState::kEvicted);
  if (old == PageState::kEmpty) ++c->nonempty;
  if (state == PageState::kEmpty) --c->nonempty;
  if (record_ != nullptr && (old == PageState::kEvicted) != (state == PageState::kEvicted)) {
    record_->set_in_swap(page, state == PageState::kEvicted);
  }
  entry = state;
  if (state == PageState::kEmpty) maybe_free(page);
}

void PageTable::record_in_swap(uint64_t page, bool in_swap) {
  if (record_ != nullptr) record_->set_in_swap(page, in_swap);
}

uint32_t PageTable::cluster(uint64_t page) const {
  const Chunk* c = find_chunk(page);
  return c ? c->cluster : kNoCluster;
}

void PageTable::set_cluster(uint64_t page, uint32_t cluster) {
  Chunk* c = chunk(page, cluster != kNoCluster);
  if (c == nullptr) return;
  c->cluster = cluster;
  if (record_ != nullptr) record_->set_cluster(page / kChunkPages, cluster);
  if (cluster == kNoCluster) maybe_free(page);
}

void PageTable::hold_slot(uint64_t page) {
  ++chunk(page, true)->slots_held;
}

uint32_t PageTable::drop_slot(uint64_t page) {
  Chunk* c = chunk(page, false);
  if (c == nullptr || c->slots_held == 0) return 0;
  uint32_t left = --c->slots_held;
  if (left == 0) maybe_free(page);
  return left;
}

void PageTable::clear_range(uint64_t first, uint64_t count) {
  visit_chunks(*this, first, count, [&](Chunk& c, uint64_t from, uint64_t to) {
    for (uint64_t p = from; p < to; ++p) {
      PageState& entry = c.states[p % kChunkPages];
      if (record_ != nullptr && entry == PageState::kEvicted) record_->set_in_swap(p, false);
      resident_ -= in_memory(entry);
      swapped_ -= entry == PageState::kEvicted;
      if (entry != PageState::kEmpty) --c.nonempty;
      entry = PageState::kEmpty;
    }
    maybe_free(from);
  });
}

uint64_t PageTable::memory_bytes() const {
  return directories_.capacity() * sizeof(directories_[0]) +
         allocated_directories_ * sizeof(Directory) + allocated_chunks_ * sizeof(Chunk);
}

}  // namespace extmem::daemon
