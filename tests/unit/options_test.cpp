#include "config/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace extmem::daemon {
namespace {

using ::testing::HasSubstr;

using Args = std::vector<std::string>;

// An empty config file, so that a file in /etc on the test machine cannot change the
// results; flags override it wherever they are.
Args WithEmptyConfig(const Args& args) {
  Args all = {"--config", "/dev/null"};
  all.insert(all.end(), args.begin(), args.end());
  return all;
}

Options ParseOk(const Args& args) {
  Result<Options> result = load_options(WithEmptyConfig(args));
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message());
  return result.ok() ? result.value() : Options{};
}

// Expects EINVAL from the command line with a context that names `option`, so the user
// knows what to fix.
void ExpectError(const Args& args, const std::string& option) {
  OptionsErrorSource source = OptionsErrorSource::kConfigFile;
  Result<Options> result = load_options(WithEmptyConfig(args), &source);
  ASSERT_FALSE(result.ok()) << testing::PrintToString(args);
  EXPECT_EQ(result.error().code(), EINVAL);
  EXPECT_EQ(source, OptionsErrorSource::kCommandLine);
  EXPECT_THAT(std::string(result.error().context()), HasSubstr(option))
      << testing::PrintToString(args);
}

TEST(OptionsTest, Defaults) {
  const Options o = ParseOk({});
  EXPECT_EQ(o.socket_path, "/run/extmem/extmemd.sock");
  EXPECT_EQ(o.socket_mode, 0666u);
  EXPECT_EQ(o.fault_threads, 2u);
  EXPECT_EQ(o.log_level, "info");
  EXPECT_FALSE(o.lend_uffd_device);
  EXPECT_EQ(o.control_path, "/run/extmem/control.sock");
  EXPECT_EQ(o.control_mode, 0660u);
  EXPECT_FALSE(o.control_group.has_value());
  EXPECT_EQ(o.control_tcp, "");
  EXPECT_EQ(o.swap_path, "");
  EXPECT_EQ(o.swap_size, 0u);
  EXPECT_EQ(o.budget, 0u);
  EXPECT_EQ(o.default_limit, 0u);
  EXPECT_EQ(o.default_min, 0u);
  EXPECT_EQ(o.default_weight, 100u);
  EXPECT_EQ(o.default_policy, "clock");
  EXPECT_TRUE(o.rules.empty());
  EXPECT_EQ(o.config_path, "/dev/null");
  EXPECT_FALSE(o.check_config);
  EXPECT_FALSE(o.probe_only);
  EXPECT_FALSE(o.show_help);
  EXPECT_FALSE(o.show_version);
}

// Without --config, the default file is read when it exists; the test can only check the
// case of this machine.
TEST(OptionsTest, DefaultConfigFileIsOptional) {
  if (access(kDefaultConfigPath, F_OK) == 0) GTEST_SKIP() << kDefaultConfigPath << " exists";
  Result<Options> result = load_options({});
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->config_path, "");
  EXPECT_EQ(result->socket_path, Options{}.socket_path);
}

TEST(OptionsTest, MissingConfigFileIsAConfigError) {
  OptionsErrorSource source = OptionsErrorSource::kCommandLine;
  Result<Options> result = load_options({"--config", "/nonexistent/extmemd.toml"}, &source);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ENOENT);
  EXPECT_EQ(source, OptionsErrorSource::kConfigFile);
  EXPECT_THAT(std::string(result.error().context()), HasSubstr("/nonexistent/extmemd.toml"));
}

TEST(OptionsTest, HelpAndVersionReadNoConfigFile) {
  EXPECT_TRUE(load_options({"--config", "/nonexistent/extmemd.toml", "--help"})->show_help);
  EXPECT_TRUE(load_options({"--version", "--config", "/nonexistent/x.toml"})->show_version);
}

TEST(OptionsTest, Flags) {
  EXPECT_TRUE(ParseOk({"--help"}).show_help);
  EXPECT_TRUE(ParseOk({"-h"}).show_help);
  EXPECT_TRUE(ParseOk({"--version"}).show_version);
  EXPECT_TRUE(ParseOk({"--probe"}).probe_only);
  EXPECT_TRUE(ParseOk({"--lend-uffd"}).lend_uffd_device);
  EXPECT_FALSE(ParseOk({"--lend-uffd", "--no-lend-uffd"}).lend_uffd_device);
  EXPECT_TRUE(ParseOk({"--check-config"}).check_config);
}

TEST(OptionsTest, ControlPlane) {
  const Options o = ParseOk({"--control", "/tmp/c.sock", "--control-mode", "0600"});
  EXPECT_EQ(o.control_path, "/tmp/c.sock");
  EXPECT_EQ(o.control_mode, 0600u);
}

TEST(OptionsTest, MemoryDefaults) {
  const Options o = ParseOk({"--budget", "8G", "--default-limit", "512M", "--default-policy",
                             "fifo", "--swap", "/tmp/swap", "--swap-size", "1G"});
  EXPECT_EQ(o.budget, uint64_t{8} << 30);
  EXPECT_EQ(o.default_limit, uint64_t{512} << 20);
  EXPECT_EQ(o.default_policy, "fifo");
  EXPECT_EQ(o.swap_path, "/tmp/swap");
  EXPECT_EQ(o.swap_size, uint64_t{1} << 30);
  EXPECT_EQ(ParseOk({"--budget", "0"}).budget, 0u);
}

TEST(OptionsTest, Socket) {
  EXPECT_EQ(ParseOk({"--socket", "/tmp/x.sock"}).socket_path, "/tmp/x.sock");
}

