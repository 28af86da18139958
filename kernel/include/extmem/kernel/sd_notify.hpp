// The service manager's notification protocol (sd_notify(3)) without libsystemd: one
// datagram to $NOTIFY_SOCKET per state change, and the watchdog interval it expects.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

// Sends `state` (newline-separated assignments, e.g. "READY=1\nSTATUS=serving") as one
// datagram to $NOTIFY_SOCKET: an absolute path, or an abstract name starting with '@'.
// Returns false when NOTIFY_SOCKET is unset (not run by a service manager). The variable
// is left set: the daemon notifies for its whole life.
Result<bool> sd_notify(std::string_view state) noexcept;

// The watchdog interval from WATCHDOG_USEC when it is meant for this process
// (WATCHDOG_PID unset or our pid); nullopt when there is none or it does not parse.
// "WATCHDOG=1" must be sent more often than this, conventionally every half.
std::optional<std::chrono::microseconds> sd_watchdog_interval() noexcept;

}  // namespace extmem::kernel
