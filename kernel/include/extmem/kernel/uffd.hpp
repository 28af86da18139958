// Userfaultfd: RAII wrapper with errno triage. Every ioctl works on the address space the
// userfaultfd was created in, so the daemon drives a client's faults through the
// descriptor the client sent it.
#pragma once

#include <linux/userfaultfd.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

// Maps the page write-protected (Linux 6.4+; older uapi headers lack the name).
inline constexpr uint64_t kContinueModeWp = 1ULL << 1;
// UFFD_FEATURE_POISON: UFFDIO_POISON works (Linux 6.6+; older uapi headers lack the name).
inline constexpr uint64_t kFeaturePoison = 1ULL << 14;

// How an operation that races the application ended. These are ordinary outcomes,
// never failures: the caller decides what each means for the page.
enum class Outcome {
  kDone,            // the operation took effect
  kAlreadyPresent,  // EEXIST: the page is already there (another thread or event won)
  kRetry,           // EAGAIN: the address space changed under us (mremap/munmap in flight)
  kTargetGone,      // ESRCH/ENOENT: the process or the mapping is gone
  kNoPage,          // UFFDIO_CONTINUE's EFAULT: the file has no page there (punched)
};

// How far a UFFDIO_COPY of several pages got: the kernel copies page by page and stops
// at the first page it cannot fill.
// What a multi-page UFFDIO_COPY or UFFDIO_CONTINUE did.
struct FillResult {
  // kDone when all of the range was filled. After a partial fill kRetry: the kernel does
  // not say why the next page failed.
  Outcome outcome;
  size_t filled;  // bytes from the start on that were mapped (and their waiters woken)
};

// The triaged outcome of errno `err`, or false when it is a real failure.
bool triage_errno(int err, Outcome* outcome) noexcept;
const char* outcome_name(Outcome outcome) noexcept;

class Userfaultfd {
 public:
  // A userfaultfd of the calling process, by the userfaultfd(2) system call.
  static Result<Userfaultfd> create(int flags) noexcept;
  // A userfaultfd of the calling process from an open /dev/userfaultfd descriptor.
  static Result<Userfaultfd> create_from_device(int device_fd, int flags) noexcept;
  // Takes ownership of a descriptor received from another process. Checks that it is a
  // userfaultfd; which address space it belongs to is checked by the caller.
  static Result<Userfaultfd> adopt(UniqueFd fd) noexcept;

  int fd() const noexcept { return fd_.get(); }
  int release() noexcept { return fd_.release(); }

  // UFFDIO_API. Returns the features the kernel granted.
  Result<uint64_t> api(uint64_t features) noexcept;
  // UFFDIO_REGISTER; returns the ioctls allowed on the range.
  Result<uint64_t> register_range(uintptr_t start, size_t len, uint64_t modes) noexcept;
  Result<Outcome> unregister_range(uintptr_t start, size_t len) noexcept;
  // UFFDIO_COPY: fills [dst, dst+len) from src and wakes waiters unless DONTWAKE.
  Result<Outcome> copy(uintptr_t dst, const void* src, size_t len, uint64_t mode) noexcept;
  // UFFDIO_COPY of several pages, reporting how many were filled when not all were.
  Result<FillResult> copy_pages(uintptr_t dst, const void* src, size_t len, uint64_t mode) noexcept;
  // UFFDIO_CONTINUE: maps pages already in the page cache; kNoPage when the file has
  // none at the first page (the application punched it after it was filled).
  Result<Outcome> continue_range(uintptr_t start, size_t len, uint64_t mode) noexcept;
  // UFFDIO_CONTINUE of several pages, reporting how many were mapped when not all were
  // (the first page already mapped stops it).
  Result<FillResult> continue_pages(uintptr_t start, size_t len, uint64_t mode) noexcept;
  Result<Outcome> write_protect(uintptr_t start, size_t len, bool protect, bool dont_wake) noexcept;
  Result<Outcome> wake(uintptr_t start, size_t len) noexcept;
  // UFFDIO_POISON: the range raises SIGBUS when touched, as memory the kernel could not
  // read back does; wakes the waiters, which then get the signal.
  Result<Outcome> poison(uintptr_t start, size_t len) noexcept;
  // Reads pending messages; an empty span means none are pending (EAGAIN).
  Result<size_t> read_events(std::span<uffd_msg> out) noexcept;

 private:
  explicit Userfaultfd(UniqueFd fd) noexcept : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace extmem::kernel
