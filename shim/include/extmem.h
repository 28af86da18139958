/* extmem.h: the public interface of libextmem.so, the extmem LD_PRELOAD shim.
 * Programs need not use it: any program run with LD_PRELOAD=libextmem.so is managed.
 * Link with -lextmem, or look the symbols up with dlsym to run without the shim. */
#ifndef EXTMEM_H
#define EXTMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define EXTMEM_NOEXCEPT noexcept
#else
#define EXTMEM_NOEXCEPT
#endif

#define EXTMEM_EXPORT __attribute__((visibility("default")))

enum {
  EXTMEM_STATUS_UNMANAGED = 0,    /* no daemon: memory is ordinary libc memory */
  EXTMEM_STATUS_MANAGED = 1,      /* large allocations are paged by extmemd */
  EXTMEM_STATUS_FORKED_CHILD = 2, /* a fork() child: the parent's managed memory is not mapped */
};

/* Whether this process is managed (one of EXTMEM_STATUS_*). */
EXTMEM_EXPORT int extmem_status(void) EXTMEM_NOEXCEPT;

/* 1 if addr lies in memory managed by extmemd, else 0. */
EXTMEM_EXPORT int extmem_is_managed(const void* addr) EXTMEM_NOEXCEPT;

/* Hints for extmem_advise (values are stable). See docs/HINTS.md. */
enum {
  EXTMEM_HINT_NORMAL = 0,     /* forget earlier hints on the range */
  EXTMEM_HINT_SEQUENTIAL = 1, /* read ahead as far as possible when it is read back */
  EXTMEM_HINT_RANDOM = 2,     /* no read-ahead: read back one page per fault */
  EXTMEM_HINT_WILLNEED = 3,   /* read the range's swapped pages back now, as room allows */
  EXTMEM_HINT_DONTNEED = 4,   /* free the pages: they read as zero afterwards */
  EXTMEM_HINT_COLD = 5,       /* evict these resident pages before any other */
  EXTMEM_HINT_HOT = 6,        /* keep resident; evicted only when nothing else can be */
  EXTMEM_HINT_PAGEOUT = 7,    /* COLD, and evict them now */
};

/* Advises extmemd about [addr, addr+len) (widened to whole pages; parts outside managed
 * memory are ignored). Returns 0 once the hint is queued (it is applied asynchronously,
 * within milliseconds), or -1 with errno:
 *   ENODEV  the process is not managed (no daemon, or a fork() child): nothing to advise
 *   EINVAL  unknown hint, len 0, or a range that wraps around
 *   ENOMEM  no part of the range is managed memory
 *   EAGAIN  the hint queue is full: the hint was dropped (and counted); hints are advice
 *   EOPNOTSUPP  extmemd takes no hints (an older version)
 * DONTNEED is applied at once, as madvise(MADV_DONTNEED) would be. */
EXTMEM_EXPORT int extmem_advise(void* addr, size_t len, int hint) EXTMEM_NOEXCEPT;

/* Switches this process's eviction policy (e.g. "clock", "fifo"; see extmemctl status).
 * Returns 0, or -1 with errno: ENODEV not managed; EINVAL unknown policy or a name
 * longer than 31 characters; EOPNOTSUPP an older extmemd; EIO/ETIMEDOUT the daemon did
 * not answer. */
EXTMEM_EXPORT int extmem_set_policy(const char* name) EXTMEM_NOEXCEPT;

/* This process's memory and counters, as extmemd sees them. Versioned by size: set
 * `size` to sizeof(struct extmem_stats); fields past the size are not written, and
 * fields a daemon does not know read as zero. */
struct extmem_stats {
  uint32_t size; /* in: sizeof(struct extmem_stats); out: bytes written */
  uint32_t reserved;
  uint64_t limit_bytes; /* what it may keep in memory now; 0: unlimited */
  uint64_t resident_bytes;
  uint64_t swapped_bytes;
  uint64_t first_touch_faults;
  uint64_t major_faults; /* reads from swap */
  uint64_t minor_faults;
  uint64_t evictions;
  uint64_t prefetched_pages; /* read back before they were touched (read-ahead, WILLNEED) */
  uint64_t hints_received;
  uint64_t hints_applied;
  uint64_t hints_invalid;   /* refused by the daemon: unknown hint or range */
  uint64_t hints_ring_full; /* dropped by this process: the queue was full */
  char policy[32];
  /* Read-ahead markers (one page per read-ahead run, left for the first touch to find):
   * placed, and touched by this process. Prefetch accuracy: used / placed. */
  uint64_t prefetch_markers;
  uint64_t prefetch_markers_used;
};

/* Fills *stats (stats->size must be set). Returns 0, or -1 with errno: ENODEV not
 * managed; EINVAL null or size below 8; EOPNOTSUPP an older extmemd; EIO/ETIMEDOUT the
 * daemon did not answer. */
EXTMEM_EXPORT int extmem_get_stats(struct extmem_stats* stats) EXTMEM_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* EXTMEM_H */
