// Running extmemctl's commands: the gRPC calls and what they print.
#pragma once

#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "command_line.hpp"

namespace extmem::ctl {

// The whole program: args excludes the program name; returns the exit status.
int extmemctl_main(const std::vector<std::string>& args);

// Runs a parsed command and prints its result; returns the exit status.
int execute(const Invocation& invocation);

// How a failed call is reported: an absent or silent daemon is kExitUnreachable with a
// hint, anything else the daemon's own message with kExitError.
struct Failure {
  int exit_code = kExitError;
  std::string message;  // without the "extmemctl: " prefix
};
Failure describe_failure(const grpc::Status& status, const Invocation& invocation);

}  // namespace extmem::ctl
