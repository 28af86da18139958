// The hint ring: a shared-memory queue of access hints from the shim to the daemon, so an
// application can advise on its memory without a system call per hint.
//
// The shim creates a memfd of exactly sizeof(HintRing), initializes it, seals its size and
// hands it (with an eventfd, the doorbell) to the daemon after registration. Producers are
// the application's threads; the consumer is the daemon. It is a bounded multi-producer
// queue of slots with sequence numbers (Vyukov's): a producer claims position p by moving
// `head` from p to p+1 when slot p % kEntries has sequence p, fills it and publishes it by
// storing sequence p+1; the consumer takes slot p when its sequence is p+1 and frees it by
// storing p+kEntries. Only atomics and plain integers, no locks and no allocation: the
// shim side cannot throw or block, and nothing the client writes can make the daemon wait.
//
// The daemon never trusts the ring: it keeps its own position (it never reads `head`),
// stops at the first slot that is not published for that position, takes a bounded number
// of entries per drain, and validates every entry (known hint, range inside the arena).
// A client that scribbles over the ring only loses its own hints.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace extmem::hints {

// The values of EXTMEM_HINT_* in extmem.h.
enum class Hint : uint32_t {
  kNormal = 0,
  kSequential = 1,
  kRandom = 2,
  kWillNeed = 3,
  kDontNeed = 4,
  kCold = 5,
  kHot = 6,
  kPageOut = 7,
};
inline constexpr uint32_t kMaxHint = 7;
const char* hint_name(uint32_t hint) noexcept;

inline constexpr uint32_t kRingMagic = 0x52485845;  // "EXHR"
inline constexpr uint32_t kRingVersion = 1;
inline constexpr uint64_t kEntries = 1024;  // a power of two

struct HintSlot {
  std::atomic<uint64_t> sequence;
  std::atomic<uint64_t> addr;
  std::atomic<uint64_t> len;
  std::atomic<uint32_t> hint;
  uint32_t reserved;
};

struct HintRing {
  uint32_t magic;
  uint32_t version;
  uint64_t entries;
  alignas(64) std::atomic<uint64_t> head;  // producers only
  // Set by the daemon when it will not look at the ring soon by itself; a producer of an
  // urgent hint that clears it writes the doorbell.
  alignas(64) std::atomic<uint32_t> doorbell_armed;
  // Hints the shim dropped because the ring was full (as the client reports it).
  std::atomic<uint64_t> dropped_full;
  alignas(64) HintSlot slots[kEntries];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Initializes a zeroed ring.
void init_ring(HintRing* ring) noexcept;

enum class PushResult {
  kQueued,
  kQueuedRingDoorbell,  // queued; the caller must write the doorbell
  kFull,                // dropped and counted in dropped_full
};
// Queues a hint; never blocks. `urgent`: the daemon should act before its next periodic
// look (WILLNEED, PAGEOUT).
PushResult push(HintRing* ring, uint64_t addr, uint64_t len, uint32_t hint, bool urgent) noexcept;

struct HintEntry {
  uint64_t addr;
  uint64_t len;
  uint32_t hint;
};

// The daemon's side of one ring. Not thread-safe: one drain at a time.
class RingConsumer {
 public:
  explicit RingConsumer(HintRing* ring) noexcept : ring_(ring) {}
  // Takes published entries, at most out.size(); returns how many.
  size_t take(std::span<HintEntry> out) noexcept;
  // Asks producers to ring the doorbell for their next urgent hint. Returns true if an
  // entry is ready already (one may have been queued just before the request was seen).
  bool arm_doorbell() noexcept;
  void disarm_doorbell() noexcept;
  // What the client reports it dropped for want of room (untrusted: for statistics only).
  uint64_t dropped_full() const noexcept;

 private:
  bool ready() const noexcept;
  HintRing* ring_;
  uint64_t next_ = 0;
};

}  // namespace extmem::hints
