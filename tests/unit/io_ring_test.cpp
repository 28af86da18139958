// IoRing and SwapFile against real files. They need a directory where SwapFile accepts a
// file (on a disk, with O_DIRECT): $EXTMEM_TEST_DIR, else the current directory (the build
// tree), else /var/tmp; the tests skip, saying so, when none will do.
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/io_ring.hpp"
#include "extmem/kernel/result.hpp"
#include "extmem/kernel/swap_file.hpp"

namespace extmem::kernel {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// The first candidate directory where SwapFile accepts a file, or "".
std::string FindSwapDir() {
  std::vector<std::string> candidates;
  if (const char* dir = getenv("EXTMEM_TEST_DIR")) candidates.emplace_back(dir);
  candidates.emplace_back(std::filesystem::current_path().string());
  candidates.emplace_back("/var/tmp");
  for (const std::string& dir : candidates) {
    std::string probe = dir + "/extmem-probe-" + std::to_string(getpid());
    bool ok = SwapFile::open(probe.c_str(), SwapFile::kMinSize).ok();
    unlink(probe.c_str());
    if (ok) return dir;
  }
  return "";
}

// A page-aligned buffer, as O_DIRECT requires.
class Buffer {
 public:
  explicit Buffer(size_t bytes)
      : data_(static_cast<char*>(aligned_alloc(kPage, bytes))), bytes_(bytes) {
    memset(data_.get(), 0, bytes);
  }
  char* get() const { return data_.get(); }
  char* page(size_t i) const { return data_.get() + i * kPage; }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(char* p) const { free(p); }
  };
  std::unique_ptr<char, Free> data_;
  size_t bytes_;
};

// Fills a page with words that name the slot, so a page landing in the wrong slot shows.
void FillPage(char* page, uint64_t slot, uint64_t seed) {
  for (size_t i = 0; i < kPage / 8; ++i) {
    uint64_t word = (slot << 32) ^ (seed << 16) ^ i;
    memcpy(page + i * 8, &word, 8);
  }
}

IoRequest Request(int fd, void* buf, uint32_t len, uint64_t offset, bool write) {
  return IoRequest{.fd = fd, .buf = buf, .len = len, .offset = offset, .write = write};
}

// A fresh directory per test under that one, removed afterwards.
class DirectIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string base = FindSwapDir();
    if (base.empty()) {
      GTEST_SKIP() << "no directory can hold a swap file (tried $EXTMEM_TEST_DIR, the "
                      "current directory and /var/tmp); set EXTMEM_TEST_DIR to one on a disk "
                      "whose filesystem supports O_DIRECT";
    }
    std::string pattern = base + "/extmem-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << strerror(errno);
    dir_ = pattern;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string path(const char* name) const { return dir_ + "/" + name; }

  SwapFile OpenSwap(uint64_t size) {
    auto file = SwapFile::open(path("swap").c_str(), size);
    EXPECT_TRUE(file.ok()) << file.error().message();
    return std::move(*file);
  }

  std::string dir_;
};

using IoRingTest = DirectIoTest;
using SwapFileTest = DirectIoTest;

TEST(IoRingCreateTest, RoundsEntriesUpToAPowerOfTwo) {
  auto ring = IoRing::create(5);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  EXPECT_EQ(ring->entries(), 8u);
}

TEST(IoRingCreateTest, RejectsZeroEntries) {
  auto ring = IoRing::create(0);
  ASSERT_FALSE(ring.ok());
  EXPECT_EQ(ring.error().code(), EINVAL);
  EXPECT_NE(std::string(ring.error().context()).find("io_uring_setup"), std::string::npos);
}

