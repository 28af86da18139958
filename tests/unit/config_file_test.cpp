#include "config/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace extmem::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr char kPath[] = "/etc/extmem/test.toml";

Options ParseOk(const std::string& text) {
  Result<Options> result = parse_config_text(text, kPath);
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().context()) << "\n" << text;
  return result.ok() ? result.value() : Options{};
}

// Expects EINVAL whose context starts with "PATH:LINE: " followed by `what` (the key and
// what is wrong), so the user knows where to look and what to fix.
void ExpectError(const std::string& text, int line, const std::string& what) {
  Result<Options> result = parse_config_text(text, kPath);
  ASSERT_FALSE(result.ok()) << text;
  EXPECT_EQ(result.error().code(), EINVAL);
  EXPECT_THAT(std::string(result.error().context()),
              StartsWith(std::string(kPath) + ":" + std::to_string(line) + ": " + what))
      << text;
}

// A file in the test's temporary directory, removed at the end.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = ::testing::TempDir() + "extmemd-XXXXXX.toml";
    const int fd = mkstemps(path_.data(), 5);
    EXPECT_GE(fd, 0) << path_;
    EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

uid_t UidOf(const char* user) {
  const passwd* entry = getpwnam(user);
  EXPECT_NE(entry, nullptr) << user;
  return entry != nullptr ? entry->pw_uid : 0;
}

TEST(ConfigFileTest, EmptyFileGivesTheDefaults) {
  const Options o = ParseOk("");
  const Options defaults;
  EXPECT_EQ(o.socket_path, defaults.socket_path);
  EXPECT_EQ(o.socket_mode, defaults.socket_mode);
  EXPECT_EQ(o.fault_threads, defaults.fault_threads);
  EXPECT_EQ(o.control_path, defaults.control_path);
  EXPECT_EQ(o.default_policy, defaults.default_policy);
  EXPECT_TRUE(o.rules.empty());
  EXPECT_TRUE(restart_required_changes(defaults, o).empty());
  EXPECT_EQ(o.config_path, kPath);
}

// The shipped example states every key; it must parse and mean what its comments say.
TEST(ConfigFileTest, ExampleFileParses) {
  const std::string text = ReadFile(EXTMEM_EXAMPLE_CONFIG);
  ASSERT_FALSE(text.empty()) << EXTMEM_EXAMPLE_CONFIG;
  Result<Options> result = parse_config_text(text, EXTMEM_EXAMPLE_CONFIG);
  ASSERT_TRUE(result.ok()) << result.error().context();
  const Options& o = result.value();
  EXPECT_EQ(o.socket_path, "/run/extmem/extmemd.sock");
  EXPECT_EQ(o.socket_mode, 0666u);
  EXPECT_EQ(o.fault_threads, 2u);
  EXPECT_EQ(o.log_level, "info");
  EXPECT_EQ(o.stats_interval, 0u);
  EXPECT_FALSE(o.lend_uffd_device);
  EXPECT_EQ(o.control_path, "/run/extmem/control.sock");
  EXPECT_EQ(o.control_mode, 0660u);
  EXPECT_EQ(o.control_group, gid_t{0});
  EXPECT_EQ(o.control_tcp, "");
  EXPECT_EQ(o.swap_path, "/var/lib/extmem/swap");
  EXPECT_EQ(o.swap_size, 16 * kGiB);
  EXPECT_EQ(o.budget, 0u);
  EXPECT_EQ(o.default_limit, 0u);
  EXPECT_EQ(o.default_min, 0u);
  EXPECT_EQ(o.default_weight, 100u);
  EXPECT_EQ(o.default_policy, "clock");
  EXPECT_EQ(o.config_path, EXTMEM_EXAMPLE_CONFIG);

  // Each rule remembers the line of its [[rule]].
  std::vector<int> rule_lines;
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line == "[[rule]]") rule_lines.push_back(n);
  }
  ASSERT_EQ(o.rules.size(), 3u);
  ASSERT_EQ(rule_lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(o.rules[i].line, rule_lines[i]) << i;

  EXPECT_EQ(o.rules[0].exe, "redis-server");
  EXPECT_FALSE(o.rules[0].uid.has_value());
  EXPECT_EQ(o.rules[0].limit, 2 * kGiB);
  EXPECT_EQ(o.rules[0].min, 256 * kMiB);
  EXPECT_EQ(o.rules[0].weight, 200u);
  EXPECT_EQ(o.rules[0].policy, "clock");

  EXPECT_EQ(o.rules[1].exe, "");
  EXPECT_EQ(o.rules[1].uid, UidOf("nobody"));
  EXPECT_EQ(o.rules[1].limit, 512 * kMiB);
  EXPECT_FALSE(o.rules[1].min.has_value());
  EXPECT_EQ(o.rules[1].weight, 50u);
  EXPECT_EQ(o.rules[1].policy, "fifo");

  EXPECT_EQ(o.rules[2].uid, uid_t{1000});
  EXPECT_EQ(o.rules[2].limit, 4 * kGiB);
  EXPECT_FALSE(o.rules[2].weight.has_value());
  EXPECT_FALSE(o.rules[2].policy.has_value());

  EXPECT_THAT(describe_options(o), StartsWith("3 rules"));
}

