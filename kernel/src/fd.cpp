#include "extmem/kernel/fd.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace extmem::kernel {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<void> file_identity(int fd, dev_t* dev, ino_t* ino) noexcept {
  struct stat st;
  if (fstat(fd, &st) != 0) return Error::from_errno("fstat(%d)", fd);
  *dev = st.st_dev;
  *ino = st.st_ino;
  return {};
}

}  // namespace extmem::kernel
