// The symbols libextmem.so exports: the malloc family and the memory-mapping calls.
// Large private anonymous memory is served from the arena; everything else goes to libc
// untouched. Every export is noexcept and reports errors through errno, as libc does.
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>
#include <malloc.h>
#include <stdarg.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>

#include "extmem.h"
#include "extmem/hint_ring.hpp"
#include "extmem/kernel/raw_mm.hpp"
#include "shim_state.hpp"

extern "C" {
void* __libc_malloc(size_t size);
void __libc_free(void* p);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t align, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);
}

namespace {

using namespace extmem::shim;
namespace kernel = extmem::kernel;

using UsableSizeFn = size_t (*)(void*);
UsableSizeFn g_libc_usable_size = nullptr;

[[gnu::constructor(101)]] void start_shim() {
  // glibc's own, to match __libc_malloc: the next definition may be another allocator's
  // (redis links jemalloc, whose malloc_usable_size crashes on a glibc pointer).
  if (void* libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD)) {
    g_libc_usable_size = reinterpret_cast<UsableSizeFn>(dlsym(libc, "malloc_usable_size"));
    dlclose(libc);
  }
  initialize();
}

bool wants_arena(size_t size) noexcept {
  return size >= g_config.min_alloc && mode() == Mode::kManaged;
}

size_t libc_usable_size(void* p) noexcept {
  return g_libc_usable_size != nullptr ? g_libc_usable_size(p) : 0;
}

// An arena block allocated, or nullptr to fall back to libc.
void* allocate_large(size_t size, size_t align) noexcept {
  return wants_arena(size) ? arena_allocate(size, align) : nullptr;
}

void* aligned_allocate(size_t align, size_t size) noexcept {
  if (void* p = allocate_large(size, align)) return p;
  return __libc_memalign(align, size);
}

[[noreturn]] void die_in_child(const char* what) noexcept {
  warn("%s: this memory was managed by the parent and is not mapped in a fork() child", what);
  abort();
}

// Queues `hint` for the managed part of [addr, addr+len), widened to whole pages.
// Returns 0 or an errno value.
int advise_range(void* addr, size_t len, int hint) noexcept {
  if (mode() != Mode::kManaged) return ENODEV;
  if (hint < 0 || static_cast<uint32_t>(hint) > extmem::hints::kMaxHint || len == 0) {
    return EINVAL;
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(addr) & ~(kPageSize - 1);
  uintptr_t end;
  if (__builtin_add_overflow(reinterpret_cast<uintptr_t>(addr), len, &end) ||
      end > UINTPTR_MAX - kPageSize) {
    return EINVAL;
  }
  end = (end + kPageSize - 1) & ~(kPageSize - 1);
  uintptr_t managed_start;
  size_t managed_len;
  clip_to_arena(start, end - start, &managed_start, &managed_len);
  if (managed_len == 0) return ENOMEM;
  if (hint == EXTMEM_HINT_DONTNEED) {
    arena_zero(managed_start, managed_len);
    return 0;
  }
  return send_hint(managed_start, managed_len, static_cast<uint32_t>(hint));
}

bool is_private_anonymous_rw(int prot, int flags, int fd) noexcept {
  constexpr int kExcluded =
      MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_STACK | MAP_GROWSDOWN | MAP_HUGETLB | MAP_32BIT;
  return (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) && !(flags & kExcluded) &&
         prot == (PROT_READ | PROT_WRITE) && fd == -1;
}

}  // namespace

