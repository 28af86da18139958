#include "extmem/kernel/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "extmem/kernel/fd.hpp"

namespace extmem::kernel {

namespace {

// The whole of `text` as a decimal number; nothing else (no sign, space or suffix).
template <class T>
std::optional<T> parse_decimal(const char* text) noexcept {
  T value{};
  const char* end = text + strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || ptr == text) return std::nullopt;
  return value;
}

}  // namespace

Result<bool> sd_notify(std::string_view state) noexcept {
  const char* target = getenv("NOTIFY_SOCKET");
  if (target == nullptr) return false;
  if (state.empty()) return Error::make(EINVAL, "sd_notify: empty state");

  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const size_t length = strlen(target);
  if (length < 2 || (target[0] != '/' && target[0] != '@')) {
    return Error::make(EAFNOSUPPORT, "NOTIFY_SOCKET=%s is neither a path nor '@'name", target);
  }
  if (length > sizeof(addr.sun_path)) {
    return Error::make(ENAMETOOLONG, "NOTIFY_SOCKET=%s", target);
  }
  memcpy(addr.sun_path, target, length);
  // An abstract name is the bytes after a leading NUL, exactly as long as given: the
  // address length, not a terminator, delimits it.
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  const auto addr_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);

  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket(AF_UNIX, SOCK_DGRAM)");
  ssize_t sent;
  do {
    sent = sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&addr), addr_length);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return Error::from_errno("sd_notify to %s", target);
  if (static_cast<size_t>(sent) != state.size()) {
    return Error::make(EMSGSIZE, "sd_notify to %s: short datagram", target);
  }
  return true;
}

std::optional<std::chrono::microseconds> sd_watchdog_interval() noexcept {
  const char* usec = getenv("WATCHDOG_USEC");
  if (usec == nullptr) return std::nullopt;
  // The variables are inherited by children; only the service's main process is watched.
  if (const char* pid = getenv("WATCHDOG_PID"); pid != nullptr) {
    auto watched = parse_decimal<pid_t>(pid);
    if (!watched || *watched != getpid()) return std::nullopt;
  }
  auto value = parse_decimal<uint64_t>(usec);
  if (!value || *value == 0 ||
      *value > static_cast<uint64_t>(std::numeric_limits<std::chrono::microseconds::rep>::max())) {
    return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(*value));
}

}  // namespace extmem::kernel
