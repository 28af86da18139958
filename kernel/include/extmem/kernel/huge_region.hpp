// Private anonymous memory in 2 MiB-aligned transparent huge pages, for I/O buffers: a
// buffer inside one huge page is physically contiguous, so an O_DIRECT request for it is
// one segment. Buffers of 4 KiB pages are one segment per page, and a request of more
// pages than the device's max_segments (254 for virtio-blk here) is split, a 1 MiB read
// into two requests that fill its queue.
#pragma once

#include <cstddef>

#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

class HugeRegion {
 public:
  static constexpr size_t kHugePageSize = size_t{2} << 20;

  HugeRegion() = default;
  // `bytes`, a multiple of kHugePageSize, populated. Where transparent huge pages are
  // disabled it is plain memory (huge() is false); it works the same, only less well.
  static Result<HugeRegion> create(size_t bytes) noexcept;
  HugeRegion(HugeRegion&& other) noexcept;
  HugeRegion& operator=(HugeRegion&& other) noexcept;
  HugeRegion(const HugeRegion&) = delete;
  HugeRegion& operator=(const HugeRegion&) = delete;
  ~HugeRegion();

  unsigned char* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  // Whether the kernel took the advice to back it with huge pages.
  bool huge() const noexcept { return huge_; }

 private:
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
  bool huge_ = false;
};

}  // namespace extmem::kernel
