#include "server/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cinttypes>

#include <spdlog/spdlog.h>

#include "extmem/kernel/pidfd.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/units.hpp"
#include "extmem/wire.hpp"
#include "recovery/recovery.hpp"
#include "server/client_checks.hpp"
#include "server/reply.hpp"

namespace extmem::daemon {

namespace {

constexpr int kHandshakeTimeoutMs = 5000;
constexpr int kMaxHandshakesInFlight = 32;
// Features the daemon asks for on every client's userfaultfd. THREAD_ID: swap-in
// read-ahead follows each faulting thread on its own.
constexpr uint64_t kUffdFeatures = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
                                   UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMOVE |
                                   UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP |
                                   UFFD_FEATURE_THREAD_ID;
// POISON (Linux 6.6): a page that cannot be read back from swap raises SIGBUS instead of
// its faults waiting for the device to recover.
constexpr uint64_t kOptionalUffdFeatures = kernel::kFeaturePoison;
// MISSING: first touch and swap-in; WP: eviction; MINOR: access signals after a reset.
constexpr uint64_t kRegisterModes =
    UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR;

// Whether the peer closed the connection (or shut it down for writing).
bool peer_hung_up(int fd) {
  pollfd p = {fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
}

// Receives one message of type `expected` with exactly `fd_count` descriptors.
Result<size_t> receive(int fd, wire::MsgType expected, std::byte* frame,
                       std::span<kernel::UniqueFd> fds, size_t fd_count) {
  auto got = kernel::receive_message(fd, {frame, wire::kMaxFrame}, fds);
  if (!got) {
    if (got.error().code() == EAGAIN) return Error::make(ETIMEDOUT, "handshake timed out");
    return got.error();
  }
  // recvmsg returns 0 at the end of the connection and for an empty message alike; the
  // latter is reported as what it is (truncated) below.
  if (got->bytes == 0 && peer_hung_up(fd)) {
    return Error::make(ECONNRESET, "client closed the connection");
  }
  if (got->data_truncated)
    return Error::make(EMSGSIZE, "%s", wire::describe(wire::DecodeError::kOversized));
  wire::FrameHeader header;
  wire::DecodeError e = wire::decode_header(frame, got->bytes, &header);
  if (e == wire::DecodeError::kBadVersion) {
    return Error::make(EPROTONOSUPPORT, "protocol version %u is not supported (extmemd speaks %u)",
                       header.version, wire::kVersion);
  }
  if (e != wire::DecodeError::kOk) return Error::make(EPROTO, "%s", wire::describe(e));
  if (header.type != expected)
    return Error::make(EPROTO, "unexpected message type %u", static_cast<unsigned>(header.type));
  if (got->fds_truncated || got->fd_count != fd_count) {
    return Error::make(EBADMSG, "expected %zu descriptor(s), got %s%zu", fd_count,
                       got->fds_truncated ? "more than " : "", got->fd_count);
  }
  return static_cast<size_t>(header.length);
}

}  // namespace

Server::Server(const Options& options, const ClientAccess& access, ClientRegistry& registry,
               Governor& governor, FaultLoop& fault_loop, SwapDevice* swap,
               uint64_t kernel_uffd_features)
    : options_(options),
      access_(access),
      registry_(registry),
      governor_(governor),
      fault_loop_(fault_loop),
      swap_(swap),
      uffd_features_(kUffdFeatures | (kernel_uffd_features & kOptionalUffdFeatures)) {}

Server::~Server() {
  stop();
}

Result<void> Server::start(int inherited_fd) {
  if (inherited_fd >= 0) {
    listen_fd_.reset(inherited_fd);
    int flags = fcntl(inherited_fd, F_GETFL);
    fcntl(inherited_fd, F_SETFL, flags | O_NONBLOCK);
  } else {
    auto fd = kernel::listen_unix(options_.socket_path.c_str(), options_.socket_mode, 128);
    if (!fd) return fd.error();
    listen_fd_ = std::move(*fd);
    owns_socket_path_ = true;
  }
  stop_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_event_) return Error::from_errno("eventfd");
  acceptor_ = std::thread([this] { accept_loop(); });
  return {};
}

void Server::stop() {
  if (!acceptor_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(stop_event_.get(), &one, sizeof(one));
  acceptor_.join();
  listen_fd_.reset();
  if (owns_socket_path_) unlink(options_.socket_path.c_str());
  // Handshakes still running finish (or time out) on their own threads.
  while (handshakes_in_flight_.load() > 0) usleep(10000);
}

void Server::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("poll(client socket): {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    kernel::UniqueFd connection(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("accept: {}", strerror(errno));
      }
      continue;
    }
    if (handshakes_in_flight_.fetch_add(1) >= kMaxHandshakesInFlight) {
      handshakes_in_flight_.fetch_sub(1);
      send_reply(connection.get(), EBUSY, "too many clients connecting at once; retry");
      continue;
    }
    std::thread([this, c = std::move(connection)]() mutable {
      handshake(std::move(c));
      handshakes_in_flight_.fetch_sub(1);
    }).detach();
  }
}

