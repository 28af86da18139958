// Fault service latency: a lock-free histogram with power-of-two microsecond buckets.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace extmem::daemon {

class LatencyHistogram {
 public:
  void record(std::chrono::nanoseconds elapsed) {
    uint64_t us = static_cast<uint64_t>(elapsed.count()) / 1000;
    size_t bucket = us == 0 ? 0 : std::min<size_t>(64 - __builtin_clzll(us), kBuckets - 1);
    counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  }
  // The upper bound, in microseconds, of the bucket holding quantile q (0 < q <= 1);
  // 0 when nothing was recorded.
  uint64_t quantile_us(double q) const {
    uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.5);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i].load(std::memory_order_relaxed);
      if (seen >= rank && seen > 0) return uint64_t{1} << i;
    }
    return uint64_t{1} << (kBuckets - 1);
  }

 private:
  static constexpr size_t kBuckets = 32;
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
};

}  // namespace extmem::daemon
