#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/huge_region.hpp"
#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/pidfd.hpp"
#include "extmem/kernel/result.hpp"
#include "extmem/kernel/uffd.hpp"
#include "extmem/kernel/unix_socket.hpp"

namespace extmem::kernel {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr size_t kPage = 4096;

bool IsOpen(int fd) {
  return fcntl(fd, F_GETFD) != -1;
}

// Closed means the descriptor number is free again, not merely unusable.
void ExpectClosed(int fd) {
  errno = 0;
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "fd " << fd << " is still open";
  EXPECT_EQ(errno, EBADF);
}

// Open descriptors of this process (the directory's own descriptor included, every time).
int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

ino_t InodeOf(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe MakePipe() {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

struct SocketPair {
  UniqueFd a;
  UniqueFd b;
};

SocketPair MakeSeqpacketPair() {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A fresh directory under /tmp, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/extmem-kernel-test-XXXXXX";
    EXPECT_NE(mkdtemp(templ), nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path_ + "'";
    EXPECT_EQ(system(cmd.c_str()), 0);
  }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// --- errno triage --------------------------------------------------------------------------

TEST(TriageErrnoTest, RacesAreOutcomes) {
  Outcome outcome = Outcome::kDone;
  ASSERT_TRUE(triage_errno(EEXIST, &outcome));
  EXPECT_EQ(outcome, Outcome::kAlreadyPresent);
  ASSERT_TRUE(triage_errno(EAGAIN, &outcome));
  EXPECT_EQ(outcome, Outcome::kRetry);
  ASSERT_TRUE(triage_errno(ESRCH, &outcome));
  EXPECT_EQ(outcome, Outcome::kTargetGone);
  outcome = Outcome::kDone;
  ASSERT_TRUE(triage_errno(ENOENT, &outcome));
  EXPECT_EQ(outcome, Outcome::kTargetGone);
}

TEST(TriageErrnoTest, RealFailuresAreNotTriaged) {
  for (int err : {EINVAL, EFAULT, ENOMEM, EPERM, EBADF, 0}) {
    Outcome outcome = Outcome::kRetry;
    EXPECT_FALSE(triage_errno(err, &outcome)) << strerror(err);
    EXPECT_EQ(outcome, Outcome::kRetry) << "outcome written for " << strerror(err);
  }
}

TEST(TriageErrnoTest, OutcomeNames) {
  EXPECT_STREQ(outcome_name(Outcome::kDone), "done");
  EXPECT_STREQ(outcome_name(Outcome::kAlreadyPresent), "already present");
  EXPECT_STREQ(outcome_name(Outcome::kRetry), "retry");
  EXPECT_STREQ(outcome_name(Outcome::kNoPage), "no page");
  EXPECT_STREQ(outcome_name(Outcome::kTargetGone), "target gone");
}

// --- Error and Result ----------------------------------------------------------------------

TEST(ErrorTest, DefaultIsEmpty) {
  Error e;
  EXPECT_EQ(e.code(), 0);
  EXPECT_STREQ(e.context(), "");
  EXPECT_EQ(e.message(), "");
}

TEST(ErrorTest, MakeFormatsContextAndMessageAddsStrerror) {
  Error e = Error::make(EINVAL, "UFFDIO_COPY at %#lx", 0x1000ul);
  EXPECT_EQ(e.code(), EINVAL);
  EXPECT_STREQ(e.context(), "UFFDIO_COPY at 0x1000");
  EXPECT_EQ(e.message(), "UFFDIO_COPY at 0x1000: Invalid argument");
}

TEST(ErrorTest, MessageWithoutCodeIsJustTheContext) {
  EXPECT_EQ(Error::make(0, "nothing wrong").message(), "nothing wrong");
}

TEST(ErrorTest, FromErrnoCapturesErrno) {
  errno = ENOENT;
  Error e = Error::from_errno("open(%s)", "/nonexistent");
  EXPECT_EQ(e.code(), ENOENT);
  EXPECT_STREQ(e.context(), "open(/nonexistent)");
  EXPECT_EQ(e.message(), "open(/nonexistent): No such file or directory");

  // From a real failing call, as the wrappers use it.
  ASSERT_EQ(close(-1), -1);
  EXPECT_EQ(Error::from_errno("close").code(), EBADF);
}

TEST(ErrorTest, LongContextIsTruncatedNotOverflowed) {
  const std::string long_text(500, 'x');
  Error e = Error::make(EIO, "%s", long_text.c_str());
  const size_t len = strlen(e.context());
  EXPECT_GT(len, 100u);
  EXPECT_LT(len, 500u);
  EXPECT_EQ(e.message(), std::string(len, 'x') + ": Input/output error");
}

TEST(ResultTest, HoldsValueOrError) {
  Result<int> good = 42;
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(static_cast<bool>(good));
  EXPECT_EQ(good.value(), 42);
  EXPECT_EQ(*good, 42);

  Result<int> bad = Error::make(ENOSPC, "full");
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(static_cast<bool>(bad));
  EXPECT_EQ(bad.error().code(), ENOSPC);
  EXPECT_STREQ(bad.error().context(), "full");
}

TEST(ResultTest, HoldsMoveOnlyValues) {
  Pipe p = MakePipe();
  const int fd = p.read.get();
  Result<UniqueFd> r = std::move(p.read);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->get(), fd);
  UniqueFd taken = std::move(r).value();
  EXPECT_EQ(taken.get(), fd);
  EXPECT_TRUE(IsOpen(fd));
}

TEST(ResultTest, VoidResult) {
  Result<void> good;
  EXPECT_TRUE(good.ok());
  EXPECT_TRUE(static_cast<bool>(good));
  Result<void> bad = Error::make(EPERM, "nope");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), EPERM);
  EXPECT_EQ(bad.error().message(), "nope: Operation not permitted");
}

// --- UniqueFd -------------------------------------------------------------------------------

TEST(UniqueFdTest, DefaultIsInvalid) {
  UniqueFd fd;
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(static_cast<bool>(fd));
  EXPECT_EQ(fd.get(), -1);
}

TEST(UniqueFdTest, ClosesOnDestruction) {
  int raw;
  {
    Pipe p = MakePipe();
    raw = p.read.get();
    ASSERT_TRUE(IsOpen(raw));
  }
  ExpectClosed(raw);
}

TEST(UniqueFdTest, MoveAssignmentClosesTheOldDescriptor) {
  Pipe p = MakePipe();
  const int old_fd = p.read.get();
  const int new_fd = p.write.get();
  p.read = std::move(p.write);
  ExpectClosed(old_fd);
  EXPECT_EQ(p.read.get(), new_fd);
  EXPECT_FALSE(p.write.valid());
  EXPECT_TRUE(IsOpen(new_fd));
}

TEST(UniqueFdTest, MoveConstructionTransfersOwnership) {
  Pipe p = MakePipe();
  const int raw = p.read.get();
  {
    UniqueFd moved(std::move(p.read));
    EXPECT_EQ(moved.get(), raw);
    EXPECT_FALSE(p.read.valid());
  }
  ExpectClosed(raw);
}

TEST(UniqueFdTest, SelfMoveAssignmentKeepsTheDescriptor) {
  Pipe p = MakePipe();
  const int raw = p.read.get();
  UniqueFd& alias = p.read;
  p.read = std::move(alias);
  EXPECT_EQ(p.read.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST(UniqueFdTest, ReleaseGivesUpOwnershipAndResetCloses) {
  Pipe p = MakePipe();
  const int raw = p.read.release();
  EXPECT_FALSE(p.read.valid());
  EXPECT_TRUE(IsOpen(raw));
  const int other = p.write.get();
  p.write.reset(raw);
  ExpectClosed(other);
  EXPECT_EQ(p.write.get(), raw);
}

// --- Memfd ----------------------------------------------------------------------------------

TEST(MemfdTest, CreateTruncateAndSize) {
  Result<Memfd> memfd = Memfd::create("extmem-test", MFD_CLOEXEC);
  ASSERT_TRUE(memfd.ok()) << memfd.error().message();
  EXPECT_NE(fcntl(memfd->fd(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_TRUE(memfd->size().ok());
  EXPECT_EQ(memfd->size().value(), 0u);
  ASSERT_TRUE(memfd->truncate(4 * kPage).ok());
  EXPECT_EQ(memfd->size().value(), 4 * kPage);

  dev_t dev;
  ino_t ino;
  ASSERT_TRUE(memfd->identity(&dev, &ino).ok());
  EXPECT_EQ(ino, InodeOf(memfd->fd()));
}

TEST(MemfdTest, PunchHoleFreesAndZeroesAllocateKeepsData) {
  Result<Memfd> memfd = Memfd::create("extmem-test", MFD_CLOEXEC);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(4 * kPage).ok());
  std::vector<char> pattern(2 * kPage, 'A');
  std::fill(pattern.begin() + kPage, pattern.end(), 'B');
  ASSERT_EQ(pwrite(memfd->fd(), pattern.data(), pattern.size(), 0), 2 * kPage);

  // Page 1 is punched: it reads as zero and no longer takes space; page 0 is untouched.
  struct stat before {};
  ASSERT_EQ(fstat(memfd->fd(), &before), 0);
  ASSERT_TRUE(memfd->punch_hole(kPage, kPage).ok());
  struct stat after {};
  ASSERT_EQ(fstat(memfd->fd(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks);
  EXPECT_EQ(memfd->size().value(), 4 * kPage);  // KEEP_SIZE.

  std::vector<char> buf(kPage, 'X');
  Result<size_t> n = memfd->read_at(buf.data(), kPage, kPage);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), kPage);
  EXPECT_EQ(buf, std::vector<char>(kPage, '\0'));
  ASSERT_TRUE(memfd->read_at(buf.data(), kPage, 0).ok());
  EXPECT_EQ(buf, std::vector<char>(kPage, 'A'));

  // Allocating the whole file fills the holes but keeps page 0's data.
  ASSERT_TRUE(memfd->allocate(0, 4 * kPage).ok());
  struct stat allocated {};
  ASSERT_EQ(fstat(memfd->fd(), &allocated), 0);
  EXPECT_GE(static_cast<uint64_t>(allocated.st_blocks) * 512, 4 * kPage);
  ASSERT_TRUE(memfd->read_at(buf.data(), kPage, 0).ok());
  EXPECT_EQ(buf, std::vector<char>(kPage, 'A'));
  ASSERT_TRUE(memfd->read_at(buf.data(), kPage, 3 * kPage).ok());
  EXPECT_EQ(buf, std::vector<char>(kPage, '\0'));
}

TEST(MemfdTest, ReadAtPastTheEndReadsNothing) {
  Result<Memfd> memfd = Memfd::create("extmem-test", MFD_CLOEXEC);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(kPage).ok());
  char buf[16];
  Result<size_t> n = memfd->read_at(buf, sizeof(buf), 2 * kPage);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 0u);
}

TEST(MemfdTest, WriteAtFillsAHoleAndKeepsTheRest) {
  Result<Memfd> memfd = Memfd::create("extmem-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(3 * kPage).ok());
  const std::vector<char> page(kPage, 'M');
  Result<size_t> n = memfd->write_at(page.data(), kPage, kPage);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), kPage);
  std::vector<char> buf(kPage, 'X');
  ASSERT_TRUE(memfd->read_at(buf.data(), kPage, kPage).ok());
  EXPECT_EQ(buf, page);
  ASSERT_TRUE(memfd->read_at(buf.data(), kPage, 2 * kPage).ok());
  EXPECT_EQ(buf, std::vector<char>(kPage, '\0'));
  // A sealed file refuses, with errno.
  ASSERT_TRUE(memfd->add_seals(F_SEAL_WRITE).ok());
  Result<size_t> sealed = memfd->write_at(page.data(), kPage, 0);
  ASSERT_FALSE(sealed.ok());
  EXPECT_EQ(sealed.error().code(), EPERM);
}

TEST(MemfdTest, ErrorsCarryErrnoAndContext) {
  Result<Memfd> memfd = Memfd::create("extmem-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_TRUE(memfd.ok());
  ASSERT_TRUE(memfd->truncate(kPage).ok());
  ASSERT_EQ(fcntl(memfd->fd(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  Result<void> r = memfd->truncate(2 * kPage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EPERM);
  EXPECT_THAT(r.error().context(), HasSubstr("ftruncate"));

  Result<Memfd> bad = Memfd::create("extmem-test", 0xdead0000u);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), EINVAL);
}

TEST(MemfdTest, AdoptAcceptsAMemfd) {
  const int raw = memfd_create("extmem-test", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  Result<Memfd> memfd = Memfd::adopt(UniqueFd(raw));
  ASSERT_TRUE(memfd.ok()) << memfd.error().message();
  EXPECT_EQ(memfd->fd(), raw);
}

// Expects adopt to refuse `fd` and to close it (it took ownership), so nothing leaks.
void ExpectMemfdAdoptRejects(UniqueFd fd) {
  const int raw = fd.get();
  Result<Memfd> r = Memfd::adopt(std::move(fd));
  ASSERT_FALSE(r.ok()) << "adopted fd " << raw;
  EXPECT_EQ(r.error().code(), EBADF);
  ExpectClosed(raw);
}

TEST(MemfdTest, AdoptRejectsARegularFile) {
  FILE* file = tmpfile();
  ASSERT_NE(file, nullptr);
  UniqueFd fd(dup(fileno(file)));
  fclose(file);
  ExpectMemfdAdoptRejects(std::move(fd));
}

TEST(MemfdTest, AdoptRejectsSocketsAndPipes) {
  SocketPair s = MakeSeqpacketPair();
  ExpectMemfdAdoptRejects(std::move(s.a));
  Pipe p = MakePipe();
  ExpectMemfdAdoptRejects(std::move(p.read));
}

TEST(MemfdTest, AdoptRejectsARegularFileOnTmpfs) {
  // A file the client opened in /dev/shm is a shmem file, but not a memfd: the daemon must
  // not punch holes in a file shared with whoever else opened it.
  char path[] = "/dev/shm/extmem-test-XXXXXX";
  const int raw = mkstemp(path);
  if (raw < 0) GTEST_SKIP() << "no writable /dev/shm: " << strerror(errno);
  unlink(path);
  ExpectMemfdAdoptRejects(UniqueFd(raw));
}

// --- Userfaultfd ----------------------------------------------------------------------------

// A userfaultfd of this process, or skips the test when the system does not allow one.
#define CREATE_UFFD_OR_SKIP(var)                                                       \
  Result<Userfaultfd> var = Userfaultfd::create(O_CLOEXEC | O_NONBLOCK);               \
  if (!var.ok() && var.error().code() == EPERM) GTEST_SKIP() << var.error().message(); \
  ASSERT_TRUE(var.ok()) << var.error().message()

// A memfd mapped MAP_SHARED, the way the shim builds its arena.
class SharedMapping {
 public:
  explicit SharedMapping(size_t len) : len_(len) {
    fd_ = UniqueFd(memfd_create("extmem-test-arena", MFD_CLOEXEC));
    EXPECT_TRUE(fd_.valid());
    EXPECT_EQ(ftruncate(fd_.get(), static_cast<off_t>(len)), 0);
    addr_ = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    EXPECT_NE(addr_, MAP_FAILED);
  }
  ~SharedMapping() {
    if (addr_ != MAP_FAILED) munmap(addr_, len_);
  }
  uintptr_t addr() const { return reinterpret_cast<uintptr_t>(addr_); }
  volatile char* data() const { return static_cast<volatile char*>(addr_); }
  size_t len() const { return len_; }

 private:
  UniqueFd fd_;
  size_t len_;
  void* addr_ = MAP_FAILED;
};

// The kB of the mapping starting at `start` that /proc/self/smaps reports under `field`.
long smaps_kb(const void* start, const std::string& field) {
  std::ifstream smaps("/proc/self/smaps");
  char prefix[32];
  snprintf(prefix, sizeof(prefix), "%lx-", reinterpret_cast<unsigned long>(start));
  bool in_mapping = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.find('-') != std::string::npos && line.find(' ') > line.find('-') &&
        isxdigit(static_cast<unsigned char>(line[0]))) {
      in_mapping = line.rfind(prefix, 0) == 0;
    } else if (in_mapping && line.rfind(field + ":", 0) == 0) {
      return std::stol(line.substr(field.size() + 1));
    }
  }
  return -1;
}

bool transparent_huge_pages_possible() {
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting;
  std::getline(enabled, setting);
  return !setting.empty() && setting.find("[never]") == std::string::npos;
}

TEST(HugeRegionTest, IsAlignedPopulatedAndBackedByHugePagesWhereTheKernelHasThem) {
  auto region = HugeRegion::create(2 * HugeRegion::kHugePageSize);
  ASSERT_TRUE(region) << region.error().message();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(region->data()) % HugeRegion::kHugePageSize, 0u);
  EXPECT_EQ(region->size(), 2 * HugeRegion::kHugePageSize);
  EXPECT_EQ(smaps_kb(region->data(), "Rss"), 4096);  // populated at creation
  memset(region->data(), 0x5a, region->size());
  EXPECT_EQ(region->huge(), transparent_huge_pages_possible());
  if (region->huge()) EXPECT_GE(smaps_kb(region->data(), "AnonHugePages"), 2048);
}

TEST(HugeRegionTest, RefusesSizesThatAreNotWholeHugePages) {
  for (size_t bytes : {size_t{0}, size_t{4096}, HugeRegion::kHugePageSize + 4096}) {
    auto region = HugeRegion::create(bytes);
    ASSERT_FALSE(region) << bytes;
    EXPECT_EQ(region.error().code(), EINVAL);
  }
}

TEST(HugeRegionTest, MovingHandsOverTheMapping) {
  auto region = HugeRegion::create(HugeRegion::kHugePageSize);
  ASSERT_TRUE(region);
  unsigned char* data = region->data();
  HugeRegion moved = std::move(*region);
  EXPECT_EQ(region->data(), nullptr);
  EXPECT_EQ(moved.data(), data);
  moved = HugeRegion();
  EXPECT_EQ(smaps_kb(data, "Rss"), -1);  // unmapped
}

TEST(UserfaultfdTest, AdoptRejectsAMemfdAndAPipe) {
  UniqueFd memfd(memfd_create("extmem-test", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  const int raw_memfd = memfd.get();
  Result<Userfaultfd> r = Userfaultfd::adopt(std::move(memfd));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EBADF);
  ExpectClosed(raw_memfd);

  Pipe p = MakePipe();
  r = Userfaultfd::adopt(std::move(p.read));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EBADF);

  r = Userfaultfd::adopt(UniqueFd());
  EXPECT_FALSE(r.ok());
}

TEST(UserfaultfdTest, AdoptAcceptsAUserfaultfd) {
  CREATE_UFFD_OR_SKIP(uffd);
  const int raw = uffd->release();
  Result<Userfaultfd> adopted = Userfaultfd::adopt(UniqueFd(raw));
  ASSERT_TRUE(adopted.ok()) << adopted.error().message();
  EXPECT_EQ(adopted->fd(), raw);
}

TEST(UserfaultfdTest, CopyThenCopyAgainIsAlreadyPresent) {
  CREATE_UFFD_OR_SKIP(uffd);
  EXPECT_NE(fcntl(uffd->fd(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(uffd->fd(), F_GETFL) & O_NONBLOCK, 0);
  ASSERT_TRUE(uffd->api(0).ok());

  SharedMapping arena(4 * kPage);
  Result<uint64_t> ioctls =
      uffd->register_range(arena.addr(), arena.len(), UFFDIO_REGISTER_MODE_MISSING);
  ASSERT_TRUE(ioctls.ok()) << ioctls.error().message();
  EXPECT_NE(ioctls.value() & (uint64_t{1} << _UFFDIO_COPY), 0u);

  std::vector<char> src(kPage, 'c');
  Result<Outcome> first = uffd->copy(arena.addr() + kPage, src.data(), kPage, 0);
  ASSERT_TRUE(first.ok()) << first.error().message();
  EXPECT_EQ(first.value(), Outcome::kDone);
  // The page is now present, so reading it does not fault.
  EXPECT_EQ(arena.data()[kPage], 'c');
  EXPECT_EQ(arena.data()[2 * kPage - 1], 'c');

  std::vector<char> other(kPage, 'd');
  Result<Outcome> second = uffd->copy(arena.addr() + kPage, other.data(), kPage, 0);
  ASSERT_TRUE(second.ok()) << second.error().message();
  EXPECT_EQ(second.value(), Outcome::kAlreadyPresent);
  EXPECT_EQ(arena.data()[kPage], 'c');  // The first copy won.

  Result<Outcome> unreg = uffd->unregister_range(arena.addr(), arena.len());
  ASSERT_TRUE(unreg.ok());
  EXPECT_EQ(unreg.value(), Outcome::kDone);
}

TEST(UserfaultfdTest, RegisterBeforeApiFails) {
  CREATE_UFFD_OR_SKIP(uffd);
  SharedMapping arena(kPage);
  Result<uint64_t> r = uffd->register_range(arena.addr(), kPage, UFFDIO_REGISTER_MODE_MISSING);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_THAT(r.error().context(), StartsWith("UFFDIO_REGISTER"));
}

TEST(UserfaultfdTest, ReadEventsOnIdleUffdReturnsZero) {
  CREATE_UFFD_OR_SKIP(uffd);
  ASSERT_TRUE(uffd->api(0).ok());
  std::array<uffd_msg, 4> msgs{};
  Result<size_t> n = uffd->read_events(msgs);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(n.value(), 0u);
}

TEST(UserfaultfdTest, ReadEventsReportsAFaultThatCopyResolves) {
  CREATE_UFFD_OR_SKIP(uffd);
  ASSERT_TRUE(uffd->api(0).ok());
  SharedMapping arena(4 * kPage);
  ASSERT_TRUE(uffd->register_range(arena.addr(), arena.len(), UFFDIO_REGISTER_MODE_MISSING).ok());

  char seen = 0;
  std::thread reader([&] { seen = arena.data()[2 * kPage + 5]; });
  // Unregistering wakes the reader even if an assertion below fails, so join never hangs.
  struct Cleanup {
    Userfaultfd& uffd;
    SharedMapping& arena;
    std::thread& reader;
    ~Cleanup() {
      (void)uffd.unregister_range(arena.addr(), arena.len());
      reader.join();
    }
  } cleanup{*uffd, arena, reader};

  pollfd p = {uffd->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "no fault reported";
  std::array<uffd_msg, 4> msgs{};
  Result<size_t> n = uffd->read_events(msgs);
  ASSERT_TRUE(n.ok()) << n.error().message();
  ASSERT_EQ(n.value(), 1u);
  EXPECT_EQ(msgs[0].event, UFFD_EVENT_PAGEFAULT);
  EXPECT_EQ(msgs[0].arg.pagefault.address & ~(kPage - 1), arena.addr() + 2 * kPage);

  std::vector<char> src(kPage, 'z');
  Result<Outcome> copied = uffd->copy(arena.addr() + 2 * kPage, src.data(), kPage, 0);
  ASSERT_TRUE(copied.ok()) << copied.error().message();
  EXPECT_EQ(copied.value(), Outcome::kDone);
  reader.join();
  EXPECT_EQ(seen, 'z');
  reader = std::thread([] {});  // Something for the cleanup to join.
}

// --- Unix sockets ---------------------------------------------------------------------------

TEST(UnixSocketTest, SendAndReceiveDataWithTwoDescriptors) {
  SocketPair s = MakeSeqpacketPair();
  UniqueFd memfd(memfd_create("extmem-test", MFD_CLOEXEC));
  Pipe p = MakePipe();
  const int sent[] = {memfd.get(), p.write.get()};
  ASSERT_TRUE(send_message(s.a.get(), Bytes("hello"), sent).ok());

  std::array<std::byte, 64> buf{};
  std::array<UniqueFd, kMaxPassedFds> fds;
  Result<Received> r = receive_message(s.b.get(), buf, fds);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->bytes, 5u);
  EXPECT_EQ(memcmp(buf.data(), "hello", 5), 0);
  EXPECT_FALSE(r->data_truncated);
  EXPECT_FALSE(r->fds_truncated);
  ASSERT_EQ(r->fd_count, 2u);
  EXPECT_FALSE(fds[2].valid());

  // New descriptor numbers, same open files, in order, close-on-exec.
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(fds[i].valid());
    EXPECT_NE(fds[i].get(), sent[i]);
    EXPECT_EQ(InodeOf(fds[i].get()), InodeOf(sent[i]));
    EXPECT_NE(fcntl(fds[i].get(), F_GETFD) & FD_CLOEXEC, 0);
  }
  // The received pipe end really is the same pipe.
  ASSERT_EQ(write(fds[1].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(read(p.read.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(UnixSocketTest, MessageWithoutDescriptors) {
  SocketPair s = MakeSeqpacketPair();
  ASSERT_TRUE(send_message(s.a.get(), Bytes("abc"), {}).ok());
  std::array<std::byte, 16> buf{};
  std::array<UniqueFd, 2> fds;
  Result<Received> r = receive_message(s.b.get(), buf, fds);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bytes, 3u);
  EXPECT_EQ(r->fd_count, 0u);
  EXPECT_FALSE(r->fds_truncated);
}

TEST(UnixSocketTest, DataTruncatedWhenBufferTooSmall) {
  SocketPair s = MakeSeqpacketPair();
  const std::string message(100, 'm');
  ASSERT_TRUE(send_message(s.a.get(), Bytes(message), {}).ok());
  std::array<std::byte, 10> buf{};
  Result<Received> r = receive_message(s.b.get(), buf, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->data_truncated);
  EXPECT_EQ(r->bytes, 10u);
  // One message per packet: the rest of it is gone, not left for the next read.
  ASSERT_TRUE(send_message(s.a.get(), Bytes("next"), {}).ok());
  std::array<std::byte, 16> next{};
  r = receive_message(s.b.get(), next, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bytes, 4u);
  EXPECT_FALSE(r->data_truncated);
}

TEST(UnixSocketTest, ExtraDescriptorsAreClosedNotLeaked) {
  SocketPair s = MakeSeqpacketPair();
  UniqueFd memfd(memfd_create("extmem-test", MFD_CLOEXEC));
  Pipe p = MakePipe();
  const int before = CountOpenFds();
  const int sent[] = {memfd.get(), p.read.get(), p.write.get()};
  ASSERT_TRUE(send_message(s.a.get(), Bytes("three"), sent).ok());

  std::array<std::byte, 16> buf{};
  std::array<UniqueFd, 1> fds;
  Result<Received> r = receive_message(s.b.get(), buf, fds);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->bytes, 5u);
  EXPECT_TRUE(r->fds_truncated);
  ASSERT_EQ(r->fd_count, 1u);
  EXPECT_EQ(InodeOf(fds[0].get()), InodeOf(memfd.get()));
  EXPECT_EQ(CountOpenFds(), before + 1);  // Only the one we kept.
  fds[0].reset();
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(UnixSocketTest, SendRefusesTooManyDescriptors) {
  SocketPair s = MakeSeqpacketPair();
  std::vector<int> many(kMaxPassedFds + 1, s.a.get());
  Result<void> r = send_message(s.a.get(), Bytes("x"), many);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EINVAL);
}

TEST(UnixSocketTest, ReceiveReportsPeerClose) {
  SocketPair s = MakeSeqpacketPair();
  s.a.reset();
  std::array<std::byte, 16> buf{};
  Result<Received> r = receive_message(s.b.get(), buf, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bytes, 0u);
}

TEST(UnixSocketTest, ReceiveTimesOutWithEagain) {
  SocketPair s = MakeSeqpacketPair();
  ASSERT_TRUE(set_io_timeout(s.b.get(), 10).ok());
  std::array<std::byte, 16> buf{};
  Result<Received> r = receive_message(s.b.get(), buf, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), EAGAIN);
}

TEST(UnixSocketTest, PeerCredentialsAreOurs) {
  SocketPair s = MakeSeqpacketPair();
  Result<PeerCredentials> cred = peer_credentials(s.a.get());
  ASSERT_TRUE(cred.ok()) << cred.error().message();
  EXPECT_EQ(cred->pid, getpid());
  EXPECT_EQ(cred->uid, getuid());
  EXPECT_EQ(cred->gid, getgid());

  Pipe p = MakePipe();
  Result<PeerCredentials> not_socket = peer_credentials(p.read.get());
  ASSERT_FALSE(not_socket.ok());
  EXPECT_EQ(not_socket.error().code(), ENOTSOCK);
}

// Accepts one pending connection on a listening socket from listen_unix.
UniqueFd AcceptOne(int listener) {
  pollfd p = {listener, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);
  return UniqueFd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

TEST(UnixSocketTest, ListenConnectAndSetMode) {
  TempDir dir;
  const std::string path = dir.file("s.sock");
  Result<UniqueFd> listener = listen_unix(path.c_str(), 0600, 4);
  ASSERT_TRUE(listener.ok()) << listener.error().message();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  Result<UniqueFd> client = connect_unix(path.c_str());
  ASSERT_TRUE(client.ok()) << client.error().message();
  UniqueFd server = AcceptOne(listener->get());
  ASSERT_TRUE(server.valid());
  // SOCK_SEQPACKET on both ends: boundaries kept.
  ASSERT_TRUE(send_message(client->get(), Bytes("one"), {}).ok());
  ASSERT_TRUE(send_message(client->get(), Bytes("two!"), {}).ok());
  std::array<std::byte, 16> buf{};
  EXPECT_EQ(receive_message(server.get(), buf, {})->bytes, 3u);
  EXPECT_EQ(receive_message(server.get(), buf, {})->bytes, 4u);
}

TEST(UnixSocketTest, ListenReplacesAStaleSocketFile) {
  TempDir dir;
  const std::string path = dir.file("s.sock");
  {
    Result<UniqueFd> old_listener = listen_unix(path.c_str(), 0600, 4);
    ASSERT_TRUE(old_listener.ok());
  }  // Closed: the file stays behind, as after a daemon crash.
  ASSERT_EQ(access(path.c_str(), F_OK), 0);
  Result<UniqueFd> dead = connect_unix(path.c_str());
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.error().code(), ECONNREFUSED);

  Result<UniqueFd> listener = listen_unix(path.c_str(), 0660, 4);
  ASSERT_TRUE(listener.ok()) << listener.error().message();
  Result<UniqueFd> client = connect_unix(path.c_str());
  ASSERT_TRUE(client.ok()) << client.error().message();
  EXPECT_TRUE(AcceptOne(listener->get()).valid());
}

TEST(UnixSocketTest, ListenRefusesToReplaceARegularFile) {
  TempDir dir;
  const std::string path = dir.file("not-a-socket");
  {
    UniqueFd file(open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(file.valid());
    ASSERT_EQ(write(file.get(), "keep", 4), 4);
  }
  Result<UniqueFd> listener = listen_unix(path.c_str(), 0600, 4);
  ASSERT_FALSE(listener.ok());
  EXPECT_EQ(listener.error().code(), EEXIST);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 4);
}

TEST(UnixSocketTest, ConnectErrors) {
  TempDir dir;
  Result<UniqueFd> missing = connect_unix(dir.file("missing.sock").c_str());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ENOENT);

  const std::string too_long = "/tmp/" + std::string(200, 'x');
  Result<UniqueFd> r = connect_unix(too_long.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ENAMETOOLONG);
  r = listen_unix(too_long.c_str(), 0600, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ENAMETOOLONG);
}

// --- Pidfd ----------------------------------------------------------------------------------

TEST(PidfdTest, OurselvesHaveNotExited) {
  Result<Pidfd> self = Pidfd::open(getpid());
  ASSERT_TRUE(self.ok()) << self.error().message();
  EXPECT_EQ(self->pid(), getpid());
  EXPECT_GE(self->fd(), 0);
  EXPECT_FALSE(self->exited());
}

TEST(PidfdTest, ChildBecomesExitedWhenItExits) {
  Pipe p = MakePipe();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Wait until the parent closes its end, then exit.
    p.write.reset();
    char c;
    _exit(read(p.read.get(), &c, 1) == 0 ? 0 : 1);
  }
  p.read.reset();
  Result<Pidfd> pidfd = Pidfd::open(child);
  if (!pidfd.ok()) {
    p.write.reset();
    waitpid(child, nullptr, 0);
    FAIL() << pidfd.error().message();
  }
  EXPECT_FALSE(pidfd->exited());

  p.write.reset();  // The child exits now.
  // Wait for the exit without reaping: a zombie already counts as exited.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_TRUE(pidfd->exited());
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(pidfd->exited());  // And stays so once reaped.
}

TEST(PidfdTest, OfSocketPeerIsOurselves) {
  SocketPair s = MakeSeqpacketPair();
  Result<Pidfd> peer = Pidfd::of_socket_peer(s.a.get(), getpid());
  ASSERT_TRUE(peer.ok()) << peer.error().message();
  EXPECT_EQ(peer->pid(), getpid());
  EXPECT_FALSE(peer->exited());
}

}  // namespace
}  // namespace extmem::kernel