TEST_F(IoRingTest, WritesThenReadsBack256RandomSlots) {
  SwapFile file = OpenSwap(64 * kMiB);
  ASSERT_TRUE(file.fd() >= 0);
  auto ring = IoRing::create(64);
  ASSERT_TRUE(ring.ok()) << ring.error().message();

  constexpr size_t kCount = 256;
  std::vector<uint64_t> slots(file.size() / kPage);
  std::iota(slots.begin(), slots.end(), 0);
  std::mt19937_64 rng(42);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(kCount);

  Buffer out(kCount * kPage);
  Buffer in(kCount * kPage);
  std::vector<IoRequest> writes;
  std::vector<IoRequest> reads;
  for (size_t i = 0; i < kCount; ++i) {
    FillPage(out.page(i), slots[i], 1);
    writes.push_back(Request(file.fd(), out.page(i), kPage, slots[i] * kPage, true));
    reads.push_back(Request(file.fd(), in.page(i), kPage, slots[i] * kPage, false));
  }
  ASSERT_TRUE(ring->submit_and_wait(writes).ok());
  for (const IoRequest& r : writes) ASSERT_EQ(r.result, static_cast<int32_t>(kPage));
  ASSERT_TRUE(ring->submit_and_wait(reads).ok());
  for (const IoRequest& r : reads) ASSERT_EQ(r.result, static_cast<int32_t>(kPage));
  EXPECT_EQ(memcmp(out.get(), in.get(), out.bytes()), 0);

  // The pages are where the offsets say, not merely somewhere consistent.
  Buffer check(kPage);
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(pread(file.fd(), check.get(), kPage, static_cast<off_t>(slots[i] * kPage)),
              static_cast<ssize_t>(kPage));
    ASSERT_EQ(memcmp(check.get(), out.page(i), kPage), 0) << "slot " << slots[i];
  }
}

TEST_F(IoRingTest, RunsABatchLargerThanTheRing) {
  SwapFile file = OpenSwap(4 * kMiB);
  auto ring = IoRing::create(4);
  ASSERT_TRUE(ring.ok()) << ring.error().message();

  constexpr size_t kCount = 100;
  Buffer out(kCount * kPage);
  Buffer in(kCount * kPage);
  std::vector<IoRequest> writes;
  std::vector<IoRequest> reads;
  for (size_t i = 0; i < kCount; ++i) {
    // Every third slot, so the batch is not one sequential run.
    uint64_t slot = (i * 3) % (file.size() / kPage);
    FillPage(out.page(i), slot, 2);
    writes.push_back(Request(file.fd(), out.page(i), kPage, slot * kPage, true));
    reads.push_back(Request(file.fd(), in.page(i), kPage, slot * kPage, false));
  }
  ASSERT_TRUE(ring->submit_and_wait(writes).ok());
  ASSERT_TRUE(ring->submit_and_wait(reads).ok());
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(writes[i].result, static_cast<int32_t>(kPage)) << i;
    ASSERT_EQ(reads[i].result, static_cast<int32_t>(kPage)) << i;
  }
  EXPECT_EQ(memcmp(out.get(), in.get(), out.bytes()), 0);
}

// Reaps at least `want` completions from a shared ring (a wait may return none).
std::vector<IoRing::Completion> Reap(IoRing& ring, size_t want) {
  std::vector<IoRing::Completion> all;
  IoRing::Completion batch[8];
  for (int waits = 0; all.size() < want && waits < 1000; ++waits) {
    auto got = ring.wait_completions(batch);
    EXPECT_TRUE(got.ok()) << got.error().message();
    if (!got.ok()) break;
    all.insert(all.end(), batch, batch + *got);
  }
  return all;
}

// Shared use: reads queued for the owner's next wait and reads submitted at once come
// back with their own tags and results, even more of them than the ring has entries.
TEST_F(IoRingTest, SharedReadsCompleteWithTheirTags) {
  SwapFile file = OpenSwap(4 * kMiB);
  auto ring = IoRing::create(4, 64);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  constexpr size_t kCount = 6;
  Buffer out(kCount * kPage);
  Buffer in(kCount * kPage);
  for (size_t i = 0; i < kCount; ++i) {
    FillPage(out.page(i), i * 5, 3);
    ASSERT_EQ(pwrite(file.fd(), out.page(i), kPage, static_cast<off_t>(i * 5 * kPage)),
              static_cast<ssize_t>(kPage));
  }
  for (size_t i = 0; i < kCount; ++i) {
    const auto when = i % 2 == 0 ? IoRing::Submit::kWithNextWait : IoRing::Submit::kNow;
    ASSERT_TRUE(
        ring->queue_read(Request(file.fd(), in.page(i), kPage, i * 5 * kPage, false), 100 + i, when)
            .ok());
  }
  std::vector<bool> seen(kCount, false);
  for (const auto& done : Reap(*ring, kCount)) {
    ASSERT_GE(done.tag, 100u);
    ASSERT_LT(done.tag, 100u + kCount);
    EXPECT_EQ(done.result, static_cast<int32_t>(kPage));
    EXPECT_FALSE(seen[done.tag - 100]) << "reaped twice";
    seen[done.tag - 100] = true;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), static_cast<long>(kCount));
  EXPECT_EQ(memcmp(out.get(), in.get(), out.bytes()), 0);
}

