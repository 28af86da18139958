#include "server/reply.hpp"

#include <span>

#include <spdlog/spdlog.h>

#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"

namespace extmem::daemon {

void send_reply(int fd, int status, const std::string& message, uint32_t flags, uint64_t value,
                int passed_fd) {
  wire::Reply reply;
  reply.status = status;
  reply.flags = flags;
  reply.value = value;
  wire::copy_text(reply.message, sizeof(reply.message), message.c_str());
  std::byte frame[wire::kMaxFrame];
  const size_t len = wire::encode(reply, frame);
  int fds[1] = {passed_fd};
  auto sent = kernel::send_message(
      fd, {frame, len}, passed_fd >= 0 ? std::span<const int>(fds) : std::span<const int>());
  if (!sent) spdlog::debug("reply on socket {}: {}", fd, sent.error().message());
}

}  // namespace extmem::daemon
