#include "extmem/kernel/memfd.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "extmem/kernel/raw_mm.hpp"

namespace extmem::kernel {

Result<Memfd> Memfd::create(const char* name, unsigned flags) noexcept {
  int fd = memfd_create(name, flags);
  if (fd < 0) return Error::from_errno("memfd_create(%s)", name);
  return Memfd(UniqueFd(fd));
}

Result<Memfd> Memfd::adopt(UniqueFd fd) noexcept {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Error::from_errno("fstat of received memfd");
  // The daemon punches holes in this file, so it must be an anonymous memfd nobody can
  // open by name: F_GET_SEALS proves shmem, the "/memfd:" name proves memfd_create (a
  // tmpfs file in /dev/shm is shmem too).
  char path[64], target[128] = {};
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd.get());
  ssize_t n = readlink(path, target, sizeof(target) - 1);
  if (!S_ISREG(st.st_mode) || fcntl(fd.get(), F_GET_SEALS) < 0 || n <= 0 ||
      strncmp(target, "/memfd:", 7) != 0) {
    return Error::make(EBADF, "descriptor %d is not a memfd", fd.get());
  }
  return Memfd(std::move(fd));
}

Result<void> Memfd::truncate(size_t size) noexcept {
  if (ftruncate(fd(), static_cast<off_t>(size)) != 0) {
    return Error::from_errno("ftruncate(memfd, %zu)", size);
  }
  return {};
}

Result<size_t> Memfd::size() const noexcept {
  struct stat st;
  if (fstat(fd(), &st) != 0) return Error::from_errno("fstat(memfd)");
  return static_cast<size_t>(st.st_size);
}

Result<void> Memfd::identity(dev_t* dev, ino_t* ino) const noexcept {
  struct stat st;
  if (fstat(fd(), &st) != 0) return Error::from_errno("fstat(memfd)");
  *dev = st.st_dev;
  *ino = st.st_ino;
  return {};
}

Result<void> Memfd::allocate(uint64_t offset, uint64_t len) noexcept {
  if (fallocate(fd(), 0, static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
    return Error::from_errno("fallocate(memfd, %#lx+%#lx)", static_cast<unsigned long>(offset),
                             static_cast<unsigned long>(len));
  }
  return {};
}

Result<void> Memfd::punch_hole(uint64_t offset, uint64_t len) noexcept {
  if (fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(len)) != 0) {
    return Error::from_errno("punch hole(memfd, %#lx+%#lx)", static_cast<unsigned long>(offset),
                             static_cast<unsigned long>(len));
  }
  return {};
}

namespace {

Result<uint64_t> seek(int fd, uint64_t offset, int whence, const char* what) noexcept {
  off_t at = lseek(fd, static_cast<off_t>(offset), whence);
  if (at >= 0) return static_cast<uint64_t>(at);
  if (errno != ENXIO) return Error::from_errno("lseek(memfd, %s)", what);
  // ENXIO: nothing of that kind at or after `offset`.
  struct stat st;
  if (fstat(fd, &st) != 0) return Error::from_errno("fstat(memfd)");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

Result<uint64_t> Memfd::next_data(uint64_t offset) const noexcept {
  return seek(fd(), offset, SEEK_DATA, "SEEK_DATA");
}

Result<uint64_t> Memfd::next_hole(uint64_t offset) const noexcept {
  return seek(fd(), offset, SEEK_HOLE, "SEEK_HOLE");
}

Result<size_t> Memfd::read_at(void* buf, size_t len, uint64_t offset) const noexcept {
  ssize_t n = pread(fd(), buf, len, static_cast<off_t>(offset));
  if (n < 0) return Error::from_errno("pread(memfd, %#lx)", static_cast<unsigned long>(offset));
  return static_cast<size_t>(n);
}

Result<size_t> Memfd::write_at(const void* buf, size_t len, uint64_t offset) noexcept {
  ssize_t n = pwrite(fd(), buf, len, static_cast<off_t>(offset));
  if (n < 0) return Error::from_errno("pwrite(memfd, %#lx)", static_cast<unsigned long>(offset));
  return static_cast<size_t>(n);
}

Result<void> Memfd::add_seals(unsigned seals) noexcept {
  if (fcntl(fd(), F_ADD_SEALS, seals) != 0) return Error::from_errno("F_ADD_SEALS(memfd)");
  return {};
}

Result<unsigned> Memfd::seals() const noexcept {
  int seals = fcntl(fd(), F_GET_SEALS);
  if (seals < 0) return Error::from_errno("F_GET_SEALS(memfd)");
  return static_cast<unsigned>(seals);
}

Result<SharedMapping> SharedMapping::map(int fd, size_t size, bool dontfork) noexcept {
  void* p = raw_mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Error::from_errno("mmap(%zu bytes of fd %d)", size, fd);
  SharedMapping mapping;
  mapping.address_ = p;
  mapping.size_ = size;
  if (dontfork && raw_madvise(p, size, MADV_DONTFORK) != 0) {
    return Error::from_errno("madvise(MADV_DONTFORK)");
  }
  return mapping;
}

SharedMapping::SharedMapping(SharedMapping&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SharedMapping& SharedMapping::operator=(SharedMapping&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) raw_munmap(address_, size_);
    address_ = std::exchange(other.address_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedMapping::~SharedMapping() {
  if (address_ != nullptr) raw_munmap(address_, size_);
}

}  // namespace extmem::kernel
