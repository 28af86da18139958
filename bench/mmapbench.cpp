// extmem-mmapbench: a memory-access microbenchmark in the manner of ExtMem's mmapbench.
//
// It maps a private anonymous working set, writes every page once (populate), then lets N
// threads touch pages in a chosen pattern for a fixed time and reports pages touched per
// second, periodically and at the end. Run it under the shim to measure extmem, in a
// memory cgroup with kernel swap to measure the kernel, or alone for the in-RAM ceiling.
//
// Every page holds a counter (word 0, starts at the page number) and a tag (word 1, a hash
// of the page number, never changed after populate). `--verify` re-reads every page after
// the measurement: each tag must be intact and the counters must have grown by exactly the
// number of read-modify-writes done, so a lost write or a page restored with the wrong
// contents fails the run (exit status 2).
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace {

using extmem::bench::die;
using extmem::bench::parse_count;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kWindowPages = (2u << 20) / kPage;  // 2 MiB windows
constexpr uint64_t kStridePages = 16;                  // the stride pattern's step
constexpr uint64_t kBatch = 64;                        // pages between counter updates
constexpr uint64_t kTagSalt = 0x5eed'b10c'c0ff'ee00ULL;

enum class Pattern { kSeq, kWindow, kRandom, kHotset, kStride };
enum class Op { kRead, kRmw };
// Advice given through madvise (which the extmem shim turns into hints to extmemd).
enum class Hint { kNone, kSequential, kRandom, kWillNeedWindow };

const char* hint_name(Hint h) {
  switch (h) {
    case Hint::kNone:
      return "none";
    case Hint::kSequential:
      return "sequential";
    case Hint::kRandom:
      return "random";
    case Hint::kWillNeedWindow:
      return "willneed-window";
  }
  return "?";
}

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::kSeq:
      return "seq";
    case Pattern::kWindow:
      return "window";
    case Pattern::kRandom:
      return "random";
    case Pattern::kHotset:
      return "hotset";
    case Pattern::kStride:
      return "stride";
  }
  return "?";
}

void usage(FILE* out) {
  fputs(
      "usage: extmem-mmapbench [options]\n"
      "  --size SIZE             working set, private anonymous mmap (e.g. 512M, 2G; default 1G)\n"
      "  --threads N             worker threads (default 2)\n"
      "  --pattern P             seq | window | random | hotset | stride (default seq)\n"
      "                            seq: each thread sweeps its own contiguous share\n"
      "                            window: random 2 MiB windows, each swept page by page\n"
      "                            random: uniform random 4 KiB pages\n"
      "                            hotset: 90% of accesses to a hot 10% of pages\n"
      "                            stride: each thread sweeps its share every 16th page,\n"
      "                            then again one page further on\n"
      "  --op O                  read | rmw (default read)\n"
      "  --hint H                none | sequential | random | willneed-window (default none)\n"
      "                            sequential, random: madvise the whole working set\n"
      "                            willneed-window: window pattern; MADV_WILLNEED on each\n"
      "                            thread's next window when it starts the current one\n"
      "  --seconds S             measurement time after populate (default 10)\n"
      "  --report-interval MS    print 'T <ms> <pages_per_sec>' every MS ms (0: off; "
      "default 1000)\n"
      "  --seed N                random seed (default 1)\n"
      "  --verify                check every page's contents after the measurement\n"
      "output: 'BENCH pid=...', 'POPULATE ...', interval lines 'T <ms> <pages_per_sec>'\n"
      "(ms since the measurement started; the rate over the last interval), then\n"
      "  RESULT pattern=... op=... threads=... size=... pages_per_sec=... ...\n",
      out);
}

bool parse_size(const char* text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  if (*text == '-') return false;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text) return false;
  uint64_t mult = 1;
  switch (*end) {
    case '\0':
      break;
    case 'k':
    case 'K':
      mult = 1ULL << 10;
      ++end;
      break;
    case 'm':
    case 'M':
      mult = 1ULL << 20;
      ++end;
      break;
    case 'g':
    case 'G':
      mult = 1ULL << 30;
      ++end;
      break;
    case 't':
    case 'T':
      mult = 1ULL << 40;
      ++end;
      break;
    default:
      return false;
  }
  if (*end == 'i' || *end == 'B') ++end;  // 1GiB, 1GB, 1G all mean 2^30
  if (*end == 'B') ++end;
  if (*end != '\0' || v > UINT64_MAX / mult) return false;
  *out = v * mult;
  return true;
}

