// The shim's process-wide state: whether this process is managed, and the arena that
// serves its large allocations.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "extmem/wire.hpp"
#include "handshake.hpp"

namespace extmem::shim {

enum class Mode {
  kStarting,     // before the constructor finished: everything goes to libc
  kManaged,      // the daemon serves the arena
  kUnmanaged,    // no daemon: everything goes to libc
  kForkedChild,  // a fork() child: the arena is not mapped here (MADV_DONTFORK)
};

extern std::atomic<Mode> g_mode;
extern ShimConfig g_config;

inline Mode mode() noexcept {
  return g_mode.load(std::memory_order_acquire);
}

// Starts the shim (the library constructor calls this once).
void initialize() noexcept;

// True if p lies in the arena (in a managed process or a forked child of one).
bool in_arena(const void* p) noexcept;
bool range_overlaps_arena(const void* p, size_t len) noexcept;
// The part of [p, p+len) inside the arena.
void clip_to_arena(uintptr_t p, size_t len, uintptr_t* start, size_t* clipped_len) noexcept;

// Arena operations. Each returns nullptr/false when the arena cannot serve the request,
// so the caller falls back to libc.
void* arena_allocate(size_t len, size_t align) noexcept;
size_t arena_block_size(const void* p) noexcept;
void arena_free(void* p) noexcept;
// munmap semantics for a page-aligned range inside the arena.
bool arena_release(uintptr_t start, size_t len) noexcept;
// Resizes the block at p in place; false if the neighbouring pages are taken.
bool arena_resize_in_place(void* p, size_t new_len) noexcept;
// Gives pages back to the daemon: they read as zero afterwards (private-anonymous
// semantics of MADV_DONTNEED).
void arena_zero(uintptr_t start, size_t len) noexcept;

// Queues a hint for the daemon on [start, start+len) (inside the arena). Returns 0 or an
// errno value (EAGAIN: the ring is full and the hint was dropped; EOPNOTSUPP: no ring).
int send_hint(uintptr_t start, size_t len, uint32_t hint) noexcept;
// Requests on the daemon socket; each returns 0 or an errno value.
int request_set_policy(const char* name) noexcept;
int request_stats(wire::Stats* out) noexcept;

// Writes "extmem: <message>" to stderr without allocating.
[[gnu::format(printf, 1, 2)]] void warn(const char* fmt, ...) noexcept;

inline constexpr size_t kPageSize = 4096;
inline size_t round_up_to_page(size_t n) noexcept {
  return (n + kPageSize - 1) & ~(kPageSize - 1);
}

}  // namespace extmem::shim
