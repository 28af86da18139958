#include "extmem/kernel/probe.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <utility>

// Constants newer than the oldest headers we build against; values are the kernel's uapi ones.
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef _UFFDIO_CONTINUE
#define _UFFDIO_CONTINUE (0x07)
#endif
#ifndef UFFDIO_REGISTER_MODE_MINOR
#define UFFDIO_REGISTER_MODE_MINOR ((__u64)1 << 2)
#endif
#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef PAGEMAP_SCAN
// Linux 6.7 uapi (include/uapi/linux/fs.h); the ioctl number encodes this struct's size.
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};
struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};
#define PAGE_IS_PRESENT (1 << 3)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

namespace extmem::kernel {
namespace {

constexpr uint64_t kPagemapPresent = 1ULL << 63;

size_t PageSize() {
  return static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// "EPERM: Operation not permitted"; strerror() is not thread-safe, these two are.
std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  const char* desc = strerrordesc_np(err);
  std::string text = name != nullptr ? name : "errno " + std::to_string(err);
  if (desc != nullptr) {
    text += ": ";
    text += desc;
  }
  return text;
}

std::string Hex(uint64_t value) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, value);
  return buf;
}

// Owns a descriptor; remembers errno of the call that produced it so a failure can be reported
// after other calls have clobbered errno.
class ScopedFd {
 public:
  explicit ScopedFd(long ret) : fd_(static_cast<int>(ret)), err_(ret < 0 ? errno : 0) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)), err_(other.err_) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ScopedFd& operator=(ScopedFd&&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }

  bool ok() const { return fd_ >= 0; }
  int get() const { return fd_; }
  int err() const { return err_; }

 private:
  int fd_;
  int err_;
};

// Returns 0 and the whole file, or the errno of the failed open/read.
int ReadSmallFile(const char* path, std::string* out) {
  ScopedFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return fd.err();
  out->clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return 0;
    out->append(buf, static_cast<size_t>(n));
  }
}

// " (vm.unprivileged_userfaultfd=0)": the setting that usually explains an EPERM.
std::string SysctlNote(const char* path, const char* name) {
  std::string value;
  if (ReadSmallFile(path, &value) != 0) return "";
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return std::string(" (") + name + "=" + value + ")";
}

ScopedFd MemfdCreate() {
  return ScopedFd(syscall(SYS_memfd_create, "extmem-probe", MFD_CLOEXEC));
}

// A memfd mapped MAP_SHARED, the way the shim builds its arena.
class ShmemMapping {
 public:
  explicit ShmemMapping(size_t pages) : fd_(MemfdCreate()), len_(pages * PageSize()) {
    if (!fd_.ok()) {
      error_ = "memfd_create: " + ErrnoText(fd_.err());
    } else if (ftruncate(fd_.get(), static_cast<off_t>(len_)) != 0) {
      error_ = "ftruncate memfd: " + ErrnoText(errno);
    } else {
      addr_ = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
      if (addr_ == MAP_FAILED) error_ = "mmap memfd: " + ErrnoText(errno);
    }
  }
  ShmemMapping(const ShmemMapping&) = delete;
  ShmemMapping& operator=(const ShmemMapping&) = delete;
  ~ShmemMapping() {
    if (addr_ != MAP_FAILED) munmap(addr_, len_);
  }

  bool ok() const { return addr_ != MAP_FAILED; }
  const std::string& error() const { return error_; }
  char* data() const { return static_cast<char*>(addr_); }
  uint64_t addr() const { return reinterpret_cast<uintptr_t>(addr_); }
  size_t len() const { return len_; }
  // Writes every page so each one is allocated and mapped.
  void Touch() const {
    for (size_t off = 0; off < len_; off += PageSize()) data()[off] = 1;
  }

 private:
  ScopedFd fd_;
  size_t len_;
  void* addr_ = MAP_FAILED;
  std::string error_;
};