struct Args {
  uint64_t size = 1ULL << 30;
  unsigned threads = 2;
  Pattern pattern = Pattern::kSeq;
  Op op = Op::kRead;
  Hint hint = Hint::kNone;
  double seconds = 10;
  uint64_t report_ms = 1000;
  uint64_t seed = 1;
  bool verify = false;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--help" || opt == "-h") {
      usage(stdout);
      exit(0);
    }
    if (opt == "--verify") {
      a.verify = true;
      continue;
    }
    if (i + 1 >= argc) die("%s needs a value (see --help)", opt.c_str());
    const char* v = argv[++i];
    if (opt == "--size") {
      if (!parse_size(v, &a.size)) die("--size needs a size such as 512M or 2G, not '%s'", v);
    } else if (opt == "--threads") {
      a.threads = static_cast<unsigned>(parse_count(opt.c_str(), v, 0, 1024));
    } else if (opt == "--pattern") {
      const std::string p = v;
      if (p == "seq") {
        a.pattern = Pattern::kSeq;
      } else if (p == "window") {
        a.pattern = Pattern::kWindow;
      } else if (p == "random") {
        a.pattern = Pattern::kRandom;
      } else if (p == "hotset") {
        a.pattern = Pattern::kHotset;
      } else if (p == "stride") {
        a.pattern = Pattern::kStride;
      } else {
        die("--pattern needs seq, window, random, hotset or stride, not '%s'", v);
      }
    } else if (opt == "--op") {
      const std::string o = v;
      if (o == "read") {
        a.op = Op::kRead;
      } else if (o == "rmw") {
        a.op = Op::kRmw;
      } else {
        die("--op needs read or rmw, not '%s'", v);
      }
    } else if (opt == "--hint") {
      const std::string h = v;
      if (h == "none") {
        a.hint = Hint::kNone;
      } else if (h == "sequential") {
        a.hint = Hint::kSequential;
      } else if (h == "random") {
        a.hint = Hint::kRandom;
      } else if (h == "willneed-window") {
        a.hint = Hint::kWillNeedWindow;
      } else {
        die("--hint needs none, sequential, random or willneed-window, not '%s'", v);
      }
    } else if (opt == "--seconds") {
      char* end = nullptr;
      a.seconds = strtod(v, &end);
      if (end == v || *end != '\0' || !(a.seconds > 0) || a.seconds > 86400) {
        die("--seconds needs a positive number, not '%s'", v);
      }
    } else if (opt == "--report-interval") {
      a.report_ms = parse_count(opt.c_str(), v, 0, 3'600'000);
    } else if (opt == "--seed") {
      a.seed = parse_count(opt.c_str(), v, 0, UINT64_MAX);
    } else {
      die("unknown option '%s' (see --help)", opt.c_str());
    }
  }
  if (a.threads == 0) die("--threads must be at least 1");
  if (a.hint == Hint::kWillNeedWindow && a.pattern != Pattern::kWindow) {
    die("--hint willneed-window needs --pattern window");
  }
  if (a.size < kPage * a.threads) die("--size must give every thread at least one page");
  return a;
}

// splitmix64: fast, good enough for choosing pages, one state word per thread.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is negligible for page counts).
  uint64_t below(uint64_t n) {
    __extension__ using u128 = unsigned __int128;
    return static_cast<uint64_t>((static_cast<u128>(next()) * n) >> 64);
  }
};

uint64_t tag_of(uint64_t page) {
  uint64_t x = page ^ kTagSalt;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x | 1;  // never zero
}

// One worker's results, on its own cache line.
struct alignas(64) Worker {
  std::atomic<uint64_t> pages{0};  // pages touched, published every kBatch pages
  uint64_t sum = 0;                // read results, so the loads are not optimized away
  uint64_t increments = 0;         // read-modify-writes done
};

// Chooses the next page of one thread's access stream.
class PageStream {
 public:
  // `willneed_base`: advise MADV_WILLNEED on each next window (of the mapping there).
  PageStream(Pattern pattern, uint64_t pages, unsigned thread, unsigned threads, uint64_t seed,
             unsigned char* willneed_base)
      : pattern_(pattern),
        pages_(pages),
        rng_{seed * 0x100000001b3ULL + thread + 1},
        willneed_base_(willneed_base) {
    // seq: a contiguous share per thread; the last one takes the remainder.
    const uint64_t share = pages / threads;
    begin_ = share * thread;
    end_ = thread + 1 == threads ? pages : begin_ + share;
    cursor_ = begin_;
    hot_ = std::max<uint64_t>(1, pages / 10);
    windows_ = (pages + kWindowPages - 1) / kWindowPages;
    window_pos_ = window_end_ = 0;
    next_window_ = rng_.below(windows_) * kWindowPages;
  }