TEST(OptionsTest, SocketModeIsOctal) {
  EXPECT_EQ(ParseOk({"--socket-mode", "0660"}).socket_mode, 0660u);
  EXPECT_EQ(ParseOk({"--socket-mode", "600"}).socket_mode, 0600u);
  EXPECT_EQ(ParseOk({"--socket-mode", "0777"}).socket_mode, 0777u);
  EXPECT_EQ(ParseOk({"--socket-mode", "0"}).socket_mode, 0u);
}

TEST(OptionsTest, FaultThreadsRange) {
  EXPECT_EQ(ParseOk({"--fault-threads", "1"}).fault_threads, 1u);
  EXPECT_EQ(ParseOk({"--fault-threads", "64"}).fault_threads, 64u);
  EXPECT_EQ(ParseOk({"--fault-threads", "8"}).fault_threads, 8u);
}

TEST(OptionsTest, PagingNiceRange) {
  EXPECT_EQ(ParseOk({}).paging_nice, -10);
  EXPECT_EQ(ParseOk({"--paging-nice", "-20"}).paging_nice, -20);
  EXPECT_EQ(ParseOk({"--paging-nice", "0"}).paging_nice, 0);
  EXPECT_EQ(ParseOk({"--paging-nice", "19"}).paging_nice, 19);
  for (const char* bad : {"-21", "20", "", "5x", "high"}) {
    ExpectError({"--paging-nice", bad}, "--paging-nice needs a nice value from -20 to 19");
  }
}

TEST(OptionsTest, LogLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    EXPECT_EQ(ParseOk({"--log-level", level}).log_level, level);
  }
}

TEST(OptionsTest, AllOptionsTogether) {
  const Options o = ParseOk({"--socket", "/run/a.sock", "--socket-mode", "0600", "--fault-threads",
                             "4", "--log-level", "debug", "--lend-uffd", "--probe"});
  EXPECT_EQ(o.socket_path, "/run/a.sock");
  EXPECT_EQ(o.socket_mode, 0600u);
  EXPECT_EQ(o.fault_threads, 4u);
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_TRUE(o.lend_uffd_device);
  EXPECT_TRUE(o.probe_only);
  EXPECT_FALSE(o.show_help);
}

TEST(OptionsTest, LaterOccurrenceWins) {
  EXPECT_EQ(ParseOk({"--fault-threads", "3", "--fault-threads", "5"}).fault_threads, 5u);
}

TEST(OptionsTest, MissingArgumentNamesTheOption) {
  for (const char* option :
       {"--socket", "--socket-mode", "--fault-threads", "--log-level", "--config", "--control",
        "--control-mode", "--budget", "--default-limit", "--default-policy", "--swap-size"}) {
    ExpectError({option}, option);
  }
  // A missing argument after a valid option still names the right one.
  ExpectError({"--probe", "--fault-threads"}, "--fault-threads");
}

TEST(OptionsTest, EmptySocketPathIsRejected) {
  ExpectError({"--socket", ""}, "--socket");
  ExpectError({"--control", ""}, "--control");
  ExpectError({"--config", ""}, "--config");
}

TEST(OptionsTest, BadSizes) {
  for (const char* option : {"--budget", "--default-limit", "--swap-size"}) {
    ExpectError({option, "12X"}, option);
    ExpectError({option, "-1"}, option);
  }
  // Limits are 0 or at least 1M, as the daemon requires.
  ExpectError({"--budget", "4K"}, "--budget");
  ExpectError({"--default-limit", "1048575"}, "--default-limit");
}

TEST(OptionsTest, SwapSizeNeedsSwap) {
  ExpectError({"--swap-size", "1G"}, "--swap-size needs --swap PATH");
}

TEST(OptionsTest, UnknownDefaultPolicy) {
  ExpectError({"--default-policy", "lru"}, "--default-policy");
  ExpectError({"--default-policy", "lru"}, known_policy_list());
}

TEST(OptionsTest, BadSocketModes) {
  for (const char* mode : {"999", "0x", "0x1ff", "8", "1000", "-1", "", "rw"}) {
    SCOPED_TRACE(mode);
    ExpectError({"--socket-mode", mode}, "--socket-mode");
    ExpectError({"--control-mode", mode}, "--control-mode");
  }
}

TEST(OptionsTest, BadFaultThreads) {
  for (const char* n : {"0", "65", "-1", "", "two", "4x", "99999999999999999999"}) {
    SCOPED_TRACE(n);
    ExpectError({"--fault-threads", n}, "--fault-threads");
  }
}

TEST(OptionsTest, BadLogLevel) {
  for (const char* level : {"verbose", "INFO", "", "warning"}) {
    SCOPED_TRACE(level);
    ExpectError({"--log-level", level}, "--log-level");
  }
}

TEST(OptionsTest, UnknownOptionIsNamed) {
  ExpectError({"--frobnicate"}, "--frobnicate");
  ExpectError({"--probe", "stray"}, "stray");
  ExpectError({"--socket=/tmp/x"}, "--socket=/tmp/x");
}

TEST(OptionsTest, UsageMentionsEveryOption) {
  const std::string text = usage();
  for (const char* option :
       {"--config", "--check-config", "--socket", "--socket-mode", "--control", "--control-mode",
        "--fault-threads", "--swap", "--swap-size", "--budget", "--default-limit",
        "--default-policy", "--stats-interval", "--lend-uffd", "--no-lend-uffd", "--log-level",
        "--probe", "--version", "--help"}) {
    EXPECT_THAT(text, HasSubstr(option));
  }
}

}  // namespace
}  // namespace extmem::daemon
