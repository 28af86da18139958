// Fuzzes the config file parser (parse_config_text), which runs at start and on every
// SIGHUP: a bad file must be reported, never crash the daemon or be half accepted. Beyond
// "no crash", every error must name the file and a line of it, and every accepted
// configuration must hold what the daemon relies on (the checks of config_file.cpp).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/options.hpp"

namespace {

using extmem::daemon::Options;
using extmem::daemon::Rule;
namespace config = extmem::daemon;

constexpr std::string_view kPath = "/fuzz/extmemd.toml";
constexpr uint64_t kMaxId = 0xfffffffe;

// A violated property aborts, which libFuzzer reports as a crash with the input saved.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (false)

size_t line_count(std::string_view text) {
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  return lines;
}

bool has_nul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

bool is_absolute_path(const std::string& path) {
  return !path.empty() && path.front() == '/' && !has_nul(path);
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// "host:port", the port 1 to 65535.
bool is_tcp_address(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string_view port = std::string_view(address).substr(colon + 1);
  if (!all_digits(port) || port.size() > 5) return false;
  const unsigned long number = strtoul(std::string(port).c_str(), nullptr, 10);
  return number >= 1 && number <= 65535;
}

// "PATH:LINE: what", the line within the file (one past its end for an error at its end).
void check_error(const extmem::Error& error, std::string_view text) {
  const std::string_view context = error.context();
  if (error.code() == ENOMEM) {
    FUZZ_CHECK(context == std::string(kPath) + ": out of memory");
    return;
  }
  FUZZ_CHECK(error.code() == EINVAL);
  FUZZ_CHECK(context.substr(0, kPath.size()) == kPath && context.size() > kPath.size() &&
             context[kPath.size()] == ':');
  const std::string_view rest = context.substr(kPath.size() + 1);
  const size_t colon = rest.find(':');
  FUZZ_CHECK(colon != std::string_view::npos && colon <= 10 && all_digits(rest.substr(0, colon)));
  const unsigned long line = strtoul(std::string(rest.substr(0, colon)).c_str(), nullptr, 10);
  FUZZ_CHECK(line >= 1 && line <= line_count(text));
  FUZZ_CHECK(rest.size() > colon + 2 && rest[colon + 1] == ' ');
}

void check_limit_and_min(uint64_t limit, uint64_t min) {
  FUZZ_CHECK(config::is_valid_limit(limit) && config::is_valid_limit(min));
  FUZZ_CHECK(limit == 0 || min <= limit);
}

void check_rule(const Rule& rule) {
  FUZZ_CHECK(!rule.exe.empty() || rule.uid.has_value());  // matches something
  FUZZ_CHECK(rule.exe.find('/') == std::string::npos && !has_nul(rule.exe));
  FUZZ_CHECK(!rule.uid || *rule.uid <= kMaxId);
  FUZZ_CHECK(rule.limit || rule.min || rule.weight || rule.policy);  // sets something
  check_limit_and_min(rule.limit.value_or(0), rule.min.value_or(0));
  FUZZ_CHECK(!rule.weight || (*rule.weight >= 1 && *rule.weight <= 10000));
  FUZZ_CHECK(!rule.policy || config::is_known_policy(*rule.policy));
  FUZZ_CHECK(rule.line >= 1);
}

void check_options(const Options& o, std::string_view text) {
  FUZZ_CHECK(o.config_path == kPath);
  FUZZ_CHECK(is_absolute_path(o.socket_path) && is_absolute_path(o.control_path));
  FUZZ_CHECK(o.socket_mode <= 0777 && o.control_mode <= 0777);
  FUZZ_CHECK(o.fault_threads >= 1 && o.fault_threads <= 64);
  FUZZ_CHECK(config::is_log_level(o.log_level));
  FUZZ_CHECK(o.stats_interval <= 86400);
  FUZZ_CHECK(!o.control_group || *o.control_group <= kMaxId);
  FUZZ_CHECK(o.control_tcp.empty() || is_tcp_address(o.control_tcp));
  FUZZ_CHECK(o.swap_path.empty() || is_absolute_path(o.swap_path));
  FUZZ_CHECK(o.swap_size == 0 || !o.swap_path.empty());  // a size says what file to create
  FUZZ_CHECK(config::is_valid_limit(o.budget));
  check_limit_and_min(o.default_limit, o.default_min);
  FUZZ_CHECK(o.default_weight >= 1 && o.default_weight <= 10000);
  FUZZ_CHECK(config::is_known_policy(o.default_policy));
  for (const Rule& rule : o.rules) {
    check_rule(rule);
    FUZZ_CHECK(static_cast<size_t>(rule.line) <= line_count(text));
  }
  // What a reload compares: a configuration never differs from itself.
  FUZZ_CHECK(config::restart_required_changes(o, o).empty());
  FUZZ_CHECK(!config::describe_options(o).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  extmem::Result<Options> result = config::parse_config_text(text, kPath);
  if (result.ok()) {
    check_options(result.value(), text);
  } else {
    check_error(result.error(), text);
  }
  return 0;
}
