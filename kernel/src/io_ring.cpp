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

Result<IoRing> IoRing::create(unsigned entries) noexcept {
  // On the heap: liburing's struct must not move while the kernel's rings are mapped.
  auto* ring = new (std::nothrow) io_uring;
  if (ring == nullptr) return Error::make(ENOMEM, "io_uring: allocating the ring");
  if (int ret = io_uring_queue_init(entries, ring, 0); ret < 0) {
    delete ring;
    if (ret == -EPERM) {
      return Error::make(EPERM, "io_uring_setup(%u entries), see sysctl kernel.io_uring_disabled",
                         entries);
    }
    return Error::make(-ret, "io_uring_setup(%u entries)", entries);
  }
  // The completion ring is twice the submission ring, and at most ring_entries requests
  // are ever in flight, so completions cannot overflow.
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

Result<void> IoRing::submit(const IoRequest& request, uint64_t tag) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  if (broken_) return Error::make(EIO, "io_uring: ring failed earlier");
  if (async_in_flight_->load(std::memory_order_acquire) >= entries_) {
    return Error::make(EBUSY, "io_uring: %u requests in flight", entries_);
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) return Error::make(EBUSY, "io_uring: submission ring full");
  if (request.write) {
    io_uring_prep_write(sqe, request.fd, request.buf, request.len, request.offset);
  } else {
    io_uring_prep_read(sqe, request.fd, request.buf, request.len, request.offset);
  }
  io_uring_sqe_set_data64(sqe, tag);
  return submit_prepared();
}

Result<void> IoRing::submit_nop(uint64_t tag) noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  if (broken_) return Error::make(EIO, "io_uring: ring failed earlier");
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) return Error::make(EBUSY, "io_uring: submission ring full");
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, tag);
  return submit_prepared();
}

Result<void> IoRing::submit_prepared() noexcept {
  async_in_flight_->fetch_add(1, std::memory_order_acq_rel);
  int ret;
  for (int attempt = 0; attempt < 100; ++attempt) {
    ret = io_uring_submit(ring_.get());
    if (ret >= 0) return {};
    if (ret != -EINTR && ret != -EAGAIN) break;
  }
  // The entry stays in the submission ring, and its caller, told it failed, reuses its
  // buffer: nothing may ever submit it, so the ring takes no more work.
  async_in_flight_->fetch_sub(1, std::memory_order_acq_rel);
  broken_ = true;
  return Error::make(-ret, "io_uring_submit");
}

Result<IoRing::Completion> IoRing::wait_completion() noexcept {
  if (!ring_) return Error::make(EBADF, "io_uring: ring was moved from");
  io_uring_cqe* cqe = nullptr;
  int ret;
  do {
    ret = io_uring_wait_cqe(ring_.get(), &cqe);
  } while (ret == -EINTR);
  if (ret < 0) return Error::make(-ret, "io_uring_wait_cqe");
  Completion done{cqe->user_data, cqe->res};
  io_uring_cqe_seen(ring_.get(), cqe);
  async_in_flight_->fetch_sub(1, std::memory_order_acq_rel);
  return done;
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
