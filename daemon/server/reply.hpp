// The daemon's answer to a client's message on its Unix socket.
#pragma once

#include <cstdint>
#include <string>

namespace extmem::daemon {

// Sends `status` (0 or an errno) and `message`, with the flags, value and descriptor some
// replies carry. The client waits for its reply with a timeout, and one it does not read
// is its loss, so a failure to send is only logged (at debug).
void send_reply(int fd, int status, const std::string& message, uint32_t flags = 0,
                uint64_t value = 0, int passed_fd = -1);

}  // namespace extmem::daemon
