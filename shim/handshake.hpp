// The shim's side of the handshake: connect to extmemd, obtain a userfaultfd, create
// and map the memfd arena, and hand both descriptors to the daemon.
#pragma once

#include <cstddef>
#include <cstdint>

#include "extmem/wire.hpp"

namespace extmem::shim {

struct ShimConfig {
  const char* socket_path = "/run/extmem/extmemd.sock";
  uint64_t min_alloc = 128 * 1024;
  uint64_t arena_size = 256ULL << 30;
  uint64_t dram_limit = 0;  // 0: the daemon's default
  char policy[wire::kMaxPolicyName + 1] = {};
  bool required = false;
};

// Reads EXTMEM_* from the environment. On a bad value writes a message naming the
// variable into `error` and returns false.
bool load_config(ShimConfig* config, char* error, size_t error_len) noexcept;

struct Session {
  int socket_fd = -1;  // kept open: the daemon sees the client leave when it closes
  int uffd = -1;       // kept open: without it a daemon crash would zero evicted pages
  int memfd = -1;
  uintptr_t arena_base = 0;
  uint64_t arena_size = 0;
  uint64_t dram_limit = 0;      // as granted by the daemon
  bool takes_requests = false;  // the daemon serves requests after registration
};

// Connects and registers. On failure writes the reason into `error` (everything
// created so far is released) and returns false.
bool connect_to_daemon(const ShimConfig& config, Session* session, char* error,
                       size_t error_len) noexcept;

}  // namespace extmem::shim
