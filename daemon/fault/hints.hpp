// The daemon's side of the hint ring: adopting a client's ring, and draining it. Every
// entry is validated (known hint, range inside the client's mapped arena) and a drain
// takes a bounded number of entries, so a client scribbling over its ring can waste
// only its own hints.
#pragma once

#include "client/client.hpp"
#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_handler.hpp"

namespace extmem::daemon {

// Entries one drain takes at most, and the arena pages (of COLD, PAGEOUT and WILLNEED
// ranges) after which it stops taking more.
inline constexpr size_t kMaxHintsPerDrain = 256;
inline constexpr uint64_t kMaxPagesPerDrain = uint64_t{1} << 20;

// Checks and maps a ring the client sent (AttachHints): a sealed memfd of exactly
// sizeof(HintRing) bytes and an eventfd doorbell.
Result<std::unique_ptr<HintChannel>> adopt_hint_ring(uint64_t ring_bytes, kernel::UniqueFd memfd,
                                                     kernel::UniqueFd doorbell);

// Takes and applies the client's queued hints, then asks for the doorbell if the ring is
// empty. `wait`: wait for a drain running on another thread instead of leaving the
// ring to it.
void drain_hints(Client& client, Pager& pager, bool wait);

}  // namespace extmem::daemon