extern "C" {

EXTMEM_EXPORT void* malloc(size_t size) noexcept {
  if (void* p = allocate_large(size, 0)) return p;
  return __libc_malloc(size);
}

EXTMEM_EXPORT void free(void* p) noexcept {
  if (p == nullptr) return;
  if (in_arena(p)) return arena_free(p);
  __libc_free(p);
}

EXTMEM_EXPORT void* calloc(size_t n, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  // Arena blocks are zero: fresh pages are holes and freed pages are punched.
  if (void* p = allocate_large(total, 0)) return p;
  return __libc_calloc(n, size);
}

EXTMEM_EXPORT void* realloc(void* p, size_t size) noexcept {
  if (p == nullptr) return malloc(size);
  if (size == 0) {
    free(p);
    return nullptr;
  }
  if (!in_arena(p)) {
    if (!wants_arena(size)) return __libc_realloc(p, size);
    void* q = arena_allocate(size, 0);
    if (q == nullptr) return __libc_realloc(p, size);
    size_t old = libc_usable_size(p);
    memcpy(q, p, old < size ? old : size);
    __libc_free(p);
    return q;
  }
  if (mode() == Mode::kForkedChild) die_in_child("realloc");
  size_t old = arena_block_size(p);
  if (old == 0) {
    warn("realloc(%p): not an allocated block", p);
    errno = EINVAL;
    return nullptr;
  }
  if (arena_resize_in_place(p, size)) return p;
  void* q = malloc(size);
  if (q == nullptr) return nullptr;
  memcpy(q, p, old < size ? old : size);
  arena_free(p);
  return q;
}

EXTMEM_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = aligned_allocate(align, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

EXTMEM_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return aligned_allocate(align, size);
}

EXTMEM_EXPORT void* memalign(size_t align, size_t size) noexcept {
  return aligned_allocate(align, size);
}

EXTMEM_EXPORT void* valloc(size_t size) noexcept {
  if (void* p = allocate_large(size, 0)) return p;
  return __libc_valloc(size);
}

EXTMEM_EXPORT void* pvalloc(size_t size) noexcept {
  if (void* p = allocate_large(round_up_to_page(size), 0)) return p;
  return __libc_pvalloc(size);
}

EXTMEM_EXPORT size_t malloc_usable_size(void* p) noexcept {
  if (p == nullptr) return 0;
  if (in_arena(p)) return arena_block_size(p);
  return libc_usable_size(p);
}

EXTMEM_EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd,
                         off_t offset) noexcept {
  if (is_private_anonymous_rw(prot, flags, fd) && wants_arena(len)) {
    if (void* p = arena_allocate(len, 0)) return p;
  } else if ((flags & MAP_FIXED) && range_overlaps_arena(addr, len) && mode() == Mode::kManaged) {
    // Replacing arena pages with fresh anonymous memory (how allocators decommit) is
    // served in place: the pages become zero with the requested protection. Any other
    // mapping over the arena would let the allocator punch holes in someone's file.
    if ((flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS) ||
        reinterpret_cast<uintptr_t>(addr) % kPageSize != 0 || !in_arena(addr) ||
        !in_arena(static_cast<char*>(addr) + len - 1)) {
      warn("mmap(MAP_FIXED) of a non-anonymous mapping over managed memory is not supported");
      errno = EINVAL;
      return MAP_FAILED;
    }
    arena_zero(reinterpret_cast<uintptr_t>(addr), round_up_to_page(len));
    if (kernel::raw_mprotect(addr, len, prot) != 0) return MAP_FAILED;
    return addr;
  }
  return kernel::raw_mmap(addr, len, prot, flags, fd, offset);
}

EXTMEM_EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd,
                           off_t offset) noexcept {
  return mmap(addr, len, prot, flags, fd, offset);
}

EXTMEM_EXPORT int munmap(void* addr, size_t len) noexcept {
  uintptr_t start = reinterpret_cast<uintptr_t>(addr);
  if (!range_overlaps_arena(addr, len) || mode() == Mode::kStarting) {
    return kernel::raw_munmap(addr, len);
  }
  if (start % kPageSize != 0 || len == 0) {
    errno = EINVAL;
    return -1;
  }
  uintptr_t managed_start;
  size_t managed_len;
  clip_to_arena(start, round_up_to_page(len), &managed_start, &managed_len);
  if (!arena_release(managed_start, managed_len)) {
    errno = ENOMEM;
    return -1;
  }
  // Parts outside the arena are ordinary mappings.
  if (start < managed_start) kernel::raw_munmap(addr, managed_start - start);
  uintptr_t end = start + round_up_to_page(len);
  if (end > managed_start + managed_len) {
    uintptr_t tail = managed_start + managed_len;
    kernel::raw_munmap(reinterpret_cast<void*>(tail), end - tail);
  }
  return 0;
}

