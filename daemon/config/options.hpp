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
