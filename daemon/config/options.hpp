// extmemd's configuration: the config file (/etc/extmem/extmemd.toml) overlaid by the
// command line.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "extmem/kernel/result.hpp"

namespace extmem::daemon {

// Defaults for the clients a rule matches. A client's own request (EXTMEM_DRAM,
// EXTMEM_POLICY) wins over a rule; a rule wins over the [memory] defaults. The first
// matching rule applies.
struct Rule {
  std::string exe;           // executable name (basename); empty: any
  std::optional<uid_t> uid;  // from `uid` or `user`; none: any
  std::optional<uint64_t> limit;
  std::optional<uint64_t> min;
  std::optional<uint32_t> weight;
  std::optional<std::string> policy;
  int line = 0;  // where the rule starts in the config file, for logs

  bool matches(const std::string& exe_name, uid_t client_uid) const {
    return (exe.empty() || exe == exe_name) && (!uid || *uid == client_uid);
  }
};

struct Options {
  // [daemon]
  std::string socket_path = "/run/extmem/extmemd.sock";
  unsigned socket_mode = 0666;  // who may become a client
  unsigned fault_threads = 2;
  // Nice value of the threads that serve faults (paging_thread.hpp); 0: the daemon's own.
  int paging_nice = -10;
  std::string log_level = "info";
  unsigned stats_interval = 0;  // seconds between stats log lines; 0: only on SIGUSR1
  // Lend /dev/userfaultfd to clients that cannot create a full userfaultfd themselves.
  // Off by default: a lent device lets a client catch kernel-mode faults on any of its
  // memory, which vm.unprivileged_userfaultfd=0 withholds; clients that need it are refused.
  bool lend_uffd_device = false;

  // [control]
  std::string control_path = "/run/extmem/control.sock";
  unsigned control_mode = 0660;
  std::optional<gid_t> control_group;  // from a group name; none: the daemon's group
  std::string control_tcp;             // "host:port"; empty: no TCP listener

  // [security] Who may become a client, besides root; both empty: every local user.
  std::vector<uid_t> allowed_users;
  std::vector<gid_t> allowed_groups;  // a member by primary or supplementary group

  // [swap] Swap file or block device; none: limits are not enforced.
  std::string swap_path;
  uint64_t swap_size = 0;  // create or grow a swap file to this size

  // [memory]
  uint64_t budget = 0;         // DRAM shared by all clients; 0: no global budget
  uint64_t default_limit = 0;  // for clients that ask for none and match no rule; 0: none
  uint64_t default_min = 0;
  uint32_t default_weight = 100;
  std::string default_policy = "clock";

  // [[rule]]
  std::vector<Rule> rules;

  // The file these came from; empty: none.
  std::string config_path;

  // Command-line only.
  std::string record_faults_dir;  // write each client's fault trace here; empty: none
  bool check_config = false;
  bool probe_only = false;
  bool show_help = false;
  bool show_version = false;
};

inline constexpr char kDefaultConfigPath[] = "/etc/extmem/extmemd.toml";

// What load_options failed on: extmemd exits with 2 for the command line, 1 for the file.
enum class OptionsErrorSource { kCommandLine, kConfigFile };

// Reads the config file (--config PATH, else /etc/extmem/extmemd.toml when it exists),
// then applies the command line over it. Errors name the option, or the file, key and
// line. --help and --version read no file.
Result<Options> load_options(const std::vector<std::string>& args,
                             OptionsErrorSource* error_source = nullptr);
std::string usage();

// Parses the TOML text of a config file over the defaults; `path` names the file in
// errors ("PATH:LINE: KEY: what is wrong (what is expected)") and becomes config_path.
// Looks user and group names up (getpwnam_r, getgrnam_r); never throws.
Result<Options> parse_config_text(std::string_view text, std::string_view path) noexcept;

// The keys ("swap.path", ...) whose values differ and which only a restart can change.
std::vector<std::string> restart_required_changes(const Options& running, const Options& reloaded);

// One line about what the options configure, for --check-config.
std::string describe_options(const Options& options);

// Shared by the command line and the config file.
bool parse_octal_mode(std::string_view text, unsigned* mode);  // "0660", "600"; <= 0777
bool is_log_level(std::string_view level);
bool is_valid_limit(uint64_t bytes);  // 0 (none) or at least 1M, as the daemon requires
bool is_known_policy(std::string_view name);
std::string known_policy_list();  // "clock, fifo, frontier"

}  // namespace extmem::daemon
