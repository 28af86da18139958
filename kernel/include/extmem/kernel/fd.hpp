// UniqueFd: an owned file descriptor.
#pragma once

#include <sys/types.h>

#include <utility>

#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// An eventfd (a counter other processes can be woken through).
Result<UniqueFd> make_eventfd(int flags) noexcept;
// Adds 1 to an eventfd; false (errno set) on failure.
bool signal_eventfd(int fd) noexcept;
// Whether `fd` is an eventfd.
bool is_eventfd(int fd) noexcept;

// The (device, inode) of the file `fd` refers to.
Result<void> file_identity(int fd, dev_t* dev, ino_t* ino) noexcept;

}  // namespace extmem::kernel
