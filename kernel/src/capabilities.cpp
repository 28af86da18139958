#include "extmem/kernel/capabilities.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "extmem/kernel/fd.hpp"

namespace extmem::kernel {
namespace {

// Indexed by capability number (linux/capability.h).
constexpr const char* kNames[] = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

// A thread's capability sets and no_new_privs, as /proc shows them.
struct ThreadState {
  CapabilityMask inheritable = 0, permitted = 0, effective = 0, bounding = 0, ambient = 0;
  bool no_new_privs = false;

  bool operator==(const ThreadState&) const = default;
};

// The small text file at `path`; empty when it cannot be read (a thread that has exited).
std::string read_small_file(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  std::string text;
  if (!fd) return text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

bool read_state(const char* status_path, ThreadState* state) {
  const std::string text = read_small_file(status_path);
  struct Field {
    const char* key;
    CapabilityMask* mask;
  };
  const Field fields[] = {{"\nCapInh:", &state->inheritable},
                          {"\nCapPrm:", &state->permitted},
                          {"\nCapEff:", &state->effective},
                          {"\nCapBnd:", &state->bounding},
                          {"\nCapAmb:", &state->ambient}};
  for (const Field& f : fields) {
    const size_t at = text.find(f.key);
    if (at == std::string::npos) return false;
    *f.mask = strtoull(text.c_str() + at + strlen(f.key), nullptr, 16);
  }
  const size_t nnp = text.find("\nNoNewPrivs:");
  state->no_new_privs = nnp != std::string::npos && atoi(text.c_str() + nnp + 12) == 1;
  return true;
}

int read_int_sysctl(const char* path, int fallback) {
  const std::string text = read_small_file(path);
  return text.empty() ? fallback : atoi(text.c_str());
}

// What every thread applies; set before any thread is signalled.
struct Target {
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  CapabilityMask drop_bounding;  // 0 without CAP_SETPCAP
  int last_cap;
};
Target g_target;
std::atomic<unsigned> g_acks{0};
std::atomic<int> g_error{0};  // the first errno a signalled thread met

// Async-signal-safe: system calls only. The bounding set goes first, while CAP_SETPCAP is
// still effective.
int apply(const Target& t) noexcept {
  for (int cap = 0; cap <= t.last_cap; ++cap) {
    if ((t.drop_bounding & capability_bit(cap)) != 0 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return errno;
    }
  }
  // EINVAL before Linux 4.3, which has no ambient set to clear.
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (syscall(SYS_capset, &header, t.data) != 0) return errno;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return 0;
}

void on_drop_signal(int) {
  const int saved = errno;
  if (const int e = apply(g_target); e != 0) {
    int none = 0;
    g_error.compare_exchange_strong(none, e);
  }
  g_acks.fetch_add(1);
  errno = saved;
}

std::vector<pid_t> thread_ids() {
  std::vector<pid_t> tids;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tids;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') tids.push_back(static_cast<pid_t>(atoi(entry->d_name)));
  }
  closedir(dir);
  return tids;
}

// Signals every thread whose state is not `want` until none is left: threads that a
// thread not yet changed creates meanwhile inherit its full sets, so one pass is not enough.
Result<unsigned> apply_to_other_threads(const ThreadState& want) {
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  constexpr int kMaxPasses = 10;
  pid_t missed = 0;  // a thread that did not answer within a second
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    const std::vector<pid_t> tids = thread_ids();
    if (tids.empty()) return Error::make(ENOENT, "listing /proc/self/task");
    bool changed_any = false;
    for (pid_t tid : tids) {
      char path[64];
      // io_uring's kernel workers (iou-wrk, iou-sqp) take no signals. They only run the
      // reads and writes of the swap descriptor that is already open, and those started
      // after the drop copy the reduced sets of the thread they serve.
      snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
      if (read_small_file(path).starts_with("iou-")) continue;
      snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
      ThreadState state;
      if (!read_state(path, &state) || state == want) continue;  // gone, or done
      if (tid == self) return Error::make(EPERM, "this thread kept capabilities");
      const unsigned before = g_acks.load();
      if (syscall(SYS_tgkill, getpid(), tid, SIGRTMIN) != 0) continue;  // it exited
      for (int waited = 0; g_acks.load() == before && waited < 1000; ++waited) usleep(1000);
      if (g_acks.load() == before) missed = tid;
      if (const int e = g_error.load(); e != 0) {
        return Error::make(e, "dropping the capabilities of thread %d", tid);
      }
      changed_any = true;
    }
    if (!changed_any) return static_cast<unsigned>(tids.size());
  }
  if (missed != 0) {
    return Error::make(ETIMEDOUT, "thread %d does not handle SIGRTMIN (blocked?)", missed);
  }
  return Error::make(EAGAIN, "threads kept appearing with capabilities");
}

}  // namespace

