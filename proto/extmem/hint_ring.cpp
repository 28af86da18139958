#include "extmem/hint_ring.hpp"

namespace extmem::hints {

const char* hint_name(uint32_t hint) noexcept {
  switch (static_cast<Hint>(hint)) {
    case Hint::kNormal:
      return "normal";
    case Hint::kSequential:
      return "sequential";
    case Hint::kRandom:
      return "random";
    case Hint::kWillNeed:
      return "willneed";
    case Hint::kDontNeed:
      return "dontneed";
    case Hint::kCold:
      return "cold";
    case Hint::kHot:
      return "hot";
    case Hint::kPageOut:
      return "pageout";
  }
  return "unknown";
}

void init_ring(HintRing* ring) noexcept {
  ring->magic = kRingMagic;
  ring->version = kRingVersion;
  ring->entries = kEntries;
  for (uint64_t i = 0; i < kEntries; ++i)
    ring->slots[i].sequence.store(i, std::memory_order_relaxed);
  ring->head.store(0, std::memory_order_release);
}

PushResult push(HintRing* ring, uint64_t addr, uint64_t len, uint32_t hint, bool urgent) noexcept {
  uint64_t pos = ring->head.load(std::memory_order_relaxed);
  HintSlot* slot;
  for (;;) {
    slot = &ring->slots[pos % kEntries];
    const uint64_t seq = slot->sequence.load(std::memory_order_acquire);
    const auto diff = static_cast<int64_t>(seq - pos);
    if (diff == 0) {
      if (ring->head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
    } else if (diff < 0) {
      ring->dropped_full.fetch_add(1, std::memory_order_relaxed);
      return PushResult::kFull;
    } else {
      pos = ring->head.load(std::memory_order_relaxed);
    }
  }
  slot->addr.store(addr, std::memory_order_relaxed);
  slot->len.store(len, std::memory_order_relaxed);
  slot->hint.store(hint, std::memory_order_relaxed);
  slot->sequence.store(pos + 1, std::memory_order_release);
  // Publishing before reading the flag pairs with the daemon's arm-then-recheck: either
  // it sees this entry, or this producer sees the flag.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (urgent && ring->doorbell_armed.load(std::memory_order_relaxed) != 0 &&
      ring->doorbell_armed.exchange(0, std::memory_order_acq_rel) != 0) {
    return PushResult::kQueuedRingDoorbell;
  }
  return PushResult::kQueued;
}

bool RingConsumer::ready() const noexcept {
  return ring_->slots[next_ % kEntries].sequence.load(std::memory_order_acquire) == next_ + 1;
}

size_t RingConsumer::take(std::span<HintEntry> out) noexcept {
  size_t n = 0;
  while (n < out.size() && ready()) {
    HintSlot& slot = ring_->slots[next_ % kEntries];
    out[n++] = {slot.addr.load(std::memory_order_relaxed), slot.len.load(std::memory_order_relaxed),
                slot.hint.load(std::memory_order_relaxed)};
    slot.sequence.store(next_ + kEntries, std::memory_order_release);
    ++next_;
  }
  return n;
}

bool RingConsumer::arm_doorbell() noexcept {
  ring_->doorbell_armed.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return ready();
}

void RingConsumer::disarm_doorbell() noexcept {
  ring_->doorbell_armed.store(0, std::memory_order_relaxed);
}

uint64_t RingConsumer::dropped_full() const noexcept {
  return ring_->dropped_full.load(std::memory_order_relaxed);
}

}  // namespace extmem::hints
