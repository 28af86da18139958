// extmemd's command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "extmem/kernel/result.hpp"

namespace extmem::daemon {

struct Options {
  std::string socket_path = "/run/extmem/extmemd.sock";
  unsigned socket_mode = 0666;  // who may become a client; see docs/SECURITY notes
  unsigned fault_threads = 2;
  std::string log_level = "info";
  // Swap file or block device; none: limits are not enforced.
  std::string swap_path;
  uint64_t swap_size = 0;       // create or grow a swap file to this size
  uint64_t default_limit = 0;   // DRAM limit of clients that ask for none; 0: unlimited
  unsigned stats_interval = 0;  // seconds between stats log lines; 0: only on SIGUSR1
  // Lend /dev/userfaultfd to clients that cannot create a full userfaultfd themselves
  // (without it, faults inside system calls on their managed memory fail with EFAULT).
  bool lend_uffd_device = true;
  bool probe_only = false;
  bool show_help = false;
  bool show_version = false;
};

Result<Options> parse_options(const std::vector<std::string>& args);
std::string usage();

}  // namespace extmem::daemon