EXTMEM_EXPORT void* mremap(void* old_addr, size_t old_len, size_t new_len, int flags,
                           ...) noexcept {
  void* new_addr = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list args;
    va_start(args, flags);
    new_addr = va_arg(args, void*);
    va_end(args);
  }
  if (!in_arena(old_addr) || mode() == Mode::kStarting) {
    return kernel::raw_mremap(old_addr, old_len, new_len, flags, new_addr);
  }
  if (mode() == Mode::kForkedChild) die_in_child("mremap");
  uintptr_t old_start = reinterpret_cast<uintptr_t>(old_addr);
  old_len = round_up_to_page(old_len);
  size_t rounded_new = round_up_to_page(new_len);
  if (old_start % kPageSize != 0 || new_len == 0 || old_len == 0 || (flags & MREMAP_DONTUNMAP) ||
      ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE))) {
    errno = EINVAL;
    return MAP_FAILED;
  }
  if (!(flags & MREMAP_FIXED)) {
    if (rounded_new <= old_len) {
      if (!arena_release(old_start + rounded_new, old_len - rounded_new)) {
        errno = ENOMEM;
        return MAP_FAILED;
      }
      return old_addr;
    }
    // Grows in place when [old_addr, +old_len) is a whole block with free pages after it.
    if (arena_block_size(old_addr) == old_len && arena_resize_in_place(old_addr, rounded_new)) {
      return old_addr;
    }
    if (!(flags & MREMAP_MAYMOVE)) {
      errno = ENOMEM;
      return MAP_FAILED;
    }
  }
  // Moving: the contents are copied (the arena is one mapping, so pages cannot move).
  void* moved;
  if (flags & MREMAP_FIXED) {
    moved = kernel::raw_mmap(new_addr, rounded_new, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  } else {
    moved = arena_allocate(rounded_new, 0);
    if (moved == nullptr) {
      moved = kernel::raw_mmap(nullptr, rounded_new, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
  }
  if (moved == MAP_FAILED || moved == nullptr) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  memcpy(moved, old_addr, old_len < rounded_new ? old_len : rounded_new);
  arena_release(old_start, old_len);
  return moved;
}

EXTMEM_EXPORT int madvise(void* addr, size_t len, int advice) noexcept {
  if (!range_overlaps_arena(addr, len) || mode() != Mode::kManaged) {
    return kernel::raw_madvise(addr, len, advice);
  }
  uintptr_t start = reinterpret_cast<uintptr_t>(addr);
  if (start % kPageSize != 0) {
    errno = EINVAL;
    return -1;
  }
  uintptr_t managed_start;
  size_t managed_len;
  clip_to_arena(start, round_up_to_page(len), &managed_start, &managed_len);
  switch (advice) {
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
    case MADV_FREE:
    case MADV_REMOVE:
      // Private anonymous memory reads as zero after these; a shared mapping would keep
      // its contents, so the pages are freed instead.
      arena_zero(managed_start, managed_len);
      return 0;
    case MADV_SEQUENTIAL:
    case MADV_RANDOM:
    case MADV_WILLNEED:
    case MADV_COLD:
    case MADV_PAGEOUT: {
      // Advice: a dropped hint (full ring) is no error, as for the kernel's madvise.
      static constexpr struct {
        int advice, hint;
      } kHints[] = {{MADV_SEQUENTIAL, EXTMEM_HINT_SEQUENTIAL},
                    {MADV_RANDOM, EXTMEM_HINT_RANDOM},
                    {MADV_WILLNEED, EXTMEM_HINT_WILLNEED},
                    {MADV_COLD, EXTMEM_HINT_COLD},
                    {MADV_PAGEOUT, EXTMEM_HINT_PAGEOUT}};
      for (const auto& h : kHints) {
        if (h.advice == advice) advise_range(addr, len, h.hint);
      }
      return 0;
    }
    case MADV_NORMAL:
      advise_range(addr, len, EXTMEM_HINT_NORMAL);
      return 0;
    case MADV_DOFORK:
    case MADV_DONTFORK:
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK:
    case MADV_HUGEPAGE:
    case MADV_NOHUGEPAGE:
      // The arena is never inherited and is managed in 4 KiB pages.
      return 0;
    default:
      return kernel::raw_madvise(addr, len, advice);
  }
}

EXTMEM_EXPORT int extmem_is_managed(const void* addr) noexcept {
  return mode() == Mode::kManaged && in_arena(addr) ? 1 : 0;
}

EXTMEM_EXPORT int extmem_advise(void* addr, size_t len, int hint) noexcept {
  const int error = advise_range(addr, len, hint);
  if (error == 0) return 0;
  errno = error;
  return -1;
}

EXTMEM_EXPORT int extmem_set_policy(const char* name) noexcept {
  int error = ENODEV;
  if (name == nullptr) {
    error = EINVAL;
  } else if (mode() == Mode::kManaged) {
    error = request_set_policy(name);
  }
  if (error == 0) return 0;
  errno = error;
  return -1;
}

EXTMEM_EXPORT int extmem_get_stats(struct extmem_stats* stats) noexcept {
  if (stats == nullptr || stats->size < 2 * sizeof(uint32_t)) {
    errno = EINVAL;
    return -1;
  }
  if (mode() != Mode::kManaged) {
    errno = ENODEV;
    return -1;
  }
  extmem::wire::Stats got;
  if (const int error = request_stats(&got); error != 0) {
    errno = error;
    return -1;
  }
  extmem_stats full = {};
  full.limit_bytes = got.limit_bytes;
  full.resident_bytes = got.resident_bytes;
  full.swapped_bytes = got.swapped_bytes;
  full.first_touch_faults = got.first_touch_faults;
  full.major_faults = got.major_faults;
  full.minor_faults = got.minor_faults;
  full.evictions = got.evictions;
  full.prefetched_pages = got.prefetched_pages;
  full.hints_received = got.hints_received;
  full.hints_applied = got.hints_applied;
  full.hints_invalid = got.hints_invalid;
  full.hints_ring_full = got.hints_ring_full;
  static_assert(sizeof(full.policy) == sizeof(got.policy));
  memcpy(full.policy, got.policy, sizeof(full.policy));
  full.prefetch_markers = got.prefetch_markers;
  full.prefetch_markers_used = got.prefetch_markers_used;
  // A caller built against an older header gets the fields it knows.
  const size_t n = stats->size < sizeof(full) ? stats->size : sizeof(full);
  full.size = static_cast<uint32_t>(n);
  memcpy(stats, &full, n);
  return 0;
}

EXTMEM_EXPORT int extmem_status(void) noexcept {
  switch (mode()) {
    case Mode::kManaged:
      return EXTMEM_STATUS_MANAGED;
    case Mode::kForkedChild:
      return EXTMEM_STATUS_FORKED_CHILD;
    default:
      return EXTMEM_STATUS_UNMANAGED;
  }
}

}  // extern "C"
