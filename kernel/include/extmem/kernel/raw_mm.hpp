// Memory-management system calls made directly, bypassing libc's symbols: the shim
// interposes mmap, munmap, mremap and madvise, so its own calls must not recurse.
#pragma once

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace extmem::kernel {

inline void* raw_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) noexcept {
  long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

inline int raw_munmap(void* addr, size_t len) noexcept {
  return static_cast<int>(syscall(SYS_munmap, addr, len));
}

inline void* raw_mremap(void* old_addr, size_t old_len, size_t new_len, int flags,
                        void* new_addr) noexcept {
  long r = syscall(SYS_mremap, old_addr, old_len, new_len, flags, new_addr);
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

inline int raw_madvise(void* addr, size_t len, int advice) noexcept {
  return static_cast<int>(syscall(SYS_madvise, addr, len, advice));
}

inline int raw_mprotect(void* addr, size_t len, int prot) noexcept {
  return static_cast<int>(syscall(SYS_mprotect, addr, len, prot));
}

}  // namespace extmem::kernel