TEST(ConfigFileTest, EveryKey) {
  const Options o = ParseOk(R"(
[daemon]
socket = "/tmp/a.sock"
socket_mode = 0o600
fault_threads = 8
paging_nice = 5
log_level = "debug"
stats_interval = 86400
lend_uffd_device = true

[control]
socket = "/tmp/c.sock"
socket_mode = "640"
group = 1234
tcp = "[::1]:7070"

[swap]
path = "/dev/nvme0n1p3"
size = 0

[memory]
budget = "2.5G"
default_limit = 1048576
default_min = "1M"
default_weight = 10000
default_policy = "fifo"
)");
  EXPECT_EQ(o.socket_path, "/tmp/a.sock");
  EXPECT_EQ(o.socket_mode, 0600u);
  EXPECT_EQ(o.fault_threads, 8u);
  EXPECT_EQ(o.paging_nice, 5);
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_EQ(o.stats_interval, 86400u);
  EXPECT_TRUE(o.lend_uffd_device);
  EXPECT_EQ(o.control_path, "/tmp/c.sock");
  EXPECT_EQ(o.control_mode, 0640u);
  EXPECT_EQ(o.control_group, gid_t{1234});
  EXPECT_EQ(o.control_tcp, "[::1]:7070");
  EXPECT_EQ(o.swap_path, "/dev/nvme0n1p3");
  EXPECT_EQ(o.swap_size, 0u);
  EXPECT_EQ(o.budget, 5 * kGiB / 2);
  EXPECT_EQ(o.default_limit, kMiB);
  EXPECT_EQ(o.default_min, kMiB);
  EXPECT_EQ(o.default_weight, 10000u);
  EXPECT_EQ(o.default_policy, "fifo");
}

TEST(ConfigFileTest, GroupsAndUsersByNameOrNumber) {
  EXPECT_EQ(ParseOk("[control]\ngroup = \"root\"").control_group, gid_t{0});
  EXPECT_EQ(ParseOk("[control]\ngroup = \"4321\"").control_group, gid_t{4321});
  EXPECT_EQ(ParseOk("[control]\ngroup = 0").control_group, gid_t{0});
  EXPECT_EQ(ParseOk("[[rule]]\nuser = \"root\"\nlimit = \"1G\"").rules.at(0).uid, uid_t{0});
  EXPECT_EQ(ParseOk("[[rule]]\nuid = 0\nlimit = \"1G\"").rules.at(0).uid, uid_t{0});
}

TEST(ConfigFileTest, InlineTablesAndDottedKeys) {
  const Options o = ParseOk(
      "daemon = { fault_threads = 3 }\nmemory.default_policy = \"fifo\"\n"
      "rule = [{ exe = \"a\", weight = 2 }, { exe = \"b\", weight = 3 }]\n");
  EXPECT_EQ(o.fault_threads, 3u);
  EXPECT_EQ(o.default_policy, "fifo");
  ASSERT_EQ(o.rules.size(), 2u);
  EXPECT_EQ(o.rules[1].exe, "b");
  EXPECT_EQ(o.rules[1].line, 3);
}

