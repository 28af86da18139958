#include "extmem/kernel/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace extmem::kernel {

namespace {

Result<sockaddr_un> make_address(const char* path) noexcept {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(addr.sun_path)) {
    return Error::make(ENAMETOOLONG, "socket path %s", path);
  }
  strcpy(addr.sun_path, path);
  return addr;
}

}  // namespace

Result<UniqueFd> listen_unix(const char* path, unsigned mode, int backlog) noexcept {
  auto addr = make_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::from_errno("socket(AF_UNIX)");
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error::make(EEXIST, "%s exists and is not a socket", path);
    unlink(path);
  }
  // Bound under a temporary name and renamed once its mode is set, so nobody can
  // connect while the socket still has the umask's permissions.
  char temp_path[sizeof(addr->sun_path)];
  if (snprintf(temp_path, sizeof(temp_path), "%s.%d", path, getpid()) >=
      static_cast<int>(sizeof(temp_path))) {
    return Error::make(ENAMETOOLONG, "socket path %s", path);
  }
  auto temp_addr = make_address(temp_path);
  if (!temp_addr) return temp_addr.error();
  unlink(temp_path);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&*temp_addr), sizeof(sockaddr_un)) != 0) {
    return Error::from_errno("bind(%s)", temp_path);
  }
  if (chmod(temp_path, mode) != 0 || rename(temp_path, path) != 0) {
    Error error = Error::from_errno("chmod/rename(%s)", temp_path);
    unlink(temp_path);
    return error;
  }
  if (listen(fd.get(), backlog) != 0) return Error::from_errno("listen(%s)", path);
  return fd;
}

Result<void> make_socket_directory(const char* path, unsigned mode) noexcept {
  char dir[sizeof(sockaddr_un::sun_path)];
  if (snprintf(dir, sizeof(dir), "%s", path) >= static_cast<int>(sizeof(dir))) {
    return Error::make(ENAMETOOLONG, "socket path %s", path);
  }
  char* slash = strrchr(dir, '/');
  if (slash == nullptr || slash == dir) return {};
  *slash = '\0';
  if (mkdir(dir, mode) != 0 && errno != EEXIST) return Error::from_errno("mkdir %s", dir);
  return {};
}

Result<UniqueFd> connect_unix(const char* path) noexcept {
  auto addr = make_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket(AF_UNIX)");
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof(sockaddr_un)) != 0) {
    return Error::from_errno("connect(%s)", path);
  }
  return fd;
}

Result<PeerCredentials> peer_credentials(int fd) noexcept {
  ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::from_errno("SO_PEERCRED");
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Result<void> set_io_timeout(int fd, int millis) noexcept {
  timeval tv = {millis / 1000, (millis % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return Error::from_errno("socket timeouts");
  }
  return {};
}

Result<void> send_message(int fd, std::span<const std::byte> data,
                          std::span<const int> fds) noexcept {
  if (fds.size() > kMaxPassedFds) return Error::make(EINVAL, "too many descriptors to pass");
  iovec iov = {const_cast<std::byte*>(data.data()), data.size()};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::from_errno("sendmsg");
  if (static_cast<size_t>(n) != data.size()) return Error::make(EMSGSIZE, "short sendmsg");
  return {};
}

Result<Received> receive_message(int fd, std::span<std::byte> buf,
                                 std::span<UniqueFd> fds) noexcept {
  iovec iov = {buf.data(), buf.size()};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::from_errno("recvmsg");

  Received received;
  received.bytes = static_cast<size_t>(n);
  received.data_truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  received.fds_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int passed;
      memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (received.fd_count < fds.size()) {
        fds[received.fd_count++].reset(passed);
      } else {
        close(passed);
        received.fds_truncated = true;
      }
    }
  }
  return received;
}

}  // namespace extmem::kernel
