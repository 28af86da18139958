// Resolves one client's userfaultfd events: first-touch faults are filled with zero
// pages, REMOVE/UNMAP/REMAP keep the page table in step with the application.
#pragma once

#include <linux/userfaultfd.h>

#include <span>

#include "client/client.hpp"

namespace extmem::daemon {

// Handles a batch of events read from the client's userfaultfd, in order.
void handle_events(Client& client, std::span<const uffd_msg> events);

}  // namespace extmem::daemon
