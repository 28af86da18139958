// The config file: TOML text into Options. Every error names the file, the line and the
// key, and says what is expected, because a daemon that refuses to start must say why.
#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <optional>

#include <toml++/toml.h>

#include "config/options.hpp"
#include "extmem/units.hpp"

namespace extmem::daemon {
namespace {

constexpr uint32_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "no change" to the kernel
constexpr char kSizeExpected[] = "a size such as 512M or 8G";
constexpr char kPathExpected[] = "an absolute path";

// One key of a table: its name there, its full name for errors ("rule[2].limit").
struct Field {
  std::string_view name;
  std::string key;
  const toml::node* node;
  unsigned line;
};

// A table's entries in file order (toml++ keeps them sorted by name), so that the error
// reported is the first one in the file.
std::vector<Field> fields(const toml::table& table, std::string_view prefix) {
  std::vector<Field> out;
  for (const auto& [key, node] : table) {
    std::string full = prefix.empty() ? std::string(key.str())
                                      : std::string(prefix) + "." + std::string(key.str());
    out.push_back({key.str(), std::move(full), &node, key.source().begin.line});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Field& a, const Field& b) { return a.line < b.line; });
  return out;
}

const char* type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      break;
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "nothing";
}

// getpwnam_r / getgrnam_r, with a buffer grown until the entry fits.
template <typename Entry, typename Id>
std::optional<Id> look_up(const std::string& name,
                          int (*get)(const char*, Entry*, char*, size_t, Entry**), Id Entry::*id) {
  std::vector<char> buffer(1024);
  for (;;) {
    Entry entry;
    Entry* found = nullptr;
    const int rc = get(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (size_t{1} << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return std::nullopt;
    return entry.*id;
  }
}

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "host:port" with a port from 1 to 65535; an IPv6 host goes in brackets.
bool valid_tcp_address(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string_view host(address.data(), colon);
  const std::string_view port(address.data() + colon + 1, address.size() - colon - 1);
  if (host.find(':') != std::string_view::npos && (host.front() != '[' || host.back() != ']')) {
    return false;
  }
  if (!all_digits(port) || port.size() > 5) return false;
  const unsigned long number = strtoul(std::string(port).c_str(), nullptr, 10);
  return number >= 1 && number <= 65535;
}

// Walks the document, keeping the first error; later errors are not reported, so the
// values they leave behind do not matter.
class ConfigParser {
 public:
  explicit ConfigParser(std::string_view path) : path_(path) {}

  Result<Options> parse(const toml::table& root) {
    Options options;
    options.config_path = std::string(path_);
    for (const Field& f : fields(root, "")) {
      if (f.name == "rule") {
        rules(f, &options);
        continue;
      }
      const toml::table* table = f.node->as_table();
      if (f.name == "daemon" || f.name == "control" || f.name == "security" || f.name == "swap" ||
          f.name == "memory") {
        if (table == nullptr) {
          fail(f, "bad type: %s (a table [%s])", type_name(f.node->type()), f.key.c_str());
        } else if (f.name == "daemon") {
          daemon_table(*table, &options);
        } else if (f.name == "control") {
          control_table(*table, &options);
        } else if (f.name == "security") {
          security_table(*table, &options);
        } else if (f.name == "swap") {
          swap_table(*table, &options);
        } else {
          memory_table(*table, &options);
        }
      } else {
        unknown(f);
      }
    }
    if (error_) return *error_;
    return options;
  }

 private:
  // "PATH:LINE: KEY: what is wrong (what is expected)".
  [[gnu::format(printf, 3, 4)]] void fail(const Field& f, const char* fmt, ...) {
    if (error_) return;
    char what[240];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof(what), fmt, args);
    va_end(args);
    error_ = Error::make(EINVAL, "%.*s:%u: %s: %s", static_cast<int>(path_.size()), path_.data(),
                         f.line, f.key.c_str(), what);
  }

  void unknown(const Field& f) {
    if (error_) return;
    if (f.node->is_table()) {
      error_ = Error::make(EINVAL, "%.*s:%u: unknown table [%s]", static_cast<int>(path_.size()),
                           path_.data(), f.line, f.key.c_str());
    } else {
      fail(f, "unknown key");
    }
  }

  void wrong_type(const Field& f, const char* expected) {
    fail(f, "bad type: %s (%s)", type_name(f.node->type()), expected);
  }

  // A string without NUL (it would cut a name short in the C library).
  const std::string* string(const Field& f, const char* expected) {
    const toml::value<std::string>* value = f.node->as_string();
    if (value == nullptr) {
      wrong_type(f, expected);
      return nullptr;
    }
    if (value->get().find('\0') != std::string::npos) {
      fail(f, "contains a NUL character (%s)", expected);
      return nullptr;
    }
    return &value->get();
  }

  std::optional<std::string> absolute_path(const Field& f) {
    const std::string* text = string(f, kPathExpected);
    if (text == nullptr) return std::nullopt;
    if (text->empty() || text->front() != '/') {
      fail(f, "'%.60s' is not absolute (%s)", text->c_str(), kPathExpected);
      return std::nullopt;
    }
    return *text;
  }

  template <typename T>
  std::optional<T> integer(const Field& f, int64_t min, int64_t max) {
    char expected[64];
    snprintf(expected, sizeof(expected), "an integer from %" PRId64 " to %" PRId64, min, max);
    const toml::value<int64_t>* value = f.node->as_integer();
    if (value == nullptr) {
      wrong_type(f, expected);
      return std::nullopt;
    }
    if (value->get() < min || value->get() > max) {
      fail(f, "%" PRId64 " is out of range (%s)", value->get(), expected);
      return std::nullopt;
    }
    return static_cast<T>(value->get());
  }

  std::optional<bool> boolean(const Field& f) {
    const toml::value<bool>* value = f.node->as_boolean();
    if (value == nullptr) {
      wrong_type(f, "true or false");
      return std::nullopt;
    }
    return value->get();
  }

  // An octal string, or an integer written in octal: a decimal 660 is not what was meant.
  std::optional<unsigned> mode(const Field& f) {
    static constexpr char kExpected[] = "an octal mode up to 0777, such as \"0660\" or 0o660";
    if (const toml::value<int64_t>* value = f.node->as_integer()) {
      // The base is a 2-bit field of the flags: hexadecimal is binary | octal.
      constexpr auto kBase = toml::value_flags::format_as_hexadecimal;
      if ((value->flags() & kBase) != toml::value_flags::format_as_octal) {
        fail(f, "%" PRId64 " is not octal (%s)", value->get(), kExpected);
      } else if (value->get() > 0777) {
        fail(f, "bad mode 0o%" PRIo64 " (%s)", static_cast<uint64_t>(value->get()), kExpected);
      } else {
        return static_cast<unsigned>(value->get());
      }
    } else if (const std::string* text = string(f, kExpected)) {
      unsigned bits = 0;
      if (parse_octal_mode(*text, &bits)) return bits;
      fail(f, "bad mode '%.40s' (%s)", text->c_str(), kExpected);
    }
    return std::nullopt;
  }

  // A size string ("512M") or a number of bytes. Limits and mins are 0 (none) or at least
  // what the daemon accepts.
  enum class SizeKind { kAny, kLimit };
  std::optional<uint64_t> size(const Field& f, SizeKind kind) {
    uint64_t bytes = 0;
    if (const toml::value<int64_t>* value = f.node->as_integer()) {
      if (value->get() < 0) {
        fail(f, "bad size %" PRId64 " (%s)", value->get(), kSizeExpected);
        return std::nullopt;
      }
      bytes = static_cast<uint64_t>(value->get());
    } else if (const std::string* text = string(f, kSizeExpected)) {
      if (!parse_size(text->c_str(), &bytes)) {
        fail(f, "bad size '%.40s' (%s)", text->c_str(), kSizeExpected);
        return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
    if (kind == SizeKind::kLimit && !is_valid_limit(bytes)) {
      char shown[32];
      fail(f, "%s is too small (0 for none, or at least 1M)",
           format_size(bytes, shown, sizeof(shown)));
      return std::nullopt;
    }
    return bytes;
  }

  std::optional<std::string> policy(const Field& f) {
    const std::string* name = string(f, "a policy name");
    if (name == nullptr) return std::nullopt;
    if (!is_known_policy(*name)) {
      fail(f, "unknown policy '%.40s' (known: %s)", name->c_str(), known_policy_list().c_str());
      return std::nullopt;
    }
    return *name;
  }

  // A group name, or a gid as an integer or digits (as chgrp takes them).
  std::optional<gid_t> group(const Field& f) {
    static constexpr char kExpected[] = "a group name or a numeric gid";
    if (f.node->is_integer()) return integer<gid_t>(f, 0, kMaxId);
    const std::string* name = string(f, kExpected);
    if (name == nullptr) return std::nullopt;
    if (auto gid = look_up(*name, getgrnam_r, &::group::gr_gid)) return gid;
    // Digits that name no group are a gid; 10 of them cannot overflow.
    if (all_digits(*name) && name->size() <= 10) {
      const unsigned long long gid = strtoull(name->c_str(), nullptr, 10);
      if (gid <= kMaxId) return static_cast<gid_t>(gid);
    }
    fail(f, "unknown group '%.40s' (%s)", name->c_str(), kExpected);
    return std::nullopt;
  }

  // `expected` says what else the key takes, for errors.
  std::optional<uid_t> user(const Field& f, const char* expected) {
    const std::string* name = string(f, expected);
    if (name == nullptr) return std::nullopt;
    if (auto uid = look_up(*name, getpwnam_r, &passwd::pw_uid)) return uid;
    fail(f, "unknown user '%.40s' (%s)", name->c_str(), expected);
    return std::nullopt;
  }

  // An array whose entries `parse` reads; each is named in errors as "KEY[N]" (from 1).
  template <typename Id, typename Parse>
  std::vector<Id> id_list(const Field& f, const char* expected, Parse parse) {
    std::vector<Id> ids;
    const toml::array* array = f.node->as_array();
    if (array == nullptr) {
      wrong_type(f, expected);
      return ids;
    }
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& node = *array->get(i);
      const Field entry{f.name, f.key + "[" + std::to_string(i + 1) + "]", &node,
                        node.source().begin.line};
      if (std::optional<Id> id = parse(entry)) ids.push_back(*id);
    }
    return ids;
  }

  void daemon_table(const toml::table& table, Options* o) {
    for (const Field& f : fields(table, "daemon")) {
      if (f.name == "socket") {
        if (auto v = absolute_path(f)) o->socket_path = *v;
      } else if (f.name == "socket_mode") {
        if (auto v = mode(f)) o->socket_mode = *v;
      } else if (f.name == "fault_threads") {
        if (auto v = integer<unsigned>(f, 1, 64)) o->fault_threads = *v;
      } else if (f.name == "paging_nice") {
        if (auto v = integer<int>(f, -20, 19)) o->paging_nice = *v;
      } else if (f.name == "log_level") {
        const std::string* level = string(f, "trace, debug, info, warn or error");
        if (level != nullptr && !is_log_level(*level)) {
          fail(f, "unknown level '%.40s' (trace, debug, info, warn or error)", level->c_str());
        } else if (level != nullptr) {
          o->log_level = *level;
        }
      } else if (f.name == "stats_interval") {
        if (auto v = integer<unsigned>(f, 0, 86400)) o->stats_interval = *v;
      } else if (f.name == "lend_uffd_device") {
        if (auto v = boolean(f)) o->lend_uffd_device = *v;
      } else {
        unknown(f);
      }
    }
  }

  void control_table(const toml::table& table, Options* o) {
    for (const Field& f : fields(table, "control")) {
      if (f.name == "socket") {
        if (auto v = absolute_path(f)) o->control_path = *v;
      } else if (f.name == "socket_mode") {
        if (auto v = mode(f)) o->control_mode = *v;
      } else if (f.name == "group") {
        if (auto v = group(f)) o->control_group = *v;
      } else if (f.name == "tcp") {
        static constexpr char kExpected[] =
            "host:port with a port from 1 to 65535, or \"\" for none";
        const std::string* address = string(f, kExpected);
        if (address != nullptr && !address->empty() && !valid_tcp_address(*address)) {
          fail(f, "bad address '%.60s' (%s)", address->c_str(), kExpected);
        } else if (address != nullptr) {
          o->control_tcp = *address;
        }
      } else {
        unknown(f);
      }
    }
  }

  // Names are looked up now: a name that does not resolve is an error, not a rule that
  // silently matches nobody.
  void security_table(const toml::table& table, Options* o) {
    for (const Field& f : fields(table, "security")) {
      if (f.name == "allowed_users") {
        static constexpr char kExpected[] = "an array of user names and numeric uids";
        o->allowed_users = id_list<uid_t>(f, kExpected, [this](const Field& entry) {
          return entry.node->is_integer() ? integer<uid_t>(entry, 0, kMaxId)
                                          : user(entry, "a user name or a numeric uid");
        });
      } else if (f.name == "allowed_groups") {
        static constexpr char kExpected[] = "an array of group names and numeric gids";
        o->allowed_groups =
            id_list<gid_t>(f, kExpected, [this](const Field& entry) { return group(entry); });
      } else {
        unknown(f);
      }
    }
  }

  void swap_table(const toml::table& table, Options* o) {
    const Field* size_field = nullptr;
    const std::vector<Field> all = fields(table, "swap");
    for (const Field& f : all) {
      if (f.name == "path") {
        if (auto v = absolute_path(f)) o->swap_path = *v;
      } else if (f.name == "size") {
        size_field = &f;
        if (auto v = size(f, SizeKind::kAny)) o->swap_size = *v;
      } else {
        unknown(f);
      }
    }
    if (size_field != nullptr && o->swap_size != 0 && o->swap_path.empty()) {
      fail(*size_field, "set without swap.path (the swap file to create)");
    }
  }

  void memory_table(const toml::table& table, Options* o) {
    const Field* min_field = nullptr;
    const std::vector<Field> all = fields(table, "memory");
    for (const Field& f : all) {
      if (f.name == "budget") {
        if (auto v = size(f, SizeKind::kLimit)) o->budget = *v;
      } else if (f.name == "default_limit") {
        if (auto v = size(f, SizeKind::kLimit)) o->default_limit = *v;
      } else if (f.name == "default_min") {
        min_field = &f;
        if (auto v = size(f, SizeKind::kLimit)) o->default_min = *v;
      } else if (f.name == "default_weight") {
        if (auto v = integer<uint32_t>(f, 1, 10000)) o->default_weight = *v;
      } else if (f.name == "default_policy") {
        if (auto v = policy(f)) o->default_policy = *v;
      } else {
        unknown(f);
      }
    }
    if (min_field != nullptr && o->default_limit != 0 && o->default_min > o->default_limit) {
      char min[32], limit[32];
      fail(*min_field, "%s exceeds memory.default_limit of %s (at most the default limit)",
           format_size(o->default_min, min, sizeof(min)),
           format_size(o->default_limit, limit, sizeof(limit)));
    }
  }

  void rules(const Field& f, Options* o) {
    const toml::array* array = f.node->as_array();
    if (array == nullptr) {
      wrong_type(f, "an array of tables, each written [[rule]]");
      return;
    }
    for (size_t i = 0; i < array->size(); ++i) {
      char name[32];
      snprintf(name, sizeof(name), "rule[%zu]", i + 1);
      const toml::node& node = *array->get(i);
      const Field rule_field{name, name, &node, node.source().begin.line};
      if (const toml::table* table = node.as_table()) {
        o->rules.push_back(rule(*table, rule_field));
      } else {
        wrong_type(rule_field, "a table, written [[rule]]");
      }
    }
  }

  Rule rule(const toml::table& table, const Field& rule_field) {
    Rule parsed;
    parsed.line = static_cast<int>(rule_field.line);
    bool has_user = false;
    const Field* min_field = nullptr;
    const std::vector<Field> all = fields(table, rule_field.key);
    for (const Field& f : all) {
      if (f.name == "exe") {
        const std::string* exe = string(f, "an executable's file name, without '/'");
        if (exe != nullptr && (exe->empty() || exe->find('/') != std::string::npos)) {
          fail(f, "bad name '%.40s' (an executable's file name, without '/')", exe->c_str());
        } else if (exe != nullptr) {
          parsed.exe = *exe;
        }
      } else if (f.name == "user" || f.name == "uid") {
        if (has_user) {
          fail(f, "both user and uid are set (one of them)");
        } else {
          parsed.uid =
              f.name == "user" ? user(f, "a user name, or uid = N") : integer<uid_t>(f, 0, kMaxId);
        }
        has_user = true;
      } else if (f.name == "limit") {
        parsed.limit = size(f, SizeKind::kLimit);
      } else if (f.name == "min") {
        min_field = &f;
        parsed.min = size(f, SizeKind::kLimit);
      } else if (f.name == "weight") {
        parsed.weight = integer<uint32_t>(f, 1, 10000);
      } else if (f.name == "policy") {
        parsed.policy = policy(f);
      } else {
        unknown(f);
      }
    }
    if (parsed.exe.empty() && !has_user) {
      fail(rule_field, "matches every client (at least one of exe, user, uid)");
    } else if (!parsed.limit && !parsed.min && !parsed.weight && !parsed.policy) {
      fail(rule_field, "sets nothing (at least one of limit, min, weight, policy)");
    } else if (min_field != nullptr && parsed.limit && parsed.min && *parsed.limit != 0 &&
               *parsed.min > *parsed.limit) {
      char min[32], limit[32];
      fail(*min_field, "%s exceeds the rule's limit of %s (at most the limit)",
           format_size(*parsed.min, min, sizeof(min)),
           format_size(*parsed.limit, limit, sizeof(limit)));
    }
    return parsed;
  }

  std::string_view path_;
  std::optional<Error> error_;
};

}  // namespace

Result<Options> parse_config_text(std::string_view text, std::string_view path) noexcept {
  // Only these two can be thrown: toml++'s parse error, and allocation failure. Anything
  // else would be a bug, which noexcept turns into a crash a fuzzer sees.
  try {
    const toml::table root = toml::parse(text);
    return ConfigParser(path).parse(root);
  } catch (const toml::parse_error& e) {
    return Error::make(EINVAL, "%.*s:%u: syntax error: %.*s", static_cast<int>(path.size()),
                       path.data(), e.source().begin.line, static_cast<int>(e.description().size()),
                       e.description().data());
  } catch (const std::bad_alloc&) {
    return Error::make(ENOMEM, "%.*s: out of memory", static_cast<int>(path.size()), path.data());
  }
}

std::vector<std::string> restart_required_changes(const Options& running, const Options& reloaded) {
  std::vector<std::string> changed;
  auto check = [&changed](bool differs, const char* key) {
    if (differs) changed.emplace_back(key);
  };
  check(running.socket_path != reloaded.socket_path, "daemon.socket");
  check(running.socket_mode != reloaded.socket_mode, "daemon.socket_mode");
  check(running.fault_threads != reloaded.fault_threads, "daemon.fault_threads");
  check(running.paging_nice != reloaded.paging_nice, "daemon.paging_nice");
  check(running.lend_uffd_device != reloaded.lend_uffd_device, "daemon.lend_uffd_device");
  check(running.control_path != reloaded.control_path, "control.socket");
  check(running.control_mode != reloaded.control_mode, "control.socket_mode");
  check(running.control_group != reloaded.control_group, "control.group");
  check(running.control_tcp != reloaded.control_tcp, "control.tcp");
  check(running.swap_path != reloaded.swap_path, "swap.path");
  check(running.swap_size != reloaded.swap_size, "swap.size");
  return changed;
}

}  // namespace extmem::daemon
