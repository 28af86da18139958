#include "extmem/kernel/swap_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace extmem::kernel {
namespace {

constexpr uint64_t kPage = 4096;
// How long opening waits for another process's lock on the swap file: 5 s.
constexpr int kLockTries = 100;
constexpr int kLockRetryMs = 50;

unsigned long long MiB(uint64_t bytes) {
  return static_cast<unsigned long long>(bytes >> 20);
}

Result<void> CheckSize(const char* path, uint64_t size) {
  if (size < SwapFile::kMinSize) {
    return Error::make(EINVAL, "swap %s: %llu bytes is below the 2 MiB minimum", path,
                       static_cast<unsigned long long>(size));
  }
  return {};
}

Error OpenError(const char* path) {
  if (errno == ETXTBSY) return Error::make(ETXTBSY, "swap %s: in use as kernel swap", path);
  if (errno == EBUSY) {
    return Error::make(EBUSY, "swap %s: device is in use (mounted, kernel swap or claimed)", path);
  }
  return Error::from_errno("swap %s: open", path);
}

struct Opened {
  UniqueFd fd;
  uint64_t size;
};

Result<Opened> OpenBlockDevice(const char* path, uint64_t create_size) {
  // O_EXCL without O_CREAT claims the device: a mounted one is refused with EBUSY.
  UniqueFd fd(::open(path, O_RDWR | O_DIRECT | O_EXCL | O_CLOEXEC));
  if (!fd) return OpenError(path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Error::from_errno("swap %s: fstat", path);
  if (!S_ISBLK(st.st_mode)) return Error::make(EINVAL, "swap %s: changed while opening", path);
  uint64_t bytes = 0;
  if (ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) {
    return Error::from_errno("swap %s: BLKGETSIZE64", path);
  }
  int sector = 0;
  if (ioctl(fd.get(), BLKSSZGET, &sector) != 0) {
    return Error::from_errno("swap %s: BLKSSZGET", path);
  }
  if (sector <= 0 || kPage % static_cast<uint64_t>(sector) != 0) {
    return Error::make(EINVAL, "swap %s: logical block size %d does not divide 4096", path, sector);
  }
  if (create_size > bytes) {
    return Error::make(EINVAL, "swap %s: device has %llu MiB, %llu MiB requested", path, MiB(bytes),
                       MiB(create_size));
  }
  uint64_t size = bytes / kPage * kPage;
  if (auto ok = CheckSize(path, size); !ok) return ok.error();
  return Opened{std::move(fd), size};
}

Result<Opened> OpenRegular(const char* path, uint64_t create_size, bool exists) {
  if (!exists && create_size == 0) {
    return Error::make(ENOENT, "swap %s: does not exist and no size was given to create it", path);
  }
  // Opened without O_DIRECT, then switched to it: open(O_CREAT|O_DIRECT) on a filesystem
  // without O_DIRECT fails only after creating the file.
  int flags = O_RDWR | O_CLOEXEC | (exists ? 0 : O_CREAT | O_EXCL);
  UniqueFd fd(::open(path, flags, 0600));
  if (!fd) return OpenError(path);

  // Removes a file this call created if it fails later.
  struct Cleanup {
    const char* path;
    bool armed;
    ~Cleanup() {
      if (armed) unlink(path);
    }
  } cleanup{path, !exists};

  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Error::from_errno("swap %s: fstat", path);
  if (!S_ISREG(st.st_mode)) return Error::make(EINVAL, "swap %s: changed while opening", path);
  // A daemon killed a moment ago still holds the lock until the kernel has torn down its
  // io_uring, which can take a while on a busy machine: wait for it a little.
  for (int tries = 0; flock(fd.get(), LOCK_EX | LOCK_NB) != 0; ++tries) {
    if (errno != EWOULDBLOCK) return Error::from_errno("swap %s: flock", path);
    if (tries == kLockTries) {
      return Error::make(EBUSY, "swap %s: in use by another process (flock, waited %d ms)", path,
                         kLockTries * kLockRetryMs);
    }
    usleep(kLockRetryMs * 1000);
  }
  int fl = fcntl(fd.get(), F_GETFL);
  if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_DIRECT) != 0) {
    if (errno == EINVAL) {
      return Error::make(EINVAL, "swap %s: the filesystem does not support O_DIRECT", path);
    }
    return Error::from_errno("swap %s: setting O_DIRECT", path);
  }
  // tmpfs accepts O_DIRECT since Linux 6.6, but its pages are memory: swapping to it
  // frees nothing.
  struct statfs fs;
  if (fstatfs(fd.get(), &fs) != 0) return Error::from_errno("swap %s: fstatfs", path);
  if (fs.f_type == TMPFS_MAGIC) {
    return Error::make(EINVAL, "swap %s: is on tmpfs, which is memory; use a disk", path);
  }

  uint64_t bytes = std::max(static_cast<uint64_t>(st.st_size), create_size / kPage * kPage);
  if (auto ok = CheckSize(path, bytes / kPage * kPage); !ok) return ok.error();
  // Also over an existing file: it may be sparse, and a hole is an ENOSPC waiting to
  // happen. Over allocated blocks this is cheap.
  if (fallocate(fd.get(), 0, 0, static_cast<off_t>(bytes)) != 0) {
    if (errno == EOPNOTSUPP) {
      return Error::make(EOPNOTSUPP, "swap %s: the filesystem does not support fallocate", path);
    }
    return Error::from_errno("swap %s: fallocate of %llu MiB", path, MiB(bytes));
  }
  cleanup.armed = false;
  return Opened{std::move(fd), bytes / kPage * kPage};
}

}  // namespace

Result<SwapFile> SwapFile::open(const char* path, uint64_t create_size) noexcept {
  if (create_size != 0) {
    if (auto ok = CheckSize(path, create_size / kPage * kPage); !ok) return ok.error();
  }
  struct stat st;
  bool exists = stat(path, &st) == 0;
  if (!exists && errno != ENOENT) return Error::from_errno("swap %s: stat", path);
  if (exists && S_ISDIR(st.st_mode)) return Error::make(EISDIR, "swap %s", path);
  bool block = exists && S_ISBLK(st.st_mode);
  if (exists && !block && !S_ISREG(st.st_mode)) {
    return Error::make(EINVAL, "swap %s: not a regular file or block device", path);
  }
  Result<Opened> opened =
      block ? OpenBlockDevice(path, create_size) : OpenRegular(path, create_size, exists);
  if (!opened) return opened.error();
  return SwapFile(std::move(opened->fd), opened->size, path, block);
}

}  // namespace extmem::kernel
