// Command-line helpers shared by the benchmark programs.
#pragma once

#include <errno.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace extmem::bench {

// Prints "PROGRAM: message" on stderr (stdout flushed first) and exits with 1.
[[noreturn, gnu::format(printf, 1, 2)]] inline void die(const char* fmt, ...) {
  fflush(stdout);
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "%s: ", program_invocation_short_name);
  vfprintf(stderr, fmt, args);
  fputc('\n', stderr);
  va_end(args);
  exit(1);
}

// The whole number `text`, given for option `opt`, in [min, max]; dies otherwise.
inline uint64_t parse_count(const char* opt, const char* text, uint64_t min, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
    die("%s needs a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'", opt, min, max, text);
  }
  return v;
}

}  // namespace extmem::bench