TEST(ConfigFileTest, RulesKeepTheirOrderAndTheFirstMatchWins) {
  const Options o = ParseOk(R"([[rule]]
exe = "redis-server"
uid = 1000
limit = "1G"

[[rule]]
exe = "redis-server"
limit = "2G"

[[rule]]
uid = 1000
limit = "3G"
)");
  ASSERT_EQ(o.rules.size(), 3u);
  EXPECT_EQ(o.rules[0].line, 1);
  EXPECT_EQ(o.rules[1].line, 6);
  EXPECT_EQ(o.rules[2].line, 10);
  auto first_match = [&o](const std::string& exe, uid_t uid) -> std::optional<uint64_t> {
    for (const Rule& rule : o.rules) {
      if (rule.matches(exe, uid)) return rule.limit;
    }
    return std::nullopt;
  };
  EXPECT_EQ(first_match("redis-server", 1000), 1 * kGiB);  // exe and uid
  EXPECT_EQ(first_match("redis-server", 0), 2 * kGiB);     // exe, any uid
  EXPECT_EQ(first_match("postgres", 1000), 3 * kGiB);      // uid, any exe
  EXPECT_EQ(first_match("postgres", 0), std::nullopt);
  EXPECT_EQ(first_match("redis", 0), std::nullopt);  // whole names only
}

TEST(ConfigFileTest, SyntaxError) {
  ExpectError("[daemon]\nsocket = \n", 2, "syntax error: ");
  ExpectError("[daemon]\n[daemon]\n", 2, "syntax error: ");
  ExpectError("a = \"unterminated\n", 1, "syntax error: ");
}

TEST(ConfigFileTest, UnknownKeysAndTables) {
  ExpectError("[daemon]\nsocket = \"/a\"\nsockett = \"/b\"\n", 3, "daemon.sockett: unknown key");
  ExpectError("# extmemd\n[deamon]\nsocket = \"/a\"\n", 2, "unknown table [deamon]");
  ExpectError("\nsocket = \"/a\"\n", 2, "socket: unknown key");
  ExpectError("[daemon.extra]\nx = 1\n", 1, "unknown table [daemon.extra]");
  ExpectError("[memory]\nlimit = \"1G\"\n", 2, "memory.limit: unknown key");
  ExpectError("[[rule]]\nexe = \"a\"\nlimits = \"1G\"\n", 3, "rule[1].limits: unknown key");
  ExpectError("[[rules]]\nexe = \"a\"\n", 1, "rules: unknown key");
}

TEST(ConfigFileTest, TheFirstErrorInTheFileIsReported) {
  // toml++ keeps keys sorted; the error must still be the first one in the file.
  ExpectError("[memory]\nzzz = 1\naaa = 2\n", 2, "memory.zzz: unknown key");
}

TEST(ConfigFileTest, BadTypes) {
  ExpectError("[daemon]\nfault_threads = \"2\"\n", 2,
              "daemon.fault_threads: bad type: a string (an integer from 1 to 64)");
  ExpectError("[daemon]\nlend_uffd_device = 1\n", 2,
              "daemon.lend_uffd_device: bad type: an integer (true or false)");
  ExpectError("[daemon]\nsocket = 5\n", 2, "daemon.socket: bad type: an integer");
  ExpectError("[memory]\nbudget = 1.5\n", 2, "memory.budget: bad type: a float");
  ExpectError("[memory]\nbudget = 2024-01-01\n", 2, "memory.budget: bad type: a date");
  ExpectError("[memory]\ndefault_policy = [\"clock\"]\n", 2,
              "memory.default_policy: bad type: an array");
  ExpectError("# c\ndaemon = \"yes\"\n", 2, "daemon: bad type: a string (a table [daemon])");
  ExpectError("[rule]\nexe = \"a\"\n", 1, "rule: bad type: a table (an array of tables");
  ExpectError("rule = [1]\n", 1, "rule[1]: bad type: an integer (a table");
  ExpectError("[control]\ngroup = true\n", 2, "control.group: bad type: a boolean");
}

