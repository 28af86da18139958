#include "command_line.hpp"

#include <charconv>
#include <cstdlib>
#include <string_view>

#include "extmem/units.hpp"

namespace extmem::ctl {

namespace {

constexpr std::string_view kTargetSchemes[] = {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:"};

struct CommandName {
  std::string_view name;
  Command command;
};

constexpr CommandName kCommands[] = {
    {"status", Command::kStatus},
    {"list", Command::kList},
    {"show", Command::kShow},
    {"top", Command::kTop},
    {"set-limit", Command::kSetLimit},
    {"set-policy", Command::kSetPolicy},
    {"set-budget", Command::kSetBudget},
    {"check", Command::kCheck},
    {"run", Command::kRun},
};

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

template <typename T>
bool parse_unsigned(std::string_view text, T* out) {
  if (!all_digits(text)) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Seconds in (0, 3600]: more is a mistake, and would overflow the conversions to
// milliseconds and deadlines.
bool parse_seconds(const std::string& text, double* out) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value > 0 && value <= 3600)) return false;
  *out = value;
  return true;
}

// Walks the arguments; an option's value is either "--opt=value" or the next argument.
class Args {
 public:
  explicit Args(const std::vector<std::string>& args) : args_(args) {}

  bool done() const { return next_ >= args_.size(); }
  const std::string& peek() const { return args_[next_]; }
  std::string take() { return args_[next_++]; }
  std::vector<std::string> rest() {
    std::vector<std::string> out(args_.begin() + static_cast<std::ptrdiff_t>(next_), args_.end());
    next_ = args_.size();
    return out;
  }

  // Splits "--opt=value" of the current argument into its name and inline value.
  void split_option(std::string* name, std::optional<std::string>* inline_value) const {
    const std::string& arg = peek();
    size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string::npos) {
      *name = arg.substr(0, eq);
      *inline_value = arg.substr(eq + 1);
    } else {
      *name = arg;
      inline_value->reset();
    }
  }

  // Consumes a flag; false (and *error) when it was given a value.
  bool flag(const std::string& name, const std::optional<std::string>& inline_value,
            std::string* error) {
    ++next_;
    if (inline_value) *error = name + " takes no value";
    return !inline_value;
  }

  // The value of the option just named, or nullopt (and *error) when it has none.
  std::optional<std::string> value(const std::string& name,
                                   const std::optional<std::string>& inline_value,
                                   std::string* error) {
    ++next_;
    if (inline_value) return inline_value;
    if (done()) {
      *error = name + " needs a value";
      return std::nullopt;
    }
    return take();
  }

 private:
  const std::vector<std::string>& args_;
  size_t next_ = 0;
};

// kFinal: -h or --version, which end the parsing.
enum class OptionResult { kNotGlobal, kTaken, kFinal, kError };

// Global options are accepted before and after the command (not inside `run`'s CMD).
OptionResult parse_global_option(Args& args, Invocation* inv, std::string* error) {
  std::string name;
  std::optional<std::string> inline_value;
  args.split_option(&name, &inline_value);
  if (name == "-h" || name == "--help") {
    args.take();
    inv->command = Command::kHelp;
    return OptionResult::kFinal;
  }
  if (name == "--version") {
    args.take();
    inv->command = Command::kVersion;
    return OptionResult::kFinal;
  }
  if (name == "--json") {
    if (!args.flag(name, inline_value, error)) return OptionResult::kError;
    inv->json = true;
    return OptionResult::kTaken;
  }
  if (name == "--control") {
    auto v = args.value(name, inline_value, error);
    if (!v) return OptionResult::kError;
    if (v->empty()) {
      *error = "--control needs a path";
      return OptionResult::kError;
    }
    inv->control = *v;
    return OptionResult::kTaken;
  }
  if (name == "--timeout") {
    auto v = args.value(name, inline_value, error);
    if (!v) return OptionResult::kError;
    if (!parse_seconds(*v, &inv->timeout_seconds)) {
      *error = "--timeout " + *v + ": not a number of seconds from 0 to 3600";
      return OptionResult::kError;
    }
    return OptionResult::kTaken;
  }
  return OptionResult::kNotGlobal;
}

bool parse_size_arg(const std::string& what, const std::string& text, bool allow_none,
                    uint64_t* out, std::string* error) {
  if (allow_none && text == "none") {
    *out = 0;
    return true;
  }
  if (!parse_size(text.c_str(), out)) {
    *error = what + " '" + text + "' is not a size (examples: 4096, 64K, 512M, 2.5G" +
             (allow_none ? ", none)" : ")");
    return false;
  }
  return true;
}

