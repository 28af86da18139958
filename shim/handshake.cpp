#include "handshake.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/raw_mm.hpp"
#include "extmem/kernel/uffd.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/units.hpp"

namespace extmem::shim {

namespace {

constexpr int kHandshakeTimeoutMs = 5000;
constexpr uint64_t kPageSize = 4096;

bool read_size_env(const char* name, uint64_t* out, char* error, size_t error_len) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return true;
  if (!parse_size(text, out)) {
    snprintf(error, error_len, "%s=%s is not a size (examples: 4096, 128K, 512M, 8G)", name, text);
    return false;
  }
  return true;
}

bool fail(char* error, size_t error_len, const Error& e) {
  snprintf(error, error_len, "%s: %s", e.context(), strerrordesc_np(e.code()));
  return false;
}

// Sends one message and receives the daemon's reply with up to one descriptor.
bool exchange(int fd, std::span<const std::byte> frame, std::span<const int> fds,
              wire::Reply* reply, kernel::UniqueFd* passed, char* error, size_t error_len) {
  if (auto sent = kernel::send_message(fd, frame, fds); !sent) {
    return fail(error, error_len, sent.error());
  }
  std::byte buf[wire::kMaxFrame];
  kernel::UniqueFd received_fds[1];
  auto got = kernel::receive_message(fd, buf, received_fds);
  if (!got) return fail(error, error_len, got.error());
  if (got->bytes == 0) {
    snprintf(error, error_len, "extmemd closed the connection during the handshake");
    return false;
  }
  wire::FrameHeader header;
  wire::DecodeError e = got->data_truncated ? wire::DecodeError::kOversized
                                            : wire::decode_header(buf, got->bytes, &header);
  if (e == wire::DecodeError::kOk && header.type != wire::MsgType::kReply) {
    e = wire::DecodeError::kUnknownType;
  }
  if (e == wire::DecodeError::kOk) e = wire::decode(buf + wire::kHeaderSize, header.length, reply);
  if (e != wire::DecodeError::kOk) {
    snprintf(error, error_len, "bad reply from extmemd: %s", wire::describe(e));
    return false;
  }
  if (reply->status != 0) {
    snprintf(error, error_len, "extmemd refused: %s (%s)", reply->message,
             strerrordesc_np(reply->status) ? strerrordesc_np(reply->status) : "?");
    return false;
  }
  if (passed != nullptr) *passed = std::move(received_fds[0]);
  return true;
}

}  // namespace

bool load_config(ShimConfig* config, char* error, size_t error_len) noexcept {
  if (const char* path = getenv("EXTMEM_SOCKET"); path != nullptr && *path != '\0') {
    config->socket_path = path;
  }
  if (const char* required = getenv("EXTMEM_REQUIRED"); required != nullptr) {
    config->required =
        strcmp(required, "1") == 0 || strcmp(required, "yes") == 0 || strcmp(required, "true") == 0;
  }
  if (!read_size_env("EXTMEM_MIN_ALLOC", &config->min_alloc, error, error_len)) return false;
  if (!read_size_env("EXTMEM_ARENA_SIZE", &config->arena_size, error, error_len)) return false;
  // DRAMSIZE (bytes) is what ExtMem used; EXTMEM_DRAM takes precedence.
  if (!read_size_env("DRAMSIZE", &config->dram_limit, error, error_len)) return false;
  if (!read_size_env("EXTMEM_DRAM", &config->dram_limit, error, error_len)) return false;
  if (config->min_alloc == 0) config->min_alloc = 1;
  config->arena_size = (config->arena_size + kPageSize - 1) & ~(kPageSize - 1);
  if (config->arena_size < 2 * kPageSize) {
    snprintf(error, error_len, "EXTMEM_ARENA_SIZE must be at least 8K");
    return false;
  }
  if (const char* policy = getenv("EXTMEM_POLICY"); policy != nullptr) {
    if (strlen(policy) > wire::kMaxPolicyName) {
      snprintf(error, error_len, "EXTMEM_POLICY is longer than %zu characters",
               wire::kMaxPolicyName);
      return false;
    }
    wire::copy_text(config->policy, sizeof(config->policy), policy);
  }
  return true;
}

