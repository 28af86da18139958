#include "extmem/kernel/io_ring.hpp"

#include <liburing.h>

#include <cerrno>
#include <new>

namespace extmem::kernel {

void IoRing::Deleter::operator()(io_uring* ring) const noexcept {
  io_uring_queue_exit(ring);
  delete ring;
}

IoRing::IoRing(std::unique_ptr<io_uring, Deleter> ring, unsigned entries) noexcept
    : ring_(std::move(ring)), entries_(entries) {}

Result<IoRing> IoRing::create(unsigned entries, unsigned completions) noexcept {
  // On the heap: liburing's struct must not move while the kernel's rings are mapped.
  auto* ring = new (std::nothrow) io_uring;
  if (ring == nullptr) return Error::make(ENOMEM, "io_uring: allocating the ring");
  io_uring_params params = {};
  if (completions != 0) {
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = completions;
  }
  if (int ret = io_uring_queue_init_params(entries, ring, &params); ret < 0) {
    delete ring;
    if (ret == -EPERM) {
      return Error::make(EPERM, "io_uring_setup(%u entries), see sysctl kernel.io_uring_disabled",
                         entries);
    }
    return Error::make(-ret, "io_uring_setup(%u entries)", entries);
  }
  // Synchronous use keeps at most ring_entries requests in flight, so its completions
  // cannot overflow; shared use relies on the kernel keeping the overflow
  // (IORING_FEAT_NODROP, 5.5 and later).
  unsigned actual = ring->sq.ring_entries;
  return IoRing(std::unique_ptr<io_uring, Deleter>(ring), actual);
}

Result<void> IoRing::submit_and_wait(std::span<IoRequest> requests) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  if (broken_) return Error::make(EIO, "io_uring: ring failed earlier");
  for (IoRequest& request : requests) request.result = -ECANCELED;

  io_uring* ring = ring_.get();
  size_t next = 0;         // first request not yet queued
  unsigned queued = 0;     // in the submission ring, not yet taken by the kernel
  unsigned in_flight = 0;  // taken by the kernel, completion pending
  while (next < requests.size() || queued + in_flight > 0) {
    while (next < requests.size() && queued + in_flight < entries_) {
      // Cannot fail: no more than entries_ requests are outstanding.
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      IoRequest& request = requests[next];
      if (request.write) {
        io_uring_prep_write(sqe, request.fd, request.buf, request.len, request.offset);
      } else {
        io_uring_prep_read(sqe, request.fd, request.buf, request.len, request.offset);
      }
      io_uring_sqe_set_data64(sqe, next);
      ++next;
      ++queued;
    }

    // Submits what is queued and waits for at least one completion. The kernel may take
    // fewer than queued (then it returns without waiting); the rest go next round.
    int ret = io_uring_submit_and_wait(ring, 1);
    if (ret >= 0) {
      queued -= static_cast<unsigned>(ret);
      in_flight += static_cast<unsigned>(ret);
    } else if (ret == -EINTR) {
      continue;
    } else if ((ret == -EAGAIN || ret == -EBUSY) && in_flight > 0) {
      // Out of kernel resources for now: completions free them, so wait for one.
      io_uring_cqe* cqe;
      ret = io_uring_wait_cqe(ring, &cqe);
      if (ret < 0 && ret != -EINTR) {
        drain(in_flight, requests);
        broken_ = true;
        return Error::make(-ret, "io_uring_wait_cqe");
      }
    } else {
      drain(in_flight, requests);
      // Requests left in the submission ring would run on the next call, with buffers
      // their caller has since reused.
      broken_ = true;
      return Error::make(-ret, "io_uring_enter (%u requests in flight)", in_flight);
    }

    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
      requests[cqe->user_data].result = cqe->res;
      ++seen;
    }
    io_uring_cq_advance(ring, seen);
    in_flight -= seen;
  }
  return {};
}

io_uring_sqe* IoRing::shared_sqe() noexcept {
  if (!ring_ || broken_) return nullptr;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe != nullptr) return sqe;
  // Full of entries queued for the owner's next wait: submit them now and try again.
  if (unsigned pending = publish(); pending != 0) {
    io_uring_enter(ring_->ring_fd, pending, 0, 0, nullptr);
  }
  return io_uring_get_sqe(ring_.get());
}

unsigned IoRing::publish() noexcept {
  io_uring_sq& sq = ring_->sq;
  // What liburing's submit does before it enters, with a release store and an acquiring
  // load: another thread's enter may take the entries and move the head at any time.
  sq.sqe_head = sq.sqe_tail;
  io_uring_smp_store_release(sq.ktail, sq.sqe_tail);
  return sq.sqe_tail - io_uring_smp_load_acquire(sq.khead);
}

