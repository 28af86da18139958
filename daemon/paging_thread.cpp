#include "paging_thread.hpp"

#include <spdlog/spdlog.h>

#include "extmem/kernel/thread.hpp"

namespace extmem::daemon {

void enter_paging_thread(const char* name, int nice) {
  kernel::name_thread(name);
  if (nice == 0) return;
  if (auto set = kernel::set_thread_nice(nice); !set) {
    spdlog::warn("{}: {}; it serves faults at the daemon's own priority (daemon.paging_nice)", name,
                 set.error().message());
  }
}

}  // namespace extmem::daemon
