#include "extmem/kernel/pidfd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

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

Result<UniqueFd> Pidfd::take_fd(int target_fd) const noexcept {
  long fd = syscall(SYS_pidfd_getfd, this->fd(), target_fd, 0);
  if (fd < 0) return Error::from_errno("pidfd_getfd(%d, fd %d)", pid_, target_fd);
  return UniqueFd(static_cast<int>(fd));
}

Result<int> Pidfd::find_fd(dev_t dev, ino_t ino) const noexcept {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid_);
  DIR* dir = opendir(path);
  if (dir == nullptr) return Error::from_errno("open %s", path);
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long n = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || end == entry->d_name) continue;
    struct stat st;
    if (fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 && st.st_dev == dev && st.st_ino == ino) {
      found = static_cast<int>(n);
      break;
    }
  }
  closedir(dir);
  if (found < 0)
    return Error::make(ENOENT, "process %d holds no descriptor of inode %lu", pid_,
                       static_cast<unsigned long>(ino));
  return found;
}

Result<uint64_t> process_start_time(pid_t pid) noexcept {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("open %s", path);
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return Error::from_errno("read %s", path);
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and parentheses: fields resume after the
  // last ')'.
  const char* p = strrchr(buf, ')');
  unsigned long long start = 0;
  if (p == nullptr ||
      sscanf(p + 1,
             " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
             &start) != 1) {
    return Error::make(EBADMSG, "cannot parse %s", path);
  }
  return static_cast<uint64_t>(start);
}

bool Pidfd::exited() const noexcept {
  pollfd p = {fd(), POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

}  // namespace extmem::kernel
