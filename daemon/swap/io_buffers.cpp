#include "swap/io_buffers.hpp"

#include <bit>
#include <cstdlib>

#include <spdlog/spdlog.h>

namespace extmem::daemon {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kHugePages = kernel::HugeRegion::kHugePageSize / kPageSize;
static_assert(kHugePages == uint64_t{1} << IoBuffers::kMaxArenaOrder);

}  // namespace

IoBuffers::Buffer::Buffer(Buffer&& other) noexcept
    : pool_(std::move(other.pool_)), data_(other.data_), order_(other.order_) {
  other.data_ = nullptr;
}

IoBuffers::Buffer& IoBuffers::Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::move(other.pool_);
    data_ = other.data_;
    order_ = other.order_;
    other.data_ = nullptr;
  }
  return *this;
}

IoBuffers::Buffer::~Buffer() {
  release();
}

void IoBuffers::Buffer::release() {
  if (data_ != nullptr) pool_->give_back(data_, order_);
  data_ = nullptr;
  pool_.reset();
}

std::shared_ptr<IoBuffers> IoBuffers::create(uint64_t arena_bytes) {
  return std::shared_ptr<IoBuffers>(new IoBuffers(arena_bytes));
}

IoBuffers::IoBuffers(uint64_t arena_bytes)
    : arena_size_(arena_bytes / kernel::HugeRegion::kHugePageSize *
                  kernel::HugeRegion::kHugePageSize),
      free_(kMaxArenaOrder + 1) {}

IoBuffers::Buffer IoBuffers::take(uint64_t pages) {
  const auto order = static_cast<unsigned>(std::bit_width(std::bit_ceil(pages) - 1));
  if (order <= kMaxArenaOrder) {
    std::lock_guard lock(mu_);
    if (unsigned char* data = take_from_arena(order)) {
      return Buffer(shared_from_this(), data, order);
    }
  }
  auto data = static_cast<unsigned char*>(aligned_alloc(kPageSize, kPageSize << order));
  if (data == nullptr) return {};
  return Buffer(shared_from_this(), data, order);
}

unsigned char* IoBuffers::take_from_arena(unsigned order) {
  if (!arena_tried_ && arena_size_ > 0) {
    arena_tried_ = true;
    auto region = kernel::HugeRegion::create(arena_size_);
    if (!region) {
      spdlog::warn("swap I/O buffers: no arena ({}); buffers come from the heap",
                   region.error().message());
    } else {
      arena_ = std::move(*region);
      if (!arena_.huge()) {
        spdlog::info(
            "swap I/O buffers: transparent huge pages are off; requests of many "
            "pages are split by the device's segment limit");
      }
      for (uint64_t first = 0; first < arena_.size() / kPageSize; first += kHugePages) {
        free_[kMaxArenaOrder].insert(static_cast<uint32_t>(first));
      }
    }
  }
  unsigned from = order;
  while (from <= kMaxArenaOrder && free_[from].empty()) ++from;
  if (from > kMaxArenaOrder) return nullptr;
  const uint32_t block = *free_[from].begin();
  free_[from].erase(free_[from].begin());
  // Split down to the order asked for, keeping the first half and freeing the second.
  while (from > order) {
    --from;
    free_[from].insert(block + (uint32_t{1} << from));
  }
  return arena_.data() + uint64_t{block} * kPageSize;
}

uint64_t IoBuffers::arena_bytes() {
  std::lock_guard lock(mu_);
  return arena_.size();
}

uint64_t IoBuffers::arena_free_bytes() {
  std::lock_guard lock(mu_);
  uint64_t pages = 0;
  for (unsigned order = 0; order <= kMaxArenaOrder; ++order) {
    pages += free_[order].size() << order;
  }
  return pages * kPageSize;
}

void IoBuffers::give_back(unsigned char* data, unsigned order) {
  if (!in_arena(data)) {
    free(data);
    return;
  }
  std::lock_guard lock(mu_);
  auto block = static_cast<uint32_t>((data - arena_.data()) / kPageSize);
  // Merge with the free buddy, as far as it goes, so that large buffers stay possible.
  for (; order < kMaxArenaOrder; ++order) {
    const uint32_t buddy = block ^ (uint32_t{1} << order);
    auto it = free_[order].find(buddy);
    if (it == free_[order].end()) break;
    free_[order].erase(it);
    block &= ~(uint32_t{1} << order);
  }
  free_[order].insert(block);
}

}  // namespace extmem::daemon