TEST(ConfigFileTest, NumbersOutOfRange) {
  ExpectError("[daemon]\nfault_threads = 65\n", 2,
              "daemon.fault_threads: 65 is out of range (an integer from 1 to 64)");
  ExpectError("[daemon]\nfault_threads = 0\n", 2, "daemon.fault_threads: 0 is out of range");
  ExpectError("[daemon]\npaging_nice = -21\n", 2,
              "daemon.paging_nice: -21 is out of range (an integer from -20 to 19)");
  ExpectError("[daemon]\npaging_nice = 20\n", 2, "daemon.paging_nice: 20 is out");
  ExpectError("[daemon]\nstats_interval = 86401\n", 2, "daemon.stats_interval: 86401 is out");
  ExpectError("[daemon]\nstats_interval = -1\n", 2, "daemon.stats_interval: -1 is out");
  ExpectError("[memory]\ndefault_weight = 0\n", 2, "memory.default_weight: 0 is out");
  ExpectError("[[rule]]\nexe = \"a\"\nweight = 10001\n", 3, "rule[1].weight: 10001 is out");
  ExpectError("[[rule]]\nuid = -1\nlimit = \"1G\"\n", 2, "rule[1].uid: -1 is out");
  ExpectError("[[rule]]\nuid = 4294967295\nlimit = \"1G\"\n", 2, "rule[1].uid: 4294967295 is out");
}

TEST(ConfigFileTest, BadSizes) {
  ExpectError("[memory]\n\nbudget = \"12X\"\n", 3,
              "memory.budget: bad size '12X' (a size such as 512M or 8G)");
  ExpectError("[memory]\ndefault_limit = -5\n", 2, "memory.default_limit: bad size -5");
  ExpectError("[memory]\ndefault_limit = \"\"\n", 2, "memory.default_limit: bad size ''");
  ExpectError("[memory]\ndefault_limit = \"1G\\u0000junk\"\n", 2,
              "memory.default_limit: contains a NUL character");
  ExpectError("[swap]\npath = \"/s\"\nsize = \"1.5\"\n", 3, "swap.size: bad size '1.5'");
  // Limits and mins are 0 or at least 1M.
  ExpectError("[memory]\nbudget = \"4K\"\n", 2, "memory.budget: 4.0 KiB is too small");
  ExpectError("[memory]\ndefault_min = 1048575\n", 2, "memory.default_min: 1024.0 KiB is too");
  ExpectError("[[rule]]\nexe = \"a\"\nlimit = \"512K\"\n", 3, "rule[1].limit: 512.0 KiB is too");
  EXPECT_EQ(ParseOk("[memory]\ndefault_limit = \"0\"").default_limit, 0u);
  EXPECT_EQ(ParseOk("[swap]\npath = \"/s\"\nsize = 4096").swap_size, 4096u);
}

TEST(ConfigFileTest, PathsMustBeAbsolute) {
  ExpectError("[daemon]\nsocket = \"run/x.sock\"\n", 2,
              "daemon.socket: 'run/x.sock' is not absolute (an absolute path)");
  ExpectError("[control]\nsocket = \"\"\n", 2, "control.socket: '' is not absolute");
  ExpectError("[swap]\n\npath = \"swapfile\"\n", 3, "swap.path: 'swapfile' is not absolute");
  ExpectError("[swap]\npath = \"/a\\u0000b\"\n", 2, "swap.path: contains a NUL character");
}

TEST(ConfigFileTest, SwapSizeNeedsAPath) {
  ExpectError("[swap]\nsize = \"1G\"\n", 2, "swap.size: set without swap.path");
}

TEST(ConfigFileTest, UnknownPolicyAndLevel) {
  ExpectError("[memory]\ndefault_policy = \"lru\"\n", 2,
              "memory.default_policy: unknown policy 'lru' (known: " + known_policy_list() + ")");
  ExpectError(
      "[[rule]]\nexe = \"a\"\nlimit = \"1G\"\n\n[[rule]]\nexe = \"b\"\n\n\n\n\n\npolicy = "
      "\"lru\"\n",
      12, "rule[2].policy: unknown policy 'lru' (known: " + known_policy_list() + ")");
  ExpectError("[daemon]\nlog_level = \"verbose\"\n", 2,
              "daemon.log_level: unknown level 'verbose' (trace, debug, info, warn or error)");
}

TEST(ConfigFileTest, UnknownUserAndGroup) {
  ExpectError("[[rule]]\nuser = \"extmem-no-such-user\"\nlimit = \"1G\"\n", 2,
              "rule[1].user: unknown user 'extmem-no-such-user'");
  ExpectError("[control]\ngroup = \"extmem-no-such-group\"\n", 2,
              "control.group: unknown group 'extmem-no-such-group' (a group name or a numeric");
  ExpectError("[control]\ngroup = \"\"\n", 2, "control.group: unknown group ''");
  ExpectError("[control]\ngroup = \"99999999999\"\n", 2, "control.group: unknown group");
}

