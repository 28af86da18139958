// The calling thread's name and scheduling priority.
#pragma once

#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

// Names the calling thread as ps -L and top -H show it (cut to 15 characters).
void name_thread(const char* name) noexcept;
// Sets the calling thread's nice value (-20 to 19); lowering it needs CAP_SYS_NICE.
Result<void> set_thread_nice(int nice) noexcept;

}  // namespace extmem::kernel
