#include "extmem/kernel/huge_region.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <utility>

#include "extmem/kernel/raw_mm.hpp"

namespace extmem::kernel {

Result<HugeRegion> HugeRegion::create(size_t bytes) noexcept {
  if (bytes == 0 || bytes % kHugePageSize != 0) {
    return Error::make(EINVAL, "huge region of %zu bytes: not a multiple of 2 MiB", bytes);
  }
  // Over-allocate by a huge page and trim, so the region starts on a 2 MiB boundary.
  const size_t mapped = bytes + kHugePageSize;
  void* p = raw_mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return Error::from_errno("mmap(%zu bytes)", mapped);
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHugePageSize - 1) & ~(kHugePageSize - 1);
  if (aligned > start) raw_munmap(p, aligned - start);
  if (const uintptr_t tail = start + mapped - (aligned + bytes); tail > 0) {
    raw_munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  }
  HugeRegion region;
  region.data_ = reinterpret_cast<unsigned char*>(aligned);
  region.size_ = bytes;
  // EINVAL: transparent huge pages are not built in or disabled; small pages serve.
  region.huge_ = raw_madvise(region.data_, bytes, MADV_HUGEPAGE) == 0;
  // Populated now, so that the huge pages are taken while memory is plentiful and no I/O
  // pays for their faults. EINVAL: a kernel before 5.14; the pages fault in on first use.
  if (raw_madvise(region.data_, bytes, MADV_POPULATE_WRITE) != 0 && errno != EINVAL) {
    return Error::from_errno("madvise(MADV_POPULATE_WRITE, %zu bytes)", bytes);
  }
  return region;
}

HugeRegion::HugeRegion(HugeRegion&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      huge_(std::exchange(other.huge_, false)) {}

HugeRegion& HugeRegion::operator=(HugeRegion&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) raw_munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    huge_ = std::exchange(other.huge_, false);
  }
  return *this;
}

HugeRegion::~HugeRegion() {
  if (data_ != nullptr) raw_munmap(data_, size_);
}

}  // namespace extmem::kernel