// A poll completes with its tag once its descriptor is ready, not before; a removed poll
// completes with -ECANCELED and the removal with its own tag.
TEST(IoRingSharedTest, PollOnAnEventfdCompletesWithItsTag) {
  auto ring = IoRing::create(4, 64);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  UniqueFd event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(event);
  ASSERT_TRUE(ring->queue_poll(event.get(), POLLIN, false, 41, IoRing::Submit::kNow).ok());
  ASSERT_TRUE(ring->queue_nop(7, IoRing::Submit::kWithNextWait).ok());
  auto first = Reap(*ring, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].tag, 7u) << "the poll completed with nothing to read";

  uint64_t one = 1;
  ASSERT_EQ(write(event.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  auto polled = Reap(*ring, 1);
  ASSERT_EQ(polled.size(), 1u);
  EXPECT_EQ(polled[0].tag, 41u);
  EXPECT_TRUE(polled[0].result & POLLIN);
  EXPECT_FALSE(polled[0].more) << "a one-shot poll";

  // Armed on a ready descriptor: completes at once. Armed on an idle one and removed:
  // cancelled.
  UniqueFd idle(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(ring->queue_poll(idle.get(), POLLIN, false, 42, IoRing::Submit::kWithNextWait).ok());
  ASSERT_TRUE(ring->queue_poll_remove(42, 43, IoRing::Submit::kWithNextWait).ok());
  auto removed = Reap(*ring, 2);
  ASSERT_EQ(removed.size(), 2u);
  std::sort(removed.begin(), removed.end(),
            [](const auto& a, const auto& b) { return a.tag < b.tag; });
  EXPECT_EQ(removed[0].tag, 42u);
  EXPECT_EQ(removed[0].result, -ECANCELED);
  EXPECT_EQ(removed[1].tag, 43u);
  EXPECT_EQ(removed[1].result, 0);
  ASSERT_TRUE(ring->queue_poll_remove(42, 44, IoRing::Submit::kNow).ok());
  auto gone = Reap(*ring, 1);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].tag, 44u);
  EXPECT_EQ(gone[0].result, -ENOENT) << "no such poll any more";
}

// A multishot poll completes at every write (edge-triggered: the counter is never read)
// and says it goes on.
TEST(IoRingSharedTest, MultishotPollCompletesAtEveryWakeup) {
  auto ring = IoRing::create(4, 64);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  UniqueFd event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(event);
  ASSERT_TRUE(ring->queue_poll(event.get(), POLLIN, true, 9, IoRing::Submit::kNow).ok());
  uint64_t one = 1;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(write(event.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    auto polled = Reap(*ring, 1);
    ASSERT_EQ(polled.size(), 1u) << "write " << i;
    EXPECT_EQ(polled[0].tag, 9u);
    EXPECT_TRUE(polled[0].more);
  }
  ASSERT_TRUE(ring->queue_poll_remove(9, 10, IoRing::Submit::kNow).ok());
  auto removed = Reap(*ring, 2);
  ASSERT_EQ(removed.size(), 2u);
  for (const auto& done : removed) {
    if (done.tag == 9u) EXPECT_FALSE(done.more) << "removed: no more completions";
  }
}

// The owner asleep in its wait is woken by another thread's request.
TEST(IoRingSharedTest, AnotherThreadsRequestWakesTheOwner) {
  auto ring = IoRing::create(4, 64);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(ring->queue_nop(5, IoRing::Submit::kNow).ok());
  });
  auto done = Reap(*ring, 1);
  other.join();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tag, 5u);
}

TEST_F(IoRingTest, ReadPastTheEndIsShortNotAnError) {
  SwapFile file = OpenSwap(2 * kMiB);
  auto ring = IoRing::create(8);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  Buffer buf(3 * kPage);
  std::vector<IoRequest> reads = {
      Request(file.fd(), buf.page(0), kPage, file.size(), false),
      Request(file.fd(), buf.page(1), 2 * kPage, file.size() - kPage, false),
  };
  ASSERT_TRUE(ring->submit_and_wait(reads).ok());
  EXPECT_EQ(reads[0].result, 0);
  EXPECT_EQ(reads[1].result, static_cast<int32_t>(kPage));
}