std::string capability_names(CapabilityMask mask) {
  std::string names;
  for (int cap = 0; cap < 64; ++cap) {
    if ((mask & capability_bit(cap)) == 0) continue;
    if (!names.empty()) names += ' ';
    names += cap < static_cast<int>(std::size(kNames)) ? kNames[cap] : "CAP_" + std::to_string(cap);
  }
  return names.empty() ? "none" : names;
}

std::string CapabilityDrop::describe() const {
  if (threads == 0) return "none held, nothing to drop";
  return "kept " + capability_names(kept) + " in " + std::to_string(threads) + " threads" +
         (bounding_set_reduced ? " (and in the bounding set)" : " (bounding set unchanged)") +
         "; no new privileges";
}

CapabilityMask serving_capabilities() noexcept {
  CapabilityMask caps = capability_bit(CAP_SYS_PTRACE) | capability_bit(CAP_SYS_NICE);
  if (read_int_sysctl("/proc/sys/kernel/io_uring_disabled", 0) == 1) {
    caps |= capability_bit(CAP_SYS_ADMIN);
  }
  return caps;
}

Result<CapabilityDrop> drop_capabilities(CapabilityMask keep) noexcept {
  ThreadState self;
  if (!read_state("/proc/thread-self/status", &self)) {
    return Error::make(EIO, "cannot read the capabilities in /proc/thread-self/status");
  }
  CapabilityDrop drop;
  if (self.permitted == 0) return drop;  // unprivileged: nothing to drop

  const int last_cap = read_int_sysctl("/proc/sys/kernel/cap_last_cap", CAP_LAST_CAP);
  const CapabilityMask all = last_cap >= 63 ? ~CapabilityMask{0} : capability_bit(last_cap + 1) - 1;
  drop.kept = keep & self.permitted;
  drop.bounding_set_reduced = (self.effective & capability_bit(CAP_SETPCAP)) != 0;
  g_target = {};
  g_target.last_cap = last_cap;
  g_target.drop_bounding = drop.bounding_set_reduced ? self.bounding & ~drop.kept & all : 0;
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    const auto word = static_cast<uint32_t>(drop.kept >> (32 * i));
    g_target.data[i].effective = word;
    g_target.data[i].permitted = word;
  }
  ThreadState want;
  want.permitted = want.effective = drop.kept;
  want.bounding = drop.bounding_set_reduced ? self.bounding & drop.kept : self.bounding;
  want.no_new_privs = true;

  struct sigaction action = {}, previous = {};
  action.sa_handler = on_drop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGRTMIN, &action, &previous) != 0) return Error::from_errno("sigaction");
  if (previous.sa_handler != SIG_DFL) {
    sigaction(SIGRTMIN, &previous, nullptr);
    return Error::make(EBUSY, "SIGRTMIN is already in use");
  }
  g_error.store(0);
  const int own_error = apply(g_target);
  Result<unsigned> threads =
      own_error != 0
          ? Result<unsigned>(Error::make(own_error, "dropping this thread's capabilities"))
          : apply_to_other_threads(want);
  // Ignored rather than back to the default, which would kill the process if a signal sent
  // to a thread that did not answer in time is still pending.
  signal(SIGRTMIN, SIG_IGN);
  if (!threads) return threads.error();
  drop.threads = *threads;
  return drop;
}

}  // namespace extmem::kernel
