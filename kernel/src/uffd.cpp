#include "extmem/kernel/uffd.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace extmem::kernel {

bool triage_errno(int err, Outcome* outcome) noexcept {
  switch (err) {
    case EEXIST:
      *outcome = Outcome::kAlreadyPresent;
      return true;
    case EAGAIN:
      *outcome = Outcome::kRetry;
      return true;
    case ESRCH:
    case ENOENT:
      *outcome = Outcome::kTargetGone;
      return true;
    default:
      return false;
  }
}

const char* outcome_name(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::kDone:
      return "done";
    case Outcome::kAlreadyPresent:
      return "already present";
    case Outcome::kRetry:
      return "retry";
    case Outcome::kTargetGone:
      return "target gone";
    case Outcome::kNoPage:
      return "no page";
  }
  return "?";
}

namespace {

// Runs a resolving ioctl and triages its errno.
template <class Arg>
Result<Outcome> resolve_ioctl(int fd, unsigned long request, Arg* arg, const char* what,
                              uintptr_t addr) noexcept {
  if (ioctl(fd, request, arg) == 0) return Outcome::kDone;
  Outcome outcome;
  if (triage_errno(errno, &outcome)) return outcome;
  return Error::from_errno("%s at %#lx", what, static_cast<unsigned long>(addr));
}

bool is_userfaultfd(int fd) noexcept {
  char path[64];
  char target[64] = {};
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof(target) - 1);
  return n > 0 && strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

}  // namespace

Result<Userfaultfd> Userfaultfd::create(int flags) noexcept {
  long fd = syscall(SYS_userfaultfd, flags);
  if (fd < 0) return Error::from_errno("userfaultfd()");
  return Userfaultfd(UniqueFd(static_cast<int>(fd)));
}

Result<Userfaultfd> Userfaultfd::create_from_device(int device_fd, int flags) noexcept {
  int fd = ioctl(device_fd, USERFAULTFD_IOC_NEW, flags);
  if (fd < 0) return Error::from_errno("USERFAULTFD_IOC_NEW");
  return Userfaultfd(UniqueFd(fd));
}

Result<Userfaultfd> Userfaultfd::adopt(UniqueFd fd) noexcept {
  if (!is_userfaultfd(fd.get())) {
    return Error::make(EBADF, "descriptor %d is not a userfaultfd", fd.get());
  }
  return Userfaultfd(std::move(fd));
}

Result<uint64_t> Userfaultfd::api(uint64_t features) noexcept {
  uffdio_api arg = {};
  arg.api = UFFD_API;
  arg.features = features;
  if (ioctl(fd(), UFFDIO_API, &arg) != 0) {
    return Error::from_errno("UFFDIO_API features %#llx",
                             static_cast<unsigned long long>(features));
  }
  return static_cast<uint64_t>(arg.features);
}

Result<uint64_t> Userfaultfd::register_range(uintptr_t start, size_t len, uint64_t modes) noexcept {
  uffdio_register arg = {};
  arg.range.start = start;
  arg.range.len = len;
  arg.mode = modes;
  if (ioctl(fd(), UFFDIO_REGISTER, &arg) != 0) {
    return Error::from_errno("UFFDIO_REGISTER %#lx+%#zx", static_cast<unsigned long>(start), len);
  }
  return static_cast<uint64_t>(arg.ioctls);
}

Result<Outcome> Userfaultfd::unregister_range(uintptr_t start, size_t len) noexcept {
  uffdio_range arg = {start, len};
  return resolve_ioctl(fd(), UFFDIO_UNREGISTER, &arg, "UFFDIO_UNREGISTER", start);
}

Result<Outcome> Userfaultfd::copy(uintptr_t dst, const void* src, size_t len,
                                  uint64_t mode) noexcept {
  auto copied = copy_pages(dst, src, len, mode);
  if (!copied) return copied.error();
  return copied->outcome;
}

