// extmem-paging: test clients for paging. Each command checks every byte it relies on and
// exits 1 on any mismatch, so it passes only if no write was lost and nothing read wrong
// data, with or without extmem.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"

namespace {

using extmem::clients::die;
using extmem::clients::die_errno;
using extmem::clients::wait_child;

constexpr size_t kPage = 4096;
constexpr size_t kWords = kPage / sizeof(uint64_t);
constexpr uint64_t kMiB = 1 << 20;

struct Args {
  uint64_t mib = 256;
  unsigned threads = 4;
  unsigned seconds = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string opt = argv[i];
    if (i + 1 >= argc) die("%s needs a value", opt.c_str());
    unsigned long v = strtoul(argv[++i], nullptr, 10);
    if (opt == "--mib")
      a.mib = v;
    else if (opt == "--threads")
      a.threads = static_cast<unsigned>(v);
    else if (opt == "--seconds")
      a.seconds = static_cast<unsigned>(v);
    else
      die("unknown option %s", opt.c_str());
  }
  if (a.mib == 0 || a.threads == 0) die("--mib and --threads must be positive");
  return a;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

char* map(size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap %zu: %s", len, strerror(errno));
  return static_cast<char*>(p);
}

// Pages of [p, p+len) in memory, by mincore: for the shim's shared arena this is the page
// cache of the arena, i.e. what extmem keeps resident, mapped or not.
size_t resident_pages(char* p, size_t len) {
  static thread_local std::vector<unsigned char> vec;
  vec.resize(len / kPage);
  if (mincore(p, len, vec.data()) != 0) die_errno("mincore");
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// Samples residency until stopped; keeps the maximum.
class ResidencySampler {
 public:
  ResidencySampler(char* p, size_t len)
      : thread_([this, p, len] {
          while (!stop_.load()) {
            size_t n = resident_pages(p, len);
            if (n > max_.load()) max_.store(n);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }) {}
  ~ResidencySampler() { finish(); }
  size_t finish() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return max_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<size_t> max_{0};
  std::thread thread_;
};

// A page holds its index, a version and words derived from both.
void write_page(uint64_t* w, uint64_t page, uint64_t version) {
  w[0] = page;
  w[1] = version;
  for (size_t j = 2; j < kWords; ++j) w[j] = mix(page * 0x9e3779b97f4a7c15ULL ^ version ^ j);
}

// Mismatching words; version 0 means never written (all zero).
size_t check_page(const uint64_t* w, uint64_t page, uint64_t version) {
  size_t bad = 0;
  if (version == 0) {
    for (size_t j = 0; j < kWords; ++j) bad += w[j] != 0;
    return bad;
  }
  bad += w[0] != page;
  bad += w[1] != version;
  for (size_t j = 2; j < kWords; ++j) {
    bad += w[j] != mix(page * 0x9e3779b97f4a7c15ULL ^ version ^ j);
  }
  return bad;
}

// Random reads and writes of whole pages from several threads, each over its own pages
// (so the expected contents are exact), with every page checked on every read.
int integrity(const Args& a) {
  const size_t len = a.mib * kMiB;
  const size_t pages = len / kPage;
  char* buf = map(len);
  ResidencySampler sampler(buf, len);
  std::vector<uint64_t> versions(pages, 0);
  std::atomic<uint64_t> mismatches{0}, reads{0}, writes{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.seconds);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < a.threads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t * 7919 + 1);
      const size_t mine = (pages - t + a.threads - 1) / a.threads;
      uint64_t local_reads = 0, local_writes = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        for (int i = 0; i < 256; ++i) {
          const uint64_t page = (rng() % mine) * a.threads + t;
          auto* w = reinterpret_cast<uint64_t*>(buf + page * kPage);
          if (size_t bad = check_page(w, page, versions[page])) {
            if (mismatches.fetch_add(bad) == 0) {
              fprintf(stderr,
                      "page %" PRIu64 " (version %" PRIu64
                      "): %zu words wrong, first "
                      "words %#" PRIx64 " %#" PRIx64 "\n",
                      page, versions[page], bad, w[0], w[1]);
            }
          }
          ++local_reads;
          if (rng() & 1) {
            write_page(w, page, ++versions[page]);
            ++local_writes;
          }
        }
      }
      reads += local_reads;
      writes += local_writes;
    });
  }
  for (auto& t : threads) t.join();
  // A final pass over every page.
  for (uint64_t page = 0; page < pages; ++page) {
    mismatches += check_page(reinterpret_cast<uint64_t*>(buf + page * kPage), page, versions[page]);
  }
  size_t max_resident = sampler.finish();
  printf("integrity %s: %" PRIu64 " MiB, %u threads, %u s, reads %" PRIu64 ", writes %" PRIu64
         ", mismatches %" PRIu64 ", max_resident_kib %zu\n",
         mismatches ? "FAILED" : "ok", a.mib, a.threads, a.seconds, reads.load(), writes.load(),
         mismatches.load(), max_resident * 4);
  return mismatches ? 1 : 0;
}

