// SwapSpace: which clusters of the swap device are in use, and by which client. Pure
// bookkeeping: no I/O, not thread-safe (the caller locks).
//
// The device is divided into clusters of 512 slots (2 MiB). Each 2 MiB-aligned chunk of a
// client's arena gets its own cluster on its first eviction, and page p of the chunk lives
// in slot p % 512 of it, so neighbours in the arena are neighbours on the device.
//
// Placement: clusters are grouped into regions of 64 (128 MiB). A client's next cluster
// is the first free one after its previous cluster in that cluster's region (wrapping
// within the region), else the lowest fully free region, else the lowest free cluster.
// So a client's chunks stay together, several clients don't interleave, and low numbers
// go first. Every operation is O(log n) except release_all, which scans the span of
// clusters the client has held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace extmem::daemon {

class SwapSpace {
 public:
  static constexpr uint32_t kSlotsPerCluster = 512;
  static constexpr uint64_t kClusterBytes = uint64_t{kSlotsPerCluster} * 4096;
  static constexpr uint32_t kNoCluster = UINT32_MAX;

  // device_bytes / 2 MiB clusters (a partial cluster at the end is not used).
  explicit SwapSpace(uint64_t device_bytes);

  // A free cluster charged to `owner` (a client id), or kNoCluster when full.
  uint32_t allocate(uint64_t owner);
  // Charges a specific free cluster to `owner` (a restarted daemon taking back the
  // clusters its clients' pages are in). False if it is out of range or not free.
  bool claim(uint32_t cluster, uint64_t owner);
  // Frees a cluster. Returns false, changing nothing, if it was not allocated (a double
  // release or a bad number: a bug in the caller, which should report it).
  bool release(uint32_t cluster);
  // Frees every cluster of `owner` (client exit); returns how many.
  size_t release_all(uint64_t owner);

  uint64_t clusters_total() const { return clusters_; }
  uint64_t clusters_used() const { return used_; }
  uint64_t clusters_of(uint64_t owner) const;

  // Byte offset on the device of arena page `page` in `cluster`.
  static uint64_t slot_offset(uint32_t cluster, uint64_t page) {
    return (uint64_t{cluster} * kSlotsPerCluster + page % kSlotsPerCluster) * 4096;
  }

 private:
  // A set of the integers below `size`, initially all of them, with an O(log64 n) lowest
  // member: a bitmap plus summary levels, where a summary bit says the 64-bit word below
  // it is non-zero.
  class BitTree {
   public:
    static constexpr uint64_t kNone = UINT64_MAX;
    explicit BitTree(uint64_t size);
    bool test(uint64_t i) const { return (levels_[0][i / 64] >> (i % 64)) & 1; }
    void set(uint64_t i);
    void clear(uint64_t i);
    uint64_t first() const;  // kNone when empty
    uint64_t word(uint64_t w) const { return levels_[0][w]; }

   private:
    uint64_t size_;
    std::vector<std::vector<uint64_t>> levels_;  // levels_[0]: the members
  };

  // Forgotten when its last cluster is released.
  struct Owner {
    uint64_t clusters = 0;
    uint32_t last = 0;          // most recently allocated cluster
    uint32_t low = UINT32_MAX;  // every cluster held is within [low, high]
    uint32_t high = 0;
  };

  static constexpr uint32_t kRegionClusters = 64;  // one word of free_

  uint64_t region_mask(uint64_t region) const;
  void take(uint32_t cluster, uint64_t owner, Owner& state);
  void give_back(uint32_t cluster);

  uint64_t clusters_;
  uint64_t used_ = 0;
  BitTree free_;                    // free clusters
  BitTree empty_regions_;           // regions whose clusters are all free
  std::vector<uint64_t> owner_of_;  // valid for allocated clusters only
  std::unordered_map<uint64_t, Owner> owners_;
};

}  // namespace extmem::daemon
