#include "config/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

namespace extmem::daemon {
namespace {

using ::testing::HasSubstr;

using Args = std::vector<std::string>;

Options ParseOk(const Args& args) {
  Result<Options> result = parse_options(args);
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message());
  return result.ok() ? result.value() : Options{};
}

// Expects EINVAL with a context that names `option`, so the user knows what to fix.
void ExpectError(const Args& args, const std::string& option) {
  Result<Options> result = parse_options(args);
  ASSERT_FALSE(result.ok()) << testing::PrintToString(args);
  EXPECT_EQ(result.error().code(), EINVAL);
  EXPECT_THAT(std::string(result.error().context()), HasSubstr(option))
      << testing::PrintToString(args);
}

TEST(OptionsTest, Defaults) {
  const Options o = ParseOk({});
  EXPECT_EQ(o.socket_path, "/run/extmem/extmemd.sock");
  EXPECT_EQ(o.socket_mode, 0666u);
  EXPECT_EQ(o.fault_threads, 2u);
  EXPECT_EQ(o.log_level, "info");
  EXPECT_TRUE(o.lend_uffd_device);
  EXPECT_FALSE(o.probe_only);
  EXPECT_FALSE(o.show_help);
  EXPECT_FALSE(o.show_version);
}

TEST(OptionsTest, Flags) {
  EXPECT_TRUE(ParseOk({"--help"}).show_help);
  EXPECT_TRUE(ParseOk({"-h"}).show_help);
  EXPECT_TRUE(ParseOk({"--version"}).show_version);
  EXPECT_TRUE(ParseOk({"--probe"}).probe_only);
  EXPECT_FALSE(ParseOk({"--no-lend-uffd"}).lend_uffd_device);
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

TEST(OptionsTest, LogLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    EXPECT_EQ(ParseOk({"--log-level", level}).log_level, level);
  }
}

TEST(OptionsTest, AllOptionsTogether) {
  const Options o = ParseOk({"--socket", "/run/a.sock", "--socket-mode", "0600", "--fault-threads",
                             "4", "--log-level", "debug", "--no-lend-uffd", "--probe"});
  EXPECT_EQ(o.socket_path, "/run/a.sock");
  EXPECT_EQ(o.socket_mode, 0600u);
  EXPECT_EQ(o.fault_threads, 4u);
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_FALSE(o.lend_uffd_device);
  EXPECT_TRUE(o.probe_only);
  EXPECT_FALSE(o.show_help);
}

TEST(OptionsTest, LaterOccurrenceWins) {
  EXPECT_EQ(ParseOk({"--fault-threads", "3", "--fault-threads", "5"}).fault_threads, 5u);
}

TEST(OptionsTest, MissingArgumentNamesTheOption) {
  for (const char* option : {"--socket", "--socket-mode", "--fault-threads", "--log-level"}) {
    ExpectError({option}, option);
  }
  // A missing argument after a valid option still names the right one.
  ExpectError({"--probe", "--fault-threads"}, "--fault-threads");
}

TEST(OptionsTest, EmptySocketPathIsRejected) {
  ExpectError({"--socket", ""}, "--socket");
}

TEST(OptionsTest, BadSocketModes) {
  for (const char* mode : {"999", "0x", "0x1ff", "8", "1000", "-1", "", "rw"}) {
    SCOPED_TRACE(mode);
    ExpectError({"--socket-mode", mode}, "--socket-mode");
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
  for (const char* option : {"--socket", "--socket-mode", "--fault-threads", "--no-lend-uffd",
                             "--log-level", "--probe", "--version", "--help"}) {
    EXPECT_THAT(text, HasSubstr(option));
  }
}

}  // namespace
}  // namespace extmem::daemon
