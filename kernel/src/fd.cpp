#include "extmem/kernel/fd.hpp"

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace extmem::kernel {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> make_eventfd(int flags) noexcept {
  int fd = eventfd(0, flags);
  if (fd < 0) return Error::from_errno("eventfd");
  return UniqueFd(fd);
}

bool signal_eventfd(int fd) noexcept {
  const uint64_t one = 1;
  return write(fd, &one, sizeof(one)) == sizeof(one);
}

bool is_eventfd(int fd) noexcept {
  char path[64], target[64] = {};
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return readlink(path, target, sizeof(target) - 1) > 0 &&
         strcmp(target, "anon_inode:[eventfd]") == 0;
}

Result<void> file_identity(int fd, dev_t* dev, ino_t* ino) noexcept {
  struct stat st;
  if (fstat(fd, &st) != 0) return Error::from_errno("fstat(%d)", fd);
  *dev = st.st_dev;
  *ino = st.st_ino;
  return {};
}

}  // namespace extmem::kernel
