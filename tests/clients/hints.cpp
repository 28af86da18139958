// A client of the hint API for the integration tests: it runs under the shim and finds
// extmem_advise & co. with dlsym, so it also runs (and reports) without it.
//
//   hints cold-hot --mib N [--switch-policy P]
//                                 hot, other and cold regions of N MiB each (in that order),
//                                 then (after extmem_set_policy(P), if given) 2N MiB of
//                                 pressure; prints how much of each stayed resident
//   hints willneed --mib N        N MiB evicted, WILLNEED, then a random-order read of it;
//                                 prints the major faults the read took
//   hints no-willneed --mib N     the same without the hint
//   hints read-back --mib N --order ORDER [--stride S]
//                                 N MiB evicted, then read back in ORDER: seq, seq-pauses
//                                 (seq, stopping to count the pages read ahead), random,
//                                 windows (2 MiB windows in random order, each swept),
//                                 blocks (every other 128-page block, in random
//                                 order, then pressure that evicts them), stride (every S-th page)
//                                 or backward; prints the major faults the read took, then waits to
//                                 be stopped
//   hints stats                   prints extmem_get_stats, then waits to be stopped
//   hints set-policy NAME         extmem_set_policy(NAME); prints the result, then waits
//   hints no-daemon               every call must fail with ENODEV; memory still works
// Every command checks its data and prints "mismatches N".
#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "extmem.h"

namespace {

using extmem::clients::die;
using extmem::clients::die_errno;

constexpr size_t kPage = 4096;
constexpr size_t kMiB = 1 << 20;

using AdviseFn = int (*)(void*, size_t, int);
using SetPolicyFn = int (*)(const char*);
using GetStatsFn = int (*)(extmem_stats*);

AdviseFn g_advise;
SetPolicyFn g_set_policy;
GetStatsFn g_get_stats;

void find_api() {
  g_advise = reinterpret_cast<AdviseFn>(dlsym(RTLD_DEFAULT, "extmem_advise"));
  g_set_policy = reinterpret_cast<SetPolicyFn>(dlsym(RTLD_DEFAULT, "extmem_set_policy"));
  g_get_stats = reinterpret_cast<GetStatsFn>(dlsym(RTLD_DEFAULT, "extmem_get_stats"));
  if (g_advise == nullptr || g_set_policy == nullptr || g_get_stats == nullptr) {
    die("the extmem API is not loaded (run under LD_PRELOAD=libextmem.so)");
  }
}

extmem_stats stats() {
  extmem_stats s = {};
  s.size = sizeof(s);
  if (g_get_stats(&s) != 0) die_errno("extmem_get_stats");
  return s;
}

void advise(void* p, size_t len, int hint) {
  if (g_advise(p, len, hint) != 0) die_errno("extmem_advise");
}

// Waits until the daemon applied `applied` hints in all.
void wait_applied(uint64_t applied) {
  for (int i = 0; i < 1000 && stats().hints_applied < applied; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (stats().hints_applied < applied) {
    die("the daemon applied %llu of %llu hints",
        static_cast<unsigned long long>(stats().hints_applied),
        static_cast<unsigned long long>(applied));
  }
}

unsigned char* allocate(size_t bytes) {
  auto* p = static_cast<unsigned char*>(malloc(bytes));
  if (p == nullptr) die_errno("malloc");
  return p;
}

// A word per page, different for every page of every region.
void fill(unsigned char* p, size_t bytes, uint64_t seed) {
  for (size_t off = 0; off < bytes; off += kPage) {
    const uint64_t v = seed * 1000003 + off / kPage;
    memcpy(p + off, &v, sizeof(v));
  }
}

uint64_t check(const unsigned char* p, size_t bytes, uint64_t seed) {
  uint64_t bad = 0;
  for (size_t off = 0; off < bytes; off += kPage) {
    uint64_t v;
    memcpy(&v, p + off, sizeof(v));
    bad += v != seed * 1000003 + off / kPage;
  }
  return bad;
}

size_t resident_pages(const unsigned char* p, size_t bytes) {
  std::vector<unsigned char> vec(bytes / kPage);
  if (mincore(const_cast<unsigned char*>(p), bytes, vec.data()) != 0) die_errno("mincore");
  return static_cast<size_t>(
      std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return (c & 1) != 0; }));
}

