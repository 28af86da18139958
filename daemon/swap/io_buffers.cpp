#include "swap/io_buffers.hpp"

#include <bit>
#include <cstdlib>

namespace extmem::daemon {

namespace {

constexpr uint64_t kPageSize = 4096;

uint64_t class_bytes(unsigned size_class) {
  return kPageSize << size_class;
}

}  // namespace

IoBuffers::Buffer::Buffer(Buffer&& other) noexcept
    : pool_(std::move(other.pool_)), data_(other.data_), size_class_(other.size_class_) {
  other.data_ = nullptr;
}

IoBuffers::Buffer& IoBuffers::Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::move(other.pool_);
    data_ = other.data_;
    size_class_ = other.size_class_;
    other.data_ = nullptr;
  }
  return *this;
}

IoBuffers::Buffer::~Buffer() {
  release();
}

void IoBuffers::Buffer::release() {
  if (data_ != nullptr) pool_->give_back(data_, size_class_);
  data_ = nullptr;
  pool_.reset();
}

std::shared_ptr<IoBuffers> IoBuffers::create(uint64_t retained_bytes) {
  return std::shared_ptr<IoBuffers>(new IoBuffers(retained_bytes));
}

IoBuffers::~IoBuffers() {
  for (auto& buffers : free_) {
    for (unsigned char* data : buffers) free(data);
  }
}

IoBuffers::Buffer IoBuffers::take(uint64_t pages) {
  const auto size_class = static_cast<unsigned>(std::bit_width(std::bit_ceil(pages) - 1));
  {
    std::lock_guard lock(mu_);
    if (size_class < free_.size() && !free_[size_class].empty()) {
      unsigned char* data = free_[size_class].back();
      free_[size_class].pop_back();
      retained_ -= class_bytes(size_class);
      return Buffer(shared_from_this(), data, size_class);
    }
  }
  auto data = static_cast<unsigned char*>(aligned_alloc(kPageSize, class_bytes(size_class)));
  if (data == nullptr) return {};
  return Buffer(shared_from_this(), data, size_class);
}

uint64_t IoBuffers::retained_bytes() {
  std::lock_guard lock(mu_);
  return retained_;
}

void IoBuffers::give_back(unsigned char* data, unsigned size_class) {
  {
    std::lock_guard lock(mu_);
    if (retained_ + class_bytes(size_class) <= max_retained_) {
      if (free_.size() <= size_class) free_.resize(size_class + 1);
      free_[size_class].push_back(data);
      retained_ += class_bytes(size_class);
      return;
    }
  }
  free(data);
}

}  // namespace extmem::daemon