TEST(ConfigFileTest, BadOctalModes) {
  EXPECT_EQ(ParseOk("[daemon]\nsocket_mode = \"0\"").socket_mode, 0u);
  EXPECT_EQ(ParseOk("[daemon]\nsocket_mode = \"0777\"").socket_mode, 0777u);
  EXPECT_EQ(ParseOk("[daemon]\nsocket_mode = 0o0").socket_mode, 0u);
  ExpectError("[daemon]\nsocket_mode = \"0999\"\n", 2,
              "daemon.socket_mode: bad mode '0999' (an octal mode up to 0777");
  for (const char* mode : {"\"0x1ff\"", "\"1000\"", "\"-1\"", "\"\"", "\"rw\"", "\" 0660\""}) {
    SCOPED_TRACE(mode);
    ExpectError(std::string("[control]\nsocket_mode = ") + mode + "\n", 2,
                "control.socket_mode: bad mode '");
  }
  // A decimal 660 is 01224, surely not what was meant.
  ExpectError("[daemon]\nsocket_mode = 660\n", 2, "daemon.socket_mode: 660 is not octal");
  ExpectError("[daemon]\nsocket_mode = 0x1b6\n", 2, "daemon.socket_mode: 438 is not octal");
  ExpectError("[daemon]\nsocket_mode = 0b110\n", 2, "daemon.socket_mode: 6 is not octal");
  ExpectError("[daemon]\nsocket_mode = 0o1777\n", 2, "daemon.socket_mode: bad mode 0o1777");
}

TEST(ConfigFileTest, TcpAddresses) {
  for (const char* good : {"", "127.0.0.1:7070", "localhost:1", "[::1]:65535", "host:00080"}) {
    EXPECT_EQ(ParseOk(std::string("[control]\ntcp = \"") + good + "\"").control_tcp, good);
  }
  for (const char* bad :
       {"localhost", ":7070", "host:", "host:0", "host:65536", "host:x", "::1:7070", "host:-1"}) {
    SCOPED_TRACE(bad);
    ExpectError(std::string("[control]\n\ntcp = \"") + bad + "\"\n", 3,
                std::string("control.tcp: bad address '") + bad + "' (host:port");
  }
}

TEST(ConfigFileTest, BadRules) {
  ExpectError("[daemon]\n\n[[rule]]\nlimit = \"1G\"\n", 3,
              "rule[1]: matches every client (at least one of exe, user, uid)");
  ExpectError("[[rule]]\nexe = \"a\"\nweight = 1\n\n[[rule]]\nexe = \"b\"\n", 5,
              "rule[2]: sets nothing (at least one of limit, min, weight, policy)");
  ExpectError("[[rule]]\nexe = \"a\"\nlimit = \"256M\"\nmin = \"512M\"\n", 4,
              "rule[1].min: 512.0 MiB exceeds the rule's limit of 256.0 MiB");
  ExpectError("[[rule]]\nmin = \"512M\"\nexe = \"a\"\nlimit = \"256M\"\n", 2, "rule[1].min: ");
  ExpectError("[[rule]]\nuser = \"root\"\nuid = 0\nlimit = \"1G\"\n", 3,
              "rule[1].uid: both user and uid are set (one of them)");
  ExpectError("[[rule]]\nuid = 0\nlimit = \"1G\"\nuser = \"root\"\n", 4,
              "rule[1].user: both user and uid are set");
  ExpectError("[[rule]]\nexe = \"/usr/bin/redis-server\"\nlimit = \"1G\"\n", 2,
              "rule[1].exe: bad name '/usr/bin/redis-server'");
  ExpectError("[[rule]]\nexe = \"\"\nlimit = \"1G\"\n", 2, "rule[1].exe: bad name ''");
  // A limit of 0 is none, so any min fits under it.
  EXPECT_EQ(ParseOk("[[rule]]\nexe = \"a\"\nlimit = 0\nmin = \"1G\"").rules.at(0).min, kGiB);
}

