#include "fault/fault_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <array>

#include <spdlog/spdlog.h>

#include "fault/fault_handler.hpp"

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
  for (unsigned i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { run(); });
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
      }
    }
  }
}

void FaultLoop::drain_uffd(const std::shared_ptr<Client>& client) {
  std::array<uffd_msg, 64> msgs;
  for (int batch = 0; batch < kMaxBatchesPerWakeup; ++batch) {
    auto got = client->uffd().read_events(msgs);
    if (!got) {
      spdlog::error("client {}: {}", client->identity().pid, got.error().message());
      release(client->id(), "userfaultfd failed");
      return;
    }
    if (*got == 0) break;
    handle_events(*client, std::span(msgs.data(), *got), pager_);
  }
  rearm(client->uffd_fd(), token(client->id(), static_cast<uint64_t>(Source::kUffd)));
}

void FaultLoop::on_socket(const std::shared_ptr<Client>& client) {
  std::array<char, 256> buf;
  ssize_t n = recv(client->socket_fd(), buf.data(), buf.size(), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    release(client->id(), "disconnected");
    return;
  }
  if (n > 0) {
    // The protocol has no messages after registration.
    spdlog::warn("client {}: ignored {} unexpected bytes after registration",
                 client->identity().pid, n);
  }
  rearm(client->socket_fd(), token(client->id(), static_cast<uint64_t>(Source::kSocket)));
}

void FaultLoop::release(uint64_t id, const char* reason) {
  auto client = registry_.remove(id);
  if (!client) return;
  for (int fd : {client->uffd_fd(), client->socket_fd(), client->pidfd()}) {
    if (fd >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  }
  // An application that only closed its socket (exec, or a bug) still has its arena
  // registered; hand it back to the kernel so nothing waits on a daemon that left it.
  if (!client->exited()) client->unregister_arena();
  spdlog::info("client {} {}: {}", client->identity().pid, reason, client->describe());
}

}  // namespace extmem::daemon
