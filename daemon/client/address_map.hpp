// Where a client's arena is mapped in its address space. Starts as one segment (the
// arena); munmap and mremap that bypass the shim (UNMAP/REMAP events) split and move it.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace extmem::daemon {

struct Segment {
  uintptr_t start;  // address in the client
  uint64_t len;
  uint64_t offset;  // arena (memfd) offset of `start`
};

class AddressMap {
 public:
  AddressMap(uintptr_t base, uint64_t len) : segments_{{base, len, 0}} {}
  // As found in the process's maps (a restarted daemon); sorted by address.
  explicit AddressMap(std::vector<Segment> segments) : segments_(std::move(segments)) {}

  // The segment containing addr, or nullptr.
  const Segment* find(uintptr_t addr) const;
  // The address arena offset `offset` is mapped at, or 0 if it is not mapped.
  uintptr_t address_of(uint64_t offset) const;
  // Removes [start, start+len); returns the arena ranges (as segments) that were removed.
  std::vector<Segment> unmap(uintptr_t start, uint64_t len);
  // Moves [from, from+len) to `to` (which the kernel already vacated).
  void remap(uintptr_t from, uintptr_t to, uint64_t len);
  // The parts of [start, start+len) that are mapped arena.
  std::vector<Segment> pieces(uintptr_t start, uint64_t len) const;
  const std::vector<Segment>& segments() const { return segments_; }

 private:
  std::vector<Segment> segments_;
};

}  // namespace extmem::daemon
