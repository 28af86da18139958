// Page-aligned buffers for reads from swap, kept for reuse. A fresh buffer costs its pages
// twice: glibc gives buffers this large back to the kernel when freed, and the kernel then
// faults each page of the next one in while it pins them for the O_DIRECT read (a quarter
// of a paging thread's CPU in sequential reads). Buffers come in powers of two pages; up to
// `retained_bytes` of free ones are kept, the rest freed.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace extmem::daemon {

class ReadBuffers : public std::enable_shared_from_this<ReadBuffers> {
 public:
  // A buffer of at least the pages asked for, given back to its pool when destroyed (the
  // pool lives as long as its buffers).
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&& other) noexcept;
    Buffer& operator=(Buffer&& other) noexcept;
    ~Buffer();
    unsigned char* data() const { return data_; }
    explicit operator bool() const { return data_ != nullptr; }

   private:
    friend class ReadBuffers;
    Buffer(std::shared_ptr<ReadBuffers> pool, unsigned char* data, unsigned size_class)
        : pool_(std::move(pool)), data_(data), size_class_(size_class) {}
    void release();

    std::shared_ptr<ReadBuffers> pool_;
    unsigned char* data_ = nullptr;
    unsigned size_class_ = 0;  // 2^size_class_ pages
  };

  static std::shared_ptr<ReadBuffers> create(uint64_t retained_bytes);
  ReadBuffers(const ReadBuffers&) = delete;
  ReadBuffers& operator=(const ReadBuffers&) = delete;
  ~ReadBuffers();

  // A buffer of `pages` (> 0) pages or more; empty without memory for one.
  Buffer take(uint64_t pages);
  // Bytes of free buffers kept for reuse.
  uint64_t retained_bytes();

 private:
  explicit ReadBuffers(uint64_t retained_bytes) : max_retained_(retained_bytes) {}
  void give_back(unsigned char* data, unsigned size_class);

  const uint64_t max_retained_;
  std::mutex mu_;
  std::vector<std::vector<unsigned char*>> free_;  // under mu_: by size class
  uint64_t retained_ = 0;                          // under mu_
};

}  // namespace extmem::daemon