ScopedFd UffdBySyscall() {
  return ScopedFd(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
}

ScopedFd UffdByDevice() {
  ScopedFd dev(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (!dev.ok()) return dev;
  return ScopedFd(ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
}

// A fresh userfaultfd from whichever source works; UFFDIO_API may be issued once per uffd, so
// every check that needs one takes its own.
ScopedFd OpenUffd() {
  ScopedFd uffd = UffdBySyscall();
  if (uffd.ok()) return uffd;
  return UffdByDevice();
}

// UFFDIO_API handshake; returns 0 or errno. *supported receives what the kernel offers.
int UffdApi(int uffd, uint64_t features, uint64_t* supported) {
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(uffd, UFFDIO_API, &api) != 0) return errno;
  if (supported != nullptr) *supported = api.features;
  return 0;
}

// Registers [addr, addr + len) then unregisters it; returns 0 and the ioctls the kernel offers
// for the range, or errno.
int TryRegister(int uffd, uint64_t addr, uint64_t len, uint64_t mode, uint64_t* ioctls) {
  uffdio_register reg{};
  reg.range.start = addr;
  reg.range.len = len;
  reg.mode = mode;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return errno;
  *ioctls = reg.ioctls;
  uffdio_range range{addr, len};
  ioctl(uffd, UFFDIO_UNREGISTER, &range);
  return 0;
}

// The pid a pidfd refers to, from its fdinfo; -1 if it cannot be read.
long PidOfPidfd(int pidfd) {
  std::string info;
  std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
  if (ReadSmallFile(path.c_str(), &info) != 0) return -1;
  size_t pos = info.find("\nPid:");
  if (pos == std::string::npos) return -1;
  return strtol(info.c_str() + pos + 5, nullptr, 10);
}

// Counts pages of [addr, addr + pages) mapped in this process; returns 0 or errno.
int CountMapped(uint64_t addr, size_t pages, size_t* mapped) {
  ScopedFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.ok()) return pagemap.err();
  std::vector<uint64_t> entries(pages);
  size_t bytes = pages * sizeof(uint64_t);
  off_t off = static_cast<off_t>(addr / PageSize() * sizeof(uint64_t));
  if (pread(pagemap.get(), entries.data(), bytes, off) != static_cast<ssize_t>(bytes)) {
    return errno != 0 ? errno : EIO;
  }
  *mapped = static_cast<size_t>(std::count_if(
      entries.begin(), entries.end(), [](uint64_t e) { return (e & kPagemapPresent) != 0; }));
  return 0;
}

void Add(Capabilities* caps, std::string name, bool present, bool required, std::string detail) {
  caps->items.push_back(Capability{std::move(name), present, required, std::move(detail)});
}

void CheckUserfaultfd(Capabilities* caps) {
  ScopedFd by_syscall = UffdBySyscall();
  std::string syscall_detail = "userfaultfd(O_CLOEXEC|O_NONBLOCK) works";
  if (!by_syscall.ok()) {
    syscall_detail = ErrnoText(by_syscall.err());
    if (by_syscall.err() == EPERM) {
      syscall_detail +=
          SysctlNote("/proc/sys/vm/unprivileged_userfaultfd", "vm.unprivileged_userfaultfd");
    }
  }

  std::string dev_detail = "USERFAULTFD_IOC_NEW on /dev/userfaultfd works";
  ScopedFd dev(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  bool dev_ok = false;
  if (!dev.ok()) {
    dev_detail = "open /dev/userfaultfd: " + ErrnoText(dev.err());
  } else {
    ScopedFd by_dev(ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
    dev_ok = by_dev.ok();
    if (!dev_ok) dev_detail = "USERFAULTFD_IOC_NEW: " + ErrnoText(by_dev.err());
  }

  const char* how = "neither the syscall nor /dev/userfaultfd works";
  if (by_syscall.ok() && dev_ok) {
    how = "syscall and /dev/userfaultfd both work";
  } else if (by_syscall.ok()) {
    how = "syscall works, /dev/userfaultfd does not";
  } else if (dev_ok) {
    how = "/dev/userfaultfd works, syscall does not";
  }
  Add(caps, "userfaultfd", by_syscall.ok() || dev_ok, true, how);
  Add(caps, "userfaultfd.syscall", by_syscall.ok(), false, syscall_detail);
  Add(caps, "userfaultfd.dev", dev_ok, false, dev_detail);
}

struct FeatureSpec {
  const char* name;
  uint64_t bit;
  bool required;
};

constexpr FeatureSpec kFeatures[] = {
    {"uffd.missing_shmem", UFFD_FEATURE_MISSING_SHMEM, true},
    {"uffd.minor_shmem", UFFD_FEATURE_MINOR_SHMEM, true},
    {"uffd.event_remove", UFFD_FEATURE_EVENT_REMOVE, true},
    {"uffd.event_unmap", UFFD_FEATURE_EVENT_UNMAP, true},
    {"uffd.event_remap", UFFD_FEATURE_EVENT_REMAP, true},
    {"uffd.event_fork", UFFD_FEATURE_EVENT_FORK, false},
    {"uffd.wp_hugetlbfs_shmem", UFFD_FEATURE_WP_HUGETLBFS_SHMEM, false},
    {"uffd.wp_unpopulated", UFFD_FEATURE_WP_UNPOPULATED, false},
    {"uffd.wp_async", UFFD_FEATURE_WP_ASYNC, false},
    {"uffd.poison", UFFD_FEATURE_POISON, false},
    {"uffd.move", UFFD_FEATURE_MOVE, false},
    {"uffd.exact_address", UFFD_FEATURE_EXACT_ADDRESS, false},
};

void CheckUffdApi(Capabilities* caps) {
  std::string failure;
  {
    ScopedFd uffd = OpenUffd();
    if (!uffd.ok()) {
      failure = "no userfaultfd available";
    } else if (int err = UffdApi(uffd.get(), 0, &caps->uffd_features); err != 0) {
      failure = "UFFDIO_API: " + ErrnoText(err);
    }
  }
  Add(caps, "uffd.api", failure.empty(), true,
      failure.empty() ? "UFFDIO_API ok, features " + Hex(caps->uffd_features) : failure);

  for (const FeatureSpec& spec : kFeatures) {
    if (!failure.empty()) {
      Add(caps, spec.name, false, spec.required, failure);
      continue;
    }
    if ((caps->uffd_features & spec.bit) == 0) {
      Add(caps, spec.name, false, spec.required, "not offered by UFFDIO_API");
      continue;
    }
    // Being offered is not enough: EVENT_FORK is offered to everyone but enabling it needs
    // CAP_SYS_PTRACE, so enable each feature alone on a fresh uffd.
    ScopedFd uffd = OpenUffd();
    int err = uffd.ok() ? UffdApi(uffd.get(), spec.bit, nullptr) : uffd.err();
    std::string detail = "offered and enabled by UFFDIO_API";
    if (err != 0) {
      detail = "offered, but enabling it failed: " + ErrnoText(err);
      if (err == EPERM && spec.bit == UFFD_FEATURE_EVENT_FORK) detail += " (needs CAP_SYS_PTRACE)";
    }
    Add(caps, spec.name, err == 0, spec.required, detail);
  }
}

struct ModeSpec {
  const char* name;
  const char* mode_name;
  uint64_t mode;
  bool required;
  int ioctl_nr;  // the range ioctl this mode exists for
  const char* ioctl_name;
};

constexpr ModeSpec kModes[] = {
    {"uffd.register.missing", "MISSING", UFFDIO_REGISTER_MODE_MISSING, true, _UFFDIO_COPY,
     "UFFDIO_COPY"},
    {"uffd.register.wp", "WP", UFFDIO_REGISTER_MODE_WP, false, _UFFDIO_WRITEPROTECT,
     "UFFDIO_WRITEPROTECT"},
    {"uffd.register.minor", "MINOR", UFFDIO_REGISTER_MODE_MINOR, false, _UFFDIO_CONTINUE,
     "UFFDIO_CONTINUE"},
};

// The features the daemon enables before registering an arena (see DESIGN.md).
constexpr uint64_t kRegisterFeatures =
    UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

void CheckRegistration(Capabilities* caps) {
  ScopedFd uffd = OpenUffd();
  ShmemMapping shm(4);
  std::string failure;
  if (!uffd.ok()) {
    failure = "no userfaultfd available";
  } else if (!shm.ok()) {
    failure = shm.error();
  } else if (int err = UffdApi(uffd.get(), kRegisterFeatures & caps->uffd_features, nullptr);
             err != 0) {
    failure = "UFFDIO_API: " + ErrnoText(err);
  }
  if (!failure.empty()) {
    for (const ModeSpec& m : kModes) Add(caps, m.name, false, m.required, failure);
    return;
  }

  // The arena is registered with all three modes at once; only if that fails is each mode tried
  // alone, to say which one the kernel refuses.
  uint64_t all_ioctls = 0;
  int all_err = TryRegister(
      uffd.get(), shm.addr(), shm.len(),
      UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR,
      &all_ioctls);
  for (const ModeSpec& m : kModes) {
    uint64_t ioctls = all_ioctls;
    int err = all_err;
    std::string detail = "registered MISSING|WP|MINOR on a memfd MAP_SHARED mapping";
    if (all_err != 0) {
      err = TryRegister(uffd.get(), shm.addr(), shm.len(), m.mode, &ioctls);
      detail = "MISSING|WP|MINOR: " + ErrnoText(all_err) + "; " + m.mode_name +
               " alone: " + (err == 0 ? "registered" : ErrnoText(err));
    }
    bool offered = err == 0 && (ioctls & (1ULL << m.ioctl_nr)) != 0;
    if (err == 0) {
      detail += offered ? std::string(", ") + m.ioctl_name + " offered"
                        : std::string(", but ") + m.ioctl_name + " not offered";
    }
    Add(caps, m.name, offered, m.required, detail);
  }
}

void CheckMemfd(Capabilities* caps) {
  ScopedFd memfd = MemfdCreate();
  if (!memfd.ok()) {
    Add(caps, "memfd_create", false, true, ErrnoText(memfd.err()));
    Add(caps, "memfd.punch_hole", false, true, "needs memfd_create");
    return;
  }
  Add(caps, "memfd_create", true, true, "memfd_create(MFD_CLOEXEC) works");

  // Punching is how the daemon frees an evicted page: it must read back as zeros.
  const size_t page = PageSize();
  std::vector<char> buf(page, static_cast<char>(0xa5));
  std::string detail;
  if (pwrite(memfd.get(), buf.data(), page, 0) != static_cast<ssize_t>(page)) {
    detail = "pwrite memfd: " + ErrnoText(errno);
  } else if (fallocate(memfd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                       static_cast<off_t>(page)) != 0) {
    detail = "fallocate(PUNCH_HOLE): " + ErrnoText(errno);
  } else if (pread(memfd.get(), buf.data(), page, 0) != static_cast<ssize_t>(page)) {
    detail = "pread memfd: " + ErrnoText(errno);
  } else if (std::any_of(buf.begin(), buf.end(), [](char c) { return c != 0; })) {
    detail = "punched page still holds data";
  }
  bool ok = detail.empty();
  Add(caps, "memfd.punch_hole", ok, true, ok ? "punched page reads back as zeros" : detail);
}

void CheckPidfd(Capabilities* caps) {
  const long self = getpid();
  ScopedFd pidfd(syscall(SYS_pidfd_open, self, 0));
  if (!pidfd.ok()) {
    Add(caps, "pidfd_open", false, true, ErrnoText(pidfd.err()));
  } else {
    long pid = PidOfPidfd(pidfd.get());
    Add(caps, "pidfd_open", pid == self, true,
        pid == self ? "pidfd for own pid works"
                    : "fdinfo of the pidfd names pid " + std::to_string(pid));
  }

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Add(caps, "so_peerpidfd", false, false, "socketpair: " + ErrnoText(errno));
  } else {
    ScopedFd a(sv[0]);
    ScopedFd b(sv[1]);
    int peer = -1;
    socklen_t len = sizeof(peer);
    int rc = getsockopt(a.get(), SOL_SOCKET, SO_PEERPIDFD, &peer, &len);
    ScopedFd peer_fd(rc == 0 ? peer : -1);
    if (rc != 0) {
      Add(caps, "so_peerpidfd", false, false, "getsockopt(SO_PEERPIDFD): " + ErrnoText(errno));
    } else {
      long pid = PidOfPidfd(peer_fd.get());
      Add(caps, "so_peerpidfd", pid == self, false,
          pid == self ? "peer pidfd of a socketpair names own pid"
                      : "peer pidfd names pid " + std::to_string(pid));
    }
  }

  if (!pidfd.ok()) {
    Add(caps, "pidfd_getfd", false, false, "needs pidfd_open");
    return;
  }
  // Duplicate the pidfd itself through itself: the copy must be the same open file.
  ScopedFd copy(syscall(SYS_pidfd_getfd, pidfd.get(), pidfd.get(), 0));
  struct stat orig_st {};
  struct stat copy_st {};
  if (!copy.ok()) {
    Add(caps, "pidfd_getfd", false, false, ErrnoText(copy.err()));
  } else if (fstat(pidfd.get(), &orig_st) != 0 || fstat(copy.get(), &copy_st) != 0) {
    Add(caps, "pidfd_getfd", false, false, "fstat: " + ErrnoText(errno));
  } else {
    bool same = orig_st.st_dev == copy_st.st_dev && orig_st.st_ino == copy_st.st_ino;
    Add(caps, "pidfd_getfd", same, false,
        same ? "copied a descriptor out of own process" : "copy is a different file");
  }
}

void CheckIoUring(Capabilities* caps) {
  io_uring ring{};
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    std::string detail = "io_uring_queue_init(8): " + ErrnoText(-rc);
    if (-rc == EPERM)
      detail += SysctlNote("/proc/sys/kernel/io_uring_disabled", "kernel.io_uring_disabled");
    Add(caps, "io_uring", false, true, detail);
    return;
  }
  constexpr uint64_t kTag = 0x6578746d656d;
  std::string detail;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_cqe* cqe = nullptr;
  if (sqe == nullptr) {
    detail = "no free submission entry";
  } else {
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kTag);
    if ((rc = io_uring_submit(&ring)) != 1) {
      detail = "io_uring_submit: " + (rc < 0 ? ErrnoText(-rc) : std::to_string(rc) + " submitted");
    } else if ((rc = io_uring_wait_cqe(&ring, &cqe)) != 0) {
      detail = "io_uring_wait_cqe: " + ErrnoText(-rc);
    } else {
      if (cqe->user_data != kTag || cqe->res != 0) {
        detail = "NOP completed with res " + std::to_string(cqe->res) + ", user_data " +
                 Hex(cqe->user_data);
      }
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  unsigned features = ring.features;
  io_uring_queue_exit(&ring);
  bool ok = detail.empty();
  Add(caps, "io_uring", ok, true,
      ok ? "queue_init(8) and a NOP round trip work, ring features " + Hex(features) : detail);
}

void CheckPagemapScan(Capabilities* caps) {
  constexpr size_t kPages = 4;
  ShmemMapping shm(kPages);
  ScopedFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!shm.ok()) {
    Add(caps, "pagemap_scan", false, false, shm.error());
    return;
  }
  if (!pagemap.ok()) {
    Add(caps, "pagemap_scan", false, false, "open /proc/self/pagemap: " + ErrnoText(pagemap.err()));
    return;
  }
  // Map pages 0 and 2 only; the scan must report exactly those two as present.
  const size_t page = PageSize();
  shm.data()[0] = 1;
  shm.data()[2 * page] = 1;
  page_region regions[kPages] = {};
  pm_scan_arg arg{};
  arg.size = sizeof(arg);
  arg.start = shm.addr();
  arg.end = shm.addr() + shm.len();
  arg.vec = reinterpret_cast<uintptr_t>(regions);
  arg.vec_len = kPages;
  arg.category_mask = PAGE_IS_PRESENT;
  arg.return_mask = PAGE_IS_PRESENT;
  int n = ioctl(pagemap.get(), PAGEMAP_SCAN, &arg);
  if (n < 0) {
    Add(caps, "pagemap_scan", false, false, "ioctl(PAGEMAP_SCAN): " + ErrnoText(errno));
    return;
  }
  bool ok = n == 2 && regions[0].start == shm.addr() && regions[0].end == shm.addr() + page &&
            regions[1].start == shm.addr() + 2 * page && regions[1].end == shm.addr() + 3 * page;
  Add(caps, "pagemap_scan", ok, false,
      ok ? "scan of a memfd mapping found exactly the 2 touched pages"
         : "scan returned " + std::to_string(n) + " regions, expected the 2 touched pages");
}

void CheckProcessMadvise(Capabilities* caps) {
  constexpr size_t kPages = 16;
  ScopedFd pidfd(syscall(SYS_pidfd_open, static_cast<long>(getpid()), 0));
  ShmemMapping shm(kPages);
  if (!pidfd.ok()) {
    Add(caps, "process_madvise.pageout", false, false, "pidfd_open: " + ErrnoText(pidfd.err()));
    return;
  }
  if (!shm.ok()) {
    Add(caps, "process_madvise.pageout", false, false, shm.error());
    return;
  }
  shm.Touch();
  iovec iov{shm.data(), shm.len()};
  long advised = syscall(SYS_process_madvise, pidfd.get(), &iov, 1, MADV_PAGEOUT, 0);
  if (advised < 0) {
    Add(caps, "process_madvise.pageout", false, false, ErrnoText(errno));
    return;
  }
  // How many pages PAGEOUT unmapped is informational: it skips pages not yet on the LRU.
  std::string detail =
      "advised " + std::to_string(advised) + " of " + std::to_string(shm.len()) + " bytes";
  size_t mapped = 0;
  if (int err = CountMapped(shm.addr(), kPages, &mapped); err != 0) {
    detail += "; reading pagemap: " + ErrnoText(err);
  } else {
    detail += "; " + std::to_string(kPages - mapped) + " of " + std::to_string(kPages) +
              " touched pages unmapped";
  }
  Add(caps, "process_madvise.pageout", static_cast<size_t>(advised) == shm.len(), false, detail);
}

void CheckKernelSwap(Capabilities* caps) {
  std::string swaps;
  if (int err = ReadSmallFile("/proc/swaps", &swaps); err != 0) {
    Add(caps, "kernel_swap", false, false, "read /proc/swaps: " + ErrnoText(err));
    return;
  }
  // Header line, then "filename type size(KiB) used priority" per active swap area.
  size_t areas = 0;
  uint64_t total_kib = 0;
  std::string names;
  size_t line_start = swaps.find('\n');
  while (line_start != std::string::npos && line_start + 1 < swaps.size()) {
    size_t line_end = swaps.find('\n', line_start + 1);
    std::string line = swaps.substr(line_start + 1, line_end - line_start - 1);
    line_start = line_end;
    char name[256];
    char type[32];
    unsigned long long size_kib = 0;
    if (sscanf(line.c_str(), "%255s %31s %llu", name, type, &size_kib) != 3) continue;
    ++areas;
    total_kib += size_kib;
    names += names.empty() ? name : std::string(", ") + name;
  }
  caps->kernel_swap_on = areas > 0;
  Add(caps, "kernel_swap", caps->kernel_swap_on, false,
      areas == 0 ? "off: /proc/swaps lists no swap area"
                 : "on: " + std::to_string(areas) + " area(s), " +
                       std::to_string(total_kib / 1024) + " MiB (" + names + ")");
}

// The bracketed choice in a THP sysfs file ("always [madvise] never" -> "madvise").
std::string ThpMode(const char* path) {
  std::string text;
  if (int err = ReadSmallFile(path, &text); err != 0) return ErrnoText(err);
  size_t open_pos = text.find('[');
  size_t close_pos = text.find(']', open_pos);
  if (open_pos == std::string::npos || close_pos == std::string::npos) return "unparsed";
  return text.substr(open_pos + 1, close_pos - open_pos - 1);
}

void CheckThp(Capabilities* caps) {
  struct stat st {};
  if (stat("/sys/kernel/mm/transparent_hugepage/enabled", &st) != 0) {
    Add(caps, "thp", false, false, "not available: " + ErrnoText(errno));
    return;
  }
  // shmem_enabled, not enabled, governs the memfd arena.
  Add(caps, "thp", true, false,
      "enabled=" + ThpMode("/sys/kernel/mm/transparent_hugepage/enabled") +
          ", shmem_enabled=" + ThpMode("/sys/kernel/mm/transparent_hugepage/shmem_enabled"));
}

}  // namespace

