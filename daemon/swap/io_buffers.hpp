// Page-aligned buffers for swap I/O, from an arena of transparent huge pages kept for the
// daemon's lifetime.
//
// Why an arena: a fresh heap buffer costs its pages twice (glibc gives buffers this large
// back to the kernel when freed, and the next one's pages fault in again while the kernel
// pins them for an O_DIRECT read: a quarter of a paging thread's CPU in sequential reads).
// Why huge pages: a buffer inside one is physically contiguous, so its O_DIRECT request is
// one segment rather than one per 4 KiB page; a 1 MiB read of small pages exceeds
// virtio-blk's 254 segments and goes to the device as two requests (kernel/huge_region.hpp).
//
// Buffers are power-of-two runs of pages, handed out by a buddy allocator, so none of up
// to 2 MiB crosses a huge page. A buffer that does not fit (larger than 2 MiB, or the arena
// is in use) comes from the heap and goes back to it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "extmem/kernel/huge_region.hpp"

namespace extmem::daemon {

class IoBuffers : public std::enable_shared_from_this<IoBuffers> {
 public:
  // A buffer of at least the pages asked for, given back when destroyed (the pool lives as
  // long as its buffers).
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&& other) noexcept;
    Buffer& operator=(Buffer&& other) noexcept;
    ~Buffer();
    unsigned char* data() const { return data_; }
    explicit operator bool() const { return data_ != nullptr; }

   private:
    friend class IoBuffers;
    Buffer(std::shared_ptr<IoBuffers> pool, unsigned char* data, unsigned order)
        : pool_(std::move(pool)), data_(data), order_(order) {}
    void release();

    std::shared_ptr<IoBuffers> pool_;
    unsigned char* data_ = nullptr;
    unsigned order_ = 0;  // 2^order_ pages
  };

  // The largest buffer the arena serves: one huge page.
  static constexpr unsigned kMaxArenaOrder = 9;

  // An arena of `arena_bytes` (rounded down to whole huge pages; 0 for none), mapped at
  // the first take.
  static std::shared_ptr<IoBuffers> create(uint64_t arena_bytes);
  IoBuffers(const IoBuffers&) = delete;
  IoBuffers& operator=(const IoBuffers&) = delete;
  ~IoBuffers() = default;

  // A buffer of `pages` (> 0) pages or more; empty without memory for one.
  Buffer take(uint64_t pages);
  // The arena's size once mapped (0 before, or if it could not be mapped), and its bytes
  // not handed out.
  uint64_t arena_bytes();
  uint64_t arena_free_bytes();

 private:
  explicit IoBuffers(uint64_t arena_bytes);
  // A block of 2^order pages of the arena, or null. Under mu_.
  unsigned char* take_from_arena(unsigned order);
  void give_back(unsigned char* data, unsigned order);
  bool in_arena(const unsigned char* data) const {
    return data >= arena_.data() && data < arena_.data() + arena_.size();
  }

  const uint64_t arena_size_;
  std::mutex mu_;
  kernel::HugeRegion arena_;  // under mu_ until mapped, then fixed
  bool arena_tried_ = false;  // under mu_
  // Free blocks by order, as page offsets into the arena. Under mu_.
  std::vector<std::set<uint32_t>> free_;
};

}  // namespace extmem::daemon
