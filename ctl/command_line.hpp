// extmemctl's command line: global options, one command and its arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "extmem/v1/control.pb.h"

namespace extmem::ctl {

// Exit statuses, documented in usage().
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;            // the daemon refused, or `check` found a gap
inline constexpr int kExitUsage = 2;            // a bad command line
inline constexpr int kExitUnreachable = 3;      // extmemd is not running or does not answer
inline constexpr int kExitNotExecutable = 126;  // `run`: CMD exists but cannot be executed
inline constexpr int kExitCommandNotFound = 127;

inline constexpr const char* kDefaultControl = "/run/extmem/control.sock";

enum class Command {
  kHelp,
  kVersion,
  kStatus,
  kList,
  kShow,
  kTop,
  kSetLimit,
  kSetPolicy,
  kSetBudget,
  kCheck,
  kRun,
};

struct RunOptions {
  std::optional<uint64_t> limit;  // EXTMEM_DRAM in bytes
  std::string policy;             // EXTMEM_POLICY; empty: not set
  std::string socket;             // EXTMEM_SOCKET; empty: not set
  bool required = false;          // EXTMEM_REQUIRED=1
  std::vector<std::string> argv;  // CMD ARGS...
};

struct Invocation {
  Command command = Command::kHelp;
  std::string control;  // a Unix socket path, or a gRPC target with a scheme
  double timeout_seconds = 5;
  bool json = false;

  v1::ClientSelector selector;     // show, set-limit, set-policy
  uint64_t size = 0;               // set-limit's limit, set-budget's budget; 0: none
  std::optional<uint64_t> min;     // set-limit --min
  std::optional<uint32_t> weight;  // set-limit --weight
  std::string policy;              // set-policy
  double interval_seconds = 1;     // top --interval
  uint64_t iterations = 0;         // top --iterations; 0: until interrupted
  RunOptions run;
};

// The invocation, or why the command line is wrong (error non-empty: exit kExitUsage).
struct ParseResult {
  std::optional<Invocation> invocation;
  std::string error;
};

// args excludes the program name. env_control is $EXTMEM_CONTROL (may be null), used
// when there is no --control.
ParseResult parse_command_line(const std::vector<std::string>& args, const char* env_control);

// Only digits: a pid; anything else: an executable name. Null for "", "0" and pids that
// do not fit a pid_t.
std::optional<v1::ClientSelector> parse_selector(const std::string& text);

// The gRPC target for --control: a path becomes "unix:PATH"; "unix:...", "dns:...",
// "ipv4:..." and "ipv6:..." are used as they are.
std::string control_target(const std::string& control);
// The socket file behind a control target; empty when it is not a Unix socket.
std::string control_socket_path(const std::string& control);

// The synopsis printed with a usage error, and the full --help text.
std::string synopsis();
std::string usage();

}  // namespace extmem::ctl
