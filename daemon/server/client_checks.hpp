// Checks on what a connecting client hands over. The daemon is privileged: it acts on a
// client's descriptors only after proving they are what the client claims.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/options.hpp"
#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/result.hpp"
#include "extmem/kernel/uffd.hpp"
#include "extmem/kernel/unix_socket.hpp"

namespace extmem::daemon {

// Who may become a client: security.allowed_users and allowed_groups. SIGHUP replaces the
// lists while handshakes read them, so they are swapped whole under a lock and each check
// reads one version.
class ClientAccess {
 public:
  explicit ClientAccess(const Options& options) { update(options); }
  void update(const Options& options);
  // Root always; everyone while both lists are empty; otherwise a listed uid, or a listed
  // group as the peer's primary group or one of the supplementary groups of its process
  // (read from /proc, so the caller must check afterwards that peer.pid has not exited).
  // EPERM, with a message naming the uid and the keys, for anyone else.
  Result<void> check(const kernel::PeerCredentials& peer) const;

 private:
  struct Lists {
    std::vector<uid_t> users;
    std::vector<gid_t> groups;
  };
  mutable std::mutex mu_;
  std::shared_ptr<const Lists> lists_;
};

// The supplementary groups of process `pid` (the Groups: line of /proc/PID/status).
Result<std::vector<gid_t>> supplementary_groups(pid_t pid);

// The largest arena a client may register.
inline constexpr uint64_t kMaxArenaSize = 64ULL << 40;

// The arena's bounds are page aligned, non-empty, below kMaxArenaSize and in user space.
Result<void> check_arena_bounds(uint64_t base, uint64_t size);

// Process `pid` maps `memfd` shared and writable, from offset 0, over exactly
// [base, base+size) (as one or more adjacent VMAs), per /proc/PID/maps.
// The process's mappings of the file (dev, ino), in address order, from /proc/PID/maps.
struct FileMapping {
  uint64_t start, end, offset;
  bool shared_writable;
};
Result<std::vector<FileMapping>> file_mappings(pid_t pid, dev_t dev, ino_t ino);

Result<void> check_arena_mapping(pid_t pid, const kernel::Memfd& memfd, uint64_t base,
                                 uint64_t size);

// Proves the userfaultfd belongs to the address space that maps the memfd at `base`: a
// nonce copied into the arena's first page through the userfaultfd must appear in the
// memfd. Leaves that page resident (the shim never hands it out).
Result<void> check_uffd_controls_arena(kernel::Userfaultfd& uffd, kernel::Memfd& memfd,
                                       uint64_t base);

// Executable name of pid (basename of /proc/PID/exe, else comm).
std::string executable_name(pid_t pid);

}  // namespace extmem::daemon
