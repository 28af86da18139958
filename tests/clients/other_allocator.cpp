// A library that defines malloc_usable_size, as an application's own allocator does
// (redis links jemalloc). Linked before libc, it is what dlsym(RTLD_NEXT) finds from the
// shim; it aborts when asked about a pointer, because the pointers the shim hands it come
// from glibc and another allocator's answer would be wrong (jemalloc's crashes).
#include <cstddef>
#include <cstdio>
#include <cstdlib>

extern "C" size_t malloc_usable_size(void*) noexcept {
  fputs("other_allocator: malloc_usable_size called on a pointer it never allocated\n", stderr);
  abort();
}