void IoRing::finish_queueing(Submit when) noexcept {
  const unsigned pending = publish();
  if (when == Submit::kNow) submit_published(pending);
}

void IoRing::submit_published(unsigned pending) noexcept {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int ret = io_uring_enter(ring_->ring_fd, pending, 0, 0, nullptr);
    if (ret >= 0) return;
    // Out of kernel resources for now: the entry stays queued, and the owner's next wait
    // submits it.
    if (ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      // A broken ring (the owner's wait reports it): take no more work.
      broken_ = true;
      return;
    }
  }
}

Result<void> IoRing::queue_read(const IoRequest& request, uint64_t tag, Submit when) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  std::lock_guard lock(*shared_mu_);
  io_uring_sqe* sqe = shared_sqe();
  if (sqe == nullptr) return Error::make(broken_ ? EIO : EBUSY, "io_uring: cannot queue a read");
  if (request.write) {
    io_uring_prep_write(sqe, request.fd, request.buf, request.len, request.offset);
  } else {
    io_uring_prep_read(sqe, request.fd, request.buf, request.len, request.offset);
  }
  io_uring_sqe_set_data64(sqe, tag);
  finish_queueing(when);
  return {};
}

Result<void> IoRing::queue_poll(int fd, uint32_t events, bool multishot, uint64_t tag,
                                Submit when) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  std::lock_guard lock(*shared_mu_);
  io_uring_sqe* sqe = shared_sqe();
  if (sqe == nullptr) return Error::make(broken_ ? EIO : EBUSY, "io_uring: cannot queue a poll");
  if (multishot) {
    io_uring_prep_poll_multishot(sqe, fd, events);
  } else {
    io_uring_prep_poll_add(sqe, fd, events);
  }
  io_uring_sqe_set_data64(sqe, tag);
  finish_queueing(when);
  return {};
}

Result<void> IoRing::queue_poll_remove(uint64_t target, uint64_t tag, Submit when) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  std::lock_guard lock(*shared_mu_);
  io_uring_sqe* sqe = shared_sqe();
  if (sqe == nullptr) return Error::make(broken_ ? EIO : EBUSY, "io_uring: cannot remove a poll");
  io_uring_prep_poll_remove(sqe, target);
  io_uring_sqe_set_data64(sqe, tag);
  finish_queueing(when);
  return {};
}

Result<void> IoRing::queue_nop(uint64_t tag, Submit when) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  std::lock_guard lock(*shared_mu_);
  io_uring_sqe* sqe = shared_sqe();
  if (sqe == nullptr) return Error::make(broken_ ? EIO : EBUSY, "io_uring: cannot queue a no-op");
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, tag);
  finish_queueing(when);
  return {};
}

Result<void> IoRing::submit_queued() noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  std::lock_guard lock(*shared_mu_);
  if (broken_) return Error::make(EIO, "io_uring: ring failed earlier");
  if (const unsigned pending = publish(); pending != 0) submit_published(pending);
  if (broken_) return Error::make(EIO, "io_uring: submitting queued entries failed");
  return {};
}

Result<size_t> IoRing::wait_completions(std::span<Completion> out) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  io_uring* ring = ring_.get();
  unsigned pending;
  {
    std::lock_guard lock(*shared_mu_);
    if (broken_) return Error::make(EIO, "io_uring: ring failed earlier");
    pending = publish();
  }
  // One call submits and sleeps. The kernel submits what is still there (another thread's
  // enter may have taken some; it then returns at once, without waiting).
  const bool ready = io_uring_cq_ready(ring) != 0;
  if (pending != 0 || !ready) {
    int ret =
        io_uring_enter(ring->ring_fd, pending, ready ? 0 : 1, IORING_ENTER_GETEVENTS, nullptr);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      std::lock_guard lock(*shared_mu_);
      broken_ = true;
      return Error::make(-ret, "io_uring_enter (%u to submit)", pending);
    }
  }
  size_t got = 0;
  unsigned head;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(ring, head, cqe) {
    if (got == out.size()) break;
    out[got++] = {cqe->user_data, cqe->res, (cqe->flags & IORING_CQE_F_MORE) != 0};
  }
  io_uring_cq_advance(ring, static_cast<unsigned>(got));
  return got;
}

void IoRing::drain(unsigned in_flight, std::span<IoRequest> requests) noexcept {
  while (in_flight > 0) {
    io_uring_cqe* cqe;
    int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) return;
    requests[cqe->user_data].result = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    --in_flight;
  }
}

}  // namespace extmem::kernel
