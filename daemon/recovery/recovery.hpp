// Taking clients back after extmemd died (or stopped with pages still in swap).
//
// What survives the daemon: each application's resident pages (in its memfd), its
// userfaultfd with the arena still registered (the shim keeps both descriptors open, so
// faulting threads wait instead of reading zeros), the swap file, and each client's
// SwapRecord (which pages are in swap, and where). A new daemon finds the records, takes
// the descriptors back with pidfd_getfd, rebuilds the page table from the record and the
// memfd, and wakes every thread that was waiting on a fault the old daemon had read.
#pragma once

#include <memory>

#include "budget/governor.hpp"
#include "client/client.hpp"
#include "client/registry.hpp"
#include "extmem/kernel/result.hpp"
#include "fault/fault_loop.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

// The record of a client that has just registered.
Result<std::unique_ptr<SwapRecord>> create_swap_record(Client& client, SwapDevice& swap,
                                                       std::string_view policy);

// Takes back every client a previous daemon left a record for; returns how many. A
// record whose process is gone is removed; one that cannot be used (another swap file,
// a damaged record) is reported and left for an operator.
size_t recover_clients(ClientRegistry& registry, Governor& governor, FaultLoop& fault_loop,
                       SwapDevice& swap);

}  // namespace extmem::daemon
