// The swap device: a swap file or block device, its cluster bookkeeping, and an io_uring
// per thread that does I/O on it (each paging thread and the reclaimer submit their own
// batches, so no lock is held around I/O).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include "extmem/kernel/io_ring.hpp"
#include "extmem/kernel/result.hpp"
#include "extmem/kernel/swap_file.hpp"
#include "swap/io_buffers.hpp"
#include "swap/swap_space.hpp"

namespace extmem::daemon {

class SwapDevice {
 public:
  static Result<std::unique_ptr<SwapDevice>> open(const std::string& path, uint64_t create_size);

  int fd() const { return file_.fd(); }
  const std::string& path() const { return path_; }
  uint64_t size() const { return file_.size(); }

  // A cluster for `owner`, or SwapSpace::kNoCluster when the device is full.
  uint32_t allocate_cluster(uint64_t owner);
  bool claim_cluster(uint32_t cluster, uint64_t owner);
  void release_cluster(uint32_t cluster);
  size_t release_all(uint64_t owner);
  uint64_t clusters_used();
  uint64_t clusters_of(uint64_t owner);
  uint64_t clusters_total();

  // Runs the requests on this thread's ring and waits for them; per-request results
  // (bytes or -errno) are in each request.
  Result<void> run(std::span<kernel::IoRequest> requests);

  // Buffers for I/O on the device, reused.
  IoBuffers& io_buffers() { return *io_buffers_; }

  // I/O failed on the device at least once (counted per client in io_errors).
  bool degraded() const { return io_errors_.load(std::memory_order_relaxed) != 0; }
  uint64_t io_errors() const { return io_errors_.load(std::memory_order_relaxed); }
  void note_io_error() { io_errors_.fetch_add(1, std::memory_order_relaxed); }

  // Tests only: makes every read (or write) fail with EIO, so the error paths can be
  // exercised on a healthy device; with `while_exists`, only while that file exists (the
  // device "recovers" when a test removes it). Set from EXTMEMD_TEST_FAIL_SWAP=read|write
  // and EXTMEMD_TEST_FAIL_SWAP_WHILE=PATH.
  enum class Injected { kNone, kReads, kWrites };
  // The result of a request that completed with `result`, failures injected. run()
  // applies it; requests started elsewhere (the paging rings) must too.
  int32_t completed(bool write, int32_t result) const;
  void inject_failures(Injected which, std::string while_exists) {
    injected_ = which;
    injected_while_ = std::move(while_exists);
  }

 private:
  SwapDevice(kernel::SwapFile file, std::string path);
  kernel::SwapFile file_;
  std::string path_;
  std::mutex mu_;
  SwapSpace space_;
  std::shared_ptr<IoBuffers> io_buffers_;
  std::atomic<uint64_t> io_errors_{0};
  Injected injected_ = Injected::kNone;
  std::string injected_while_;
};

}  // namespace extmem::daemon
