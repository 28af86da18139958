// Per-page state for policies: four bits for each page of a sparse set of arena pages, and
// 32-bit handles naming those pages, so a policy's rings cost 4 bytes per entry even in
// arenas of more than 2^32 pages.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace extmem::daemon {

// What a malloc of `bytes` takes, as glibc rounds it: an 8-byte header, 16-byte granules.
constexpr uint64_t allocated(uint64_t bytes) {
  return std::max<uint64_t>(32, (bytes + 23) & ~15);
}

// Flags are 0 until set. Pages are grouped in chunks of 512 (as in the page table),
// allocated on first use and freed as soon as all their flags are 0 again, so memory
// follows the pages in use rather than the arena's size. A handle is (slot << 9) | offset,
// where slot numbers the live chunks densely; it stays valid while its chunk holds a
// nonzero flag, which is why policies keep a page's flags nonzero while a ring names it.
class PageFlags {
 public:
  using Handle = uint32_t;
  static constexpr unsigned kChunkShift = 9;
  static constexpr uint64_t kChunkPages = uint64_t{1} << kChunkShift;

  // The handle of `page`, allocating its chunk. Give the page nonzero flags before
  // setting any other page's flags to 0, or the new chunk may be freed under the handle.
  Handle add(uint64_t page) {
    if (const auto h = find(page)) return *h;
    if (free_slots_.empty()) {
      // 2^23 chunks are 2^32 tracked pages (16 TiB): far beyond any client's DRAM.
      if (by_slot_.size() == kMaxChunks) throw std::length_error("PageFlags: too many chunks");
      free_slots_.push_back(static_cast<uint32_t>(by_slot_.size()));
      by_slot_.push_back(nullptr);
    }
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    Node& node = *chunks_.try_emplace(page >> kChunkShift).first;
    node.second.slot = slot;
    by_slot_[slot] = &node;
    return make_handle(slot, page);
  }

  // The handle of `page` if its chunk exists (the page's own flags may be 0).
  std::optional<Handle> find(uint64_t page) const {
    const auto it = chunks_.find(page >> kChunkShift);
    if (it == chunks_.end()) return std::nullopt;
    return make_handle(it->second.slot, page);
  }

  uint8_t get(Handle h) const {
    const Chunk& c = by_slot_[h >> kChunkShift]->second;
    const uint32_t offset = h & kOffsetMask;
    return static_cast<uint8_t>((c.nibbles[offset / 2] >> shift_of(offset)) & 0xF);
  }

  // Setting the last nonzero flags of a chunk to 0 frees the chunk: `h` and every other
  // handle into it become invalid.
  void set(Handle h, uint8_t flags) {
    const uint32_t slot = h >> kChunkShift;
    Node& node = *by_slot_[slot];
    Chunk& c = node.second;
    const uint32_t offset = h & kOffsetMask;
    uint8_t& byte = c.nibbles[offset / 2];
    const unsigned shift = shift_of(offset);
    const bool was_set = ((byte >> shift) & 0xF) != 0;
    byte = static_cast<uint8_t>((byte & ~(0xF << shift)) | ((flags & 0xF) << shift));
    if (was_set == ((flags & 0xF) != 0)) return;
    if (!was_set) {
      ++c.nonzero;
      return;
    }
    if (--c.nonzero > 0) return;
    const uint64_t index = node.first;  // erase() must not read the key it destroys
    by_slot_[slot] = nullptr;
    free_slots_.push_back(slot);
    chunks_.erase(index);
  }

  uint64_t page(Handle h) const {
    return (by_slot_[h >> kChunkShift]->first << kChunkShift) | (h & kOffsetMask);
  }

  uint64_t memory_bytes() const {
    // A hash node holds a next pointer and the (index, chunk) pair.
    return chunks_.size() * allocated(sizeof(void*) + sizeof(Node)) +
           chunks_.bucket_count() * sizeof(void*) + by_slot_.capacity() * sizeof(Node*) +
           free_slots_.capacity() * sizeof(uint32_t);
  }

 private:
  static constexpr uint32_t kOffsetMask = kChunkPages - 1;
  static constexpr uint64_t kMaxChunks = uint64_t{1} << (32 - kChunkShift);

  struct Chunk {
    uint32_t slot = 0;
    uint32_t nonzero = 0;  // pages whose flags are not 0
    std::array<uint8_t, kChunkPages / 2> nibbles{};
  };
  // Chunks live in the hash nodes, which stay put; the key is page >> kChunkShift.
  using Node = std::pair<const uint64_t, Chunk>;

  static Handle make_handle(uint32_t slot, uint64_t page) {
    return (slot << kChunkShift) | static_cast<uint32_t>(page & kOffsetMask);
  }
  static unsigned shift_of(uint32_t offset) { return (offset & 1) * 4; }

  std::unordered_map<uint64_t, Chunk> chunks_;
  std::vector<Node*> by_slot_;  // null for free slots
  std::vector<uint32_t> free_slots_;
};

// A FIFO of pages by handle.
using PageRing = std::deque<PageFlags::Handle>;

// What a ring allocates, following libstdc++'s deque: 512-byte blocks and a map of block
// pointers kept at about twice the blocks in use.
inline uint64_t ring_bytes(const PageRing& ring) {
  constexpr uint64_t kBlockBytes = 512;
  constexpr uint64_t kPerBlock = kBlockBytes / sizeof(PageFlags::Handle);
  const uint64_t blocks = ring.size() / kPerBlock + 1;
  return blocks * (allocated(kBlockBytes) + 2 * sizeof(void*));
}

}  // namespace extmem::daemon
