/* extmem.h: the public interface of libextmem.so, the extmem LD_PRELOAD shim.
 * Programs need not use it: any program run with LD_PRELOAD=libextmem.so is managed.
 * Link with -lextmem, or look the symbols up with dlsym to run without the shim. */
#ifndef EXTMEM_H
#define EXTMEM_H

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

#ifdef __cplusplus
}
#endif

#endif /* EXTMEM_H */
