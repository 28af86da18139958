// Linked with another allocator's malloc_usable_size (other_allocator.cpp) before libc:
// under the shim, malloc_usable_size and realloc of small (libc) blocks must use glibc's
// answer. Prints "usable ok" and exits 0 when every size is right.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

int main() {
  for (size_t size : {size_t{1}, size_t{100}, size_t{4000}}) {
    auto* p = static_cast<unsigned char*>(malloc(size));
    if (p == nullptr) return 1;
    memset(p, 0xab, size);
    size_t usable = malloc_usable_size(p);
    if (usable < size) {
      fprintf(stderr, "malloc_usable_size(%zu-byte block) = %zu\n", size, usable);
      return 1;
    }
    // realloc into a managed block copies the old block's usable size.
    auto* q = static_cast<unsigned char*>(realloc(p, 1 << 20));
    if (q == nullptr) return 1;
    for (size_t i = 0; i < size; ++i) {
      if (q[i] != 0xab) {
        fprintf(stderr, "realloc lost byte %zu of a %zu-byte block\n", i, size);
        return 1;
      }
    }
    free(q);
  }
  puts("usable ok");
  return 0;
}
