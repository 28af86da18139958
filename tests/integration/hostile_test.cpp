// Hostile clients: raw connections that speak the handshake by hand and send what no shim
// would. Each must be turned away with a reply naming the problem where the protocol has
// room for one, leave no descriptor behind in the daemon, and leave it serving: a real
// client still pages correctly afterwards. skeleton_test.cpp's Handshake tests cover the
// first refusals; these add descriptor types and counts, impossible arenas, disconnects
// at every step, stalls, and registrations that must not hold up the fault threads.
#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "extmem/hint_ring.hpp"
#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr size_t kPage = 4096;
constexpr size_t kArenaSize = 1 << 20;

// The daemon's open descriptors, each as what it is ("socket:[123]", "/dev/null", ...).
std::vector<std::string> open_fds(pid_t pid) {
  std::vector<std::string> fds;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return fds;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[256] = {};
    const std::string link = dir + "/" + e->d_name;
    if (readlink(link.c_str(), target, sizeof(target) - 1) < 0) continue;  // closed meanwhile
    fds.push_back(std::string(e->d_name) + " -> " + target);
  }
  closedir(d);
  return fds;
}

// Handshake threads end (a timeout at most) after their client is refused, so the daemon
// gets some time to close what they held.
::testing::AssertionResult fds_return_to(pid_t pid, size_t baseline) {
  std::vector<std::string> fds;
  for (auto deadline = Clock::now() + std::chrono::seconds(10); Clock::now() < deadline;) {
    fds = open_fds(pid);
    if (fds.size() <= baseline) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto failure = ::testing::AssertionFailure()
                 << "the daemon holds " << fds.size() << " descriptors, " << baseline
                 << " before the hostile clients:";
  for (const std::string& fd : fds) failure << "\n  " << fd;
  return failure;
}

kernel::UniqueFd new_uffd(int flags = O_CLOEXEC | O_NONBLOCK) {
  return kernel::UniqueFd(static_cast<int>(syscall(SYS_userfaultfd, flags)));
}

// A hand-rolled client connection.
class RawConnection {
 public:
  explicit RawConnection(const Daemon& daemon) {
    auto fd = kernel::connect_unix(daemon.socket_path().c_str());
    EXPECT_TRUE(fd.ok()) << fd.error().message();
    if (fd) fd_ = std::move(*fd);
    // Longer than the daemon's handshake timeout, so its timeout reply is seen.
    (void)kernel::set_io_timeout(fd_.get(), 10000);
  }

  // One message with any number of descriptors (kernel::send_message stops at the few the
  // protocol uses). False when the daemon already closed the connection.
  bool send_bytes(const void* data, size_t len, const std::vector<int>& fds = {}) {
    iovec iov = {const_cast<void*>(data), len};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    return sendmsg(fd_.get(), &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
  }
  template <class Msg>
  bool send(const Msg& msg, const std::vector<int>& fds = {}) {
    std::byte frame[wire::kMaxFrame];
    return send_bytes(frame, wire::encode(msg, frame), fds);
  }

  // The daemon's reply, and the descriptor it lent if any; status -1 when the connection
  // closed (or stayed silent) without one.
  wire::Reply reply(kernel::UniqueFd* lent = nullptr) {
    wire::Reply reply;
    reply.status = -1;
    std::byte frame[wire::kMaxFrame];
    kernel::UniqueFd fds[kernel::kMaxPassedFds];
    auto got = kernel::receive_message(fd_.get(), {frame, sizeof(frame)}, fds);
    if (!got || got->bytes == 0) return reply;
    wire::FrameHeader header;
    EXPECT_EQ(wire::decode_header(frame, got->bytes, &header), wire::DecodeError::kOk);
    EXPECT_EQ(header.type, wire::MsgType::kReply);
    EXPECT_EQ(wire::decode(frame + wire::kHeaderSize, header.length, &reply),
              wire::DecodeError::kOk);
    if (lent != nullptr) *lent = std::move(fds[0]);
    return reply;
  }
  // Hello, and its "ok".
  void hello(const wire::Hello& hello = {}) {
    ASSERT_TRUE(send(hello));
    wire::Reply ok = reply();
    ASSERT_EQ(ok.status, 0) << ok.message;
  }
  bool closed_by_peer() {
    char c;
    return recv(fd_.get(), &c, 1, 0) == 0;
  }
  void close() { fd_.reset(); }

 private:
  kernel::UniqueFd fd_;
};

// An error reply naming the problem, then the end of the connection.
void expect_refused(RawConnection& connection, const std::string& what) {
  wire::Reply reply = connection.reply();
  EXPECT_GT(reply.status, 0) << "expected a refusal naming: " << what;
  EXPECT_THAT(reply.message, HasSubstr(what));
  EXPECT_TRUE(connection.closed_by_peer()) << what;
}

// What a client registers: its own userfaultfd and a memfd mapped shared over the arena
// (not inherited by a fork, as the shim does it). The parameters make it wrong.
class Arena {
 public:
  explicit Arena(size_t memfd_size = kArenaSize, int prot = PROT_READ | PROT_WRITE,
                 int flags = MAP_SHARED, int uffd_flags = O_CLOEXEC | O_NONBLOCK)
      : memfd_(memfd_create("extmem-arena", MFD_CLOEXEC)), uffd_(new_uffd(uffd_flags)) {
    EXPECT_TRUE(memfd_.valid() && uffd_.valid()) << strerror(errno);
    EXPECT_EQ(ftruncate(memfd_.get(), static_cast<off_t>(memfd_size)), 0);
    base_ = mmap(nullptr, kArenaSize, prot, flags, memfd_.get(), 0);
    EXPECT_NE(base_, MAP_FAILED) << strerror(errno);
    EXPECT_EQ(madvise(base_, kArenaSize, MADV_DONTFORK), 0);
  }
  // The userfaultfd first: were the daemon gone, unmapping a registered range would wait
  // for it to read the event.
  ~Arena() {
    uffd_.reset();
    munmap(base_, kArenaSize);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  uint64_t base() const { return reinterpret_cast<uintptr_t>(base_); }
  char* page(size_t n) const { return static_cast<char*>(base_) + n * kPage; }
  wire::Register reg() const { return {base(), kArenaSize}; }
  int memfd() const { return memfd_.get(); }
  int uffd() const { return uffd_.get(); }
  std::vector<int> fds() const { return {uffd(), memfd()}; }

 private:
  kernel::UniqueFd memfd_;
  kernel::UniqueFd uffd_;
  void* base_ = MAP_FAILED;
};

// A userfaultfd created by another process: a child that stays alive (its address space
// with it, without the arena) until this is destroyed.
class ForeignUffd {
 public:
  ForeignUffd() {
    int pair[2], hold[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0 ||
        pipe2(hold, O_CLOEXEC) != 0) {
      ADD_FAILURE() << strerror(errno);
      return;
    }
    child_ = fork();
    if (child_ == 0) {  // system calls only: the parent may have other threads
      const int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
      const char one = 1;
      const int fds[1] = {uffd};
      if (!kernel::send_message(pair[1], {reinterpret_cast<const std::byte*>(&one), 1}, fds)) {
        _exit(1);
      }
      char c;
      ::close(hold[1]);
      (void)!read(hold[0], &c, 1);  // until the parent closes its end
      _exit(0);
    }
    ::close(pair[1]);
    ::close(hold[0]);
    hold_.reset(hold[1]);
    std::byte buf[1];
    kernel::UniqueFd fds[1];
    auto got = kernel::receive_message(pair[0], {buf, 1}, fds);
    ::close(pair[0]);
    EXPECT_TRUE(got.ok() && got->fd_count == 1);
    uffd_ = std::move(fds[0]);
  }
  ~ForeignUffd() {
    hold_.reset();
    if (child_ > 0) waitpid(child_, nullptr, 0);
  }
  int fd() const { return uffd_.get(); }

 private:
  pid_t child_ = -1;
  kernel::UniqueFd hold_;
  kernel::UniqueFd uffd_;
};

// A connection that says Hello, then registers `reg` with `fds`, and is refused for `what`.
void expect_register_refused(const Daemon& daemon, const wire::Register& reg,
                             const std::vector<int>& fds, const std::string& what) {
  SCOPED_TRACE(what);
  RawConnection connection(daemon);
  connection.hello();
  ASSERT_TRUE(connection.send(reg, fds));
  expect_refused(connection, what);
}

// What the daemon said to a connection that stopped talking, and when.
struct Stalled {
  wire::Reply reply;
  std::chrono::milliseconds waited{0};
};

// Connects, says Hello or not, then waits. Runs on its own thread: the daemon's handshake
// timeout runs out while other clients are served.
Stalled stall(const Daemon& daemon, bool after_hello) {
  RawConnection connection(daemon);
  if (after_hello) connection.hello();
  const auto start = Clock::now();
  Stalled stalled;
  stalled.reply = connection.reply();
  stalled.waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return stalled;
}

void send_garbage(const Daemon& daemon) {
  std::byte hello[wire::kMaxFrame];
  const size_t hello_len = wire::encode(wire::Hello{}, hello);
  auto refused = [&](const void* data, size_t len, const std::string& what) {
    SCOPED_TRACE(what);
    RawConnection connection(daemon);
    ASSERT_TRUE(connection.send_bytes(data, len));
    expect_refused(connection, what);
  };
  // An empty message: recvmsg returns 0 as at the end of the connection, which it is not.
  refused("", 0, "message truncated");
  refused(hello, 1, "message truncated");
  std::vector<unsigned char> noise(300);
  uint32_t x = 2463534242u;
  for (unsigned char& c : noise) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    c = static_cast<unsigned char>(x);
  }
  refused(noise.data(), noise.size(), "bad magic");

  std::vector<std::byte> frame(hello, hello + hello_len);
  frame[6] = std::byte{0};  // type 0
  refused(frame.data(), frame.size(), "unknown message type");
  frame[6] = std::byte{0x34};  // type 0x1234
  frame[7] = std::byte{0x12};
  refused(frame.data(), frame.size(), "unknown message type");
  frame.assign(hello, hello + hello_len);
  frame[8] = std::byte{0xff};  // payload length 0xffffffff
  frame[9] = frame[10] = frame[11] = std::byte{0xff};
  refused(frame.data(), frame.size(), "message too large");
  frame.assign(hello, hello + hello_len);
  frame.push_back(std::byte{0});  // one byte more than the header says
  refused(frame.data(), frame.size(), "unexpected bytes after the message fields");
  frame[8] = static_cast<std::byte>(hello_len + 1 - wire::kHeaderSize);  // and it says so
  refused(frame.data(), frame.size(), "hello: unexpected bytes after the message fields");

  // A policy name with a control character, and one longer than the field.
  wire::Hello bad_policy;
  strcpy(bad_policy.policy, "clock");
  std::byte bad[wire::kMaxFrame];
  const size_t bad_len = wire::encode(bad_policy, bad);
  bad[bad_len - 1] = std::byte{'\n'};
  refused(bad, bad_len, "hello: bad string field");
  std::vector<std::byte> long_policy(hello, hello + hello_len);
  long_policy[wire::kHeaderSize + 12] = std::byte{wire::kMaxPolicyName + 1};
  long_policy.insert(long_policy.end(), wire::kMaxPolicyName + 1, std::byte{'a'});
  long_policy[8] = static_cast<std::byte>(long_policy.size() - wire::kHeaderSize);
  refused(long_policy.data(), long_policy.size(), "hello: bad string field");

  // Messages out of order.
  std::byte other[wire::kMaxFrame];
  refused(other, wire::encode(wire::Reply{}, other), "unexpected message type 2");
  refused(other, wire::encode(wire::Register{}, other), "unexpected message type 3");
  {
    SCOPED_TRACE("hello twice");
    RawConnection connection(daemon);
    connection.hello();
    ASSERT_TRUE(connection.send(wire::Hello{}));
    expect_refused(connection, "unexpected message type 1");
  }
  {
    SCOPED_TRACE("descriptors with the hello");
    RawConnection connection(daemon);
    kernel::UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(connection.send(wire::Hello{}, {null.get(), null.get()}));
    expect_refused(connection, "expected 0 descriptor(s), got 2");
  }
}

void send_wrong_descriptors(const Daemon& daemon, const ScratchDir& dir) {
  Arena arena;
  const std::string memfd_not = "is not a memfd";
  const std::string uffd_not = "is not a userfaultfd";
  kernel::UniqueFd file(open(dir.path().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  kernel::UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
  kernel::UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  kernel::UniqueFd event(eventfd(0, EFD_CLOEXEC));
  kernel::UniqueFd shm(open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  ASSERT_TRUE(file.valid() && null.valid() && socket.valid() && event.valid() && shm.valid());
  ForeignUffd foreign;
  ASSERT_GE(foreign.fd(), 0);

  // In place of the userfaultfd (a regular file there is skeleton_test's).
  for (int fd : {socket.get(), event.get(), null.get(), arena.memfd()}) {
    expect_register_refused(daemon, arena.reg(), {fd, arena.memfd()}, uffd_not);
  }
  // In place of the memfd: the tmpfs file is shmem too, but could be opened by name.
  for (int fd :
       {file.get(), socket.get(), event.get(), null.get(), shm.get(), foreign.fd(), arena.uffd()}) {
    expect_register_refused(daemon, arena.reg(), {arena.uffd(), fd}, memfd_not);
  }
  // Another process's userfaultfd: every check on the descriptors passes, but it cannot
  // register memory its process does not map.
  expect_register_refused(daemon, arena.reg(), {foreign.fd(), arena.memfd()},
                          "the userfaultfd cannot register the arena");
  // One initialized by the client: it would keep features the daemon did not choose.
  kernel::UniqueFd initialized = new_uffd();
  uffdio_api api = {};
  api.api = UFFD_API;
  ASSERT_EQ(ioctl(initialized.get(), UFFDIO_API, &api), 0);
  expect_register_refused(daemon, arena.reg(), {initialized.get(), arena.memfd()},
                          "must be handed over uninitialized");

  // Too few, too many (more than the daemon can even receive).
  expect_register_refused(daemon, arena.reg(), {}, "expected 2 descriptor(s), got 0");
  expect_register_refused(daemon, arena.reg(), {arena.uffd(), arena.memfd(), null.get()},
                          "expected 2 descriptor(s), got 3");
  std::vector<int> eight(8, null.get());
  eight[0] = arena.uffd();
  eight[1] = arena.memfd();
  expect_register_refused(daemon, arena.reg(), eight, "expected 2 descriptor(s), got more than");
}

void send_impossible_arenas(const Daemon& daemon) {
  Arena arena;
  const std::vector<int> fds = arena.fds();
  const uint64_t base = arena.base();
  struct Case {
    uint64_t base, size;
    const char* what;
  };
  for (const Case& c : {
           Case{base, 0, "is empty"},
           Case{base, kArenaSize + 1, "is not page aligned"},
           Case{base + 1, kArenaSize, "is not page aligned"},
           Case{base, UINT64_MAX, "is not page aligned"},
           Case{base, UINT64_MAX - kPage + 1, "exceeds the maximum"},
           Case{0, kArenaSize, "is outside user space"},
           // base + size wraps around to 0.
           Case{0xfffff00000000000, 0x100000000000, "is outside user space"},
           Case{0xfffffffffffff000, kPage, "is outside user space"},
           Case{(1ULL << 47) - kPage, 2 * kPage, "is outside user space"},
           // Not where the memfd is mapped; larger than the memfd.
           Case{base + kArenaSize, kArenaSize, "does not map the memfd"},
           Case{base, 2 * kArenaSize, "smaller than"},
       }) {
    expect_register_refused(daemon, {c.base, c.size}, fds, c.what);
  }
  // Mapped, but not shared and writable.
  for (int flags : {MAP_PRIVATE, MAP_SHARED}) {
    const int prot = flags == MAP_SHARED ? PROT_READ : PROT_READ | PROT_WRITE;
    Arena wrong(kArenaSize, prot, flags);
    expect_register_refused(daemon, wrong.reg(), wrong.fds(),
                            "does not map the memfd shared and writable");
  }
  // The memfd is smaller than the mapping over it.
  Arena short_memfd(kArenaSize / 2);
  expect_register_refused(daemon, short_memfd.reg(), short_memfd.fds(), "smaller than");
}

// Leaves at every step of the handshake; the daemon must notice and drop what it holds.
void disconnect_everywhere(const Daemon& daemon) {
  { RawConnection connection(daemon); }  // before the hello
  for (uint32_t flags : {0u, wire::kHelloWantsUffdDevice}) {
    wire::Hello hello;
    hello.flags = flags;
    {
      RawConnection connection(daemon);  // after the hello, the reply still on its way
      ASSERT_TRUE(connection.send(hello));
    }
    RawConnection connection(daemon);  // after the reply (and the lent device)
    ASSERT_TRUE(connection.send(hello));
    kernel::UniqueFd lent;
    EXPECT_EQ(connection.reply(&lent).status, 0);
    EXPECT_EQ(lent.valid(), flags != 0);
  }
  // During the registration: the daemon registers, then finds the client gone (it runs
  // on, with its arena handed back to the kernel).
  const std::string left = "client " + std::to_string(getpid()) + " disconnected";
  Arena arena;
  {
    RawConnection connection(daemon);
    connection.hello();
    ASSERT_TRUE(connection.send(arena.reg(), arena.fds()));
  }
  ASSERT_TRUE(daemon.wait_for_log(left)) << daemon.log();
  // Handed back: a touch is an ordinary fault of this process's own mapping.
  arena.page(1)[0] = 1;
}

TEST(HostileClients, AreRefusedWithReasonsAndLeaveNothingBehind) {
  ScratchDir dir;
  // Lends the device, so that dying while holding it is one of the steps.
  Daemon daemon(dir, {"--swap", dir.file("swapfile"), "--swap-size", "256M", "--lend-uffd"});
  const size_t baseline = open_fds(daemon.pid()).size();

  // Clients that stop talking time out (5 s) while the others below are handled.
  std::optional<Stalled> silent, silent_after_hello;
  std::thread silent_thread([&] { silent = stall(daemon, false); });
  std::thread after_hello_thread([&] { silent_after_hello = stall(daemon, true); });

  {
    SCOPED_TRACE("garbage");
    send_garbage(daemon);
  }
  {
    SCOPED_TRACE("wrong descriptors");
    send_wrong_descriptors(daemon, dir);
  }
  {
    SCOPED_TRACE("impossible arenas");
    send_impossible_arenas(daemon);
  }
  {
    SCOPED_TRACE("disconnects");
    disconnect_everywhere(daemon);
  }

  silent_thread.join();
  after_hello_thread.join();
  for (const Stalled* s : {&*silent, &*silent_after_hello}) {
    EXPECT_THAT(s->reply.message, HasSubstr("handshake timed out"));
    EXPECT_EQ(s->reply.status, ETIMEDOUT);
    EXPECT_GE(s->waited, std::chrono::milliseconds(4000));
  }

  EXPECT_TRUE(fds_return_to(daemon.pid(), baseline));
  kill(daemon.pid(), SIGUSR1);
  EXPECT_TRUE(daemon.wait_for_log("stats: total clients=0")) << daemon.log();

  // And a real client pages correctly under a limit.
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "16M";
  Started real =
      start_process(dir, {paging_path(dir), "integrity", "--mib", "32", "--seconds", "2"}, options);
  ProcessResult r = wait_process(real, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  EXPECT_THAT(r.out, HasSubstr("mismatches 0"));
  EXPECT_GT(departed_counter(daemon, real.pid, "evictions"), 0u) << daemon.log();
  EXPECT_EQ(daemon.stop(), 0);
}

// A registration of this process's `arena`, kept while the connection is open.
RawConnection register_arena(const Daemon& daemon, const Arena& arena) {
  RawConnection connection(daemon);
  connection.hello();
  EXPECT_TRUE(connection.send(arena.reg(), arena.fds()));
  wire::Reply reply = connection.reply();
  EXPECT_EQ(reply.status, 0) << reply.message;
  // It serves requests after registration (AttachHints, SetPolicy, GetStats).
  EXPECT_TRUE(reply.flags & wire::kReplyTakesRequests);
  return connection;
}

// A real client, bounded in time: a daemon whose fault threads are held never serves it.
void expect_real_client_served(const ScratchDir& dir, const Daemon& daemon) {
  ClientOptions options = client_options(daemon);
  options.timeout = std::chrono::seconds(30);
  ProcessResult r = run_process(dir, client_argv(dir, {"alloc-sizes"}), options);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
}

// A fault thread reads a client's userfaultfd until it is empty. Were that read to wait,
// the client would hold the thread until its next fault (forever, if it chooses), and a
// few such clients every fault thread. The flags of the userfaultfd are the client's too:
// it may hand it over blocking, or make it blocking after its registration.
TEST(HostileClients, BlockingUserfaultfdsDoNotHoldTheFaultThreads) {
  ScratchDir dir;
  Daemon daemon(dir, {"--fault-threads", "1"});
  {
    SCOPED_TRACE("handed over blocking");
    Arena arena(kArenaSize, PROT_READ | PROT_WRITE, MAP_SHARED, O_CLOEXEC);
    RawConnection connection = register_arena(daemon, arena);
    arena.page(1)[0] = 1;  // served by the one fault thread
    ASSERT_NO_FATAL_FAILURE(expect_real_client_served(dir, daemon));
  }
  {
    SCOPED_TRACE("made blocking after the registration");
    Arena arena;
    RawConnection connection = register_arena(daemon, arena);
    const int flags = fcntl(arena.uffd(), F_GETFL);
    ASSERT_EQ(fcntl(arena.uffd(), F_SETFL, flags & ~O_NONBLOCK), 0);
    arena.page(1)[0] = 1;
    expect_real_client_served(dir, daemon);
  }
}

// A hint ring made by hand: a memfd of `size` bytes, sealed or not, mapped here.
struct HandMadeRing {
  explicit HandMadeRing(size_t size = sizeof(hints::HintRing), bool sealed = true)
      : memfd(memfd_create("hints", MFD_CLOEXEC | MFD_ALLOW_SEALING)),
        doorbell(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    EXPECT_EQ(ftruncate(memfd.get(), static_cast<off_t>(size)), 0);
    if (sealed) {
      EXPECT_EQ(fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    EXPECT_NE(p, MAP_FAILED);
    ring = static_cast<hints::HintRing*>(p);
    if (size >= sizeof(hints::HintRing)) hints::init_ring(ring);
  }
  kernel::UniqueFd memfd;
  kernel::UniqueFd doorbell;
  hints::HintRing* ring;
};

wire::Reply attach(RawConnection& connection, const HandMadeRing& ring, int doorbell = -1) {
  wire::AttachHints request;
  request.ring_bytes = sizeof(hints::HintRing);
  EXPECT_TRUE(
      connection.send(request, {ring.memfd.get(), doorbell >= 0 ? doorbell : ring.doorbell.get()}));
  return connection.reply();
}

// A client scribbling over its hint ring, entries and indices: every entry the daemon
// takes is validated and counted, a drain takes a bounded share, and the daemon keeps
// serving this client and the others. Rings it cannot map safely are refused.
TEST(HostileClients, HintRingGarbageIsCountedAndTheDaemonKeepsServing) {
  ScratchDir dir;
  Daemon daemon(dir,
                {"--swap", dir.file("swapfile"), "--swap-size", "64M", "--fault-threads", "1"});
  Arena arena;
  RawConnection connection = register_arena(daemon, arena);
  arena.page(1)[0] = 42;
  {
    SCOPED_TRACE("refused rings");
    HandMadeRing unsealed(sizeof(hints::HintRing), false);
    EXPECT_THAT(attach(connection, unsealed).message, HasSubstr("not sealed"));
    HandMadeRing small(4096);
    EXPECT_THAT(attach(connection, small).message, HasSubstr("holds 4096 bytes"));
    HandMadeRing bad_doorbell;
    EXPECT_THAT(attach(connection, bad_doorbell, arena.memfd()).message,
                HasSubstr("not an eventfd"));
  }
  HandMadeRing ring;
  wire::Reply attached = attach(connection, ring);
  ASSERT_EQ(attached.status, 0) << attached.message;
  EXPECT_EQ(attach(connection, ring).status, EEXIST);

  // Entries the daemon will take (their sequences are right), with every kind of garbage.
  constexpr uint64_t kForged = 3000;  // more than a ring's worth: the slots are reused
  std::mt19937_64 rng(11);
  uint64_t next = 0;
  const uint64_t kinds[][3] = {
      {arena.base(), kPage, 99},                    // unknown hint
      {arena.base() + 1, kPage, 5},                 // misaligned
      {arena.base(), 0, 5},                         // empty
      {~uint64_t{0} & ~(kPage - 1), 2 * kPage, 3},  // wraps around
      {arena.base() + kArenaSize, kPage, 3},        // just past the arena
      {0x1000, uint64_t{1} << 46, 5},               // larger than the arena
      {arena.base() - 16 * kPage, 8 * kPage, 6},    // before the arena
  };
  while (next < kForged) {
    hints::HintSlot& slot = ring.ring->slots[next % hints::kEntries];
    // The daemon frees a slot by storing next + kEntries: wait for it to come round.
    for (int i = 0; i < 500 && slot.sequence.load() != next; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(slot.sequence.load(), next) << "the daemon stopped draining";
    const auto& kind = kinds[rng() % std::size(kinds)];
    slot.addr = kind[0];
    slot.len = kind[1];
    slot.hint = static_cast<uint32_t>(kind[2]);
    slot.sequence = next + 1;
    ++next;
    // And scribbles over what the daemon must not trust.
    ring.ring->head = rng();
    ring.ring->doorbell_armed = static_cast<uint32_t>(rng());
    if (next % 100 == 0) {
      ASSERT_EQ(eventfd_write(ring.doorbell.get(), 1), 0);
    }
  }
  // Pure garbage after the forged entries: not published, so never taken.
  for (uint64_t i = 0; i < 200; ++i) {
    auto* words = reinterpret_cast<uint64_t*>(&ring.ring->slots[(next + i) % hints::kEntries]);
    words[1] = rng();
    words[2] = rng();
  }
  ASSERT_EQ(eventfd_write(ring.doorbell.get(), 1), 0);
  ASSERT_TRUE(daemon.wait_for_log("invalid hint")) << daemon.log();

  // The client is still served, its data intact; so are others.
  EXPECT_EQ(arena.page(1)[0], 42);
  arena.page(2)[0] = 7;
  EXPECT_EQ(arena.page(2)[0], 7);
  ASSERT_NO_FATAL_FAILURE(expect_real_client_served(dir, daemon));
  connection.close();
  EXPECT_EQ(departed_counter(daemon, getpid(), "invalid"), kForged) << daemon.log();
  EXPECT_EQ(departed_counter(daemon, getpid(), "received"), kForged);
  EXPECT_EQ(departed_counter(daemon, getpid(), "applied"), 0u);
  // The log names a few, not thousands.
  EXPECT_LE(count_occurrences(daemon.log(), "invalid hint"), 10);
}

// Reads /proc/self/maps as the daemon reads a client's: in chunks of its line buffer.
std::vector<std::string> maps_chunks() {
  std::vector<std::string> chunks;
  FILE* maps = fopen("/proc/self/maps", "re");
  char chunk[512];
  while (maps != nullptr && fgets(chunk, sizeof(chunk), maps) != nullptr) chunks.push_back(chunk);
  if (maps != nullptr) fclose(maps);
  return chunks;
}

// /proc/PID/maps shows file names as they are, and a name can look like a maps line. Read
// in chunks, the tail of a long line must not pass for an entry: here a forged one claims
// the memfd is mapped over the whole arena, where it maps only the first page (enough for
// the nonce) and another memfd the rest.
TEST(HostileClients, FileNameShapedLikeAMapsLineIsNotBelieved) {
  ScratchDir dir;
  Daemon daemon(dir);
  kernel::UniqueFd memfd(memfd_create("extmem-arena", MFD_CLOEXEC));
  kernel::UniqueFd other(memfd_create("other", MFD_CLOEXEC));
  kernel::UniqueFd uffd = new_uffd();
  ASSERT_TRUE(memfd.valid() && other.valid() && uffd.valid());
  ASSERT_EQ(ftruncate(memfd.get(), kArenaSize), 0);
  ASSERT_EQ(ftruncate(other.get(), kArenaSize), 0);
  // The named file's mapping, then the arena: its line comes first.
  char* const reserved = static_cast<char*>(
      mmap(nullptr, 2 * kArenaSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(reserved, MAP_FAILED);
  char* const base = reserved + kArenaSize;
  const std::string short_name = dir.file("f");
  kernel::UniqueFd file(open(short_name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_EQ(ftruncate(file.get(), kPage), 0);
  ASSERT_NE(mmap(reserved, kPage, PROT_READ, MAP_SHARED | MAP_FIXED, file.get(), 0), MAP_FAILED);
  ASSERT_NE(mmap(base, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memfd.get(), 0),
            MAP_FAILED);
  ASSERT_NE(mmap(base + kPage, kArenaSize - kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                 other.get(), kPage),
            MAP_FAILED);

  // The forged entry, named so that it starts a chunk: the line's fields, then the name.
  struct stat st;
  ASSERT_EQ(fstat(memfd.get(), &st), 0);
  char forged[128];
  snprintf(forged, sizeof(forged), "%" PRIxPTR "-%" PRIxPTR " rw-s 00000000 %02x:%02x %lu",
           reinterpret_cast<uintptr_t>(base), reinterpret_cast<uintptr_t>(base) + kArenaSize,
           major(st.st_dev), minor(st.st_dev), static_cast<unsigned long>(st.st_ino));
  size_t fields = std::string::npos;
  for (const std::string& chunk : maps_chunks()) {
    if (chunk.find(short_name) != std::string::npos) fields = chunk.find(short_name);
  }
  ASSERT_NE(fields, std::string::npos);
  std::string name = dir.path();
  size_t left = 511 - fields - name.size();  // the name's characters before the forged entry
  for (; left > 151; left -= 151) {          // directories: a name is at most 255 characters
    name += "/" + std::string(150, 'd');
    ASSERT_EQ(mkdir(name.c_str(), 0700), 0);
  }
  name += "/" + std::string(left - 1, 'f') + forged;
  ASSERT_EQ(rename(short_name.c_str(), name.c_str()), 0) << strerror(errno);
  bool forged_chunk = false;
  for (const std::string& chunk : maps_chunks()) forged_chunk |= chunk.starts_with(forged);
  ASSERT_TRUE(forged_chunk) << "the setup does not forge an entry";

  RawConnection connection(daemon);
  connection.hello();
  ASSERT_TRUE(connection.send(wire::Register{reinterpret_cast<uintptr_t>(base), kArenaSize},
                              {uffd.get(), memfd.get()}));
  expect_refused(connection, "does not map the memfd shared and writable");
  munmap(reserved, 2 * kArenaSize);
}

// Past kMaxHandshakesInFlight (server.cpp) connections are turned away at once, not
// queued behind the ones that stall; they cost nothing once gone.
TEST(HostileClients, ConnectionFloodIsTurnedAwayAndForgotten) {
  ScratchDir dir;
  Daemon daemon(dir);
  const size_t baseline = open_fds(daemon.pid()).size();
  std::vector<RawConnection> idle;
  for (int i = 0; i < 32; ++i) idle.emplace_back(daemon);
  RawConnection one_more(daemon);
  expect_refused(one_more, "too many clients connecting at once");
  idle.clear();
  EXPECT_TRUE(fds_return_to(daemon.pid(), baseline));
  expect_real_client_served(dir, daemon);
}

}  // namespace
}  // namespace extmem::testing
