// IoRing: an io_uring used synchronously, one batch at a time, by the thread that owns it
// (each daemon thread has its own ring, so a ring has no lock), or asynchronously: any
// thread submits (one at a time: the caller locks) and one thread reaps the completions.
//
// No registered files or fixed buffers: on the project's machines they made no measurable
// difference to 4 KiB O_DIRECT reads at QD1 or QD32 (the device, not the submission path,
// is the limit), and neither did COOP_TASKRUN or SINGLE_ISSUER|DEFER_TASKRUN.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "extmem/kernel/result.hpp"

struct io_uring;

namespace extmem::kernel {

// One read or write. On an O_DIRECT descriptor (a SwapFile) buf, len and offset must all
// be multiples of 4096; the kernel fails most misaligned requests with -EINVAL, but not
// all (see swap_file.hpp).
struct IoRequest {
  int fd;
  void* buf;
  uint32_t len;
  uint64_t offset;
  bool write;
  // Set by submit_and_wait: bytes transferred, or -errno. A transfer that stops short
  // (a read past the end of a file) is reported as such, never retried: with O_DIRECT the
  // remainder would start unaligned. Callers treat any result != len as a failure.
  int32_t result = 0;
};

class IoRing {
 public:
  // A ring with room for `entries` requests in flight (rounded up to a power of two).
  static Result<IoRing> create(unsigned entries) noexcept;

  // A moved-from ring refuses work.
  IoRing(IoRing&&) noexcept = default;
  IoRing& operator=(IoRing&&) noexcept = default;

  unsigned entries() const noexcept { return entries_; }

  // Runs every request, keeping up to entries() in flight (a larger batch is fed in as
  // earlier requests complete), and returns when all have completed, each result filled
  // in. Per-request failures are only in the results. An Error means the ring itself
  // failed: requests it never started hold -ECANCELED, and the ring refuses further work
  // (create a new one).
  Result<void> submit_and_wait(std::span<IoRequest> requests) noexcept;

  // Asynchronous use (never mixed with submit_and_wait on one ring). Starts `request`,
  // which must stay valid until its completion is reaped; EBUSY when entries() requests
  // are already in flight. Submitters must not call this concurrently.
  Result<void> submit(const IoRequest& request, uint64_t tag) noexcept;
  // Starts a request that completes at once with `tag`, e.g. to wake the reaper.
  Result<void> submit_nop(uint64_t tag) noexcept;
  struct Completion {
    uint64_t tag;
    int32_t result;  // bytes transferred, or -errno
  };
  // Waits for the next completion. Only one thread may reap.
  Result<Completion> wait_completion() noexcept;

 private:
  struct Deleter {
    void operator()(io_uring* ring) const noexcept;
  };
  IoRing(std::unique_ptr<io_uring, Deleter> ring, unsigned entries) noexcept;

  // Waits for `in_flight` completions, as far as a failing ring allows, so requests do not
  // outlive the call that failed.
  void drain(unsigned in_flight, std::span<IoRequest> requests) noexcept;
  // Submits the entry just prepared, counting it in flight.
  Result<void> submit_prepared() noexcept;

  std::unique_ptr<io_uring, Deleter> ring_;
  unsigned entries_ = 0;
  bool broken_ = false;
  // Asynchronous requests started and not yet reaped (submitters hold their lock; the
  // reaper decrements).
  std::unique_ptr<std::atomic<unsigned>> async_in_flight_ =
      std::make_unique<std::atomic<unsigned>>(0);
};

}  // namespace extmem::kernel
