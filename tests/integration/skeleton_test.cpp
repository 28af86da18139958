// End to end: a real extmemd, real client processes under the shim, real userfaultfds.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>

#include <gtest/gtest.h>

#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/uffd.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"
#include "harness.hpp"

namespace extmem::testing {
namespace {

// The pid the daemon logged for the n-th registered client.
pid_t registered_pid(const std::string& log, int n = 0) {
  static const std::regex kRegistered(R"(client (\d+) \(([^,]+), uid (\d+)\) registered)");
  auto it = std::sregex_iterator(log.begin(), log.end(), kRegistered);
  for (int i = 0; i < n && it != std::sregex_iterator(); ++i) ++it;
  return it == std::sregex_iterator() ? -1 : std::stoi((*it)[1]);
}

bool departed(const Daemon& daemon, pid_t pid) {
  return !departure_line(daemon, pid).empty();
}

void expect_stress_passes(bool as_nobody) {
  ScratchDir dir;
  Daemon daemon(dir, {"--lend-uffd"});
  ClientOptions options;
  options.as_nobody = as_nobody;
  ProcessResult r = run_client(dir, daemon,
                               {"stress", "--mmap-mib", "1024", "--malloc-mib", "256", "--threads",
                                "4", "--require-managed"},
                               options);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("stress ok"), std::string::npos) << r.out;

  std::string log = daemon.log();
  pid_t pid = registered_pid(log);
  ASSERT_GT(pid, 0) << log;
  EXPECT_NE(log.find("(extmem-workload, uid " + std::to_string(as_nobody ? 65534 : 0) + ")"),
            std::string::npos)
      << log;
  ASSERT_TRUE(departed(daemon, pid)) << daemon.log();
  log = daemon.log();
  // 1.25 GiB of fresh memory was touched through the daemon.
  EXPECT_GT(departed_counter(daemon, pid, "first_touch"), 100u) << log;
  EXPECT_GE(departed_counter(daemon, pid, "zero_filled_pages"), (1280ULL << 20) / 4096) << log;
  EXPECT_GT(departed_counter(daemon, pid, "released_pages"), 0u) << log;
  EXPECT_EQ(departed_counter(daemon, pid, "fault"), 0u) << log;

  // The daemon dropped the client and still runs.
  kill(daemon.pid(), SIGUSR1);
  EXPECT_TRUE(daemon.wait_for_log("stats: total clients=0")) << daemon.log();
  EXPECT_EQ(daemon.stop(), 0);
}

TEST(Skeleton, StressWithMmapMallocReallocMremapAndDontneed) {
  expect_stress_passes(false);
}

TEST(Skeleton, StressAsUnprivilegedUser) {
  expect_stress_passes(true);
}

TEST(Skeleton, SystemCallsReadIntoAndWriteFromManagedBuffers) {
  ScratchDir dir;
  Daemon daemon(dir, {"--lend-uffd"});
  for (bool as_nobody : {false, true}) {
    ClientOptions options;
    options.as_nobody = as_nobody;
    std::string tmp = dir.file("tmp");
    mkdir(tmp.c_str(), 01777);
    chmod(tmp.c_str(), 01777);
    options.env["TMPDIR"] = tmp;
    ProcessResult r = run_client(dir, daemon, {"syscalls", "--require-managed"}, options);
    EXPECT_EQ(r.exit_code, 0) << (as_nobody ? "as nobody: " : "as root: ") << describe(r)
                              << "\n--- daemon log\n"
                              << daemon.log();
  }
}

TEST(Skeleton, ForkedChildDoesNotSeeManagedMemoryAndExecWorks) {
  ScratchDir dir;
  Daemon daemon(dir);
  ProcessResult r = run_client(dir, daemon, {"fork"});
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("managed"), std::string::npos) << r.out;
}

TEST(Skeleton, UnmapAndMremapBehindTheShimAreFollowed) {
  ScratchDir dir;
  Daemon daemon(dir);
  ProcessResult r = run_client(dir, daemon, {"behind-the-shim"});
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_NE(r.out.find("block managed"), std::string::npos) << r.out;
  pid_t pid = registered_pid(daemon.log());
  ASSERT_TRUE(departed(daemon, pid)) << daemon.log();
  std::string log = daemon.log();
  EXPECT_GE(departed_counter(daemon, pid, "unmap"), 1u) << log;
  EXPECT_GE(departed_counter(daemon, pid, "remap"), 1u) << log;
  EXPECT_EQ(departed_counter(daemon, pid, "fault"), 0u) << log;
}

