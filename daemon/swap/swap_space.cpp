#include "swap/swap_space.hpp"

#include <algorithm>
#include <bit>

namespace extmem::daemon {
namespace {

// The low `bits` bits set (all 64 when bits >= 64).
uint64_t LowBits(uint64_t bits) {
  return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

}  // namespace

SwapSpace::BitTree::BitTree(uint64_t size) : size_(size) {
  uint64_t bits = size;
  do {
    uint64_t words = (bits + 63) / 64;
    levels_.emplace_back(words, ~uint64_t{0});
    if (words > 0) levels_.back().back() = LowBits(bits - (words - 1) * 64);
    bits = words;
  } while (bits > 1);
}

void SwapSpace::BitTree::set(uint64_t i) {
  for (auto& level : levels_) {
    uint64_t& word = level[i / 64];
    bool was_empty = word == 0;
    word |= uint64_t{1} << (i % 64);
    if (!was_empty) return;
    i /= 64;
  }
}

void SwapSpace::BitTree::clear(uint64_t i) {
  for (auto& level : levels_) {
    uint64_t& word = level[i / 64];
    word &= ~(uint64_t{1} << (i % 64));
    if (word != 0) return;
    i /= 64;
  }
}

uint64_t SwapSpace::BitTree::first() const {
  // From the top summary word down, following the lowest set bit.
  if (size_ == 0 || levels_.back()[0] == 0) return kNone;
  uint64_t i = 0;
  for (size_t level = levels_.size(); level-- > 0;) {
    i = i * 64 + std::countr_zero(levels_[level][i]);
  }
  return i;
}

SwapSpace::SwapSpace(uint64_t device_bytes)
    : clusters_(std::min<uint64_t>(device_bytes / kClusterBytes, kNoCluster)),
      free_(clusters_),
      empty_regions_((clusters_ + kRegionClusters - 1) / kRegionClusters),
      owner_of_(clusters_) {}

uint64_t SwapSpace::region_mask(uint64_t region) const {
  return LowBits(clusters_ - region * kRegionClusters);
}

uint32_t SwapSpace::allocate(uint64_t owner) {
  if (used_ == clusters_) return kNoCluster;
  auto [it, fresh] = owners_.try_emplace(owner);
  Owner& state = it->second;

  uint64_t cluster = BitTree::kNone;
  if (!fresh) {
    // The first free cluster after the previous one in its region, wrapping around.
    uint64_t region = state.last / kRegionClusters;
    uint64_t free_bits = free_.word(region);
    uint64_t after = free_bits & ~LowBits(state.last % kRegionClusters + 1);
    uint64_t pick = after != 0 ? after : free_bits;
    if (pick != 0) cluster = region * kRegionClusters + std::countr_zero(pick);
  }
  if (cluster == BitTree::kNone) {
    uint64_t region = empty_regions_.first();
    if (region != BitTree::kNone) cluster = region * kRegionClusters;
  }
  // used_ < clusters_, so there is one.
  if (cluster == BitTree::kNone) cluster = free_.first();

  take(static_cast<uint32_t>(cluster), owner, state);
  return static_cast<uint32_t>(cluster);
}

bool SwapSpace::claim(uint32_t cluster, uint64_t owner) {
  if (cluster >= clusters_ || !free_.test(cluster)) return false;
  take(cluster, owner, owners_[owner]);
  return true;
}

void SwapSpace::take(uint32_t cluster, uint64_t owner, Owner& state) {
  free_.clear(cluster);
  empty_regions_.clear(cluster / kRegionClusters);
  owner_of_[cluster] = owner;
  ++used_;
  ++state.clusters;
  state.last = cluster;
  state.low = std::min(state.low, cluster);
  state.high = std::max(state.high, cluster);
}

void SwapSpace::give_back(uint32_t cluster) {
  free_.set(cluster);
  --used_;
  uint64_t region = cluster / kRegionClusters;
  if (free_.word(region) == region_mask(region)) empty_regions_.set(region);
}

bool SwapSpace::release(uint32_t cluster) {
  if (cluster >= clusters_ || free_.test(cluster)) return false;
  auto it = owners_.find(owner_of_[cluster]);
  if (--it->second.clusters == 0) owners_.erase(it);
  give_back(cluster);
  return true;
}

size_t SwapSpace::release_all(uint64_t owner) {
  auto it = owners_.find(owner);
  if (it == owners_.end()) return 0;
  const Owner& state = it->second;
  size_t freed = 0;
  for (uint64_t c = state.low; c <= state.high && freed < state.clusters; ++c) {
    if (!free_.test(c) && owner_of_[c] == owner) {
      give_back(static_cast<uint32_t>(c));
      ++freed;
    }
  }
  owners_.erase(it);
  return freed;
}

uint64_t SwapSpace::clusters_of(uint64_t owner) const {
  auto it = owners_.find(owner);
  return it == owners_.end() ? 0 : it->second.clusters;
}

}  // namespace extmem::daemon
