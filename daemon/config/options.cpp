// The command line, and how it combines with the config file.
#include "config/options.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "extmem/kernel/fd.hpp"
#include "extmem/units.hpp"
#include "policy/policy.hpp"

namespace extmem::daemon {

namespace {

bool parse_unsigned(const std::string& text, unsigned long max, unsigned* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = strtoul(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v > max || text[0] == '-') return false;
  *out = static_cast<unsigned>(v);
  return true;
}

bool parse_nice(const std::string& text, int* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long v = strtol(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < -20 || v > 19) return false;
  *out = static_cast<int>(v);
  return true;
}

// Applies the flags in `args` to `options`. load_options runs it twice: on the defaults,
// to check the flags and find --config, then over the file's values, so that flags win
// wherever they are on the command line.
Result<void> apply_flags(const std::vector<std::string>& args, Options* options) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    // The option's argument, consumed; nullptr when the command line ends.
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      options->show_help = true;
    } else if (arg == "--version") {
      options->show_version = true;
    } else if (arg == "--probe") {
      options->probe_only = true;
    } else if (arg == "--check-config") {
      options->check_config = true;
    } else if (arg == "--lend-uffd") {
      options->lend_uffd_device = true;
    } else if (arg == "--no-lend-uffd") {
      options->lend_uffd_device = false;
    } else if (arg == "--record-faults") {
      const std::string* v = value();
      if (v == nullptr || v->empty())
        return Error::make(EINVAL, "--record-faults needs a directory");
      options->record_faults_dir = *v;
    } else if (arg == "--config" || arg == "--socket" || arg == "--swap" || arg == "--control") {
      const std::string* v = value();
      if (v == nullptr || v->empty()) return Error::make(EINVAL, "%s needs a path", arg.c_str());
      std::string* target = arg == "--config"   ? &options->config_path
                            : arg == "--socket" ? &options->socket_path
                            : arg == "--swap"   ? &options->swap_path
                                                : &options->control_path;
      *target = *v;
    } else if (arg == "--socket-mode" || arg == "--control-mode") {
      const std::string* v = value();
      unsigned* target = arg == "--socket-mode" ? &options->socket_mode : &options->control_mode;
      if (v == nullptr || !parse_octal_mode(*v, target)) {
        return Error::make(EINVAL, "%s needs an octal mode such as 0660", arg.c_str());
      }
    } else if (arg == "--fault-threads") {
      const std::string* v = value();
      if (v == nullptr || !parse_unsigned(*v, 64, &options->fault_threads) ||
          options->fault_threads == 0) {
        return Error::make(EINVAL, "--fault-threads needs a number from 1 to 64");
      }
    } else if (arg == "--paging-nice") {
      const std::string* v = value();
      if (v == nullptr || !parse_nice(*v, &options->paging_nice)) {
        return Error::make(EINVAL, "--paging-nice needs a nice value from -20 to 19");
      }
    } else if (arg == "--swap-size" || arg == "--default-limit" || arg == "--budget") {
      const std::string* v = value();
      uint64_t* target = arg == "--swap-size"       ? &options->swap_size
                         : arg == "--default-limit" ? &options->default_limit
                                                    : &options->budget;
      if (v == nullptr || !parse_size(v->c_str(), target)) {
        return Error::make(EINVAL, "%s needs a size such as 512M or 8G", arg.c_str());
      }
      if (target != &options->swap_size && !is_valid_limit(*target)) {
        return Error::make(EINVAL, "%s needs 0 (none) or a size of at least 1M", arg.c_str());
      }
    } else if (arg == "--default-policy") {
      const std::string* v = value();
      if (v == nullptr || !is_known_policy(*v)) {
        return Error::make(EINVAL, "--default-policy needs a policy: %s",
                           known_policy_list().c_str());
      }
      options->default_policy = *v;
    } else if (arg == "--stats-interval") {
      const std::string* v = value();
      if (v == nullptr || !parse_unsigned(*v, 86400, &options->stats_interval)) {
        return Error::make(EINVAL, "--stats-interval needs a number of seconds (0 to 86400)");
      }
    } else if (arg == "--log-level") {
      const std::string* v = value();
      if (v == nullptr || !is_log_level(*v)) {
        return Error::make(EINVAL, "--log-level needs trace, debug, info, warn or error");
      }
      options->log_level = *v;
    } else {
      return Error::make(EINVAL, "unknown option '%s' (see --help)", arg.c_str());
    }
  }
  return {};
}

// The config file named by --config, else the default one if it exists, else defaults.
Result<Options> read_config(const std::string& given_path) {
  const std::string path = given_path.empty() ? kDefaultConfigPath : given_path;
  kernel::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int code = errno;
    if (code == ENOENT && given_path.empty()) return Options{};
    return Error::make(code, "%s: cannot open (%s)", path.c_str(), strerrordesc_np(code));
  }
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int code = errno;
      return Error::make(code, "%s: cannot read (%s)", path.c_str(), strerrordesc_np(code));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return parse_config_text(text, path);
}

}  // namespace

