// SwapFile: the file or block device evicted pages are written to, opened O_DIRECT so the
// daemon never writes through the page cache (that would spend the very memory it is
// reclaiming). O_DIRECT means every buffer, length and offset used with fd() must be a
// multiple of 4096: allocate buffers with aligned_alloc(4096, ...) or mmap. Do not count
// on the kernel to catch a mistake: ext4 fails misaligned writes with EINVAL, but a
// misaligned read of a range never written succeeds (it is zero-filled without I/O).
//
// fallocate leaves a file's blocks "unwritten" until first written, and on ext4 that first
// write costs about twice a rewrite (measured: 26k vs 50k 4 KiB IOPS at QD32), so a fresh
// swap file is slower until it has been filled once.
#pragma once

#include <cstdint>
#include <string>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

class SwapFile {
 public:
  static constexpr uint64_t kMinSize = uint64_t{2} << 20;

  // A regular file is created (mode 0600) when missing and create_size > 0, grown to
  // create_size when smaller, and fully allocated with fallocate so writes into it never
  // fail with ENOSPC; a larger existing file is used whole. create_size == 0: it must
  // exist. A block device is used whole, opened O_EXCL (so a mounted or otherwise
  // claimed device is refused with EBUSY); a create_size larger than it is an error, and
  // so is a logical block size that does not divide 4096.
  // Either way size() is rounded down to a multiple of 4096 and must be at least 2 MiB.
  // A regular file is locked (flock) against a second daemon, and refused on tmpfs
  // (memory) or on a filesystem without O_DIRECT.
  static Result<SwapFile> open(const char* path, uint64_t create_size) noexcept;

  int fd() const noexcept { return fd_.get(); }
  uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }
  bool is_block_device() const noexcept { return block_device_; }

 private:
  SwapFile(UniqueFd fd, uint64_t size, std::string path, bool block_device) noexcept
      : fd_(std::move(fd)), size_(size), path_(std::move(path)), block_device_(block_device) {}

  UniqueFd fd_;
  uint64_t size_ = 0;
  std::string path_;
  bool block_device_ = false;
};

}  // namespace extmem::kernel