// Only where the kernel does real I/O: a misaligned read of a fallocated, never written
// range is zero-filled without a check.
TEST_F(IoRingTest, MisalignedRequestsFailInTheirResult) {
  SwapFile file = OpenSwap(2 * kMiB);
  auto ring = IoRing::create(8);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  Buffer buf(4 * kPage);
  std::vector<IoRequest> fill = {Request(file.fd(), buf.get(), 2 * kPage, 0, true)};
  ASSERT_TRUE(ring->submit_and_wait(fill).ok());
  ASSERT_EQ(fill[0].result, static_cast<int32_t>(2 * kPage));

  std::vector<IoRequest> requests = {
      Request(file.fd(), buf.get() + 1, kPage, 0, false),  // buffer
      Request(file.fd(), buf.get(), kPage, 1, false),      // offset
      Request(file.fd(), buf.get(), 100, 0, false),        // length
      Request(file.fd(), buf.get() + 1, kPage, 0, true),
      Request(file.fd(), buf.page(2), kPage, kPage, false),
  };
  ASSERT_TRUE(ring->submit_and_wait(requests).ok());
  EXPECT_EQ(requests[0].result, -EINVAL);
  EXPECT_EQ(requests[1].result, -EINVAL);
  EXPECT_EQ(requests[2].result, -EINVAL);
  EXPECT_EQ(requests[3].result, -EINVAL);
  EXPECT_EQ(requests[4].result, static_cast<int32_t>(kPage)) << "a good request is unharmed";
}

TEST_F(IoRingTest, BadDescriptorFailsInItsResult) {
  SwapFile file = OpenSwap(2 * kMiB);
  auto ring = IoRing::create(2);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  Buffer buf(2 * kPage);
  std::vector<IoRequest> requests = {
      Request(-1, buf.get(), kPage, 0, true),
      Request(file.fd(), buf.page(1), kPage, 0, false),
  };
  ASSERT_TRUE(ring->submit_and_wait(requests).ok());
  EXPECT_EQ(requests[0].result, -EBADF);
  EXPECT_EQ(requests[1].result, static_cast<int32_t>(kPage));
}

TEST_F(IoRingTest, MovedRingKeepsWorking) {
  SwapFile file = OpenSwap(2 * kMiB);
  auto created = IoRing::create(4);
  ASSERT_TRUE(created.ok()) << created.error().message();
  IoRing ring = std::move(*created);
  EXPECT_EQ(created->submit_and_wait({}).error().code(), EBADF);

  EXPECT_TRUE(ring.submit_and_wait({}).ok());
  Buffer buf(kPage);
  IoRequest read = Request(file.fd(), buf.get(), kPage, 0, false);
  ASSERT_TRUE(ring.submit_and_wait({&read, 1}).ok());
  EXPECT_EQ(read.result, static_cast<int32_t>(kPage));
}

struct stat Stat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST_F(SwapFileTest, CreatesAFullyAllocatedFile) {
  std::string p = path("swap");
  auto file = SwapFile::open(p.c_str(), 8 * kMiB + 100);
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_EQ(file->size(), 8 * kMiB) << "rounded down to whole pages";
  EXPECT_EQ(file->path(), p);
  EXPECT_FALSE(file->is_block_device());
  EXPECT_NE(fcntl(file->fd(), F_GETFL) & O_DIRECT, 0);
  EXPECT_NE(fcntl(file->fd(), F_GETFD) & FD_CLOEXEC, 0);
  struct stat st = Stat(p);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 8 * kMiB);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 8 * kMiB) << "holes left";
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "swapped memory is private";
}

TEST_F(SwapFileTest, ReopensAndGrowsAnExistingFile) {
  std::string p = path("swap");
  ASSERT_TRUE(SwapFile::open(p.c_str(), 4 * kMiB).ok());
  {
    auto same = SwapFile::open(p.c_str(), 0);
    ASSERT_TRUE(same.ok()) << same.error().message();
    EXPECT_EQ(same->size(), 4 * kMiB);
  }
  {
    auto grown = SwapFile::open(p.c_str(), 8 * kMiB);
    ASSERT_TRUE(grown.ok()) << grown.error().message();
    EXPECT_EQ(grown->size(), 8 * kMiB);
    EXPECT_GE(static_cast<uint64_t>(Stat(p).st_blocks) * 512, 8 * kMiB);
  }
  auto kept = SwapFile::open(p.c_str(), 2 * kMiB);
  ASSERT_TRUE(kept.ok()) << kept.error().message();
  EXPECT_EQ(kept->size(), 8 * kMiB) << "a larger existing file is used whole";
}

