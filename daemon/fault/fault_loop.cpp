#include "fault/fault_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <array>

#include <spdlog/spdlog.h>

#include "config/options.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"
#include "fault/fault_handler.hpp"
#include "fault/hints.hpp"
#include "paging_thread.hpp"

namespace extmem::daemon {

namespace {

constexpr uint64_t kStopToken = UINT64_MAX;
// Batches read per wakeup before the userfaultfd is re-armed, so one busy client cannot
// starve the others.
constexpr int kMaxBatchesPerWakeup = 16;

uint64_t token(uint64_t client_id, uint64_t source) {
  return client_id << 2 | source;
}

}  // namespace

FaultLoop::FaultLoop(ClientRegistry& registry, unsigned threads, Pager pager)
    : registry_(registry), thread_count_(threads), pager_(pager) {}

FaultLoop::~FaultLoop() {
  stop();
}

Result<void> FaultLoop::start() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return Error::from_errno("epoll_create1");
  stop_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_event_) return Error::from_errno("eventfd");
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kStopToken;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_event_.get(), &ev) != 0) {
    return Error::from_errno("epoll_ctl(stop event)");
  }
  for (unsigned i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] {
      enter_paging_thread("extmemd-fault", pager_.thread_nice);
      run();
    });
  }
  return {};
}

void FaultLoop::stop() {
  if (!stop_event_) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(stop_event_.get(), &one, sizeof(one));
  for (auto& t : threads_) t.join();
  threads_.clear();
  stop_event_.reset();
}

Result<void> FaultLoop::add(const std::shared_ptr<Client>& client) {
  struct Entry {
    int fd;
    Source source;
    uint32_t events;
  };
  const Entry entries[] = {
      {client->uffd_fd(), Source::kUffd, EPOLLIN | EPOLLONESHOT},
      {client->socket_fd(), Source::kSocket, EPOLLIN | EPOLLRDHUP | EPOLLONESHOT},
      {client->pidfd(), Source::kPidfd, EPOLLIN | EPOLLONESHOT},
  };
  for (const Entry& e : entries) {
    if (e.fd < 0) continue;  // a client taken back after a restart has no socket
    epoll_event ev = {};
    ev.events = e.events;
    ev.data.u64 = token(client->id(), static_cast<uint64_t>(e.source));
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, e.fd, &ev) != 0) {
      Error error = Error::from_errno("epoll_ctl(add client %d)", client->identity().pid);
      for (const Entry& added : entries) {
        if (added.fd == e.fd) break;
        if (added.fd >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, added.fd, nullptr);
      }
      return error;
    }
  }
  return {};
}

void FaultLoop::rearm(int fd, uint64_t data) {
  epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLONESHOT;
  if (static_cast<Source>(data & 3) == Source::kSocket) ev.events |= EPOLLRDHUP;
  ev.data.u64 = data;
  // ENOENT: the client was released meanwhile.
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0 && errno != ENOENT) {
    spdlog::error("epoll_ctl(rearm): {}", strerror(errno));
  }
}

void FaultLoop::run() {
  std::array<epoll_event, 16> events;
  for (;;) {
    int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("epoll_wait: {}", strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t data = events[i].data.u64;
      if (data == kStopToken) return;
      auto client = registry_.find(data >> 2);
      if (!client) continue;
      switch (static_cast<Source>(data & 3)) {
        case Source::kUffd:
          drain_uffd(client);
          break;
        case Source::kSocket:
          on_socket(client);
          break;
        case Source::kPidfd:
          release(client->id(), "exited");
          break;
        case Source::kDoorbell:
          on_doorbell(client);
          break;
      }
    }
  }
}

void FaultLoop::drain_uffd(const std::shared_ptr<Client>& client) {
  std::array<uffd_msg, 64> msgs;
  begin_drain(*client);
  for (int batch = 0; batch < kMaxBatchesPerWakeup; ++batch) {
    auto got = client->uffd().read_events(msgs);
    if (!got) {
      spdlog::error("client {}: {}", client->identity().pid, got.error().message());
      end_drain(*client, pager_);
      release(client->id(), "userfaultfd failed");
      return;
    }
    if (*got == 0) break;
    handle_events(*client, std::span(msgs.data(), *got), pager_);
  }
  end_drain(*client, pager_);
  // A wakeup is a cheap moment to look at the hint ring too.
  drain_hints(*client, pager_, false);
  rearm(client->uffd_fd(), token(client->id(), static_cast<uint64_t>(Source::kUffd)));
}