// One thread keeps incrementing a counter in a few pages while another streams writes
// through every page (forcing evictions, also of the hammered pages): no write may be lost.
int hammer(const Args& a) {
  const size_t len = a.mib * kMiB;
  const size_t pages = len / kPage;
  char* buf = map(len);
  constexpr size_t kHot = 64;
  std::vector<uint64_t> counts(kHot, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> passes{0};
  auto hot_page = [&](size_t i) { return (i * pages / kHot) * kPage; };
  std::thread streamer([&] {
    for (uint64_t pass = 1; !stop.load(); ++pass) {
      for (size_t p = 0; p < pages; ++p) reinterpret_cast<uint64_t*>(buf + p * kPage)[1] = pass;
      passes.store(pass);
    }
  });
  std::thread writer([&] {
    while (!stop.load()) {
      for (size_t i = 0; i < kHot; ++i) {
        auto* w = reinterpret_cast<uint64_t*>(buf + hot_page(i));
        w[0] = ++counts[i];
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(a.seconds));
  stop.store(true);
  streamer.join();
  writer.join();
  uint64_t lost = 0, total = 0;
  for (size_t i = 0; i < kHot; ++i) {
    uint64_t seen = reinterpret_cast<uint64_t*>(buf + hot_page(i))[0];
    total += counts[i];
    if (seen != counts[i]) {
      if (lost++ == 0) {
        fprintf(stderr, "hot page %zu: counter %" PRIu64 ", expected %" PRIu64 "\n", i, seen,
                counts[i]);
      }
    }
  }
  // The streamer's last full pass wrote every page; a partial pass after it wrote a prefix.
  const uint64_t last = passes.load();
  for (size_t p = 0; p < pages; ++p) {
    uint64_t v = reinterpret_cast<uint64_t*>(buf + p * kPage)[1];
    if (v != last && v != last + 1) {
      if (lost++ == 0)
        fprintf(stderr, "page %zu: pass %" PRIu64 ", expected %" PRIu64 "\n", p, v, last);
    }
  }
  printf("hammer %s: %" PRIu64 " MiB, %" PRIu64 " counter writes, %" PRIu64
         " streaming passes, lost %" PRIu64 "\n",
         lost ? "FAILED" : "ok", a.mib, total, last, lost);
  return lost ? 1 : 0;
}

void wait_for_sigusr2() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  int sig;
  sigwait(&set, &sig);
}

void step(const char* name) {
  printf("step %s\n", name);
  fflush(stdout);
  wait_for_sigusr2();
}

void fill(char* p, size_t len, uint64_t seed) {
  for (size_t off = 0; off < len; off += kPage) {
    write_page(reinterpret_cast<uint64_t*>(p + off), off / kPage, seed);
  }
}

size_t verify(const char* p, size_t len, uint64_t seed) {
  size_t bad = 0;
  for (size_t off = 0; off < len; off += kPage) {
    bad += check_page(reinterpret_cast<const uint64_t*>(p + off), off / kPage, seed);
  }
  return bad;
}

// One thread reads a region of --mib MiB through again and again, checking every page,
// while another streams writes through four times as much memory: the reader's pages stay
// in use but are reset (and some evicted) under the pressure, so its scans walk over
// pages it must fault on again. The streamer writes a sixteenth of its memory per scan,
// no more, so the region stays the hotter memory however the two threads are scheduled
// (a starved reader would otherwise see its region evicted, not reset).
int rescan(const Args& a) {
  const size_t len = a.mib * kMiB;
  const size_t pages = len / kPage;
  char* region = map(len);
  char* pressure = map(4 * len);
  fill(region, len, 1);
  constexpr size_t kStepsPerPass = 16;
  const size_t step_len = 4 * len / kStepsPerPass;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> scans{0};
  std::thread streamer([&] {
    for (uint64_t step = 0; !stop.load(); ++step) {
      for (uint64_t done = scans.load(); done < step && !stop.load(); done = scans.load()) {
        scans.wait(done);
      }
      const size_t begin = (step % kStepsPerPass) * step_len;
      for (size_t off = begin; off < begin + step_len; off += kPage) {
        reinterpret_cast<uint64_t*>(pressure + off)[0] = step / kStepsPerPass + 1;
      }
    }
  });
  size_t bad = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    for (size_t p = 0; p < pages; ++p) {
      bad += check_page(reinterpret_cast<const uint64_t*>(region + p * kPage), p, 1);
    }
    scans.fetch_add(1);
    scans.notify_one();
  }
  const uint64_t scanned = scans.load();
  stop.store(true);
  scans.fetch_add(1);  // wakes a streamer waiting for the next scan
  scans.notify_one();
  streamer.join();
  printf("rescan %s: %" PRIu64 " MiB, %" PRIu64 " scans, mismatches %zu\n", bad ? "FAILED" : "ok",
         a.mib, scanned, bad);
  return bad ? 1 : 0;
}

// Memory is released in steps, each announced on stdout and continued on SIGUSR2, so a
// test can look at the daemon between them.
int steps(const Args& a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  const size_t half = a.mib * kMiB / 2;
  char* first = map(half);
  char* second = map(half);
  fill(first, half, 1);
  fill(second, half, 2);
  if (verify(first, half, 1) + verify(second, half, 2) != 0) die("data lost before any release");
  step("filled");
  if (madvise(first, half, MADV_DONTNEED) != 0) die_errno("madvise");
  if (verify(first, half, 0) != 0) die("DONTNEED memory does not read zero");
  if (verify(second, half, 2) != 0) die("data lost after DONTNEED of another block");
  step("dontneed");
  if (munmap(second, half) != 0) die_errno("munmap");
  step("unmapped");
  char* third = static_cast<char*>(malloc(half));
  if (third == nullptr) die("malloc failed");
  fill(third, half, 3);
  if (verify(third, half, 3) != 0) die("data lost in the refilled block");
  step("refilled");
  return 0;
}

// read(2) into and write(2) from buffers whose pages are in swap.
int evicted_io(const Args& a) {
  const size_t len = a.mib * kMiB;
  const size_t io_len = std::min<size_t>(8 * kMiB, len / 4);
  char* buf = map(len);
  fill(buf, len, 7);  // the first pages are evicted by the time the last are written
  const char* tmpdir = getenv("TMPDIR");
  std::string templ = std::string(tmpdir ? tmpdir : "/tmp") + "/extmem-paging-XXXXXX";
  int fd = mkstemp(templ.data());
  if (fd < 0) die_errno("mkstemp");
  unlink(templ.c_str());
  if (write(fd, buf, io_len) != static_cast<ssize_t>(io_len)) die_errno("write");
  static char check[8 << 20];
  if (pread(fd, check, io_len, 0) != static_cast<ssize_t>(io_len)) die_errno("pread");
  if (verify(check, io_len, 7) != 0) die("write(2) from evicted pages wrote wrong data");

  fill(check, io_len, 9);
  if (pwrite(fd, check, io_len, 0) != static_cast<ssize_t>(io_len)) die("pwrite failed");
  fill(buf + io_len, len - io_len, 8);  // evict the head again
  if (pread(fd, buf, io_len, 0) != static_cast<ssize_t>(io_len)) die_errno("read");
  if (verify(buf, io_len, 9) != 0) die("read(2) into evicted pages left wrong data");
  if (verify(buf + io_len, len - io_len, 8) != 0) die("the rest of the buffer changed");
  close(fd);
  printf("evicted-io ok: %zu MiB through write(2) and read(2) on a %" PRIu64 " MiB buffer\n",
         io_len / kMiB, a.mib);
  return 0;
}

// True when `p` lies in a shared mapping: the shim's arena (private anonymous memory is
// what this program maps itself).
bool in_shared_mapping(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto address = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t start = 0, end = 0;
    char perms[5] = {};
    if (sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &start, &end, perms) == 3 &&
        address >= start && address < end) {
      return perms[3] == 's';
    }
  }
  return false;
}

