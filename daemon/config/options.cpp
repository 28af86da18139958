#include "config/options.hpp"

#include <cstdlib>

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
  return options;
}

}  // namespace extmem::daemon
