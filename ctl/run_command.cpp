#include "run_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

extern char** environ;

namespace extmem::ctl {

namespace fs = std::filesystem;

const char* const kInstalledShimFromBindir = EXTMEM_SHIM_FROM_BINDIR;

namespace {

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

}  // namespace

std::optional<std::string> find_shim(const char* env_shim, const std::string& exe_dir,
                                     std::string* error) {
  // Absolute, because CMD's own children inherit LD_PRELOAD wherever they run.
  if (env_shim != nullptr && *env_shim != '\0') {
    // An explicit choice never falls back to another shim.
    if (!is_file(env_shim)) {
      *error = std::string("EXTMEM_SHIM=") + env_shim + " is not a file";
      return std::nullopt;
    }
    return fs::absolute(env_shim).lexically_normal().string();
  }
  const fs::path dir(exe_dir);
  const fs::path candidates[] = {dir / kInstalledShimFromBindir,
                                 dir / ".." / "shim" / "libextmem.so"};
  for (const fs::path& candidate : candidates) {
    if (is_file(candidate)) return fs::absolute(candidate).lexically_normal().string();
  }
  *error = "cannot find libextmem.so (looked for " + candidates[0].lexically_normal().string() +
           " and " + candidates[1].lexically_normal().string() + "); set EXTMEM_SHIM";
  return std::nullopt;
}

std::string executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::map<std::string, std::string> run_environment(const RunOptions& options,
                                                   const std::string& shim,
                                                   const char* ld_preload) {
  std::map<std::string, std::string> env;
  env["LD_PRELOAD"] = ld_preload != nullptr && *ld_preload != '\0' ? shim + ":" + ld_preload : shim;
  if (options.limit) env["EXTMEM_DRAM"] = std::to_string(*options.limit);
  if (!options.policy.empty()) env["EXTMEM_POLICY"] = options.policy;
  if (!options.socket.empty()) env["EXTMEM_SOCKET"] = options.socket;
  if (options.required) env["EXTMEM_REQUIRED"] = "1";
  return env;
}

int exec_under_shim(const RunOptions& options, const std::string& shim) {
  std::map<std::string, std::string> overrides =
      run_environment(options, shim, getenv("LD_PRELOAD"));
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (!overrides.contains(std::string(entry.substr(0, entry.find('='))))) {
      env_strings.emplace_back(entry);
    }
  }
  for (const auto& [name, value] : overrides) env_strings.push_back(name + "=" + value);

  std::vector<char*> argv, envp;
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  execvpe(argv[0], argv.data(), envp.data());

  // Like a shell: 127 when there is no such command, 126 when it cannot be executed.
  const int err = errno;
  const std::string& cmd = options.argv[0];
  if (err == ENOENT && cmd.find('/') == std::string::npos) {
    fprintf(stderr, "extmemctl: %s: command not found\n", cmd.c_str());
  } else {
    fprintf(stderr, "extmemctl: cannot execute %s: %s\n", cmd.c_str(), strerror(err));
  }
  return err == ENOENT ? kExitCommandNotFound : kExitNotExecutable;
}

}  // namespace extmem::ctl
