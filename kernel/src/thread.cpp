#include "extmem/kernel/thread.hpp"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>

namespace extmem::kernel {

void name_thread(const char* name) noexcept {
  char cut[16] = {};
  strncpy(cut, name, sizeof(cut) - 1);
  pthread_setname_np(pthread_self(), cut);
}

Result<void> set_thread_nice(int nice) noexcept {
  // On Linux PRIO_PROCESS with a thread id sets that thread alone.
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) != 0) {
    return Error::from_errno("setpriority(thread %d, nice %d)", gettid(), nice);
  }
  return {};
}

}  // namespace extmem::kernel