bool parse_octal_mode(std::string_view text, unsigned* mode) {
  // Octal digits only: strtoul would also take a sign, spaces or "0x".
  if (text.empty()) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return false;
    value = value * 8 + static_cast<unsigned>(c - '0');
    if (value > 0777) return false;
  }
  *mode = value;
  return true;
}

bool is_valid_limit(uint64_t bytes) {
  return bytes == 0 || bytes >= (uint64_t{1} << 20);
}

bool is_log_level(std::string_view level) {
  for (std::string_view known : {"trace", "debug", "info", "warn", "error"}) {
    if (level == known) return true;
  }
  return false;
}

bool is_known_policy(std::string_view name) {
  const std::vector<std::string> names = policy_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string known_policy_list() {
  std::string list;
  for (const std::string& name : policy_names()) list += (list.empty() ? "" : ", ") + name;
  return list;
}

std::string usage() {
  return R"(usage: extmemd [options]

extmemd pages the memory of applications run under libextmem.so. It reads its settings
from the config file, then applies the options below over them, wherever they appear.

options:
  --config PATH          config file (default /etc/extmem/extmemd.toml when it exists)
  --check-config         check the config file and the options, print a summary and exit
  --socket PATH          client socket (default /run/extmem/extmemd.sock)
  --socket-mode OCTAL    permissions of the client socket (default 0666)
  --control PATH         control socket (default /run/extmem/control.sock)
  --control-mode OCTAL   permissions of the control socket (default 0660)
  --fault-threads N      paging threads, each with its own io_uring (default 2)
  --paging-nice N        nice value of the threads that serve faults, -20 to 19
                         (default -10; 0: the daemon's own)
  --swap PATH            swap file or block device (without one, limits are not enforced)
  --swap-size SIZE       create or grow the swap file to SIZE (e.g. 8G)
  --budget SIZE          DRAM shared by all clients (default: no global budget)
  --default-limit SIZE   DRAM limit for clients that set none (default: unlimited)
  --default-policy NAME  paging policy for clients that choose none (default clock)
  --stats-interval SECS  log every client's stats every SECS seconds (default: on SIGUSR1)
  --lend-uffd            lend /dev/userfaultfd to allowed clients that cannot create a
                         full userfaultfd themselves (default: refuse them)
  --no-lend-uffd         do not lend it, whatever the config file says
  --log-level LEVEL      trace, debug, info, warn, error (default info)
  --record-faults DIR    write each client's faults to DIR/faults-PID.trace (for the
                         policy simulator in tests/unit; see docs/POLICIES.md)
  --probe                print the kernel capabilities extmem uses and exit
                         (non-zero when a required one is missing)
  --version              print the version and exit
  --help                 print this help and exit
)";
}

Result<Options> load_options(const std::vector<std::string>& args,
                             OptionsErrorSource* error_source) {
  auto fail = [error_source](const Error& error, OptionsErrorSource source) {
    if (error_source != nullptr) *error_source = source;
    return error;
  };
  Options flags;
  if (auto applied = apply_flags(args, &flags); !applied) {
    return fail(applied.error(), OptionsErrorSource::kCommandLine);
  }
  if (flags.show_help || flags.show_version) return flags;

  Result<Options> options = read_config(flags.config_path);
  if (!options) return fail(options.error(), OptionsErrorSource::kConfigFile);
  if (auto applied = apply_flags(args, &*options); !applied) {
    return fail(applied.error(), OptionsErrorSource::kCommandLine);
  }
  // The file was consistent on its own, so a conflict here comes from a flag.
  if (options->swap_size != 0 && options->swap_path.empty()) {
    return fail(Error::make(EINVAL, "--swap-size needs --swap PATH"),
                OptionsErrorSource::kCommandLine);
  }
  if (options->default_limit != 0 && options->default_min > options->default_limit) {
    return fail(Error::make(EINVAL, "--default-limit is below memory.default_min in %s",
                            options->config_path.c_str()),
                OptionsErrorSource::kCommandLine);
  }
  return options;
}

std::string describe_options(const Options& options) {
  char buffer[32];
  auto size_or_none = [&buffer](uint64_t bytes) -> std::string {
    return bytes == 0 ? "none" : format_size(bytes, buffer, sizeof(buffer));
  };
  std::string text =
      std::to_string(options.rules.size()) + (options.rules.size() == 1 ? " rule" : " rules") +
      ", default limit " + size_or_none(options.default_limit) + ", default policy " +
      options.default_policy + ", budget " + size_or_none(options.budget) + ", swap ";
  if (options.swap_path.empty()) {
    text += "none (limits not enforced)";
  } else {
    text += options.swap_path;
    if (options.swap_size != 0) text += " (" + size_or_none(options.swap_size) + ")";
  }
  text += ", clients on " + options.socket_path;
  if (options.allowed_users.empty() && options.allowed_groups.empty()) {
    return text + " (any local user)";
  }
  auto count = [](size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  return text + " (root, " + count(options.allowed_users.size(), "user") + " and " +
         count(options.allowed_groups.size(), "group") + ")";
}

}  // namespace extmem::daemon