void FaultLoop::on_socket(const std::shared_ptr<Client>& client) {
  std::byte frame[wire::kMaxFrame];
  kernel::UniqueFd fds[kernel::kMaxPassedFds];
  // The socket has a timeout, but epoll said it is readable: this does not wait.
  auto got = kernel::receive_message(client->socket_fd(), {frame, sizeof(frame)}, fds);
  if (!got && (got.error().code() == EAGAIN || got.error().code() == EINTR)) {
    rearm(client->socket_fd(), token(client->id(), static_cast<uint64_t>(Source::kSocket)));
    return;
  }
  if (!got || got->bytes == 0) {
    release(client->id(), "disconnected");
    return;
  }
  if (got->data_truncated || got->fds_truncated) {
    spdlog::warn("client {}: ignored an oversized message", client->identity().pid);
  } else if (!on_request(client, {frame, got->bytes}, fds, got->fd_count)) {
    return;
  }
  rearm(client->socket_fd(), token(client->id(), static_cast<uint64_t>(Source::kSocket)));
}

namespace {

void reply(Client& client, int status, const std::string& message) {
  wire::Reply r;
  r.status = status;
  wire::copy_text(r.message, sizeof(r.message), message.c_str());
  std::byte frame[wire::kMaxFrame];
  // The client waits for the answer with a timeout; one it does not read is its loss.
  auto sent = kernel::send_message(client.socket_fd(), {frame, wire::encode(r, frame)}, {});
  if (!sent) spdlog::debug("client {}: reply: {}", client.identity().pid, sent.error().message());
}

wire::Stats stats_of(Client& client) {
  wire::Stats s;
  {
    std::lock_guard lock(client.mu);
    s.resident_bytes = client.pages.resident_pages() * kPageSize;
    s.swapped_bytes = client.pages.swapped_pages() * kPageSize;
    wire::copy_text(s.policy, sizeof(s.policy), std::string(client.policy->name()).c_str());
  }
  const ClientCounters& c = client.counters();
  s.limit_bytes = client.limit_pages() * kPageSize;
  s.first_touch_faults = c.first_touch_faults.load();
  s.major_faults = c.major_faults.load();
  s.minor_faults = c.minor_faults.load();
  s.evictions = c.evictions.load();
  s.prefetched_pages = c.prefetched_pages.load();
  s.hints_received = c.hints_received.load();
  s.hints_applied = c.hints_applied.load();
  s.hints_invalid = c.hints_invalid.load();
  s.hints_ring_full = c.hints_ring_full.load();
  s.marker_counters = client.reads_marker_stats;
  s.prefetch_markers = c.prefetch_markers.load();
  s.prefetch_markers_used = c.prefetch_markers_used.load();
  return s;
}

}  // namespace

