// The threads that serve page faults (paging threads, reclaimer) run at the
// configured priority (daemon.paging_nice): an application's faulting thread waits for
// them, so under CPU contention every wait of theirs for a CPU is added to a fault. The
// kernel serves its own swap-ins in the faulting thread, with no such wait.
#pragma once

namespace extmem::daemon {

// Names the calling thread and sets its nice value; logs why when it cannot.
void enter_paging_thread(const char* name, int nice);

}  // namespace extmem::daemon