const char* option(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

size_t mib_arg(int argc, char** argv) {
  return strtoull(option(argc, argv, "--mib", "16"), nullptr, 10);
}

int cold_hot(size_t mib, const char* switch_policy) {
  const size_t bytes = mib * kMiB;
  // By age alone the hot region would go first and the cold one last.
  unsigned char* hot = allocate(bytes);
  unsigned char* other = allocate(bytes);
  unsigned char* cold = allocate(bytes);
  fill(hot, bytes, 1);
  fill(other, bytes, 3);
  fill(cold, bytes, 2);
  const uint64_t applied = stats().hints_applied;
  advise(hot, bytes, EXTMEM_HINT_HOT);
  advise(cold, bytes, EXTMEM_HINT_COLD);
  wait_applied(applied + 2);
  if (switch_policy != nullptr && g_set_policy(switch_policy) != 0) die_errno("extmem_set_policy");
  // Pressure, written after the hints: a little more than the cold region must go.
  const size_t pressure_bytes = 2 * bytes;
  unsigned char* pressure = allocate(pressure_bytes);
  fill(pressure, pressure_bytes, 4);
  // Let reclaim settle below the limit.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  printf("hot_resident_pages %zu cold_resident_pages %zu other_resident_pages %zu of %zu\n",
         resident_pages(hot, bytes), resident_pages(cold, bytes), resident_pages(other, bytes),
         bytes / kPage);
  const uint64_t bad = check(hot, bytes, 1) + check(cold, bytes, 2) + check(other, bytes, 3) +
                       check(pressure, pressure_bytes, 4);
  printf("mismatches %llu\n", static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 1;
}

// Pushes `bytes` of earlier data out (under a limit of twice that), then frees the pressure.
void push_out(size_t bytes) {
  unsigned char* pressure = allocate(3 * bytes);
  fill(pressure, 3 * bytes, 6);
  free(pressure);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

int willneed(size_t mib, bool hint) {
  const size_t bytes = mib * kMiB;
  unsigned char* data = allocate(bytes);
  fill(data, bytes, 5);
  // Freed after, so there is room to bring the data back.
  push_out(bytes);
  const size_t pages = bytes / kPage;
  const size_t resident_before = resident_pages(data, bytes);
  const extmem_stats before = stats();
  if (hint) {
    advise(data, bytes, EXTMEM_HINT_WILLNEED);
    wait_applied(before.hints_applied + 1);
  }
  const extmem_stats hinted = stats();
  // A random order: read-ahead cannot help, each evicted page would be a major fault.
  std::vector<size_t> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(9));
  uint64_t bad = 0;
  for (size_t page : order) {
    uint64_t v;
    memcpy(&v, data + page * kPage, sizeof(v));
    bad += v != 5 * 1000003 + page;
  }
  const extmem_stats after = stats();
  printf("pages %zu evicted_before %zu prefetched %llu read_major_faults %llu\n", pages,
         pages - resident_before,
         // WILLNEED starts the reads; they complete while (or before) the pages are read.
         static_cast<unsigned long long>(after.prefetched_pages - before.prefetched_pages),
         static_cast<unsigned long long>(after.major_faults - hinted.major_faults));
  printf("mismatches %llu\n", static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 1;
}

void print_stats(const extmem_stats& s);
void wait_to_be_stopped();

int read_back(size_t mib, const std::string& order, size_t stride) {
  const size_t bytes = mib * kMiB;
  const size_t pages = bytes / kPage;
  unsigned char* data = allocate(bytes);
  fill(data, bytes, 5);
  push_out(bytes);
  const size_t resident_before = resident_pages(data, bytes);
  std::vector<size_t> sequence;
  // seq-pauses: seq, stopping at 16 places in the middle, a little over half a read-ahead
  // window apart, to count the pages in memory ahead of the reader once the reads in
  // flight have landed: how far its read-ahead reaches.
  std::vector<size_t> pauses;
  if (order == "seq-pauses") {
    for (size_t k = 0; k < 16; ++k) pauses.push_back(pages / 4 + k * 131);
  }
  if (order == "seq" || order == "seq-pauses") {
    for (size_t p = 0; p < pages; ++p) sequence.push_back(p);
  } else if (order == "backward") {
    for (size_t p = pages; p-- > 0;) sequence.push_back(p);
  } else if (order == "stride") {
    for (size_t p = 0; p < pages; p += stride) sequence.push_back(p);
  } else if (order == "random") {
    sequence.resize(pages);
    std::iota(sequence.begin(), sequence.end(), 0);
    std::shuffle(sequence.begin(), sequence.end(), std::mt19937_64(9));
  } else if (order == "windows") {
    constexpr size_t kWindow = 512;  // 2 MiB
    std::vector<size_t> windows(pages / kWindow);
    std::iota(windows.begin(), windows.end(), 0);
    std::shuffle(windows.begin(), windows.end(), std::mt19937_64(13));
    for (size_t w : windows) {
      for (size_t p = w * kWindow; p < (w + 1) * kWindow; ++p) sequence.push_back(p);
    }
  } else if (order == "blocks") {
    constexpr size_t kBlock = 128;
    std::vector<size_t> blocks;
    for (size_t b = 0; b < pages / kBlock; b += 2) blocks.push_back(b);
    std::shuffle(blocks.begin(), blocks.end(), std::mt19937_64(11));
    for (size_t b : blocks) {
      for (size_t p = b * kBlock; p < (b + 1) * kBlock; ++p) sequence.push_back(p);
    }
  } else {
    die("unknown order %s", order.c_str());
  }
  size_t min_ahead = SIZE_MAX;
  auto read_sequence = [&] {
    uint64_t bad = 0;
    for (size_t page : sequence) {
      if (std::binary_search(pauses.begin(), pauses.end(), page)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::vector<unsigned char> vec(std::min<size_t>(1024, pages - page));
        if (mincore(data + page * kPage, vec.size() * kPage, vec.data()) != 0) die_errno("mincore");
        const auto absent =
            std::find_if(vec.begin(), vec.end(), [](unsigned char c) { return (c & 1) == 0; });
        min_ahead = std::min<size_t>(min_ahead, absent - vec.begin());
      }
      uint64_t v;
      memcpy(&v, data + page * kPage, sizeof(v));
      bad += v != 5 * 1000003 + page;
    }
    return bad;
  };
  const extmem_stats before = stats();
  uint64_t bad = read_sequence();
  const extmem_stats after = stats();
  printf("pages_read %zu evicted_before %zu read_major_faults %llu\n", sequence.size(),
         pages - resident_before,
         static_cast<unsigned long long>(after.major_faults - before.major_faults));
  if (!pauses.empty()) printf("min_ahead %zu\n", min_ahead);
  if (order == "blocks") {
    // What was read ahead and not used goes out again; the blocks read come back right;
    // then out again, so that no marker is left in memory.
    push_out(bytes);
    bad += read_sequence();
    push_out(bytes);
  } else {
    bad += check(data, bytes, 5);
  }
  print_stats(stats());
  printf("mismatches %llu\n", static_cast<unsigned long long>(bad));
  wait_to_be_stopped();
  return bad == 0 ? 0 : 1;
}

void print_stats(const extmem_stats& s) {
  printf(
      "size %u limit_bytes %llu resident_bytes %llu swapped_bytes %llu first_touch_faults %llu "
      "major_faults %llu evictions %llu prefetched_pages %llu hints_received %llu "
      "hints_applied %llu hints_invalid %llu hints_ring_full %llu policy %s prefetch_markers %llu "
      "prefetch_markers_used %llu\n",
      s.size, static_cast<unsigned long long>(s.limit_bytes),
      static_cast<unsigned long long>(s.resident_bytes),
      static_cast<unsigned long long>(s.swapped_bytes),
      static_cast<unsigned long long>(s.first_touch_faults),
      static_cast<unsigned long long>(s.major_faults), static_cast<unsigned long long>(s.evictions),
      static_cast<unsigned long long>(s.prefetched_pages),
      static_cast<unsigned long long>(s.hints_received),
      static_cast<unsigned long long>(s.hints_applied),
      static_cast<unsigned long long>(s.hints_invalid),
      static_cast<unsigned long long>(s.hints_ring_full), s.policy,
      static_cast<unsigned long long>(s.prefetch_markers),
      static_cast<unsigned long long>(s.prefetch_markers_used));
}

// Stays registered (for a minute at most) while the test looks at the daemon's view.
void wait_to_be_stopped() {
  printf("ready\n");
  fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(60));
}

int stats_command() {
  // Paging (run it with a limit below 16 MiB) and a few hints first, so the counters are
  // not all zero.
  const size_t bytes = 16 * kMiB;
  unsigned char* data = allocate(bytes);
  fill(data, bytes, 7);
  const uint64_t bad = check(data, bytes, 7);
  const uint64_t applied = stats().hints_applied;
  advise(data, bytes, EXTMEM_HINT_SEQUENTIAL);
  advise(data, bytes, EXTMEM_HINT_NORMAL);
  wait_applied(applied + 2);
  // Reclaim settles below the limit, then nothing changes while the test compares.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  print_stats(stats());
  printf("mismatches %llu\n", static_cast<unsigned long long>(bad));
  wait_to_be_stopped();
  return 0;
}

int set_policy(const char* name) {
  const int r = g_set_policy(name);
  printf("set_policy %s -> %d errno %s\n", name, r, r == 0 ? "0" : strerrorname_np(errno));
  print_stats(stats());
  printf("mismatches 0\n");
  wait_to_be_stopped();
  return 0;
}

int no_daemon() {
  int failures = 0;
  auto expect_enodev = [&](const char* what, int r) {
    const bool ok = r == -1 && errno == ENODEV;
    printf("%s -> %d %s\n", what, r, r == 0 ? "" : strerrorname_np(errno));
    failures += !ok;
  };
  const size_t bytes = 4 * kMiB;
  unsigned char* data = allocate(bytes);
  fill(data, bytes, 8);
  expect_enodev("advise", g_advise(data, bytes, EXTMEM_HINT_WILLNEED));
  expect_enodev("set_policy", g_set_policy("fifo"));
  extmem_stats s = {};
  s.size = sizeof(s);
  expect_enodev("get_stats", g_get_stats(&s));
  // madvise with the hints the shim honours is still fine on unmanaged memory.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die_errno("mmap");
  if (madvise(p, bytes, MADV_WILLNEED) != 0 || madvise(p, bytes, MADV_COLD) != 0)
    die_errno("madvise");
  using StatusFn = int (*)();
  auto status = reinterpret_cast<StatusFn>(dlsym(RTLD_DEFAULT, "extmem_status"));
  printf("status %d failures %d\n", status(), failures);
  printf("mismatches %llu\n", static_cast<unsigned long long>(check(data, bytes, 8)));
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) {
    fprintf(stderr,
            "usage: hints cold-hot|willneed|read-back|stats|set-policy NAME|no-daemon [--mib N]\n");
    return 2;
  }
  find_api();
  const std::string command = argv[1];
  if (command == "cold-hot") {
    return cold_hot(mib_arg(argc, argv), option(argc, argv, "--switch-policy", nullptr));
  }
  if (command == "willneed") return willneed(mib_arg(argc, argv), true);
  if (command == "no-willneed") return willneed(mib_arg(argc, argv), false);
  if (command == "stats") return stats_command();
  if (command == "read-back") {
    return read_back(mib_arg(argc, argv), option(argc, argv, "--order", "seq"),
                     strtoull(option(argc, argv, "--stride", "16"), nullptr, 10));
  }
  if (command == "set-policy" && argc >= 3) return set_policy(argv[2]);
  if (command == "no-daemon") return no_daemon();
  fprintf(stderr, "hints: unknown command %s\n", argv[1]);
  return 2;
}