bool Capabilities::all_required_present() const {
  return missing_required().empty();
}

std::vector<std::string> Capabilities::missing_required() const {
  std::vector<std::string> missing;
  for (const Capability& c : items) {
    if (c.required && !c.present) missing.push_back(c.name);
  }
  return missing;
}

const Capability* Capabilities::find(std::string_view name) const {
  for (const Capability& c : items) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Capabilities probe_kernel() {
  Capabilities caps;
  CheckUserfaultfd(&caps);
  CheckUffdApi(&caps);
  CheckRegistration(&caps);
  CheckMemfd(&caps);
  CheckPidfd(&caps);
  CheckIoUring(&caps);
  CheckPagemapScan(&caps);
  CheckProcessMadvise(&caps);
  CheckKernelSwap(&caps);
  CheckThp(&caps);
  return caps;
}

std::string format_capabilities(const Capabilities& caps) {
  auto status = [](const Capability& c) {
    if (c.present) return "yes";
    return c.required ? "no" : "no (optional)";
  };
  size_t name_width = 0;
  size_t status_width = 0;
  for (const Capability& c : caps.items) {
    name_width = std::max(name_width, c.name.size());
    status_width = std::max(status_width, strlen(status(c)));
  }
  std::string out;
  for (const Capability& c : caps.items) {
    std::string s = status(c);
    out += c.name + std::string(name_width - c.name.size() + 2, ' ');
    out += s + std::string(status_width - s.size() + 2, ' ');
    out += c.detail + "\n";
  }
  std::vector<std::string> missing = caps.missing_required();
  if (missing.empty()) {
    out += "all required capabilities present\n";
  } else {
    out += "missing required:";
    for (const std::string& name : missing) out += " " + name;
    out += "\n";
  }
  return out;
}

}  // namespace extmem::kernel
