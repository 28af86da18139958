// Page-aligned buffers for swap I/O, kept for reuse. A fresh buffer costs its pages twice:
// glibc gives buffers this large back to the kernel when freed, and the next one's pages
// fault in again, while the kernel pins them for an O_DIRECT read (a quarter of a paging
// thread's CPU in sequential reads) or as the reclaimer copies victims into it (a fifth of
// its CPU in sequential writes). Buffers come in powers of two pages; up to `retained_bytes`
// of free ones are kept, the rest freed.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace extmem::daemon {

class IoBuffers : public std::enable_shared_from_this<IoBuffers> {
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
    friend class IoBuffers;
    Buffer(std::shared_ptr<IoBuffers> pool, unsigned char* data, unsigned size_class)
        : pool_(std::move(pool)), data_(data), size_class_(size_class) {}
    void release();

    std::shared_ptr<IoBuffers> pool_;
    unsigned char* data_ = nullptr;
    unsigned size_class_ = 0;  // 2^size_class_ pages
  };

  static std::shared_ptr<IoBuffers> create(uint64_t retained_bytes);
  IoBuffers(const IoBuffers&) = delete;
  IoBuffers& operator=(const IoBuffers&) = delete;
  ~IoBuffers();

  // A buffer of `pages` (> 0) pages or more; empty without memory for one.
  Buffer take(uint64_t pages);
  // Bytes of free buffers kept for reuse.
  uint64_t retained_bytes();

 private:
  explicit IoBuffers(uint64_t retained_bytes) : max_retained_(retained_bytes) {}
  void give_back(unsigned char* data, unsigned size_class);

  const uint64_t max_retained_;
  std::mutex mu_;
  std::vector<std::vector<unsigned char*>> free_;  // under mu_: by size class
  uint64_t retained_ = 0;                          // under mu_
};

}  // namespace extmem::daemon
