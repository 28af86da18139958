#include "config/options.hpp"

#include <cstdlib>

#include "extmem/units.hpp"

namespace extmem::daemon {

namespace {

bool parse_unsigned(const std::string& text, int base, unsigned long max, unsigned* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = strtoul(text.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || v > max || text[0] == '-') return false;
  *out = static_cast<unsigned>(v);
  return true;
}

}  // namespace

std::string usage() {
  return R"(usage: extmemd [options]

extmemd pages the memory of applications run under libextmem.so.

options:
  --socket PATH          client socket (default /run/extmem/extmemd.sock)
  --socket-mode OCTAL    permissions of the client socket (default 0666)
  --fault-threads N      fault-handling threads (default 2)
  --swap PATH            swap file or block device (without one, limits are not enforced)
  --swap-size SIZE       create or grow the swap file to SIZE (e.g. 8G)
  --default-limit SIZE   DRAM limit for clients that set none (default: unlimited)
  --stats-interval SECS  log every client's stats every SECS seconds (default: on SIGUSR1)
  --no-lend-uffd         do not lend /dev/userfaultfd to unprivileged clients
  --log-level LEVEL      trace, debug, info, warn, error (default info)
  --probe                print the kernel capabilities extmem uses and exit
                         (non-zero when a required one is missing)
  --version              print the version and exit
  --help                 print this help and exit
)";
}

Result<Options> parse_options(const std::vector<std::string>& args) {
  Options options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    // The option's argument, consumed; nullptr when the command line ends.
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      options.show_help = true;
    } else if (arg == "--version") {
      options.show_version = true;
    } else if (arg == "--probe") {
      options.probe_only = true;
    } else if (arg == "--no-lend-uffd") {
      options.lend_uffd_device = false;
    } else if (arg == "--socket") {
      const std::string* v = value();
      if (v == nullptr || v->empty()) return Error::make(EINVAL, "--socket needs a path");
      options.socket_path = *v;
    } else if (arg == "--socket-mode") {
      const std::string* v = value();
      if (v == nullptr || !parse_unsigned(*v, 8, 0777, &options.socket_mode)) {
        return Error::make(EINVAL, "--socket-mode needs an octal mode such as 0660");
      }
    } else if (arg == "--fault-threads") {
      const std::string* v = value();
      if (v == nullptr || !parse_unsigned(*v, 10, 64, &options.fault_threads) ||
          options.fault_threads == 0) {
        return Error::make(EINVAL, "--fault-threads needs a number from 1 to 64");
      }
    } else if (arg == "--swap") {
      const std::string* v = value();
      if (v == nullptr || v->empty()) return Error::make(EINVAL, "--swap needs a path");
      options.swap_path = *v;
    } else if (arg == "--swap-size" || arg == "--default-limit") {
      const std::string* v = value();
      uint64_t* target = arg == "--swap-size" ? &options.swap_size : &options.default_limit;
      if (v == nullptr || !parse_size(v->c_str(), target)) {
        return Error::make(EINVAL, "%s needs a size such as 512M or 8G", arg.c_str());
      }
    } else if (arg == "--stats-interval") {
      const std::string* v = value();
      if (v == nullptr || !parse_unsigned(*v, 10, 86400, &options.stats_interval)) {
        return Error::make(EINVAL, "--stats-interval needs a number of seconds (0 to 86400)");
      }
    } else if (arg == "--log-level") {
      const std::string* v = value();
      static const char* kLevels[] = {"trace", "debug", "info", "warn", "error"};
      bool known = false;
      for (const char* level : kLevels) known = known || (v != nullptr && *v == level);
      if (!known) return Error::make(EINVAL, "--log-level needs trace, debug, info, warn or error");
      options.log_level = *v;
    } else {
      return Error::make(EINVAL, "unknown option '%s' (see --help)", arg.c_str());
    }
  }
  if (options.swap_size != 0 && options.swap_path.empty()) {
    return Error::make(EINVAL, "--swap-size needs --swap PATH");
  }
  return options;
}

}  // namespace extmem::daemon
