// Helpers shared by the test client programs: the fatal-error exit and waiting for a child
// (bench/cli.hpp has the bench programs' own).
#pragma once

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace extmem::clients {

// What the program is doing (its subcommand, say): printed after the program's name.
inline const char* die_context = nullptr;

// Prints "PROGRAM: [CONTEXT: ]message" on stderr (stdout flushed first) and ends the
// process with status 1. _exit, not exit: a client may die in a worker thread or a forked
// child, where exit handlers are unsafe.
[[noreturn, gnu::format(printf, 1, 2)]] inline void die(const char* fmt, ...) {
  fflush(stdout);
  char message[512];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  if (die_context != nullptr) {
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, die_context, message);
  } else {
    fprintf(stderr, "%s: %s\n", program_invocation_short_name, message);
  }
  _exit(1);
}

// die() with "WHAT: strerror(errno)".
[[noreturn]] inline void die_errno(const char* what) {
  die("%s: %s", what, strerror(errno));
}

// waitpid's status for child `pid` (EINTR retried); dies on any other error.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) die_errno("waitpid");
  }
  return status;
}

}  // namespace extmem::clients