TEST(ConfigFileTest, DefaultMinAboveDefaultLimit) {
  ExpectError("[memory]\ndefault_min = \"2G\"\ndefault_limit = \"1G\"\n", 2,
              "memory.default_min: 2.0 GiB exceeds memory.default_limit of 1.0 GiB");
  EXPECT_EQ(ParseOk("[memory]\ndefault_min = \"2G\"").default_min, 2 * kGiB);
}

TEST(ConfigFileTest, LongValuesAreCutInErrors) {
  const std::string path = "/" + std::string(300, 'p');
  Result<Options> result = parse_config_text("[daemon]\nsocket = 5\n", path);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.error().context()), StartsWith("/ppp"));
  ExpectError("[memory]\nbudget = \"" + std::string(1000, '9') + "X\"\n", 2,
              "memory.budget: bad size '9999");
}

TEST(ConfigFileTest, FlagsOverrideTheFileWhereverTheyAre) {
  const TempFile file(R"([daemon]
socket = "/tmp/file.sock"
fault_threads = 4
log_level = "warn"

[control]
socket = "/tmp/file-control.sock"
socket_mode = "0600"

[swap]
path = "/tmp/file-swap"

[memory]
budget = "8G"
default_limit = "2G"
default_policy = "fifo"
)");
  Result<Options> result =
      load_options({"--socket", "/tmp/flag.sock", "--config", file.path(), "--fault-threads", "6",
                    "--control-mode", "0666", "--budget", "4G", "--default-policy", "clock",
                    "--swap-size", "1G"});
  ASSERT_TRUE(result.ok()) << result.error().context();
  const Options& o = result.value();
  EXPECT_EQ(o.config_path, file.path());
  EXPECT_EQ(o.socket_path, "/tmp/flag.sock");  // before --config, still wins
  EXPECT_EQ(o.fault_threads, 6u);
  EXPECT_EQ(o.control_mode, 0666u);
  EXPECT_EQ(o.budget, 4 * kGiB);
  EXPECT_EQ(o.default_policy, "clock");
  EXPECT_EQ(o.swap_size, kGiB);  // the file's swap.path makes --swap-size valid
  // What no flag set comes from the file.
  EXPECT_EQ(o.log_level, "warn");
  EXPECT_EQ(o.control_path, "/tmp/file-control.sock");
  EXPECT_EQ(o.swap_path, "/tmp/file-swap");
  EXPECT_EQ(o.default_limit, 2 * kGiB);
}

TEST(ConfigFileTest, LoadOptionsErrorSources) {
  const TempFile broken("[memory]\ndefault_policy = \"lru\"\n");
  OptionsErrorSource source = OptionsErrorSource::kCommandLine;
  Result<Options> result = load_options({"--config", broken.path()}, &source);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(source, OptionsErrorSource::kConfigFile);
  EXPECT_THAT(std::string(result.error().context()),
              StartsWith(broken.path() + ":2: memory.default_policy: unknown policy 'lru'"));

  // The command line is checked first.
  result = load_options({"--config", broken.path(), "--fault-threads", "0"}, &source);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(source, OptionsErrorSource::kCommandLine);

  // A flag that conflicts with the file is a command-line error.
  const TempFile with_min("[memory]\ndefault_min = \"1G\"\n");
  result = load_options({"--config", with_min.path(), "--default-limit", "512M"}, &source);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(source, OptionsErrorSource::kCommandLine);
  EXPECT_THAT(std::string(result.error().context()), HasSubstr("--default-limit"));

  // A directory cannot be read.
  result = load_options({"--config", "/"}, &source);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(source, OptionsErrorSource::kConfigFile);
  EXPECT_EQ(result.error().code(), EISDIR);
}

