// sd_notify and the watchdog interval against a real AF_UNIX datagram socket, the way
// systemd receives them.
#include "extmem/kernel/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "extmem/kernel/fd.hpp"

namespace extmem::kernel {
namespace {

using std::chrono::microseconds;

constexpr const char* kVariables[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};

// Saves and restores the variables these tests set, so no test leaks into another.
class SdNotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* value = getenv(name);
      saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// A datagram socket bound at `name` (a path, or '@' for the abstract namespace) that
// asks for the sender's credentials, as systemd's notification socket does.
UniqueFd bind_receiver(const std::string& name) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid()) << strerror(errno);
  int one = 1;
  EXPECT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
            0)
      << name << ": " << strerror(errno);
  return fd;
}

struct Datagram {
  std::string text;
  pid_t sender = 0;
};

// The next queued datagram; sd_notify has returned, so it is already there.
std::optional<Datagram> receive(int fd) {
  char buf[4096];
  iovec iov = {buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0) return std::nullopt;
  Datagram d;
  d.text.assign(buf, static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      d.sender = cred.pid;
    }
  }
  return d;
}

// A private directory for socket files, removed even when an assertion fails.
struct ScratchDir {
  ScratchDir() {
    char templ[] = "/tmp/extmem-sd-notify-XXXXXX";
    EXPECT_NE(mkdtemp(templ), nullptr);
    path = templ;
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string path;
};

TEST_F(SdNotifyTest, UnsetSocketIsNotAnError) {
  auto sent = sd_notify("READY=1");
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  EXPECT_FALSE(*sent);
}

TEST_F(SdNotifyTest, SendsOneDatagramToAPathSocket) {
  ScratchDir dir;
  const std::string path = dir.path + "/notify";
  UniqueFd receiver = bind_receiver(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);

  const std::string state = "READY=1\nSTATUS=serving 2 clients";
  auto sent = sd_notify(state);
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  EXPECT_TRUE(*sent);
  auto got = receive(receiver.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->text, state);
  // NotifyAccess=main accepts a message by the sender's pid.
  EXPECT_EQ(got->sender, getpid());
  EXPECT_FALSE(receive(receiver.get())) << "more than one datagram";

  // The variable stays: the daemon notifies again later.
  ASSERT_NE(getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_STREQ(getenv("NOTIFY_SOCKET"), path.c_str());
  ASSERT_TRUE(sd_notify("WATCHDOG=1").ok());
  got = receive(receiver.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->text, "WATCHDOG=1");
}

TEST_F(SdNotifyTest, SendsToAnAbstractSocket) {
  const std::string name = "@extmem-sd-notify-test-" + std::to_string(getpid());
  UniqueFd receiver = bind_receiver(name);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);

  auto sent = sd_notify("STOPPING=1");
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  EXPECT_TRUE(*sent);
  auto got = receive(receiver.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->text, "STOPPING=1");

  // The name is exactly as long as given: a longer bound name is a different socket.
  setenv("NOTIFY_SOCKET", (name + "x").c_str(), 1);
  EXPECT_FALSE(sd_notify("READY=1").ok());
  EXPECT_FALSE(receive(receiver.get()));
}

TEST_F(SdNotifyTest, UnusableSocketsAreErrors) {
  ScratchDir dir;
  setenv("NOTIFY_SOCKET", (dir.path + "/nobody-listens").c_str(), 1);
  auto sent = sd_notify("READY=1");
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code(), ENOENT) << sent.error().message();

  for (const char* bad : {"", "@", "relative/path", "vsock:2:1234"}) {
    setenv("NOTIFY_SOCKET", bad, 1);
    sent = sd_notify("READY=1");
    ASSERT_FALSE(sent.ok()) << "NOTIFY_SOCKET=" << bad;
    EXPECT_EQ(sent.error().code(), EAFNOSUPPORT) << sent.error().message();
  }
  setenv("NOTIFY_SOCKET", ("/" + std::string(sizeof(sockaddr_un::sun_path), 'x')).c_str(), 1);
  sent = sd_notify("READY=1");
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code(), ENAMETOOLONG);
}

TEST_F(SdNotifyTest, WatchdogIntervalForThisProcess) {
  EXPECT_FALSE(sd_watchdog_interval());

  setenv("WATCHDOG_USEC", "30000000", 1);
  EXPECT_EQ(sd_watchdog_interval(), microseconds(30'000'000));
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(sd_watchdog_interval(), microseconds(30'000'000));
  // Not read destructively: asked again, the same answer.
  EXPECT_EQ(sd_watchdog_interval(), microseconds(30'000'000));
}

TEST_F(SdNotifyTest, WatchdogMeantForAnotherProcessIsIgnored) {
  setenv("WATCHDOG_USEC", "30000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_FALSE(sd_watchdog_interval());
  for (const char* bad : {"", "abc", "12x", "-1", " 1"}) {
    setenv("WATCHDOG_PID", bad, 1);
    EXPECT_FALSE(sd_watchdog_interval()) << "WATCHDOG_PID=" << bad;
  }
}

TEST_F(SdNotifyTest, GarbageWatchdogIntervalIsIgnored) {
  for (const char* bad : {"", "0", "abc", "30s", "-5", "+5", " 5", "5 ", "1e6",
                          "18446744073709551615", "99999999999999999999999"}) {
    setenv("WATCHDOG_USEC", bad, 1);
    EXPECT_FALSE(sd_watchdog_interval()) << "WATCHDOG_USEC=" << bad;
  }
  setenv("WATCHDOG_USEC", "1", 1);
  EXPECT_EQ(sd_watchdog_interval(), microseconds(1));
}

}  // namespace
}  // namespace extmem::kernel