void Server::handshake(kernel::UniqueFd connection) {
  auto client = register_client(connection.get(), connection);
  if (!client) {
    auto creds = kernel::peer_credentials(connection.get());
    spdlog::warn("rejected client pid {}: {}", creds ? creds->pid : -1, client.error().message());
    send_reply(connection.get(), client.error().code(), client.error().message());
  }
}

Result<std::shared_ptr<Client>> Server::register_client(int fd, kernel::UniqueFd& owned) {
  if (auto t = kernel::set_io_timeout(fd, kHandshakeTimeoutMs); !t) return t.error();
  auto creds = kernel::peer_credentials(fd);
  if (!creds) return creds.error();
  auto pidfd = kernel::Pidfd::of_socket_peer(fd, creds->pid);
  if (!pidfd) return pidfd.error();

  std::byte frame[wire::kMaxFrame];
  kernel::UniqueFd fds[kernel::kMaxPassedFds];
  auto len = receive(fd, wire::MsgType::kHello, frame, fds, 0);
  if (!len) return len.error();
  // Before anything is lent or read on the peer's behalf, but after its hello: closing with
  // the hello unread would reset the connection, and the client would never see why. The
  // check reads /proc/PID, so the peer must still be alive after it, or its pid might name
  // another process by now.
  if (auto allowed = access_.check(*creds); !allowed) return allowed.error();
  if (pidfd->exited()) return Error::make(ECONNRESET, "client exited during the handshake");
  wire::Hello hello;
  if (auto e = wire::decode(frame + wire::kHeaderSize, *len, &hello); e != wire::DecodeError::kOk) {
    return Error::make(EPROTO, "hello: %s", wire::describe(e));
  }

  if (hello.dram_limit != 0 && hello.dram_limit < kMinLimitBytes) {
    return Error::make(EINVAL, "DRAM limit of %" PRIu64 " bytes is below the minimum of 1M",
                       hello.dram_limit);
  }
  const std::string exe = executable_name(creds->pid);
  Governor::Assignment assigned =
      governor_.assign({creds->pid, creds->uid, creds->gid, exe}, hello.dram_limit, hello.policy);
  std::unique_ptr<Policy> policy = make_policy(assigned.policy);
  if (!policy) {
    return Error::make(EINVAL, "unknown policy '%s' (known: %s)", assigned.policy.c_str(),
                       known_policy_list().c_str());
  }

  kernel::UniqueFd device;
  uint32_t reply_flags = 0;
  if (hello.flags & wire::kHelloWantsUffdDevice) {
    if (!options_.lend_uffd_device) {
      return Error::make(EPERM,
                         "uid %u cannot create a full userfaultfd (vm.unprivileged_userfaultfd=0) "
                         "and this daemon does not lend /dev/userfaultfd "
                         "(daemon.lend_uffd_device, --lend-uffd)",
                         creds->uid);
    }
    device.reset(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
    if (!device) return Error::from_errno("open /dev/userfaultfd");
    reply_flags |= wire::kReplyCarriesUffdDevice;
  }
  send_reply(fd, 0, "ok", reply_flags, 0, device.get());
  device.reset();

  len = receive(fd, wire::MsgType::kRegister, frame, fds, 2);
  if (!len) return len.error();
  wire::Register reg;
  if (auto e = wire::decode(frame + wire::kHeaderSize, *len, &reg); e != wire::DecodeError::kOk) {
    return Error::make(EPROTO, "register: %s", wire::describe(e));
  }
  if (auto b = check_arena_bounds(reg.arena_base, reg.arena_size); !b) return b.error();
  auto uffd = kernel::Userfaultfd::adopt(std::move(fds[0]));
  if (!uffd) return uffd.error();
  auto memfd = kernel::Memfd::adopt(std::move(fds[1]));
  if (!memfd) return memfd.error();
  if (auto m = check_arena_mapping(creds->pid, *memfd, reg.arena_base, reg.arena_size); !m) {
    return m.error();
  }
  auto features = uffd->api(uffd_features_);
  if (!features) {
    return Error::make(features.error().code(),
                       "UFFDIO_API failed (a userfaultfd must be handed over uninitialized)");
  }
  auto ioctls = uffd->register_range(reg.arena_base, reg.arena_size, kRegisterModes);
  if (!ioctls) {
    // The peer maps the arena (checked above), so the userfaultfd is not the peer's own
    // (its process does not map the arena), or the arena is registered already.
    return Error::make(ioctls.error().code(),
                       "the userfaultfd cannot register the arena (%s): another process's "
                       "userfaultfd, or an arena registered already?",
                       ioctls.error().context());
  }
  if (auto c = check_uffd_controls_arena(*uffd, *memfd, reg.arena_base); !c) return c.error();

  ClientIdentity identity{creds->pid, creds->uid, creds->gid, exe};
  const uint64_t own_limit = assigned.terms.limit_pages;
  auto client = std::make_shared<Client>(registry_.next_id(), std::move(identity), std::move(owned),
                                         std::move(*pidfd), std::move(*uffd), std::move(*memfd),
                                         reg.arena_base, reg.arena_size, std::move(assigned.terms),
                                         std::move(policy), swap_);
  if (swap_ != nullptr) {
    auto record = create_swap_record(*client, *swap_, assigned.policy);
    if (!record) return record.error();
    client->attach_record(std::move(*record));
  }
  if (!options_.record_faults_dir.empty()) {
    auto trace = FaultTraceFile::create(options_.record_faults_dir, creds->pid);
    if (trace) {
      client->fault_trace = std::move(*trace);
    } else {
      spdlog::warn("client {}: not recording faults: {}", creds->pid, trace.error().message());
    }
  }
  client->reads_marker_stats = (hello.flags & wire::kHelloReadsMarkerStats) != 0;
  // Page 0 holds the registration nonce; it stays resident (never offered to the policy).
  client->pages.set_state(0, PageState::kResident);
  if (hello.dram_limit != 0 && swap_ == nullptr) {
    spdlog::warn("client {}: no swap device (--swap), so its DRAM limit is not enforced",
                 creds->pid);
  }
  registry_.add(client);
  governor_.rebalance();
  if (auto added = fault_loop_.add(client); !added) {
    registry_.remove(client->id());
    client->unregister_arena();
    return added.error();
  }
  char arena[32], limit_text[32];
  spdlog::info(
      "client {} ({}, uid {}) registered: arena {} at {:#x}, limit {} ({}), policy {}", creds->pid,
      client->identity().exe, creds->uid, format_size(reg.arena_size, arena, sizeof(arena)),
      reg.arena_base,
      own_limit != 0 ? format_size(own_limit * kPageSize, limit_text, sizeof(limit_text)) : "none",
      client->terms().limit_source, assigned.policy);
  send_reply(client->socket_fd(), 0, "registered", wire::kReplyTakesRequests,
             client->limit_pages() * kPageSize);
  return client;
}

}  // namespace extmem::daemon
