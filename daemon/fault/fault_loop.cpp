#include "fault/fault_loop.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include <array>

#include <spdlog/spdlog.h>

#include "config/options.hpp"
#include "extmem/kernel/unix_socket.hpp"
#include "extmem/wire.hpp"
#include "fault/fault_handler.hpp"
#include "fault/hints.hpp"
#include "paging_thread.hpp"
#include "server/reply.hpp"

namespace extmem::daemon {

namespace {

using Kind = PagingRing::Kind;
// Batches read per wakeup before the userfaultfd is re-armed, so one busy client cannot
// starve the others.
constexpr int kMaxBatchesPerWakeup = 16;
// Swap-in reads in flight at once per paging thread; more are read synchronously.
constexpr unsigned kReadsPerThread = 128;
// The ready masks each one-shot poll waits for.
constexpr uint32_t kUffdEvents = POLLIN;
constexpr uint32_t kSocketEvents = POLLIN | POLLRDHUP;
constexpr uint32_t kPidfdEvents = POLLIN;

}  // namespace

FaultLoop::FaultLoop(ClientRegistry& registry, unsigned threads, Pager pager)
    : registry_(registry), thread_count_(threads), pager_(pager) {}

FaultLoop::~FaultLoop() {
  stop();
}

Result<void> FaultLoop::start() {
  for (unsigned i = 0; i < thread_count_; ++i) {
    auto ring = PagingRing::create(kReadsPerThread, pager_);
    if (!ring) return ring.error();
    rings_.push_back(std::move(*ring));
  }
  for (auto& ring : rings_) {
    threads_.emplace_back([this, r = ring.get()] {
      enter_paging_thread("extmemd-fault", pager_.thread_nice);
      r->become_owner();
      run(*r);
    });
  }
  return {};
}

bool FaultLoop::failed() const {
  for (const auto& ring : rings_) {
    if (ring->failed.load()) return true;
  }
  return false;
}

void FaultLoop::stop() {
  if (threads_.empty()) return;
  stopping_ = true;
  for (auto& ring : rings_) {
    if (ring->failed.load()) continue;  // its thread left
    if (auto woken = ring->wake(); !woken) {
      spdlog::critical("paging ring: cannot wake its thread to stop: {}", woken.error().message());
    }
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

Result<void> FaultLoop::add(const std::shared_ptr<Client>& client) {
  PagingRing* ring = nullptr;
  for (auto& candidate : rings_) {
    if (candidate->failed.load()) continue;
    if (ring == nullptr || candidate->clients.load() < ring->clients.load()) ring = candidate.get();
  }
  if (ring == nullptr) return Error::make(ESHUTDOWN, "no paging thread runs");
  {
    std::lock_guard lock(client->mu);
    client->paging_ring = ring;
  }
  ring->clients++;
  {
    // Its thread arms the polls, so that it, not this thread, is their submitter: the
    // kernel runs a request's completion work in its submitter's context.
    std::lock_guard lock(ring->added_mu);
    ring->added.push_back(client);
  }
  if (auto woken = ring->wake(); !woken) {
    ring->clients--;
    return Error::make(woken.error().code(), "waking paging thread for client %d: %s",
                       client->identity().pid, woken.error().context());
  }
  return {};
}

void FaultLoop::arm(PagingRing& ring, const std::shared_ptr<Client>& client) {
  if (!registry_.find(client->id())) return;  // its add failed, or it left already
  for (Kind kind : {Kind::kUffd, Kind::kSocket, Kind::kPidfd}) {
    if (!rearm(ring, client, kind)) return;
  }
}

bool FaultLoop::rearm(PagingRing& ring, const std::shared_ptr<Client>& client, Kind kind) {
  int fd = -1;
  uint32_t events = 0;
  switch (kind) {
    case Kind::kUffd:
      fd = client->uffd_fd();
      events = kUffdEvents;
      break;
    case Kind::kSocket:
      fd = client->socket_fd();
      events = kSocketEvents;
      break;
    case Kind::kPidfd:
      fd = client->pidfd();
      events = kPidfdEvents;
      break;
    default:
      return true;
  }
  if (fd < 0) return true;  // a client taken back after a restart has no socket
  auto polled = ring.poll(fd, events, false, PagingRing::tag(client->id(), kind));
  if (!polled) {
    spdlog::error("client {}: cannot poll its descriptors: {}", client->identity().pid,
                  polled.error().message());
    release(client->id(), "unpollable");
    return false;
  }
  return true;
}

void FaultLoop::run(PagingRing& ring) {
  std::array<kernel::IoRing::Completion, 64> done;
  bool carried_read = false;
  for (;;) {
    if (stopping_.load(std::memory_order_relaxed) && ring.stop_reads()) return;
    auto got = ring.wait(done);
    if (got && carried_read && inject_ring_failure_.exchange(false)) {
      got = Error::make(EIO, "io_uring_enter failed (injected: a test setting)");
    }
    if (!got) {
      // Its reads in flight are lost and its clients' faults go unanswered: only a stop,
      // which reads their pages back synchronously, and a restart can serve them again.
      spdlog::critical("paging thread: {}; extmemd stops, handing its clients back",
                       got.error().message());
      ring.stop_reads();  // reads started from now on are done synchronously
      ring.failed = true;
      return;
    }
    // Finished reads first: mapping one wakes an application thread that waits now.
    // Between them, the faults their client queued meanwhile are served and the reads
    // those start go out at once: a thread that entered a window just mapped and touched
    // its marker keeps the device busy while the rest of the batch is mapped.
    size_t reads_left = 0;
    for (size_t i = 0; i < *got; ++i) reads_left += PagingRing::kind_of(done[i].tag) == Kind::kRead;
    for (size_t i = 0; i < *got; ++i) {
      if (PagingRing::kind_of(done[i].tag) != Kind::kRead) continue;
      std::shared_ptr<Client> client = ring.finish_read(done[i]);
      carried_read = true;
      if (--reads_left > 0 && !stopping_.load(std::memory_order_relaxed) &&
          registry_.find(client->id())) {
        serve_queued_faults(ring, client);
      }
    }
    for (size_t i = 0; i < *got; ++i) {
      const kernel::IoRing::Completion& c = done[i];
      const Kind kind = PagingRing::kind_of(c.tag);
      if (kind == Kind::kRead || kind == Kind::kIgnore || stopping_.load(std::memory_order_relaxed))
        continue;
      if (kind == Kind::kWake) {
        std::vector<std::shared_ptr<Client>> added;
        {
          std::lock_guard lock(ring.added_mu);
          added.swap(ring.added);
        }
        for (const auto& client : added) arm(ring, client);
        continue;
      }
      // A poll of a client that has left (its removal completes it with -ECANCELED).
      auto client = registry_.find(PagingRing::client_of(c.tag));
      if (!client) continue;
      if (c.result < 0) {
        spdlog::error("client {}: polling its {}: {}", client->identity().pid,
                      kind == Kind::kUffd     ? "userfaultfd"
                      : kind == Kind::kSocket ? "socket"
                      : kind == Kind::kPidfd  ? "pidfd"
                                              : "hint doorbell",
                      strerror(-c.result));
        release(client->id(), "unpollable");
        continue;
      }
      switch (kind) {
        case Kind::kUffd:
          drain_uffd(ring, client);
          break;
        case Kind::kSocket:
          on_socket(ring, client);
          break;
        case Kind::kPidfd:
          release(client->id(), "exited");
          break;
        case Kind::kDoorbell:
          drain_hints(*client, pager_, true);
          // The kernel ended the multishot poll (it does so when completions overflow).
          if (!c.more) {
            auto polled = ring.poll(client->hints()->doorbell.get(), POLLIN, true, c.tag);
            if (!polled) {
              spdlog::warn("client {}: hint doorbell no longer polled: {}", client->identity().pid,
                           polled.error().message());
            }
          }
          break;
        default:
          break;
      }
    }
  }
}

bool FaultLoop::read_uffd(const std::shared_ptr<Client>& client, int batches) {
  std::array<uffd_msg, 64> msgs;
  begin_drain(*client);
  for (int batch = 0; batch < batches; ++batch) {
    auto got = client->uffd().read_events(msgs);
    if (!got) {
      spdlog::error("client {}: {}", client->identity().pid, got.error().message());
      end_drain(*client, pager_);
      release(client->id(), "userfaultfd failed");
      return false;
    }
    if (*got == 0) break;
    handle_events(*client, std::span(msgs.data(), *got), pager_);
    // Fewer than asked for: the queue was empty, so a read now would only say EAGAIN.
    if (*got < msgs.size()) break;
  }
  end_drain(*client, pager_);
  return true;
}

void FaultLoop::drain_uffd(PagingRing& ring, const std::shared_ptr<Client>& client) {
  if (!read_uffd(client, kMaxBatchesPerWakeup)) return;
  // A wakeup is a cheap moment to look at the hint ring too.
  drain_hints(*client, pager_, false);
  rearm(ring, client, Kind::kUffd);
}

void FaultLoop::serve_queued_faults(PagingRing& ring, const std::shared_ptr<Client>& client) {
  // The uffd's poll stays armed: it completes with the next fault, or finds the queue
  // emptied here and is armed again.
  if (!read_uffd(client, 1)) return;
  if (auto submitted = ring.submit_queued(); !submitted) {
    // The ring's next wait reports a broken ring; until then the reads stay queued.
    spdlog::debug("paging ring: {}", submitted.error().message());
  }
}

void FaultLoop::on_socket(PagingRing& ring, const std::shared_ptr<Client>& client) {
  std::byte frame[wire::kMaxFrame];
  kernel::UniqueFd fds[kernel::kMaxPassedFds];
  // The socket has a timeout, but the poll said it is readable: this does not wait.
  auto got = kernel::receive_message(client->socket_fd(), {frame, sizeof(frame)}, fds);
  if (!got && (got.error().code() == EAGAIN || got.error().code() == EINTR)) {
    rearm(ring, client, Kind::kSocket);
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
  rearm(ring, client, Kind::kSocket);
}

namespace {

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
    send_reply(client->socket_fd(), EPROTO, wire::describe(e));
    return true;
  }
  const std::byte* payload = frame.data() + wire::kHeaderSize;
  switch (header.type) {
    case wire::MsgType::kAttachHints: {
      auto attached = attach_hints(client, payload, header.length, fds, fd_count);
      if (!attached) {
        spdlog::warn("client {}: hint ring refused: {}", pid, attached.error().message());
        send_reply(client->socket_fd(), attached.error().code(), attached.error().context());
      } else {
        send_reply(client->socket_fd(), 0, "hint ring attached");
      }
      return true;
    }
    case wire::MsgType::kSetPolicy: {
      wire::SetPolicy request;
      if (auto e = wire::decode(payload, header.length, &request); e != wire::DecodeError::kOk) {
        send_reply(client->socket_fd(), EPROTO, std::string("set policy: ") + wire::describe(e));
        return true;
      }
      std::unique_ptr<Policy> policy = make_policy(request.policy);
      if (!policy) {
        send_reply(
            client->socket_fd(), EINVAL,
            fmt::format("unknown policy '{}' (known: {})", request.policy, known_policy_list()));
        return true;
      }
      {
        std::lock_guard lock(client->mu);
        client->replace_policy(std::move(policy));
      }
      spdlog::info("client {}: policy set to {} by the client", pid, request.policy);
      send_reply(client->socket_fd(), 0, "policy set");
      return true;
    }
    case wire::MsgType::kGetStats: {
      wire::GetStats request;
      if (auto e = wire::decode(payload, header.length, &request); e != wire::DecodeError::kOk) {
        send_reply(client->socket_fd(), EPROTO, std::string("get stats: ") + wire::describe(e));
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
      send_reply(client->socket_fd(), EPROTO, "unexpected message type");
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
  // Multishot, so edge-triggered, and never read: every write is a wakeup, and the daemon
  // never blocks on (or busy-loops over) a counter the client controls.
  PagingRing* ring;
  {
    std::lock_guard lock(client->mu);
    ring = client->paging_ring;
  }
  if (auto polled =
          ring->poll(doorbell, POLLIN, true, PagingRing::tag(client->id(), Kind::kDoorbell));
      !polled) {
    return polled.error();
  }
  client->hints()->consumer.arm_doorbell();
  return {};
}

void FaultLoop::release(uint64_t id, const char* reason) {
  auto client = registry_.remove(id);
  if (!client) return;
  PagingRing* ring;
  {
    std::lock_guard lock(client->mu);
    ring = client->paging_ring;
  }
  if (ring != nullptr) {
    // A poll holds its file: removed, so the descriptors close with the client.
    for (Kind kind : {Kind::kUffd, Kind::kSocket, Kind::kPidfd, Kind::kDoorbell}) {
      ring->cancel_poll(PagingRing::tag(client->id(), kind));
    }
    ring->clients--;
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
