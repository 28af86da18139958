// IoRing: an io_uring used synchronously, one batch at a time, by the thread that owns it
// (each daemon thread has its own ring, so that use takes no lock), or shared: one owner
// thread waits for the completions of reads and polls that any thread queues (under the
// ring's own lock). The owner's wait submits what it queued in the same system call.
//
// No registered files or fixed buffers: on the project's machines they made no measurable
// difference to 4 KiB O_DIRECT reads at QD1 or QD32 (the device, not the submission path,
// is the limit), and neither did COOP_TASKRUN or SINGLE_ISSUER|DEFER_TASKRUN.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "extmem/kernel/result.hpp"

struct io_uring;
struct io_uring_sqe;

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
  // A ring with room for `entries` requests in flight (rounded up to a power of two), and
  // for `completions` completions not yet reaped (0: twice `entries`; shared use, where
  // polls need no submission entry while they wait, wants more).
  static Result<IoRing> create(unsigned entries, unsigned completions = 0) noexcept;

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

  // Shared use (never mixed with submit_and_wait on one ring). Any thread queues requests;
  // only the owner thread calls wait_completions. A request queued kWithNextWait starts at
  // the owner's next wait (the owner queues that way: no system call of its own); kNow
  // submits at once (other threads, whose requests the owner may be asleep on). Once
  // queued, a request belongs to the ring: its buffer must stay valid until its completion
  // is reaped. EBUSY when the submission ring is full.
  enum class Submit { kNow, kWithNextWait };
  Result<void> queue_read(const IoRequest& request, uint64_t tag, Submit when) noexcept;
  // Completes with `tag` and the ready poll mask once `fd` has any of `events` (POLLIN...).
  // Multishot: completes at every wakeup (edge-triggered) while Completion::more is set.
  Result<void> queue_poll(int fd, uint32_t events, bool multishot, uint64_t tag,
                          Submit when) noexcept;
  // Removes the poll tagged `target`, which completes with -ECANCELED unless it already
  // completed; this request completes with `tag` (0, or -ENOENT when there was none).
  Result<void> queue_poll_remove(uint64_t target, uint64_t tag, Submit when) noexcept;
  // Completes at once with `tag`, e.g. to wake the owner.
  Result<void> queue_nop(uint64_t tag, Submit when) noexcept;
  struct Completion {
    uint64_t tag;
    int32_t result;  // bytes transferred, a poll mask, or -errno
    bool more;       // a multishot poll goes on
  };
  // Owner only: submits what was queued, waits for completions and returns up to
  // out.size() of them; possibly none (a signal, or another thread's submission raced).
  Result<size_t> wait_completions(std::span<Completion> out) noexcept;
  // Owner only: submits what was queued kWithNextWait now, without waiting.
  Result<void> submit_queued() noexcept;

 private:
  struct Deleter {
    void operator()(io_uring* ring) const noexcept;
  };
  IoRing(std::unique_ptr<io_uring, Deleter> ring, unsigned entries) noexcept;

  // Waits for `in_flight` completions, as far as a failing ring allows, so requests do not
  // outlive the call that failed.
  void drain(unsigned in_flight, std::span<IoRequest> requests) noexcept;
  // Under shared_mu_: an entry to prepare for shared use, nullptr when the ring is full.
  io_uring_sqe* shared_sqe() noexcept;
  // Under shared_mu_: lets the kernel see the entries prepared; returns how many it has
  // not taken yet.
  unsigned publish() noexcept;
  // Under shared_mu_: publishes the entry just prepared, submitting it now if asked.
  void finish_queueing(Submit when) noexcept;
  // Under shared_mu_: submits the `pending` entries published; a ring the kernel refuses
  // is marked broken.
  void submit_published(unsigned pending) noexcept;

  std::unique_ptr<io_uring, Deleter> ring_;
  unsigned entries_ = 0;
  bool broken_ = false;
  // Serialises shared-use queueing (submission ring and its enter); a pointer so the
  // ring stays movable.
  std::unique_ptr<std::mutex> shared_mu_ = std::make_unique<std::mutex>();
};

}  // namespace extmem::kernel