  uint64_t next() {
    switch (pattern_) {
      case Pattern::kSeq: {
        const uint64_t p = cursor_++;
        if (cursor_ == end_) cursor_ = begin_;
        return p;
      }
      case Pattern::kWindow:
        if (window_pos_ == window_end_) {
          // Drawn one window ahead, so the next one can be advised while this one is read.
          window_pos_ = next_window_;
          window_end_ = std::min(window_pos_ + kWindowPages, pages_);
          next_window_ = rng_.below(windows_) * kWindowPages;
          if (willneed_base_ != nullptr) {
            const uint64_t next_end = std::min(next_window_ + kWindowPages, pages_);
            madvise(willneed_base_ + next_window_ * kPage, (next_end - next_window_) * kPage,
                    MADV_WILLNEED);
          }
        }
        return window_pos_++;
      case Pattern::kRandom:
        return rng_.below(pages_);
      case Pattern::kHotset:
        if (hot_ == pages_ || rng_.below(10) != 0) return rng_.below(hot_);
        return hot_ + rng_.below(pages_ - hot_);
      case Pattern::kStride: {
        const uint64_t p = cursor_;
        cursor_ += kStridePages;
        if (cursor_ >= end_) cursor_ = begin_ + (p - begin_ + 1) % kStridePages;
        return p;
      }
    }
    return 0;
  }

 private:
  Pattern pattern_;
  uint64_t pages_;
  Rng rng_;
  uint64_t begin_, end_, cursor_;
  uint64_t hot_;
  uint64_t windows_, window_pos_, window_end_, next_window_;
  unsigned char* willneed_base_;
};

double now_seconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::atomic<bool> g_stop{false};

template <Op kOp>
void run_worker(unsigned char* base, uint64_t pages, Pattern pattern, unsigned thread,
                unsigned threads, uint64_t seed, bool willneed, Worker* w) {
  PageStream stream(pattern, pages, thread, threads, seed, willneed ? base : nullptr);
  uint64_t done = 0;
  uint64_t sum = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    for (uint64_t i = 0; i < kBatch; ++i) {
      auto* word = reinterpret_cast<uint64_t*>(base + stream.next() * kPage);
      if constexpr (kOp == Op::kRead) {
        sum += *reinterpret_cast<volatile uint64_t*>(word);
      } else {
        // Atomic so that concurrent threads on one page lose no increment and --verify
        // can count them exactly.
        std::atomic_ref<uint64_t>(*word).fetch_add(1, std::memory_order_relaxed);
      }
    }
    done += kBatch;
    w->pages.store(done, std::memory_order_relaxed);
  }
  w->sum = sum;
  if constexpr (kOp == Op::kRmw) w->increments = done;
}

// Writes every page of [first, last) once: counter = page number, tag = hash of it.
void populate(unsigned char* base, uint64_t first, uint64_t last) {
  for (uint64_t p = first; p < last; ++p) {
    auto* words = reinterpret_cast<uint64_t*>(base + p * kPage);
    words[0] = p;
    words[1] = tag_of(p);
  }
}

struct VerifyResult {
  uint64_t bad_tags = 0;
  uint64_t first_bad = UINT64_MAX;
  uint64_t first_bad_value = 0;
  uint64_t counter_delta = 0;  // sum of (counter - page number)
};

void verify(const unsigned char* base, uint64_t first, uint64_t last, VerifyResult* r) {
  for (uint64_t p = first; p < last; ++p) {
    const auto* words = reinterpret_cast<const uint64_t*>(base + p * kPage);
    if (words[1] != tag_of(p)) {
      if (r->bad_tags++ == 0) {
        r->first_bad = p;
        r->first_bad_value = words[1];
      }
    }
    r->counter_delta += words[0] - p;
  }
}