void expect_exit_0(const char* what, int status) {
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    die("%s: expected exit 0, got %s %d", what, WIFEXITED(status) ? "exit" : "signal",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
}

// In a forked child: new memory of its own, written and checked; exits 1 on a mismatch.
[[noreturn]] void use_own_memory() {
  size_t bad = 0;
  for (size_t len : {size_t{64} << 10, size_t{1} << 20, size_t{8} << 20}) {
    auto* p = static_cast<char*>(malloc(len));
    if (p == nullptr) _exit(2);
    fill(p, len, 11);
    bad += verify(p, len, 11);
    free(p);
  }
  char* mapped = map(4 * kMiB);
  fill(mapped, 4 * kMiB, 12);
  bad += verify(mapped, 4 * kMiB, 12);
  _exit(bad == 0 ? 0 : 1);
}

// Worker threads keep reading (checking) and writing their own pages of a buffer four times
// the limit, so pages are evicted and restored all along, while the main thread forks in
// turn: a child using only memory of its own, fork+exec and posix_spawn of /bin/true, and a
// child touching the parent's managed buffer, which must die by SIGSEGV (the arena is
// MADV_DONTFORK) without changing it.
int fork_while_paging(const Args& a) {
  const size_t len = a.mib * kMiB;
  const size_t pages = len / kPage;
  char* buf = map(len);
  const bool managed = in_shared_mapping(buf);
  std::vector<uint64_t> versions(pages, 0);
  std::atomic<uint64_t> mismatches{0}, reads{0}, writes{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < a.threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(t * 104729 + 3);
      const size_t mine = (pages - t + a.threads - 1) / a.threads;
      while (!stop.load()) {
        const uint64_t page = (rng() % mine) * a.threads + t;
        auto* w = reinterpret_cast<uint64_t*>(buf + page * kPage);
        if (size_t bad = check_page(w, page, versions[page]); bad != 0) {
          if (mismatches.fetch_add(bad) == 0) {
            fprintf(stderr, "page %" PRIu64 " (version %" PRIu64 "): %zu words wrong\n", page,
                    versions[page], bad);
          }
        }
        reads.fetch_add(1, std::memory_order_relaxed);
        if (rng() & 1) {
          write_page(w, page, ++versions[page]);
          writes.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }

  char true_path[] = "/bin/true";
  char* const true_argv[] = {true_path, nullptr};
  uint64_t own = 0, execs = 0, spawns = 0, touchers = 0;
  std::mt19937_64 rng(7);
  fflush(stdout);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.seconds);
  for (unsigned round = 0; std::chrono::steady_clock::now() < deadline; ++round) {
    // Paced, so that the workers' paging dominates and the exec'd children (clients
    // themselves, under LD_PRELOAD) do not flood the daemon.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (round % 4 == 0) {
      const pid_t pid = fork();
      if (pid < 0) die_errno("fork");
      if (pid == 0) use_own_memory();
      expect_exit_0("child using its own memory", wait_child(pid));
      ++own;
    } else if (round % 4 == 1) {
      const pid_t pid = fork();
      if (pid < 0) die_errno("fork");
      if (pid == 0) {
        execv(true_path, true_argv);
        _exit(127);
      }
      expect_exit_0("fork+exec of /bin/true", wait_child(pid));
      ++execs;
    } else if (round % 4 == 2) {
      pid_t pid = 0;
      if (const int err = posix_spawn(&pid, true_path, nullptr, nullptr, true_argv, environ)) {
        die("posix_spawn: %s", strerror(err));
      }
      expect_exit_0("posix_spawn of /bin/true", wait_child(pid));
      ++spawns;
    } else {
      const uint64_t page = rng() % pages;
      const bool write = round % 8 == 3;
      const pid_t pid = fork();
      if (pid < 0) die_errno("fork");
      if (pid == 0) {
        const struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGSEGV, SIG_DFL);
        auto* w = reinterpret_cast<volatile uint64_t*>(buf + page * kPage);
        if (write) {
          for (size_t j = 0; j < kWords; ++j) w[j] = ~uint64_t{0};
        }
        _exit(w[0] == page || w[0] == 0 ? 0 : 1);
      }
      const int status = wait_child(pid);
      if (managed && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)) {
        die("a child %s the parent's managed page %" PRIu64 " did not die by SIGSEGV",
            write ? "writing" : "reading", page);
      }
      if (!managed) expect_exit_0("a child touching its copy of the buffer", status);
      ++touchers;
    }
  }
  stop.store(true);
  for (auto& t : workers) t.join();
  for (uint64_t page = 0; page < pages; ++page) {
    mismatches += check_page(reinterpret_cast<uint64_t*>(buf + page * kPage), page, versions[page]);
  }
  printf("fork-while-paging %s: %" PRIu64 " MiB %s, children: %" PRIu64 " own-memory, %" PRIu64
         " fork+exec, %" PRIu64 " posix_spawn, %" PRIu64 " touchers %s; reads %" PRIu64
         ", writes %" PRIu64 ", mismatches %" PRIu64 "\n",
         mismatches ? "FAILED" : "ok", a.mib, managed ? "managed" : "unmanaged", own, execs, spawns,
         touchers, managed ? "killed by SIGSEGV" : "exited", reads.load(), writes.load(),
         mismatches.load());
  return mismatches ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fputs(
        "usage: extmem-paging integrity|hammer|rescan|steps|evicted-io|fork-while-paging [--mib N] "
        "[--threads T] [--seconds S]\n",
        stderr);
    return 2;
  }
  std::string cmd = argv[1];
  Args a = parse(argc, argv);
  if (cmd == "integrity") return integrity(a);
  if (cmd == "hammer") return hammer(a);
  if (cmd == "rescan") return rescan(a);
  if (cmd == "steps") return steps(a);
  if (cmd == "evicted-io") return evicted_io(a);
  if (cmd == "fork-while-paging") return fork_while_paging(a);
  die("unknown command %s", cmd.c_str());
}
