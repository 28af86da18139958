#include "swap/swap_device.hpp"

#include <filesystem>
#include <optional>

namespace extmem::daemon {

namespace {
constexpr unsigned kRingEntries = 256;
}  // namespace

namespace {

// The I/O buffer arena: several chunk-sized reads in flight per paging thread, and the
// reclaimers' batches.
constexpr uint64_t kIoBufferArena = 16ull << 20;

}  // namespace

Result<std::unique_ptr<SwapDevice>> SwapDevice::open(const std::string& path,
                                                     uint64_t create_size) {
  auto file = kernel::SwapFile::open(path.c_str(), create_size);
  if (!file) return file.error();
  return std::unique_ptr<SwapDevice>(new SwapDevice(std::move(*file), path));
}

SwapDevice::SwapDevice(kernel::SwapFile file, std::string path)
    : file_(std::move(file)),
      path_(std::move(path)),
      space_(file_.size()),
      io_buffers_(IoBuffers::create(kIoBufferArena)) {}

uint32_t SwapDevice::allocate_cluster(uint64_t owner) {
  std::lock_guard lock(mu_);
  return space_.allocate(owner);
}

bool SwapDevice::claim_cluster(uint32_t cluster, uint64_t owner) {
  std::lock_guard lock(mu_);
  return space_.claim(cluster, owner);
}

void SwapDevice::release_cluster(uint32_t cluster) {
  std::lock_guard lock(mu_);
  space_.release(cluster);
}

size_t SwapDevice::release_all(uint64_t owner) {
  std::lock_guard lock(mu_);
  return space_.release_all(owner);
}

uint64_t SwapDevice::clusters_used() {
  std::lock_guard lock(mu_);
  return space_.clusters_used();
}

uint64_t SwapDevice::clusters_of(uint64_t owner) {
  std::lock_guard lock(mu_);
  return space_.clusters_of(owner);
}

uint64_t SwapDevice::clusters_total() {
  std::lock_guard lock(mu_);
  return space_.clusters_total();
}

Result<void> SwapDevice::run(std::span<kernel::IoRequest> requests) {
  thread_local std::optional<kernel::IoRing> ring;
  if (!ring) {
    auto created = kernel::IoRing::create(kRingEntries);
    if (!created) return created.error();
    ring.emplace(std::move(*created));
  }
  auto ran = ring->submit_and_wait(requests);
  if (ran && injected_ != Injected::kNone) {
    for (kernel::IoRequest& r : requests) r.result = completed(r.write, r.result);
  }
  return ran;
}

int32_t SwapDevice::completed(bool write, int32_t result) const {
  if (injected_ == Injected::kNone || write != (injected_ == Injected::kWrites)) return result;
  std::error_code ignored;
  return injected_while_.empty() || std::filesystem::exists(injected_while_, ignored) ? -EIO
                                                                                      : result;
}

}  // namespace extmem::daemon