TEST(ConfigFileTest, RestartRequiredChanges) {
  const Options running = ParseOk(R"([swap]
path = "/swap"
size = "1G")");
  EXPECT_TRUE(restart_required_changes(running, running).empty());

  // Each restart-only key alone.
  struct Change {
    const char* key;
    void (*apply)(Options*);
  };
  const Change changes[] = {
      {"daemon.socket", [](Options* o) { o->socket_path = "/other.sock"; }},
      {"daemon.socket_mode", [](Options* o) { o->socket_mode = 0600; }},
      {"daemon.fault_threads", [](Options* o) { o->fault_threads = 3; }},
      {"daemon.lend_uffd_device", [](Options* o) { o->lend_uffd_device = true; }},
      {"control.socket", [](Options* o) { o->control_path = "/other-control.sock"; }},
      {"control.socket_mode", [](Options* o) { o->control_mode = 0666; }},
      {"control.group", [](Options* o) { o->control_group = 5; }},
      {"control.tcp", [](Options* o) { o->control_tcp = "localhost:7070"; }},
      {"swap.path", [](Options* o) { o->swap_path = "/other-swap"; }},
      {"swap.size", [](Options* o) { o->swap_size = 2 * kGiB; }},
  };
  for (const Change& change : changes) {
    Options reloaded = running;
    change.apply(&reloaded);
    EXPECT_THAT(restart_required_changes(running, reloaded), ElementsAre(change.key));
  }

  // Reloadable keys are not reported.
  Options reloaded = ParseOk(R"([daemon]
log_level = "debug"
stats_interval = 10

[swap]
path = "/swap"
size = "1G"

[memory]
budget = "8G"
default_limit = "1G"
default_min = "1M"
default_weight = 7
default_policy = "fifo"

[[rule]]
exe = "a"
limit = "1G"
)");
  EXPECT_TRUE(restart_required_changes(running, reloaded).empty());

  // Several at once, in file order.
  reloaded.swap_path = "/other-swap";
  reloaded.socket_path = "/other.sock";
  reloaded.control_group = 0;
  EXPECT_THAT(restart_required_changes(running, reloaded),
              ElementsAre("daemon.socket", "control.group", "swap.path"));
}

// [security]: users and groups by name (looked up at load) or number; both lists may be
// changed by a reload.
TEST(ConfigFileTest, SecurityAllowLists) {
  const Options o = ParseOk(R"([security]
allowed_users = ["root", 1000, "nobody"]
allowed_groups = ["root", 4321, "5000"]
)");
  EXPECT_THAT(o.allowed_users, ElementsAre(uid_t{0}, uid_t{1000}, UidOf("nobody")));
  EXPECT_THAT(o.allowed_groups, ElementsAre(gid_t{0}, gid_t{4321}, gid_t{5000}));
  EXPECT_THAT(describe_options(o), HasSubstr("(root, 3 users and 3 groups)"));

  const Options none = ParseOk("[security]\nallowed_users = []\n");
  EXPECT_TRUE(none.allowed_users.empty());
  EXPECT_TRUE(none.allowed_groups.empty());
  EXPECT_THAT(describe_options(none), HasSubstr("(any local user)"));
  EXPECT_TRUE(ParseOk("").allowed_users.empty());

  Options reloaded = none;
  reloaded.allowed_users = {1000};
  reloaded.allowed_groups = {0};
  EXPECT_TRUE(restart_required_changes(none, reloaded).empty());
}

TEST(ConfigFileTest, SecurityErrorsNameTheEntry) {
  ExpectError("[security]\nallowed_users = [\"root\", \"extmem-no-such-user\"]\n", 2,
              "security.allowed_users[2]: unknown user 'extmem-no-such-user' (a user name or a "
              "numeric uid)");
  ExpectError("[security]\nallowed_groups = [\n  \"root\",\n  \"extmem-no-such-group\",\n]\n", 4,
              "security.allowed_groups[2]: unknown group 'extmem-no-such-group' (a group name "
              "or a numeric gid)");
  ExpectError("[security]\nallowed_users = \"root\"\n", 2,
              "security.allowed_users: bad type: a string (an array of user names and numeric "
              "uids)");
  ExpectError("[security]\nallowed_groups = 0\n", 2,
              "security.allowed_groups: bad type: an integer (an array of group names and "
              "numeric gids)");
  ExpectError("[security]\nallowed_users = [true]\n", 2,
              "security.allowed_users[1]: bad type: a boolean (a user name or a numeric uid)");
  ExpectError("[security]\nallowed_users = [-1]\n", 2,
              "security.allowed_users[1]: -1 is out of range");
  ExpectError("[security]\nallowed_users = [1.5]\n", 2, "security.allowed_users[1]: bad type");
  ExpectError("[security]\nallowed_user = [\"root\"]\n", 2, "security.allowed_user: unknown key");
  ExpectError("security = [\"root\"]\n", 1, "security: bad type: an array (a table [security])");
}

}  // namespace
}  // namespace extmem::daemon
