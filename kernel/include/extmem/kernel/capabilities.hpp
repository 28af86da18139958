// Process capabilities: what the daemon keeps once it serves. Linux keeps capabilities per
// thread, so dropping them means dropping them in every thread of the process.
#pragma once

#include <cstdint>
#include <string>

#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

// Bit N is capability N (CAP_SYS_PTRACE is 19), as /proc/PID/status shows the sets.
using CapabilityMask = uint64_t;

constexpr CapabilityMask capability_bit(int cap) {
  return CapabilityMask{1} << cap;
}

// "CAP_SYS_PTRACE CAP_SYS_NICE", or "none".
std::string capability_names(CapabilityMask mask);

// What extmemd needs while it serves: CAP_SYS_PTRACE (the ptrace access checks of a client's
// /proc/PID/maps and exe, and of process_madvise), CAP_SYS_NICE (process_madvise on another
// process), and CAP_SYS_ADMIN when kernel.io_uring_disabled is 1, because swap I/O rings are
// created per thread as threads first need them.
CapabilityMask serving_capabilities() noexcept;

struct CapabilityDrop {
  CapabilityMask kept = 0;  // what every thread's effective and permitted sets now hold
  // The bounding set was cut down to `kept`. Not without CAP_SETPCAP (systemd's
  // CapabilityBoundingSet= already bounds it then); no new privileges makes the rest of it
  // unreachable anyway.
  bool bounding_set_reduced = false;
  unsigned threads = 0;  // threads the process had; 0 when it held nothing to drop

  // "kept CAP_SYS_PTRACE CAP_SYS_NICE in 12 threads (and in the bounding set); no new
  // privileges", or that there was nothing to drop.
  std::string describe() const;
};

// In every thread of the process: keeps only `keep` (what of it is held) in the effective
// and permitted sets, clears the inheritable and ambient sets, drops the rest of the
// bounding set when allowed to, and sets no_new_privs. Other threads do it in a handler of
// SIGRTMIN, which must be unused and not blocked in them; their restartable system calls
// are restarted. A process that holds no capability is left as it is.
Result<CapabilityDrop> drop_capabilities(CapabilityMask keep) noexcept;

}  // namespace extmem::kernel
