// Pidfd: a stable handle on a client process. Readable (POLLIN) once the process exits.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <span>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

class Pidfd {
 public:
  static Result<Pidfd> open(pid_t pid) noexcept;
  // The pidfd of a connected Unix socket's peer (SO_PEERPIDFD), immune to pid reuse;
  // falls back to pidfd_open on kernels without it.
  static Result<Pidfd> of_socket_peer(int socket_fd, pid_t pid) noexcept;

  int fd() const noexcept { return fd_.get(); }
  pid_t pid() const noexcept { return pid_; }
  // True once the process has exited (ESRCH is an outcome, not an error).
  bool exited() const noexcept;
  // process_madvise(2) on the process's ranges (at most IOV_MAX per call). Returns the
  // bytes advised; ESRCH (the process exited) yields 0.
  Result<size_t> madvise(std::span<const iovec> ranges, int advice) const noexcept;
  // A duplicate of the process's descriptor `target_fd` (pidfd_getfd(2)).
  Result<UniqueFd> take_fd(int target_fd) const noexcept;
  // The process's descriptor that refers to the file (dev, ino), found in /proc/PID/fd;
  // ENOENT when it has none.
  Result<int> find_fd(dev_t dev, ino_t ino) const noexcept;

 private:
  Pidfd(UniqueFd fd, pid_t pid) noexcept : fd_(std::move(fd)), pid_(pid) {}
  UniqueFd fd_;
  pid_t pid_ = 0;
};

// When the process started (/proc/PID/stat field 22, clock ticks since boot): with the
// pid, it names one process for good, even after the pid is reused.
Result<uint64_t> process_start_time(pid_t pid) noexcept;

}  // namespace extmem::kernel