bool parse_selector_arg(const std::string& text, v1::ClientSelector* out, std::string* error) {
  auto selector = parse_selector(text);
  if (!selector) {
    *error = "'" + text + "' is neither a pid nor an executable name";
    return false;
  }
  *out = std::move(*selector);
  return true;
}

// The command's own options and operands; global options may be mixed in.
bool parse_command_args(Args& args, Invocation* inv, std::string* error) {
  std::vector<std::string> operands;
  const bool is_run = inv->command == Command::kRun;
  while (!args.done()) {
    const std::string& arg = args.peek();
    if (is_run && (arg == "--" || !arg.starts_with("-"))) {
      // CMD starts here; everything after it is CMD's.
      if (arg == "--") args.take();
      inv->run.argv = args.rest();
      break;
    }
    if (arg == "--") {
      args.take();
      for (auto& operand : args.rest()) operands.push_back(std::move(operand));
      break;
    }
    if (!arg.starts_with("-") || arg == "-") {
      operands.push_back(args.take());
      continue;
    }
    OptionResult global = parse_global_option(args, inv, error);
    if (global == OptionResult::kError) return false;
    if (global == OptionResult::kFinal) return true;
    if (global == OptionResult::kTaken) continue;

    std::string name;
    std::optional<std::string> inline_value;
    args.split_option(&name, &inline_value);
    auto value = [&]() { return args.value(name, inline_value, error); };
    if (inv->command == Command::kTop && name == "--interval") {
      auto v = value();
      if (!v) return false;
      if (!parse_seconds(*v, &inv->interval_seconds) || inv->interval_seconds < 0.1) {
        *error = "--interval " + *v + ": not a number of seconds from 0.1 to 3600";
        return false;
      }
    } else if (inv->command == Command::kTop && name == "--iterations") {
      auto v = value();
      if (!v) return false;
      if (!parse_unsigned(*v, &inv->iterations) || inv->iterations == 0) {
        *error = "--iterations " + *v + ": not a positive integer";
        return false;
      }
    } else if (inv->command == Command::kSetLimit && name == "--min") {
      auto v = value();
      uint64_t min = 0;
      if (!v || !parse_size_arg("--min", *v, true, &min, error)) return false;
      inv->min = min;
    } else if (inv->command == Command::kSetLimit && name == "--weight") {
      auto v = value();
      uint32_t weight = 0;
      if (!v) return false;
      if (!parse_unsigned(*v, &weight)) {
        *error = "--weight " + *v + ": not an integer from 0 to 4294967295";
        return false;
      }
      inv->weight = weight;
    } else if (is_run && name == "--limit") {
      auto v = value();
      uint64_t limit = 0;
      if (!v || !parse_size_arg("--limit", *v, false, &limit, error)) return false;
      if (limit == 0) {
        *error = "--limit must be more than 0";
        return false;
      }
      inv->run.limit = limit;
    } else if (is_run && name == "--policy") {
      auto v = value();
      if (!v) return false;
      inv->run.policy = *v;
    } else if (is_run && name == "--socket") {
      auto v = value();
      if (!v) return false;
      inv->run.socket = *v;
    } else if (is_run && name == "--required") {
      if (!args.flag(name, inline_value, error)) return false;
      inv->run.required = true;
    } else {
      *error = "unknown option " + name;
      return false;
    }
  }

  auto expect_operands = [&](size_t n, const char* what) {
    if (operands.size() == n) return true;
    *error = operands.size() < n ? std::string("missing ") + what
                                 : "unexpected argument '" + operands[n] + "'";
    return false;
  };
  switch (inv->command) {
    case Command::kStatus:
    case Command::kList:
    case Command::kTop:
    case Command::kCheck:
      return expect_operands(0, "");
    case Command::kShow:
      return expect_operands(1, "PID|NAME") &&
             parse_selector_arg(operands[0], &inv->selector, error);
    case Command::kSetLimit:
      return expect_operands(2, "PID|NAME SIZE") &&
             parse_selector_arg(operands[0], &inv->selector, error) &&
             parse_size_arg("limit", operands[1], true, &inv->size, error);
    case Command::kSetPolicy:
      if (!expect_operands(2, "PID|NAME POLICY") ||
          !parse_selector_arg(operands[0], &inv->selector, error)) {
        return false;
      }
      inv->policy = operands[1];
      return true;
    case Command::kSetBudget:
      return expect_operands(1, "SIZE|none") &&
             parse_size_arg("budget", operands[0], true, &inv->size, error);
    case Command::kRun:
      if (inv->run.argv.empty()) {
        *error = "missing CMD";
        return false;
      }
      return true;
    case Command::kHelp:
    case Command::kVersion:
      return true;
  }
  return true;
}

}  // namespace

