// `extmemctl run`: finds the shim and executes a command under it.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "command_line.hpp"

namespace extmem::ctl {

// Where an installed shim is, relative to the directory of an installed extmemctl.
extern const char* const kInstalledShimFromBindir;

// The shim's absolute path: env_shim ($EXTMEM_SHIM) if set, else the installed
// libextmem.so relative to exe_dir, else the build tree's (exe_dir/../shim/libextmem.so).
// Nullopt, with *error saying where it looked, when none exists.
std::optional<std::string> find_shim(const char* env_shim, const std::string& exe_dir,
                                     std::string* error);

// The directory of the running executable (/proc/self/exe).
std::string executable_dir();

// The variables `run` sets: LD_PRELOAD with the shim before ld_preload (the current
// value, may be null), and the EXTMEM_* ones options ask for.
std::map<std::string, std::string> run_environment(const RunOptions& options,
                                                   const std::string& shim, const char* ld_preload);

// Executes options.argv (searched in PATH) with the current environment plus
// run_environment(). Returns only on failure, after a message on stderr, with
// kExitCommandNotFound or kExitNotExecutable.
int exec_under_shim(const RunOptions& options, const std::string& shim);

}  // namespace extmem::ctl