// Runs fn(thread, first, last) on every thread's contiguous share of the pages.
template <typename Fn>
void parallel_shares(uint64_t pages, unsigned threads, Fn fn) {
  std::vector<std::thread> pool;
  const uint64_t share = pages / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const uint64_t first = share * t;
    const uint64_t last = t + 1 == threads ? pages : first + share;
    pool.emplace_back([=] { fn(t, first, last); });
  }
  for (auto& th : pool) th.join();
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  setvbuf(stdout, nullptr, _IOLBF, 0);

  const uint64_t pages = args.size / kPage;
  const uint64_t len = pages * kPage;
  void* mapped = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) die("mmap %" PRIu64 " bytes: %s", len, strerror(errno));
  auto* base = static_cast<unsigned char*>(mapped);
  printf("BENCH pid=%d pattern=%s op=%s threads=%u size=%" PRIu64 " hint=%s\n",
         static_cast<int>(getpid()), pattern_name(args.pattern),
         args.op == Op::kRead ? "read" : "rmw", args.threads, len, hint_name(args.hint));

  const double populate_start = now_seconds();
  parallel_shares(pages, args.threads,
                  [&](unsigned, uint64_t first, uint64_t last) { populate(base, first, last); });
  const double populate_s = now_seconds() - populate_start;
  printf("POPULATE pages=%" PRIu64 " ms=%.0f pages_per_sec=%.0f\n", pages, populate_s * 1e3,
         static_cast<double>(pages) / populate_s);
  if (args.hint == Hint::kSequential || args.hint == Hint::kRandom) {
    if (madvise(base, len, args.hint == Hint::kSequential ? MADV_SEQUENTIAL : MADV_RANDOM) != 0) {
      die("madvise: %s", strerror(errno));
    }
  }
  const bool willneed = args.hint == Hint::kWillNeedWindow;

  std::vector<Worker> workers(args.threads);
  std::vector<std::thread> pool;
  const double start = now_seconds();
  for (unsigned t = 0; t < args.threads; ++t) {
    Worker* w = &workers[t];
    if (args.op == Op::kRead) {
      pool.emplace_back(run_worker<Op::kRead>, base, pages, args.pattern, t, args.threads,
                        args.seed, willneed, w);
    } else {
      pool.emplace_back(run_worker<Op::kRmw>, base, pages, args.pattern, t, args.threads, args.seed,
                        willneed, w);
    }
  }
  auto total_pages = [&] {
    uint64_t n = 0;
    for (const Worker& w : workers) n += w.pages.load(std::memory_order_relaxed);
    return n;
  };

  const double end = start + args.seconds;
  if (args.report_ms == 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
  } else {
    const double interval = static_cast<double>(args.report_ms) * 1e-3;
    double last_t = start;
    uint64_t last_n = 0;
    for (uint64_t tick = 1;; ++tick) {
      const double due = std::min(start + interval * static_cast<double>(tick), end);
      const double wait = due - now_seconds();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      const double t = now_seconds();
      const uint64_t n = total_pages();
      printf("T %.0f %.0f\n", (t - start) * 1e3, static_cast<double>(n - last_n) / (t - last_t));
      last_t = t;
      last_n = n;
      if (due >= end) break;
    }
  }
  g_stop.store(true, std::memory_order_relaxed);
  for (auto& th : pool) th.join();
  const double elapsed = now_seconds() - start;

  uint64_t touched = 0, increments = 0, sum = 0;
  for (const Worker& w : workers) {
    touched += w.pages.load(std::memory_order_relaxed);
    increments += w.increments;
    sum += w.sum;
  }
  printf("RESULT pattern=%s op=%s threads=%u size=%" PRIu64
         " pages_per_sec=%.0f seconds=%.3f "
         "pages=%" PRIu64 " populate_ms=%.0f checksum=%" PRIx64 "\n",
         pattern_name(args.pattern), args.op == Op::kRead ? "read" : "rmw", args.threads, len,
         static_cast<double>(touched) / elapsed, elapsed, touched, populate_s * 1e3, sum);

  if (args.verify) {
    std::vector<VerifyResult> results(args.threads);
    const double verify_start = now_seconds();
    parallel_shares(pages, args.threads, [&](unsigned t, uint64_t first, uint64_t last) {
      verify(base, first, last, &results[t]);
    });
    uint64_t bad = 0, delta = 0, first_bad = UINT64_MAX, first_bad_value = 0;
    for (const VerifyResult& r : results) {
      bad += r.bad_tags;
      delta += r.counter_delta;
      if (r.first_bad < first_bad) {
        first_bad = r.first_bad;
        first_bad_value = r.first_bad_value;
      }
    }
    const double verify_ms = (now_seconds() - verify_start) * 1e3;
    if (bad != 0 || delta != increments) {
      printf("VERIFY FAILED bad_tags=%" PRIu64 " first_bad_page=%" PRIu64
             " first_bad_value=%#" PRIx64 " counter_delta=%" PRIu64 " expected=%" PRIu64
             " ms=%.0f\n",
             bad, first_bad, first_bad_value, delta, increments, verify_ms);
      return 2;
    }
    printf("VERIFY ok pages=%" PRIu64 " counter_delta=%" PRIu64 " ms=%.0f\n", pages, delta,
           verify_ms);
  }
  munmap(mapped, len);
  return 0;
}
