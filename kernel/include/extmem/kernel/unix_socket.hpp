// Unix SOCK_SEQPACKET sockets: message boundaries are kept, so one recvmsg reads one whole
// protocol message with the descriptors it carries (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>

#include "extmem/kernel/fd.hpp"
#include "extmem/kernel/result.hpp"

namespace extmem::kernel {

inline constexpr size_t kMaxPassedFds = 4;

struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

// A listening socket at `path` (an existing socket file there is replaced).
Result<UniqueFd> listen_unix(const char* path, unsigned mode, int backlog) noexcept;
// Connects to `path`; fails with the connect errno.
Result<UniqueFd> connect_unix(const char* path) noexcept;
// Creates the directory holding `path` (one level, e.g. /run/extmem) when it is missing,
// so a daemon started by hand needs no preparation; an existing one is left as it is.
Result<void> make_socket_directory(const char* path, unsigned mode) noexcept;
Result<PeerCredentials> peer_credentials(int fd) noexcept;
// Sets receive and send timeouts so a stalled peer cannot block us forever.
Result<void> set_io_timeout(int fd, int millis) noexcept;

// Sends all of `data` with `fds` attached to the first byte.
Result<void> send_message(int fd, std::span<const std::byte> data,
                          std::span<const int> fds) noexcept;

struct Received {
  size_t bytes = 0;             // 0 means the peer closed the connection
  size_t fd_count = 0;          // descriptors stored in the caller's array
  bool data_truncated = false;  // the message was longer than the buffer
  bool fds_truncated = false;   // the peer sent more descriptors than fit
};
// Receives one message and the descriptors attached to it (close-on-exec, owned by the
// caller's array). Times out with EAGAIN when a timeout is set.
Result<Received> receive_message(int fd, std::span<std::byte> buf,
                                 std::span<UniqueFd> fds) noexcept;

}  // namespace extmem::kernel