TEST_F(SwapFileTest, FillsTheHolesOfASparseFile) {
  std::string p = path("swap");
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CREAT, 0600));
  ASSERT_EQ(ftruncate(fd.get(), static_cast<off_t>(4 * kMiB + 1000)), 0);
  ASSERT_EQ(Stat(p).st_blocks, 0);

  auto file = SwapFile::open(p.c_str(), 0);
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_EQ(file->size(), 4 * kMiB);
  EXPECT_GE(static_cast<uint64_t>(Stat(p).st_blocks) * 512, 4 * kMiB);
}

TEST_F(SwapFileTest, MissingFileNeedsASize) {
  std::string p = path("missing");
  auto file = SwapFile::open(p.c_str(), 0);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), ENOENT);
  EXPECT_NE(std::string(file.error().context()).find(p), std::string::npos);
  EXPECT_FALSE(Exists(p));
}

TEST_F(SwapFileTest, RefusesADirectory) {
  auto file = SwapFile::open(dir_.c_str(), 4 * kMiB);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), EISDIR);
  std::string message = file.error().message();
  EXPECT_NE(message.find(dir_), std::string::npos) << message;
  EXPECT_NE(message.find("directory"), std::string::npos) << message;
}

TEST_F(SwapFileTest, RefusesOtherFileTypes) {
  auto file = SwapFile::open("/dev/null", 0);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(std::string(file.error().context()).find("not a regular file or block device"),
            std::string::npos)
      << file.error().message();
}

TEST_F(SwapFileTest, RefusesLessThanTwoMiB) {
  std::string p = path("swap");
  auto file = SwapFile::open(p.c_str(), 2 * kMiB - kPage);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), EINVAL);
  EXPECT_NE(std::string(file.error().context()).find("2 MiB"), std::string::npos);
  EXPECT_FALSE(Exists(p)) << "nothing created for a refused size";

  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CREAT, 0600));
  ASSERT_EQ(ftruncate(fd.get(), static_cast<off_t>(kMiB)), 0);
  file = SwapFile::open(p.c_str(), 0);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), EINVAL);
}

TEST_F(SwapFileTest, RefusesASecondUser) {
  std::string p = path("swap");
  {
    auto first = SwapFile::open(p.c_str(), 2 * kMiB);
    ASSERT_TRUE(first.ok()) << first.error().message();
    auto second = SwapFile::open(p.c_str(), 0);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code(), EBUSY);
    EXPECT_NE(std::string(second.error().context()).find(p), std::string::npos);
  }
  EXPECT_TRUE(SwapFile::open(p.c_str(), 0).ok()) << "the lock goes with the file";
}

TEST_F(SwapFileTest, WaitsForTheLockOfAUserThatIsGoing) {
  std::string p = path("swap");
  auto first = std::make_unique<Result<SwapFile>>(SwapFile::open(p.c_str(), 2 * kMiB));
  ASSERT_TRUE(first->ok()) << first->error().message();
  // A daemon killed a moment ago: its lock goes once the kernel has torn down its ring.
  std::thread going([&first] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first.reset();
  });
  auto second = SwapFile::open(p.c_str(), 0);
  going.join();
  EXPECT_TRUE(second.ok()) << second.error().message();
}

TEST_F(SwapFileTest, RefusesTmpfs) {
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
    GTEST_SKIP() << "/dev/shm is not a tmpfs";
  }
  std::string p = "/dev/shm/extmem-test-" + std::to_string(getpid());
  auto file = SwapFile::open(p.c_str(), 2 * kMiB);
  ASSERT_FALSE(file.ok());
  std::string message = file.error().message();
  // Before Linux 6.6 tmpfs is refused for lacking O_DIRECT instead.
  EXPECT_TRUE(message.find("tmpfs") != std::string::npos ||
              message.find("O_DIRECT") != std::string::npos)
      << message;
  EXPECT_FALSE(Exists(p)) << "the file it created is removed";
  unlink(p.c_str());
}

