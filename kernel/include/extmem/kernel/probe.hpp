// Capability probe: tests, once at daemon start, every kernel interface extmem relies on.
// Each check exercises the interface for real (creates the object, runs the ioctl) instead of
// comparing kernel versions, because distributions backport and configs disable features.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace extmem::kernel {

struct Capability {
  std::string name;  // short stable id, e.g. "userfaultfd", "uffd.missing_shmem"
  bool present = false;
  bool required = false;  // extmem cannot run without it
  std::string detail;     // one line: what was found, or why it is missing (errno text)
};

struct Capabilities {
  std::vector<Capability> items;
  uint64_t uffd_features = 0;  // features UFFDIO_API reported as supported
  bool kernel_swap_on = false;

  bool all_required_present() const;
  std::vector<std::string> missing_required() const;
  // nullptr when no check has that name.
  const Capability* find(std::string_view name) const;
};

// Runs every check. Never throws or crashes; a failing check is reported, not fatal, and does
// not stop the others. Closes every descriptor and unmaps every mapping it creates.
Capabilities probe_kernel();

// Aligned human-readable table (name, yes / no / no (optional), detail) and a summary line.
std::string format_capabilities(const Capabilities& caps);

}  // namespace extmem::kernel
