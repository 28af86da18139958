#include "extmem/kernel/pidfd.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace extmem::kernel {

Result<Pidfd> Pidfd::open(pid_t pid) noexcept {
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return Error::from_errno("pidfd_open(%d)", pid);
  return Pidfd(UniqueFd(static_cast<int>(fd)), pid);
}

Result<Pidfd> Pidfd::of_socket_peer(int socket_fd, pid_t pid) noexcept {
  int fd = -1;
  socklen_t len = sizeof(fd);
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0) {
    return Pidfd(UniqueFd(fd), pid);
  }
  if (errno != ENOPROTOOPT) return Error::from_errno("SO_PEERPIDFD");
  return open(pid);
}

Result<size_t> Pidfd::madvise(std::span<const iovec> ranges, int advice) const noexcept {
  long n = syscall(SYS_process_madvise, fd(), ranges.data(), ranges.size(), advice, 0);
  if (n < 0) {
    if (errno == ESRCH) return size_t{0};
    return Error::from_errno("process_madvise(%d, advice %d)", pid_, advice);
  }
  return static_cast<size_t>(n);
}

bool Pidfd::exited() const noexcept {
  pollfd p = {fd(), POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

}  // namespace extmem::kernel
