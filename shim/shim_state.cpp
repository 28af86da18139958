#include "shim_state.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "arena_allocator.hpp"
#include "extmem/kernel/raw_mm.hpp"

namespace extmem::shim {

std::atomic<Mode> g_mode{Mode::kStarting};
ShimConfig g_config;

namespace {

Session g_session;
uintptr_t g_arena_base = 0;
uint64_t g_arena_size = 0;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
alignas(ArenaAllocator) unsigned char g_allocator_storage[sizeof(ArenaAllocator)];
ArenaAllocator* g_allocator = nullptr;

class Lock {
 public:
  Lock() { pthread_mutex_lock(&g_lock); }
  ~Lock() { pthread_mutex_unlock(&g_lock); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
};

void* map_metadata(size_t bytes) {
  void* p =
      kernel::raw_mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void zero_freed_range(void*, uintptr_t start, size_t len) {
  arena_zero(start, len);
}

void fork_prepare() {
  pthread_mutex_lock(&g_lock);
}
void fork_parent() {
  pthread_mutex_unlock(&g_lock);
}
void fork_child() {
  pthread_mutex_unlock(&g_lock);
  if (g_mode.load(std::memory_order_relaxed) != Mode::kManaged) return;
  // The child has no arena mapping (MADV_DONTFORK) and must not hold the parent's
  // session open: the daemon sees the parent leave when the parent's copies close.
  close(g_session.socket_fd);
  close(g_session.uffd);
  close(g_session.memfd);
  g_mode.store(Mode::kForkedChild, std::memory_order_release);
}

}  // namespace

void warn(const char* fmt, ...) noexcept {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "extmem: ");
  va_list args;
  va_start(args, fmt);
  int m = vsnprintf(buf + n, sizeof(buf) - static_cast<size_t>(n) - 1, fmt, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + static_cast<size_t>(m > 0 ? m : 0);
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  [[maybe_unused]] ssize_t w = write(STDERR_FILENO, buf, len);
}

namespace {

// One warning, then the application runs on libc memory (or exits if it must be managed).
void start_unmanaged(const char* reason) noexcept {
  if (g_config.required) {
    warn("%s; exiting (EXTMEM_REQUIRED is set)", reason);
    _exit(1);
  }
  warn("%s; running unmanaged", reason);
  g_mode.store(Mode::kUnmanaged, std::memory_order_release);
}

}  // namespace

void initialize() noexcept {
  char error[320];
  if (!load_config(&g_config, error, sizeof(error)) ||
      !connect_to_daemon(g_config, &g_session, error, sizeof(error))) {
    start_unmanaged(error);
    return;
  }
  g_arena_base = g_session.arena_base;
  g_arena_size = g_session.arena_size;
  // The first page is the daemon's handshake probe page; it is never handed out.
  g_allocator = new (g_allocator_storage)
      ArenaAllocator(g_arena_base, g_arena_size, map_metadata, kPageSize, kPageSize);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  g_mode.store(Mode::kManaged, std::memory_order_release);
}

bool in_arena(const void* p) noexcept {
  return reinterpret_cast<uintptr_t>(p) - g_arena_base < g_arena_size;
}

bool range_overlaps_arena(const void* p, size_t len) noexcept {
  uintptr_t start = reinterpret_cast<uintptr_t>(p);
  return g_arena_size != 0 && start < g_arena_base + g_arena_size && start + len > g_arena_base;
}

void clip_to_arena(uintptr_t p, size_t len, uintptr_t* start, size_t* clipped_len) noexcept {
  uintptr_t lo = p > g_arena_base ? p : g_arena_base;
  uintptr_t end = p + len;
  uintptr_t arena_end = g_arena_base + g_arena_size;
  uintptr_t hi = end < arena_end ? end : arena_end;
  *start = lo;
  *clipped_len = hi > lo ? hi - lo : 0;
}

void* arena_allocate(size_t len, size_t align) noexcept {
  if (mode() != Mode::kManaged || len == 0) return nullptr;
  uintptr_t p;
  {
    Lock lock;
    p = g_allocator->allocate(len, align);
  }
  if (p == 0) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) warn("arena full; further large allocations are unmanaged");
    return nullptr;
  }
  return reinterpret_cast<void*>(p);
}

size_t arena_block_size(const void* p) noexcept {
  Lock lock;
  return g_allocator->block_size(reinterpret_cast<uintptr_t>(p));
}

void arena_free(void* p) noexcept {
  if (mode() == Mode::kForkedChild) return;  // not mapped here; the parent owns it
  uintptr_t start = reinterpret_cast<uintptr_t>(p);
  size_t len = arena_block_size(p);
  if (len == 0) {
    warn("free(%p): not an allocated block; ignored", p);
    return;
  }
  // The block is still ours, so its pages are zeroed before anyone else can get them.
  arena_zero(start, len);
  Lock lock;
  g_allocator->release(start, len, nullptr, nullptr);
}

bool arena_release(uintptr_t start, size_t len) noexcept {
  if (mode() == Mode::kForkedChild) return true;
  Lock lock;
  // Freed pages are zeroed under the lock: another thread may be handed them next.
  return g_allocator->release(start, len, zero_freed_range, nullptr);
}

bool arena_resize_in_place(void* p, size_t new_len) noexcept {
  if (mode() != Mode::kManaged) return false;
  Lock lock;
  return g_allocator->resize_in_place(reinterpret_cast<uintptr_t>(p), new_len, zero_freed_range,
                                      nullptr);
}

void arena_zero(uintptr_t start, size_t len) noexcept {
  if (len == 0) return;
  // MADV_REMOVE frees the memfd pages, so the next touch faults to the daemon as fresh
  // memory, and the daemon learns of it from the REMOVE event.
  if (kernel::raw_madvise(reinterpret_cast<void*>(start), len, MADV_REMOVE) != 0) {
    warn("MADV_REMOVE %#lx+%#zx failed (%s); zeroing by hand", static_cast<unsigned long>(start),
         len, strerrordesc_np(errno));
    memset(reinterpret_cast<void*>(start), 0, len);
  }
}

}  // namespace extmem::shim