bool FaultLoop::on_request(const std::shared_ptr<Client>& client, std::span<const std::byte> frame,
                           std::span<kernel::UniqueFd> fds, size_t fd_count) {
  const pid_t pid = client->identity().pid;
  wire::FrameHeader header;
  if (wire::DecodeError e = wire::decode_header(frame.data(), frame.size(), &header);
      e != wire::DecodeError::kOk) {
    spdlog::warn("client {}: ignored a message after registration: {}", pid, wire::describe(e));
    reply(*client, EPROTO, wire::describe(e));
    return true;
  }
  const std::byte* payload = frame.data() + wire::kHeaderSize;
  switch (header.type) {
    case wire::MsgType::kAttachHints: {
      auto attached = attach_hints(client, payload, header.length, fds, fd_count);
      if (!attached) {
        spdlog::warn("client {}: hint ring refused: {}", pid, attached.error().message());
        reply(*client, attached.error().code(), attached.error().context());
      } else {
        reply(*client, 0, "hint ring attached");
      }
      return true;
    }
    case wire::MsgType::kSetPolicy: {
      wire::SetPolicy request;
      if (auto e = wire::decode(payload, header.length, &request); e != wire::DecodeError::kOk) {
        reply(*client, EPROTO, std::string("set policy: ") + wire::describe(e));
        return true;
      }
      std::unique_ptr<Policy> policy = make_policy(request.policy);
      if (!policy) {
        reply(*client, EINVAL,
              fmt::format("unknown policy '{}' (known: {})", request.policy, known_policy_list()));
        return true;
      }
      {
        std::lock_guard lock(client->mu);
        client->replace_policy(std::move(policy));
      }
      spdlog::info("client {}: policy set to {} by the client", pid, request.policy);
      reply(*client, 0, "policy set");
      return true;
    }
    case wire::MsgType::kGetStats: {
      wire::GetStats request;
      if (auto e = wire::decode(payload, header.length, &request); e != wire::DecodeError::kOk) {
        reply(*client, EPROTO, std::string("get stats: ") + wire::describe(e));
        return true;
      }
      std::byte out[wire::kMaxFrame];
      auto sent = kernel::send_message(client->socket_fd(),
                                       {out, wire::encode(stats_of(*client), out)}, {});
      if (!sent) spdlog::debug("client {}: stats: {}", pid, sent.error().message());
      return true;
    }
    default:
      spdlog::warn("client {}: ignored a message of type {} after registration", pid,
                   static_cast<unsigned>(header.type));
      reply(*client, EPROTO, "unexpected message type");
      return true;
  }
}

Result<void> FaultLoop::attach_hints(const std::shared_ptr<Client>& client,
                                     const std::byte* payload, size_t len,
                                     std::span<kernel::UniqueFd> fds, size_t fd_count) {
  wire::AttachHints request;
  if (auto e = wire::decode(payload, len, &request); e != wire::DecodeError::kOk) {
    return Error::make(EPROTO, "attach hints: %s", wire::describe(e));
  }
  if (fd_count != 2) return Error::make(EBADMSG, "expected 2 descriptors, got %zu", fd_count);
  if (client->hints() != nullptr) return Error::make(EEXIST, "a hint ring is attached already");
  auto channel = adopt_hint_ring(request.ring_bytes, std::move(fds[0]), std::move(fds[1]));
  if (!channel) return channel.error();
  const int doorbell = (*channel)->doorbell.get();
  if (!client->attach_hints(std::move(*channel))) {
    return Error::make(EEXIST, "a hint ring is attached already");
  }
  // Edge-triggered and never read: every write is an edge, and the daemon never blocks
  // on (or busy-loops over) a counter the client controls.
  epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = token(client->id(), static_cast<uint64_t>(Source::kDoorbell));
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, doorbell, &ev) != 0) {
    return Error::from_errno("epoll_ctl(add hint doorbell)");
  }
  client->hints()->consumer.arm_doorbell();
  return {};
}

void FaultLoop::on_doorbell(const std::shared_ptr<Client>& client) {
  drain_hints(*client, pager_, true);
}

void FaultLoop::release(uint64_t id, const char* reason) {
  auto client = registry_.remove(id);
  if (!client) return;
  const int doorbell = client->hints() != nullptr ? client->hints()->doorbell.get() : -1;
  for (int fd : {client->uffd_fd(), client->socket_fd(), client->pidfd(), doorbell}) {
    if (fd >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  }
  // An application that only closed its socket (exec, or a bug) still has its arena
  // registered; hand it back to the kernel so nothing waits on a daemon that left it.
  if (!client->exited()) client->unregister_arena();
  {
    // Complete on disk when the departure is logged; reads still in flight may keep the
    // client, and so the file, open a while longer.
    std::lock_guard lock(client->mu);
    if (client->fault_trace) client->fault_trace->flush();
  }
  spdlog::info("client {} {}: {}", client->identity().pid, reason, client->describe());
}

}  // namespace extmem::daemon