// ramfs has no O_DIRECT (tmpfs has since Linux 6.6); it is mounted in a private mount
// namespace of a child process, so nothing leaks if the test dies.
TEST_F(SwapFileTest, NamesAFilesystemWithoutODirect) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a ramfs needs root";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  std::string mountpoint = path("ramfs");
  ASSERT_EQ(mkdir(mountpoint.c_str(), 0700), 0);
  std::string p = mountpoint + "/swap";

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("none", mountpoint.c_str(), "ramfs", 0, nullptr) != 0) {
      _exit(2);
    }
    auto file = SwapFile::open(p.c_str(), 4 * kMiB);
    std::string message = file.ok() ? "opened" : file.error().message();
    if (!file.ok() && Exists(p)) message += " (and left the file behind)";
    (void)!write(write_end.get(), message.data(), message.size());
    _exit(0);
  }
  write_end.reset();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 2) GTEST_SKIP() << "cannot mount a ramfs here";
  char buf[256] = {};
  ASSERT_GT(read(read_end.get(), buf, sizeof(buf) - 1), 0);
  std::string message = buf;
  EXPECT_NE(message.find("does not support O_DIRECT"), std::string::npos) << message;
  EXPECT_NE(message.find(p), std::string::npos) << message;
  EXPECT_EQ(message.find("left the file"), std::string::npos) << message;
}

// A loop device over a file in the test directory, detached when its last user closes it.
class LoopDevice {
 public:
  static std::unique_ptr<LoopDevice> attach(const std::string& backing) {
    UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    UniqueFd file(::open(backing.c_str(), O_RDWR | O_CLOEXEC));
    if (!control || !file) return nullptr;
    // Another process may claim the same free device: retry a few times.
    for (int attempt = 0; attempt < 5; ++attempt) {
      int n = ioctl(control.get(), LOOP_CTL_GET_FREE);
      if (n < 0) return nullptr;
      std::string path = "/dev/loop" + std::to_string(n);
      UniqueFd loop(::open(path.c_str(), O_RDWR | O_CLOEXEC));
      if (!loop) return nullptr;
      loop_config config{};
      config.fd = static_cast<uint32_t>(file.get());
      config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
      if (ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) {
        return std::unique_ptr<LoopDevice>(new LoopDevice(path, std::move(loop)));
      }
      if (errno != EBUSY) return nullptr;
    }
    return nullptr;
  }
  const std::string& path() const { return path_; }

 private:
  LoopDevice(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

TEST_F(SwapFileTest, UsesABlockDevice) {
  if (geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  std::string backing = path("backing");
  {
    UniqueFd fd(::open(backing.c_str(), O_RDWR | O_CREAT, 0600));
    ASSERT_EQ(fallocate(fd.get(), 0, 0, static_cast<off_t>(8 * kMiB)), 0);
  }
  auto loop = LoopDevice::attach(backing);
  if (!loop) GTEST_SKIP() << "no loop device available: " << strerror(errno);
  const char* dev = loop->path().c_str();

  auto too_big = SwapFile::open(dev, 16 * kMiB);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(std::string(too_big.error().context()).find(dev), std::string::npos);

  auto file = SwapFile::open(dev, 4 * kMiB);
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_TRUE(file->is_block_device());
  EXPECT_EQ(file->size(), 8 * kMiB) << "a device is used whole";
  EXPECT_NE(fcntl(file->fd(), F_GETFL) & O_DIRECT, 0);

  auto second = SwapFile::open(dev, 0);
  ASSERT_FALSE(second.ok()) << "O_EXCL claims the device";
  EXPECT_EQ(second.error().code(), EBUSY);

  auto ring = IoRing::create(4);
  ASSERT_TRUE(ring.ok()) << ring.error().message();
  Buffer out(kPage);
  Buffer in(kPage);
  FillPage(out.get(), 7, 3);
  IoRequest write = Request(file->fd(), out.get(), kPage, file->size() - kPage, true);
  IoRequest read = Request(file->fd(), in.get(), kPage, file->size() - kPage, false);
  ASSERT_TRUE(ring->submit_and_wait({&write, 1}).ok());
  ASSERT_TRUE(ring->submit_and_wait({&read, 1}).ok());
  EXPECT_EQ(write.result, static_cast<int32_t>(kPage));
  EXPECT_EQ(read.result, static_cast<int32_t>(kPage));
  EXPECT_EQ(memcmp(out.get(), in.get(), kPage), 0);
}

}  // namespace
}  // namespace extmem::kernel
