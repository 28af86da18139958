// Memfd: the shmem file that backs a client's arena. The daemon frees and pre-allocates
// its pages; the application only ever sees them through its mapping.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

class Memfd {
 public:
  static Result<Memfd> create(const char* name, unsigned flags) noexcept;
  // Takes ownership of a received descriptor after checking it is a memfd.
  static Result<Memfd> adopt(UniqueFd fd) noexcept;

  int fd() const noexcept { return fd_.get(); }
  int release() noexcept { return fd_.release(); }
  Result<void> truncate(size_t size) noexcept;
  Result<size_t> size() const noexcept;
  // (device, inode) identify the file in /proc/PID/maps.
  Result<void> identity(dev_t* dev, ino_t* ino) const noexcept;
  // Allocates zeroed pages where there are holes; existing pages are kept.
  Result<void> allocate(uint64_t offset, uint64_t len) noexcept;
  // Frees the pages and unmaps them from every process that maps them.
  Result<void> punch_hole(uint64_t offset, uint64_t len) noexcept;
  Result<size_t> read_at(void* buf, size_t len, uint64_t offset) const noexcept;
  // Writes through the file: the pages enter the page cache without being mapped anywhere.
  Result<size_t> write_at(const void* buf, size_t len, uint64_t offset) noexcept;
  // The first offset >= `offset` with data (SEEK_DATA) or in a hole (SEEK_HOLE); the
  // file's size when there is none.
  Result<uint64_t> next_data(uint64_t offset) const noexcept;
  Result<uint64_t> next_hole(uint64_t offset) const noexcept;
  // F_ADD_SEALS / F_GET_SEALS (the memfd must allow sealing).
  Result<void> add_seals(unsigned seals) noexcept;
  Result<unsigned> seals() const noexcept;

 private:
  explicit Memfd(UniqueFd fd) noexcept : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// A shared mapping of a whole file, unmapped at destruction.
class SharedMapping {
 public:
  SharedMapping() = default;
  // Maps `size` bytes of `fd` read-write and shared. `dontfork`: a fork() child does not
  // inherit it.
  static Result<SharedMapping> map(int fd, size_t size, bool dontfork) noexcept;
  SharedMapping(SharedMapping&& other) noexcept;
  SharedMapping& operator=(SharedMapping&& other) noexcept;
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping();

  void* address() const noexcept { return address_; }
  size_t size() const noexcept { return size_; }
  // Gives up ownership: the mapping stays for the process's lifetime.
  void* release() noexcept {
    size_ = 0;
    return std::exchange(address_, nullptr);
  }

 private:
  void* address_ = nullptr;
  size_t size_ = 0;
};

}  // namespace extmem::kernel