bool connect_to_daemon(const ShimConfig& config, Session* session, char* error,
                       size_t error_len) noexcept {
  auto socket = kernel::connect_unix(config.socket_path);
  if (!socket) {
    snprintf(error, error_len, "cannot reach extmemd at %s (%s)", config.socket_path,
             strerrordesc_np(socket.error().code()));
    return false;
  }
  if (auto t = kernel::set_io_timeout(socket->get(), kHandshakeTimeoutMs); !t) {
    return fail(error, error_len, t.error());
  }

  // A full userfaultfd (one that also catches faults taken inside the kernel, e.g. read(2)
  // into an evicted buffer) needs privilege; otherwise the daemon lends /dev/userfaultfd.
  constexpr int kUffdFlags = O_CLOEXEC | O_NONBLOCK;
  auto uffd = kernel::Userfaultfd::create(kUffdFlags);
  wire::Hello hello;
  hello.dram_limit = config.dram_limit;
  hello.flags = (uffd ? 0 : wire::kHelloWantsUffdDevice) | wire::kHelloReadsMarkerStats;
  memcpy(hello.policy, config.policy, sizeof(hello.policy));
  std::byte frame[wire::kMaxFrame];
  wire::Reply reply;
  kernel::UniqueFd device;
  if (!exchange(socket->get(), {frame, wire::encode(hello, frame)}, {}, &reply, &device, error,
                error_len)) {
    return false;
  }
  if (!uffd) {
    if (!(reply.flags & wire::kReplyCarriesUffdDevice) || !device) {
      snprintf(error, error_len, "cannot create a userfaultfd (%s) and extmemd lent no device",
               strerrordesc_np(uffd.error().code()));
      return false;
    }
    uffd = kernel::Userfaultfd::create_from_device(device.get(), kUffdFlags);
    if (!uffd) return fail(error, error_len, uffd.error());
  }
  device.reset();

  auto memfd = kernel::Memfd::create("extmem-arena", MFD_CLOEXEC);
  if (!memfd) return fail(error, error_len, memfd.error());
  if (auto t = memfd->truncate(config.arena_size); !t) return fail(error, error_len, t.error());
  void* base = kernel::raw_mmap(nullptr, config.arena_size, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_NORESERVE, memfd->fd(), 0);
  if (base == MAP_FAILED) {
    snprintf(error, error_len, "cannot map a %llu-byte arena (%s)",
             static_cast<unsigned long long>(config.arena_size), strerrordesc_np(errno));
    return false;
  }
  // A forked child must never see the shared arena: it would share (and could corrupt)
  // the parent's pages, and pages it touched would bypass the daemon.
  if (kernel::raw_madvise(base, config.arena_size, MADV_DONTFORK) != 0 ||
      // The arena is managed in 4 KiB pages.
      kernel::raw_madvise(base, config.arena_size, MADV_NOHUGEPAGE) != 0) {
    snprintf(error, error_len, "madvise on the arena failed (%s)", strerrordesc_np(errno));
    kernel::raw_munmap(base, config.arena_size);
    return false;
  }

  wire::Register reg;
  reg.arena_base = reinterpret_cast<uintptr_t>(base);
  reg.arena_size = config.arena_size;
  const int fds[2] = {uffd->fd(), memfd->fd()};
  if (!exchange(socket->get(), {frame, wire::encode(reg, frame)}, fds, &reply, nullptr, error,
                error_len)) {
    kernel::raw_munmap(base, config.arena_size);
    return false;
  }

  session->arena_base = reinterpret_cast<uintptr_t>(base);
  session->arena_size = config.arena_size;
  session->dram_limit = reply.value;
  session->takes_requests = (reply.flags & wire::kReplyTakesRequests) != 0;
  session->socket_fd = socket->release();
  session->uffd = uffd->release();
  session->memfd = memfd->release();
  return true;
}

}  // namespace extmem::shim