std::optional<v1::ClientSelector> parse_selector(const std::string& text) {
  if (text.empty()) return std::nullopt;
  v1::ClientSelector selector;
  if (all_digits(text)) {
    int32_t pid = 0;
    if (!parse_unsigned(text, &pid) || pid == 0) return std::nullopt;
    selector.set_pid(pid);
  } else {
    selector.set_executable(text);
  }
  return selector;
}

std::string control_target(const std::string& control) {
  for (std::string_view scheme : kTargetSchemes) {
    if (control.starts_with(scheme)) return control;
  }
  return "unix:" + control;
}

std::string control_socket_path(const std::string& control) {
  const std::string target = control_target(control);
  if (!target.starts_with("unix:")) return "";
  // "unix:///run/x" and "unix:/run/x" name the same file.
  if (target.starts_with("unix://")) return target.substr(7);
  return target.substr(5);
}

ParseResult parse_command_line(const std::vector<std::string>& arg_list, const char* env_control) {
  ParseResult result;
  Invocation inv;
  inv.control = env_control != nullptr && *env_control != '\0' ? env_control : kDefaultControl;
  Args args(arg_list);
  bool have_command = false;
  while (!args.done() && !have_command) {
    const std::string& arg = args.peek();
    if (arg.starts_with("-")) {
      OptionResult global = parse_global_option(args, &inv, &result.error);
      if (global == OptionResult::kError) return result;
      if (global == OptionResult::kNotGlobal) {
        result.error = "unknown option " + arg;
        return result;
      }
      if (global == OptionResult::kFinal) {
        result.invocation = std::move(inv);
        return result;
      }
      continue;
    }
    std::string name = args.take();
    for (const auto& known : kCommands) {
      if (known.name == name) {
        inv.command = known.command;
        have_command = true;
      }
    }
    if (!have_command) {
      result.error = "unknown command '" + name + "'";
      return result;
    }
  }
  if (!have_command) {
    result.error = "missing command";
    return result;
  }
  if (!parse_command_args(args, &inv, &result.error)) {
    std::string_view name;
    for (const auto& known : kCommands) {
      if (known.command == inv.command) name = known.name;
    }
    result.error = std::string(name) + ": " + result.error;
    return result;
  }
  result.invocation = std::move(inv);
  return result;
}

std::string synopsis() {
  return "usage: extmemctl [OPTIONS] COMMAND [ARGS]\n"
         "commands:\n"
         "  status                          the daemon, its totals and health\n"
         "  list                            one line per client\n"
         "  show PID|NAME                   everything about one client\n"
         "  top [--interval S] [--iterations N]\n"
         "                                  a live view, refreshed every S seconds (1)\n"
         "  set-limit PID|NAME SIZE|none [--min SIZE] [--weight N]\n"
         "                                  a client's DRAM limit, guarantee and weight\n"
         "  set-policy PID|NAME POLICY      a client's paging policy\n"
         "  set-budget SIZE|none            the DRAM shared by all clients\n"
         "  check                           the kernel features extmem uses\n"
         "  run [--limit SIZE] [--policy P] [--socket PATH] [--required] -- CMD [ARGS]\n"
         "                                  run CMD under the extmem shim\n";
}

std::string usage() {
  return synopsis() +
         "\n"
         "A PID (only digits) selects one client; a NAME every client running that\n"
         "executable. Sizes: 4096, 64K, 512M, 2.5G, 1T; 0 or none: no limit or budget.\n"
         "\n"
         "options:\n"
         "  --control PATH     extmemd's control socket (else $EXTMEM_CONTROL, else\n"
         "                     " +
         std::string(kDefaultControl) +
         "); unix:PATH or dns:HOST:PORT also work\n"
         "  --timeout SECONDS  how long to wait for the daemon (5)\n"
         "  --json             machine-readable output (protobuf JSON, field names as in\n"
         "                     control.proto); top prints one object per line\n"
         "  -h, --help         this help\n"
         "  --version          extmemctl's version\n"
         "\n"
         "run sets LD_PRELOAD (the shim first), EXTMEM_DRAM, EXTMEM_POLICY, EXTMEM_SOCKET\n"
         "and EXTMEM_REQUIRED and executes CMD; it does not use the control socket. The\n"
         "shim is $EXTMEM_SHIM, else the installed libextmem.so, else the build tree's.\n"
         "\n"
         "exit status:\n"
         "  0    success\n"
         "  1    the daemon refused (its message is printed), or check found a required\n"
         "       feature missing, or status found the daemon not serving\n"
         "  2    usage error\n"
         "  3    extmemd cannot be reached (not running, no answer within --timeout, or\n"
         "       no permission to use its control socket)\n"
         "  126  run: CMD cannot be executed\n"
         "  127  run: CMD not found\n"
         "  run otherwise exits with CMD's status.\n";
}

}  // namespace extmem::ctl
