#include "extmem/kernel/fd.hpp"

#include <unistd.h>

namespace extmem::kernel {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace extmem::kernel