Result<FillResult> Userfaultfd::copy_pages(uintptr_t dst, const void* src, size_t len,
                                           uint64_t mode) noexcept {
  uffdio_copy arg = {};
  arg.dst = dst;
  arg.src = reinterpret_cast<uintptr_t>(src);
  arg.len = len;
  arg.mode = mode;
  if (ioctl(fd(), UFFDIO_COPY, &arg) == 0) return FillResult{Outcome::kDone, len};
  // A partial copy fails with EAGAIN and leaves the bytes copied in `copy`; a copy that
  // filled nothing leaves -errno there.
  if (arg.copy > 0) return FillResult{Outcome::kRetry, static_cast<size_t>(arg.copy)};
  Outcome outcome;
  if (triage_errno(errno, &outcome)) return FillResult{outcome, 0};
  return Error::from_errno("UFFDIO_COPY at %#lx", static_cast<unsigned long>(dst));
}

// UFFDIO_POISON arrived in Linux 6.6; Debian 12's headers predate it.
#ifndef UFFDIO_POISON
struct uffdio_poison {
  struct uffdio_range range;
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

Result<Outcome> Userfaultfd::poison(uintptr_t start, size_t len) noexcept {
  uffdio_poison arg = {};
  arg.range = {start, len};
  return resolve_ioctl(fd(), UFFDIO_POISON, &arg, "UFFDIO_POISON", start);
}

Result<Outcome> Userfaultfd::continue_range(uintptr_t start, size_t len, uint64_t mode) noexcept {
  uffdio_continue arg = {};
  arg.range = {start, len};
  arg.mode = mode;
  if (ioctl(fd(), UFFDIO_CONTINUE, &arg) == 0) return Outcome::kDone;
  if (errno == EFAULT) return Outcome::kNoPage;
  Outcome outcome;
  if (triage_errno(errno, &outcome)) return outcome;
  return Error::from_errno("UFFDIO_CONTINUE at %#lx", static_cast<unsigned long>(start));
}

Result<FillResult> Userfaultfd::continue_pages(uintptr_t start, size_t len,
                                               uint64_t mode) noexcept {
  uffdio_continue arg = {};
  arg.range = {start, len};
  arg.mode = mode;
  if (ioctl(fd(), UFFDIO_CONTINUE, &arg) == 0) return FillResult{Outcome::kDone, len};
  // As UFFDIO_COPY: a partial fill fails with EAGAIN and leaves the bytes in `mapped`.
  if (arg.mapped > 0) return FillResult{Outcome::kRetry, static_cast<size_t>(arg.mapped)};
  Outcome outcome;
  if (triage_errno(errno, &outcome)) return FillResult{outcome, 0};
  return Error::from_errno("UFFDIO_CONTINUE at %#lx", static_cast<unsigned long>(start));
}

Result<Outcome> Userfaultfd::write_protect(uintptr_t start, size_t len, bool protect,
                                           bool dont_wake) noexcept {
  uffdio_writeprotect arg = {};
  arg.range = {start, len};
  arg.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
             (dont_wake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  return resolve_ioctl(fd(), UFFDIO_WRITEPROTECT, &arg, "UFFDIO_WRITEPROTECT", start);
}

Result<Outcome> Userfaultfd::wake(uintptr_t start, size_t len) noexcept {
  uffdio_range arg = {start, len};
  return resolve_ioctl(fd(), UFFDIO_WAKE, &arg, "UFFDIO_WAKE", start);
}

Result<size_t> Userfaultfd::read_events(std::span<uffd_msg> out) noexcept {
  // Never waits, whatever the descriptor's O_NONBLOCK: the flags are shared with the
  // client, which could clear it and then hold the reading fault thread until its next
  // fault. RWF_NOWAIT ignores them; kernels whose userfaultfd does not take it (before
  // read_iter) fail it with EOPNOTSUPP, and O_NONBLOCK is set again before a plain read.
  iovec iov = {out.data(), out.size_bytes()};
  ssize_t n = preadv2(fd(), &iov, 1, -1, RWF_NOWAIT);
  if (n < 0 && errno == EOPNOTSUPP) {
    fcntl(fd(), F_SETFL, O_NONBLOCK);
    n = ::read(fd(), out.data(), out.size_bytes());
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return size_t{0};
    return Error::from_errno("read(userfaultfd)");
  }
  if (n % sizeof(uffd_msg) != 0) {
    return Error::make(EPROTO, "short userfaultfd read of %zd bytes", n);
  }
  return static_cast<size_t>(n) / sizeof(uffd_msg);
}

}  // namespace extmem::kernel
