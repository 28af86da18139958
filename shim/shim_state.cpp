#include "shim_state.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "arena_allocator.hpp"
#include "extmem/hint_ring.hpp"
#include "extmem/kernel/memfd.hpp"
#include "extmem/kernel/raw_mm.hpp"
#include "extmem/kernel/unix_socket.hpp"

namespace extmem::shim {

std::atomic<Mode> g_mode{Mode::kStarting};
ShimConfig g_config;

namespace {

Session g_session;
uintptr_t g_arena_base = 0;
uint64_t g_arena_size = 0;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
alignas(ArenaAllocator) unsigned char g_allocator_storage[sizeof(ArenaAllocator)];
ArenaAllocator* g_allocator = nullptr;
// The hint ring and its doorbell; null/-1 when the daemon took none.
hints::HintRing* g_ring = nullptr;
int g_doorbell = -1;
// One request on the daemon socket at a time, so replies pair with their requests.
pthread_mutex_t g_socket_lock = PTHREAD_MUTEX_INITIALIZER;

class Lock {
 public:
  Lock() { pthread_mutex_lock(&g_lock); }
  ~Lock() { pthread_mutex_unlock(&g_lock); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
};

void* map_metadata(size_t bytes) {
  void* p =
      kernel::raw_mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void zero_freed_range(void*, uintptr_t start, size_t len) {
  arena_zero(start, len);
}

void fork_prepare() {
  pthread_mutex_lock(&g_lock);
}
void fork_parent() {
  pthread_mutex_unlock(&g_lock);
}
void fork_child() {
  pthread_mutex_unlock(&g_lock);
  if (g_mode.load(std::memory_order_relaxed) != Mode::kManaged) return;
  // The child has no arena mapping (MADV_DONTFORK) and must not hold the parent's
  // session open: the daemon sees the parent leave when the parent's copies close.
  close(g_session.socket_fd);
  close(g_session.uffd);
  close(g_session.memfd);
  // The ring is not mapped here (MADV_DONTFORK).
  g_ring = nullptr;
  if (g_doorbell >= 0) close(g_doorbell);
  g_doorbell = -1;
  g_mode.store(Mode::kForkedChild, std::memory_order_release);
}

}  // namespace

void warn(const char* fmt, ...) noexcept {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "extmem: ");
  va_list args;
  va_start(args, fmt);
  int m = vsnprintf(buf + n, sizeof(buf) - static_cast<size_t>(n) - 1, fmt, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + static_cast<size_t>(m > 0 ? m : 0);
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  [[maybe_unused]] ssize_t w = write(STDERR_FILENO, buf, len);
}

namespace {

// One warning, then the application runs on libc memory (or exits if it must be managed).
void start_unmanaged(const char* reason) noexcept {
  if (g_config.required) {
    warn("%s; exiting (EXTMEM_REQUIRED is set)", reason);
    _exit(1);
  }
  warn("%s; running unmanaged", reason);
  g_mode.store(Mode::kUnmanaged, std::memory_order_release);
}

// Sends a request and receives its answer into buf; returns 0 or an errno value.
int exchange_request(std::span<const std::byte> frame, std::span<const int> fds, std::byte* buf,
                     wire::FrameHeader* header) noexcept {
  pthread_mutex_lock(&g_socket_lock);
  int error = 0;
  if (auto sent = kernel::send_message(g_session.socket_fd, frame, fds); !sent) {
    error = sent.error().code();
  } else {
    kernel::UniqueFd unused[1];
    auto got = kernel::receive_message(g_session.socket_fd, {buf, wire::kMaxFrame}, unused);
    if (!got) {
      error = got.error().code() == EAGAIN ? ETIMEDOUT : got.error().code();
    } else if (got->bytes == 0 || got->data_truncated ||
               wire::decode_header(buf, got->bytes, header) != wire::DecodeError::kOk) {
      error = EIO;
    }
  }
  pthread_mutex_unlock(&g_socket_lock);
  return error;
}

// The status of a Reply answer (EIO if the answer is something else).
int reply_status(const std::byte* buf, const wire::FrameHeader& header, wire::Reply* reply) {
  if (header.type != wire::MsgType::kReply ||
      wire::decode(buf + wire::kHeaderSize, header.length, reply) != wire::DecodeError::kOk) {
    return EIO;
  }
  return reply->status;
}

// Hands the daemon a hint ring and its doorbell. Without one the process still runs
// managed; extmem_advise then reports EOPNOTSUPP.
void attach_hint_ring() noexcept {
  auto memfd = kernel::Memfd::create("extmem-hints", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (!memfd) return warn("hint ring: %s", memfd.error().context());
  auto doorbell = kernel::make_eventfd(EFD_CLOEXEC | EFD_NONBLOCK);
  if (!doorbell) return warn("hint ring: %s", doorbell.error().context());
  if (auto t = memfd->truncate(sizeof(hints::HintRing)); !t) {
    return warn("hint ring: %s", t.error().context());
  }
  // Sealed, so the daemon can map it without fearing it shrinks under its feet.
  if (auto sealed = memfd->add_seals(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL); !sealed) {
    return warn("hint ring: %s", sealed.error().context());
  }
  auto mapping = kernel::SharedMapping::map(memfd->fd(), sizeof(hints::HintRing), true);
  if (!mapping) return warn("hint ring: %s", mapping.error().context());
  auto* ring = static_cast<hints::HintRing*>(mapping->address());
  hints::init_ring(ring);

  wire::AttachHints attach;
  attach.ring_bytes = sizeof(hints::HintRing);
  std::byte frame[wire::kMaxFrame], buf[wire::kMaxFrame];
  const int fds[2] = {memfd->fd(), doorbell->get()};
  wire::FrameHeader header;
  wire::Reply reply;
  int error = exchange_request({frame, wire::encode(attach, frame)}, fds, buf, &header);
  if (error == 0) error = reply_status(buf, header, &reply);
  if (error != 0) {
    return warn("extmemd took no hint ring (%s%s%s); hints are ignored", strerrordesc_np(error),
                reply.message[0] != '\0' ? ": " : "", reply.message);
  }
  // The process keeps the mapping for its lifetime.
  g_ring = static_cast<hints::HintRing*>(mapping->release());
  g_doorbell = doorbell->release();
}

}  // namespace

void initialize() noexcept {
  char error[320];
  if (!load_config(&g_config, error, sizeof(error)) ||
      !connect_to_daemon(g_config, &g_session, error, sizeof(error))) {
    start_unmanaged(error);
    return;
  }
  g_arena_base = g_session.arena_base;
  g_arena_size = g_session.arena_size;
  // The first page is the daemon's handshake probe page; it is never handed out.
  g_allocator = new (g_allocator_storage)
      ArenaAllocator(g_arena_base, g_arena_size, map_metadata, kPageSize, kPageSize);
  // An older daemon serves no requests: no hints, and the other calls say so.
  if (g_session.takes_requests) attach_hint_ring();
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  g_mode.store(Mode::kManaged, std::memory_order_release);
}

bool in_arena(const void* p) noexcept {
  return reinterpret_cast<uintptr_t>(p) - g_arena_base < g_arena_size;
}

bool range_overlaps_arena(const void* p, size_t len) noexcept {
  uintptr_t start = reinterpret_cast<uintptr_t>(p);
  return g_arena_size != 0 && start < g_arena_base + g_arena_size && start + len > g_arena_base;
}

void clip_to_arena(uintptr_t p, size_t len, uintptr_t* start, size_t* clipped_len) noexcept {
  uintptr_t lo = p > g_arena_base ? p : g_arena_base;
  uintptr_t end = p + len;
  uintptr_t arena_end = g_arena_base + g_arena_size;
  uintptr_t hi = end < arena_end ? end : arena_end;
  *start = lo;
  *clipped_len = hi > lo ? hi - lo : 0;
}

void* arena_allocate(size_t len, size_t align) noexcept {
  if (mode() != Mode::kManaged || len == 0) return nullptr;
  uintptr_t p;
  {
    Lock lock;
    p = g_allocator->allocate(len, align);
  }
  if (p == 0) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) warn("arena full; further large allocations are unmanaged");
    return nullptr;
  }
  return reinterpret_cast<void*>(p);
}

size_t arena_block_size(const void* p) noexcept {
  Lock lock;
  return g_allocator->block_size(reinterpret_cast<uintptr_t>(p));
}

void arena_free(void* p) noexcept {
  if (mode() == Mode::kForkedChild) return;  // not mapped here; the parent owns it
  uintptr_t start = reinterpret_cast<uintptr_t>(p);
  size_t len = arena_block_size(p);
  if (len == 0) {
    warn("free(%p): not an allocated block; ignored", p);
    return;
  }
  // The block is still ours, so its pages are zeroed before anyone else can get them.
  arena_zero(start, len);
  Lock lock;
  g_allocator->release(start, len, nullptr, nullptr);
}

bool arena_release(uintptr_t start, size_t len) noexcept {
  if (mode() == Mode::kForkedChild) return true;
  Lock lock;
  // Freed pages are zeroed under the lock: another thread may be handed them next.
  return g_allocator->release(start, len, zero_freed_range, nullptr);
}

bool arena_resize_in_place(void* p, size_t new_len) noexcept {
  if (mode() != Mode::kManaged) return false;
  Lock lock;
  return g_allocator->resize_in_place(reinterpret_cast<uintptr_t>(p), new_len, zero_freed_range,
                                      nullptr);
}

void arena_zero(uintptr_t start, size_t len) noexcept {
  if (len == 0) return;
  // MADV_REMOVE frees the memfd pages, so the next touch faults to the daemon as fresh
  // memory, and the daemon learns of it from the REMOVE event.
  if (kernel::raw_madvise(reinterpret_cast<void*>(start), len, MADV_REMOVE) != 0) {
    warn("MADV_REMOVE %#lx+%#zx failed (%s); zeroing by hand", static_cast<unsigned long>(start),
         len, strerrordesc_np(errno));
    memset(reinterpret_cast<void*>(start), 0, len);
  }
}

int send_hint(uintptr_t start, size_t len, uint32_t hint) noexcept {
  hints::HintRing* ring = g_ring;
  if (ring == nullptr) return EOPNOTSUPP;
  const bool urgent = hint == static_cast<uint32_t>(hints::Hint::kWillNeed) ||
                      hint == static_cast<uint32_t>(hints::Hint::kPageOut);
  switch (hints::push(ring, start, len, hint, urgent)) {
    case hints::PushResult::kQueued:
      return 0;
    case hints::PushResult::kQueuedRingDoorbell:
      // A failed doorbell only delays the hint to the daemon's next periodic look.
      kernel::signal_eventfd(g_doorbell);
      return 0;
    case hints::PushResult::kFull:
      break;
  }
  return EAGAIN;
}

int request_set_policy(const char* name) noexcept {
  if (strlen(name) > wire::kMaxPolicyName) return EINVAL;
  if (!g_session.takes_requests) return EOPNOTSUPP;
  wire::SetPolicy request;
  wire::copy_text(request.policy, sizeof(request.policy), name);
  std::byte frame[wire::kMaxFrame], buf[wire::kMaxFrame];
  wire::FrameHeader header;
  wire::Reply reply;
  int error = exchange_request({frame, wire::encode(request, frame)}, {}, buf, &header);
  return error != 0 ? error : reply_status(buf, header, &reply);
}

int request_stats(wire::Stats* out) noexcept {
  if (!g_session.takes_requests) return EOPNOTSUPP;
  std::byte frame[wire::kMaxFrame], buf[wire::kMaxFrame];
  wire::FrameHeader header;
  int error = exchange_request({frame, wire::encode(wire::GetStats{}, frame)}, {}, buf, &header);
  if (error != 0) return error;
  if (header.type != wire::MsgType::kStats) {
    wire::Reply reply;
    error = reply_status(buf, header, &reply);
    return error != 0 ? error : EIO;
  }
  return wire::decode(buf + wire::kHeaderSize, header.length, out) == wire::DecodeError::kOk ? 0
                                                                                             : EIO;
}

}  // namespace extmem::shim