TEST(Skeleton, ClientKilledWithSigkillIsReleased) {
  ScratchDir dir;
  Daemon daemon(dir);
  Started s = start_process(dir, client_argv(dir, {"hold", "--mib", "64"}), client_options(daemon));
  ASSERT_TRUE(wait_for_output(s, "ready", std::chrono::seconds(30)))
      << describe(wait_process(s, std::chrono::seconds(1)));
  kill(s.pid, SIGKILL);
  ProcessResult r = wait_process(s, std::chrono::seconds(10));
  EXPECT_EQ(r.signal, SIGKILL);
  ASSERT_TRUE(departed(daemon, s.pid)) << daemon.log();
  EXPECT_GE(departed_counter(daemon, s.pid, "zero_filled_pages"), 64u * 256) << daemon.log();
  kill(daemon.pid(), SIGUSR1);
  EXPECT_TRUE(daemon.wait_for_log("stats: total clients=0")) << daemon.log();
}

TEST(Skeleton, RunsUnmanagedWithOneWarningWhenNoDaemon) {
  ScratchDir dir;
  ClientOptions options;
  options.env["EXTMEM_SOCKET"] = dir.file("nobody-listens.sock");
  ProcessResult r = run_process(
      dir, client_argv(dir, {"stress", "--mmap-mib", "128", "--malloc-mib", "64"}), options);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(count_occurrences(r.err, "extmem: "), 1) << r.err;
  EXPECT_NE(r.err.find("running unmanaged"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("managed blocks 0/"), std::string::npos) << r.out;
}

TEST(Skeleton, RequiredWithoutDaemonExitsWithClearMessage) {
  ScratchDir dir;
  ClientOptions options;
  options.env["EXTMEM_SOCKET"] = dir.file("nobody-listens.sock");
  options.env["EXTMEM_REQUIRED"] = "1";
  ProcessResult r = run_process(dir, client_argv(dir, {"alloc-sizes"}), options);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("cannot reach extmemd"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("EXTMEM_REQUIRED"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "") << "the program must not run";
}

TEST(Skeleton, ThresholdDecidesWhatIsManaged) {
  ScratchDir dir;
  Daemon daemon(dir);
  ProcessResult r = run_client(dir, daemon, {"alloc-sizes"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("malloc 4096 unmanaged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("malloc 131072 managed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mmap 1048576 managed"), std::string::npos) << r.out;

  ClientOptions options;
  options.env["EXTMEM_MIN_ALLOC"] = "1M";
  r = run_client(dir, daemon, {"alloc-sizes"}, options);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("malloc 131072 unmanaged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("malloc 1048576 managed"), std::string::npos) << r.out;
}

// A hand-rolled client speaking the wire protocol directly.
class RawClient {
 public:
  explicit RawClient(const Daemon& daemon) {
    auto fd = kernel::connect_unix(daemon.socket_path().c_str());
    EXPECT_TRUE(fd.ok()) << fd.error().message();
    if (fd) fd_ = std::move(*fd);
    (void)kernel::set_io_timeout(fd_.get(), 10000);
  }
  int fd() const { return fd_.get(); }
  void send_bytes(const void* data, size_t len, std::span<const int> fds = {}) {
    auto sent = kernel::send_message(fd_.get(), {static_cast<const std::byte*>(data), len}, fds);
    ASSERT_TRUE(sent.ok()) << sent.error().message();
  }
  template <class Msg>
  void send(const Msg& msg, std::span<const int> fds = {}) {
    std::byte frame[wire::kMaxFrame];
    send_bytes(frame, wire::encode(msg, frame), fds);
  }
  // The daemon's reply; status -1 if the connection closed without one.
  wire::Reply reply() {
    wire::Reply reply;
    reply.status = -1;
    std::byte frame[wire::kMaxFrame];
    kernel::UniqueFd fds[1];
    auto got = kernel::receive_message(fd_.get(), {frame, sizeof(frame)}, fds);
    if (!got || got->bytes == 0) return reply;
    wire::FrameHeader header;
    EXPECT_EQ(wire::decode_header(frame, got->bytes, &header), wire::DecodeError::kOk);
    EXPECT_EQ(wire::decode(frame + wire::kHeaderSize, header.length, &reply),
              wire::DecodeError::kOk);
    return reply;
  }
  // True once the daemon closed the connection.
  bool closed_by_peer() {
    char c;
    return recv(fd_.get(), &c, 1, 0) == 0;
  }

 private:
  kernel::UniqueFd fd_;
};

void expect_rejected(RawClient& client, const std::string& message_part) {
  wire::Reply reply = client.reply();
  EXPECT_GT(reply.status, 0) << "expected an error reply naming: " << message_part;
  EXPECT_NE(std::string(reply.message).find(message_part), std::string::npos) << reply.message;
  EXPECT_TRUE(client.closed_by_peer());
}

void expect_daemon_still_serves(const ScratchDir& dir, const Daemon& daemon) {
  ProcessResult r = run_client(dir, daemon, {"alloc-sizes"});
  EXPECT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
}

// An application linked with another allocator (redis links jemalloc) sees that
// allocator's malloc_usable_size next to the shim; the shim must answer for the libc
// blocks it hands out with glibc's (it used the next definition: redis crashed at start).
TEST(Skeleton, UsableSizeOfLibcBlocksIsGlibcsWhenTheAppLinksAnotherAllocator) {
  ScratchDir dir;
  Daemon daemon(dir, {});
  ProcessResult r = run_process(dir, {EXTMEM_USABLE_SIZE_PATH}, client_options(daemon));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("usable ok"), std::string::npos) << describe(r);
}

TEST(Handshake, GarbageIsRejectedWithAReason) {
  ScratchDir dir;
  Daemon daemon(dir);
  RawClient client(daemon);
  const char garbage[] = "GET / HTTP/1.1\r\n\r\n";
  client.send_bytes(garbage, sizeof(garbage));
  expect_rejected(client, "bad magic");
  expect_daemon_still_serves(dir, daemon);
  EXPECT_NE(daemon.log().find("rejected client"), std::string::npos);
}

TEST(Handshake, WrongVersionTruncatedAndOversizedMessagesAreRejected) {
  ScratchDir dir;
  Daemon daemon(dir);
  std::byte frame[wire::kMaxFrame];
  size_t len = wire::encode(wire::Hello{}, frame);
  {
    RawClient client(daemon);
    std::byte v2[wire::kMaxFrame];
    memcpy(v2, frame, len);
    v2[4] = std::byte{2};  // version field
    client.send_bytes(v2, len);
    expect_rejected(client, "protocol version 2 is not supported");
  }
  {
    RawClient client(daemon);
    client.send_bytes(frame, len - 3);
    expect_rejected(client, "truncated");
  }
  {
    RawClient client(daemon);
    std::vector<std::byte> big(wire::kMaxFrame * 4, std::byte{0});
    memcpy(big.data(), frame, wire::kHeaderSize);
    client.send_bytes(big.data(), big.size());
    expect_rejected(client, "too large");
  }
  expect_daemon_still_serves(dir, daemon);
}

TEST(Handshake, ClosingMidHandshakeLeavesTheDaemonServing) {
  ScratchDir dir;
  Daemon daemon(dir);
  { RawClient client(daemon); }  // connect and leave
  {
    RawClient client(daemon);
    client.send(wire::Hello{});
    EXPECT_EQ(client.reply().status, 0);
  }  // leave before registering
  EXPECT_TRUE(daemon.wait_for_log("client closed the connection")) << daemon.log();
  expect_daemon_still_serves(dir, daemon);
}

TEST(Handshake, RegularFileInsteadOfUserfaultfdIsRejected) {
  ScratchDir dir;
  Daemon daemon(dir);
  RawClient client(daemon);
  client.send(wire::Hello{});
  ASSERT_EQ(client.reply().status, 0);

  kernel::UniqueFd file(open(dir.path().c_str(), O_TMPFILE | O_RDWR, 0600));
  ASSERT_TRUE(file.valid());
  auto memfd = kernel::Memfd::create("extmem-arena", MFD_CLOEXEC);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(1 << 20).ok());
  void* arena = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd->fd(), 0);
  ASSERT_NE(arena, MAP_FAILED);
  wire::Register reg;
  reg.arena_base = reinterpret_cast<uintptr_t>(arena);
  reg.arena_size = 1 << 20;
  const int fds[2] = {file.get(), memfd->fd()};
  client.send(reg, fds);
  expect_rejected(client, "not a userfaultfd");
  munmap(arena, 1 << 20);
  expect_daemon_still_serves(dir, daemon);
}

TEST(Handshake, WrongDescriptorCountAndForeignArenaAreRejected) {
  ScratchDir dir;
  Daemon daemon(dir);
  auto uffd = kernel::Userfaultfd::create(O_CLOEXEC | O_NONBLOCK);
  ASSERT_TRUE(uffd.ok()) << uffd.error().message();
  auto memfd = kernel::Memfd::create("extmem-arena", MFD_CLOEXEC);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(1 << 20).ok());
  {
    RawClient client(daemon);
    client.send(wire::Hello{});
    ASSERT_EQ(client.reply().status, 0);
    const int fds[1] = {uffd->fd()};
    client.send(wire::Register{0x10000000, 1 << 20}, fds);
    expect_rejected(client, "expected 2 descriptor(s), got 1");
  }
  {
    // Both descriptors are real, but nothing maps the memfd at the claimed address.
    RawClient client(daemon);
    client.send(wire::Hello{});
    ASSERT_EQ(client.reply().status, 0);
    const int fds[2] = {uffd->fd(), memfd->fd()};
    client.send(wire::Register{0x10000000, 1 << 20}, fds);
    expect_rejected(client, "does not map the memfd");
  }
  {
    RawClient client(daemon);
    client.send(wire::Hello{});
    ASSERT_EQ(client.reply().status, 0);
    const int fds[2] = {uffd->fd(), memfd->fd()};
    client.send(wire::Register{0x10000123, 1 << 20}, fds);
    expect_rejected(client, "not page aligned");
  }
  expect_daemon_still_serves(dir, daemon);
}

}  // namespace
}  // namespace extmem::testing
