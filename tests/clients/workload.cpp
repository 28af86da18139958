// extmem-workload: a standalone test client for libextmem.so. Integration tests run it under
// the shim; it must also pass without the shim, so every data check relies only on what
// POSIX and Linux guarantee, and "managed" (inside the arena mapping) is checked only where
// asked for or where the expected outcome depends on it (fork).

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "client.hpp"

extern char** environ;

namespace {

using extmem::clients::die;
using extmem::clients::die_errno;
using extmem::clients::wait_child;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;
// The shim's default threshold: every block the tests expect to be managed is at least this.
constexpr size_t kThreshold = 128 * kKiB;
// Granularity of the stress model; divides every Linux page size.
constexpr size_t kChunk = 4096;
constexpr int kMaxReports = 10;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15;
constexpr std::string_view kArenaPath = "/memfd:extmem-arena";
constexpr std::string_view kArenaPathDeleted = "/memfd:extmem-arena (deleted)";

constexpr char kUsage[] =
    "usage: extmem-workload <command> [options]\n"
    "\n"
    "Exercises the memory behaviour libextmem.so promises; passes with or without the shim.\n"
    "\n"
    "commands:\n"
    "  stress [--mmap-mib N] [--malloc-mib M] [--threads T] [--require-managed]\n"
    "      from T threads (default 4), allocate N MiB of mmap blocks (default 1024) and\n"
    "      M MiB of malloc/calloc/aligned blocks (default 256); check fresh memory is zero,\n"
    "      fill, realloc, mremap, munmap (whole and partial), free, madvise(MADV_DONTNEED),\n"
    "      reallocate, and verify every byte\n"
    "  syscalls [--require-managed]\n"
    "      read(2), pread(2), write(2) and a pipe using never-touched large buffers\n"
    "  fork\n"
    "      fork children that exit, read or write a managed buffer (SIGSEGV expected when\n"
    "      managed), run system, popen, posix_spawn and fork+exec, and allocate after fork\n"
    "  hold --mib N [--seconds S]\n"
    "      touch N MiB, print \"ready pid=<pid>\", sleep S seconds (default: until killed)\n"
    "  alloc-sizes\n"
    "      print whether 4 KiB, 64 KiB, 128 KiB and 1 MiB malloc and mmap blocks are managed\n"
    "  behind-the-shim\n"
    "      munmap and mremap parts of a managed block with raw system calls (as a program\n"
    "      that bypasses libc would), punch part of it out of the arena file, then check\n"
    "      the moved, punched and remaining pages\n"
    "\n"
    "--require-managed fails unless the large blocks lie in the \"/memfd:extmem-arena\"\n"
    "mapping. Exit status: 0 on success, 1 on a failed check, 2 on a usage error.\n";

const char* g_command = "";
std::atomic<int> g_reports{0};
// Scratch space for file I/O that must not itself come from (possibly managed) heap memory.
alignas(64) char g_scratch[1 << 20];

[[noreturn, gnu::format(printf, 1, 2)]] void UsageError(const char* fmt, ...) {
  char message[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  std::fprintf(stderr, "extmem-workload: %s\n\n%s", message, kUsage);
  std::exit(2);
}

void WriteStderr(const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

// Names the faulting address before dying, so a crash under the shim is diagnosable.
void OnFatalSignal(int sig, siginfo_t* info, void*) {
  char hex[19] = "0x";
  auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (int i = 0; i < 16; ++i) hex[2 + i] = "0123456789abcdef"[(addr >> (60 - 4 * i)) & 0xf];
  hex[18] = '\0';
  WriteStderr("extmem-workload: ");
  WriteStderr(g_command);
  WriteStderr(sig == SIGSEGV ? ": fatal SIGSEGV at address " : ": fatal SIGBUS at address ");
  WriteStderr(hex);
  WriteStderr("\n");
  raise(sig);  // SA_RESETHAND restored the default action, so this terminates as before.
}

void InstallCrashReporter() {
  struct sigaction action = {};
  action.sa_sigaction = OnFatalSignal;
  action.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, nullptr);
  sigaction(SIGBUS, &action, nullptr);
}

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix(state_ += kGolden); }
  uint64_t Uniform(uint64_t lo, uint64_t hi) { return lo + Next() % (hi - lo + 1); }

 private:
  uint64_t state_;
};

// The expected contents of memory: 8-byte word i is key ^ (i * mul), where i counts words of
// a coordinate space (block offset or file offset). The zero pattern has key = mul = 0, which
// keeps the hot loops branch-free.
struct Pattern {
  static Pattern Zero() { return {0, 0}; }
  static Pattern Of(uint64_t id, uint64_t seed) { return {Mix((id << 32) ^ seed), kGolden}; }
  uint64_t Word(uint64_t index) const { return key ^ (index * mul); }
  unsigned char Byte(uint64_t coord) const {
    const uint64_t word = Word(coord / 8);
    unsigned char bytes[8];
    std::memcpy(bytes, &word, 8);
    return bytes[coord % 8];
  }

  uint64_t key;
  uint64_t mul;
};

// Names the memory in mismatch reports: "<what> <id>", or just "<what>" when id < 0.
struct Label {
  const char* what;
  long long id;
};

void ReportMismatch(const Label& label, const void* addr, uint64_t coord, uint64_t expected,
                    uint64_t actual, int width) {
  if (g_reports.fetch_add(1) >= kMaxReports) return;
  char name[64];
  if (label.id < 0) {
    std::snprintf(name, sizeof name, "%s", label.what);
  } else {
    std::snprintf(name, sizeof name, "%s %lld", label.what, label.id);
  }
  std::fprintf(stderr,
               "extmem-workload: %s: mismatch in %s at offset 0x%llx (address %p): "
               "expected 0x%0*llx, actual 0x%0*llx\n",
               g_command, name, static_cast<unsigned long long>(coord), addr, width * 2,
               static_cast<unsigned long long>(expected), width * 2,
               static_cast<unsigned long long>(actual));
}

// Writes pattern bytes for coordinates [coord, coord + n) to p.
void Fill(char* p, uint64_t coord, size_t n, const Pattern& pattern) {
  for (; n > 0 && coord % 8 != 0; ++p, ++coord, --n) *p = static_cast<char>(pattern.Byte(coord));
  for (; n >= 8; p += 8, coord += 8, n -= 8) {
    const uint64_t word = pattern.Word(coord / 8);
    std::memcpy(p, &word, 8);
  }
  for (; n > 0; ++p, ++coord, --n) *p = static_cast<char>(pattern.Byte(coord));
}

uint64_t CheckByte(const char* p, uint64_t coord, const Pattern& pattern, const Label& label) {
  const unsigned char expected = pattern.Byte(coord);
  const auto actual = static_cast<unsigned char>(*p);
  if (actual == expected) return 0;
  ReportMismatch(label, p, coord, expected, actual, 1);
  return 1;
}

// Returns how many bytes of [p, p + n) differ from the pattern at [coord, coord + n).
uint64_t Verify(const char* p, uint64_t coord, size_t n, const Pattern& pattern,
                const Label& label) {
  uint64_t bad = 0;
  for (; n > 0 && coord % 8 != 0; ++p, ++coord, --n) bad += CheckByte(p, coord, pattern, label);
  for (; n >= 8; p += 8, coord += 8, n -= 8) {
    uint64_t actual;
    std::memcpy(&actual, p, 8);
    const uint64_t expected = pattern.Word(coord / 8);
    if (actual != expected) [[unlikely]] {
      for (int i = 0; i < 8; ++i) bad += ((actual ^ expected) >> (8 * i)) & 0xff ? 1 : 0;
      ReportMismatch(label, p, coord, expected, actual, 8);
    }
  }
  for (; n > 0; ++p, ++coord, --n) bad += CheckByte(p, coord, pattern, label);
  return bad;
}

std::string ReadWholeFile(const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_errno(path);
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_errno(path);
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// The address ranges of the arena mapping(s) in /proc/self/maps, merged where adjacent.
class ArenaMap {
 public:
  static ArenaMap Load() {
    ArenaMap map;
    const std::string text = ReadWholeFile("/proc/self/maps");
    std::string_view rest = text;
    while (!rest.empty()) {
      const size_t eol = rest.find('\n');
      const std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
      // "start-end perms offset dev inode   path": only the path contains a '/'.
      const size_t slash = line.find('/');
      if (slash == std::string_view::npos) continue;
      const std::string_view path = line.substr(slash);
      if (path != kArenaPath && path != kArenaPathDeleted) continue;
      uintptr_t start = 0;
      uintptr_t end = 0;
      const char* last = line.data() + line.size();
      const auto dash = std::from_chars(line.data(), last, start, 16);
      if (dash.ec != std::errc() || dash.ptr == last || *dash.ptr != '-' ||
          std::from_chars(dash.ptr + 1, last, end, 16).ec != std::errc()) {
        die("cannot parse /proc/self/maps line: %.*s", static_cast<int>(line.size()), line.data());
      }
      map.ranges_.emplace_back(start, end);
    }
    std::sort(map.ranges_.begin(), map.ranges_.end());
    std::vector<std::pair<uintptr_t, uintptr_t>> merged;
    for (const auto& range : map.ranges_) {
      if (!merged.empty() && merged.back().second == range.first) {
        merged.back().second = range.second;
      } else {
        merged.push_back(range);
      }
    }
    map.ranges_ = std::move(merged);
    return map;
  }

  bool Contains(const void* p, size_t len) const {
    const auto start = reinterpret_cast<uintptr_t>(p);
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), std::make_pair(start, UINTPTR_MAX));
    if (it == ranges_.begin()) return false;
    --it;
    return start >= it->first && start + len <= it->second;
  }

 private:
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges_;
};

bool is_managed(const void* p) {
  return ArenaMap::Load().Contains(p, 1);
}

char* MapFresh(size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die_errno("mmap");
  return static_cast<char*>(p);
}

char* MallocOrDie(size_t len) {
  auto* p = static_cast<char*>(std::malloc(len));
  if (p == nullptr) die("malloc(%zu) failed", len);
  return p;
}

// Runs a read/write-style call until n bytes are transferred; io(done) makes one call.
template <typename Io>
void TransferAll(const char* what, size_t n, Io io) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = io(done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die_errno(what);
    if (r == 0) die("%s: unexpected end of file after %zu of %zu bytes", what, done, n);
    done += static_cast<size_t>(r);
  }
}

std::string DescribeStatus(int status) {
  char text[96];
  if (WIFEXITED(status)) {
    std::snprintf(text, sizeof text, "exit status %d", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    std::snprintf(text, sizeof text, "signal %d (%s)", WTERMSIG(status),
                  strsignal(WTERMSIG(status)));
  } else {
    std::snprintf(text, sizeof text, "wait status 0x%x", status);
  }
  return text;
}

class Options {
 public:
  Options(int argc, char** argv) : args_(argv + 2, argv + argc), used_(args_.size(), false) {}

  bool Flag(std::string_view name) {
    for (size_t i = 0; i < args_.size(); ++i) {
      if (!used_[i] && args_[i] == name) return used_[i] = true;
    }
    return false;
  }

  std::optional<uint64_t> Number(std::string_view name, uint64_t min, uint64_t max) {
    for (size_t i = 0; i < args_.size(); ++i) {
      if (used_[i] || args_[i] != name) continue;
      if (i + 1 == args_.size()) UsageError("%s needs a value", args_[i].c_str());
      used_[i] = used_[i + 1] = true;
      const std::string& text = args_[i + 1];
      uint64_t value = 0;
      const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
      if (result.ec != std::errc() || result.ptr != text.data() + text.size() || value < min ||
          value > max) {
        UsageError("%s: '%s' is not a number in [%llu, %llu]", args_[i].c_str(), text.c_str(),
                   static_cast<unsigned long long>(min), static_cast<unsigned long long>(max));
      }
      return value;
    }
    return std::nullopt;
  }

  // Rejects whatever the command did not ask for.
  void Finish() const {
    for (size_t i = 0; i < args_.size(); ++i) {
      if (!used_[i]) UsageError("%s: unexpected argument '%s'", g_command, args_[i].c_str());
    }
  }

 private:
  std::vector<std::string> args_;
  std::vector<bool> used_;
};

// ---------------------------------------------------------------------------------------
// stress

enum class Kind { kMmap, kMalloc, kCalloc, kPosixMemalign, kAlignedAlloc };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kMmap:
      return "mmap block";
    case Kind::kMalloc:
      return "malloc block";
    case Kind::kCalloc:
      return "calloc block";
    case Kind::kPosixMemalign:
      return "posix_memalign block";
    case Kind::kAlignedAlloc:
      return "aligned_alloc block";
  }
  return "block";
}

constexpr uint32_t kFirstRound = 1;
constexpr uint32_t kSecondRound = 2;

size_t ChunksFor(size_t len) {
  return (len + kChunk - 1) / kChunk;
}

// One live block and the model of its contents.
struct Block {
  Label label() const { return {KindName(kind), static_cast<long long>(id)}; }

  uint64_t id;  // Pattern key; the pieces of a partly unmapped block keep their block's id.
  Kind kind;
  char* base;
  size_t len;
  // Block coordinate of base; unmapping a head or a middle range leaves pieces whose
  // contents keep the coordinates they were written with.
  uint64_t origin;
  // Round seed per kChunk from base (0 = zero). mmap bases and origins are page aligned, so
  // page ranges map to whole chunks.
  std::vector<uint32_t> seeds;
  bool counted = false;  // Already counted in the managed statistics.
};

struct PlannedBlock {
  uint64_t id;
  Kind kind;
  size_t len;
  size_t align;
};

// Calls f(from, to, pattern) for each run of equal seeds in [from, to).
template <typename F>
void ForEachRun(const Block& b, size_t from, size_t to, F&& f) {
  while (from < to) {
    const uint32_t seed = b.seeds[from / kChunk];
    size_t end = (from / kChunk + 1) * kChunk;
    while (end < to && b.seeds[end / kChunk] == seed) end += kChunk;
    end = std::min(end, to);
    f(from, end, seed == 0 ? Pattern::Zero() : Pattern::Of(b.id, seed));
    from = end;
  }
}

void WriteModel(Block& b, size_t from, size_t to) {
  ForEachRun(b, from, to, [&b](size_t start, size_t end, const Pattern& pattern) {
    Fill(b.base + start, b.origin + start, end - start, pattern);
  });
}

uint64_t CheckModel(const Block& b, size_t from, size_t to) {
  uint64_t bad = 0;
  ForEachRun(b, from, to, [&](size_t start, size_t end, const Pattern& pattern) {
    bad += Verify(b.base + start, b.origin + start, end - start, pattern, b.label());
  });
  return bad;
}

void SetSeeds(Block& b, size_t from, size_t to, uint32_t seed) {
  std::fill(b.seeds.begin() + from / kChunk, b.seeds.begin() + ChunksFor(to), seed);
}

// A fresh mapping must read zero: one word per page (the first read of a page takes the
// zero-page path), and every 16th page entirely.
uint64_t CheckFreshMapping(const char* p, uint64_t coord, size_t len, const Label& label) {
  const size_t page = PageSize();
  uint64_t bad = 0;
  for (size_t off = 0, n = 0; off < len; off += page, ++n) {
    if (n % 16 == 0) {
      bad += Verify(p + off, coord + off, std::min(page, len - off), Pattern::Zero(), label);
    } else {
      const size_t at = off + (n * 8 * 61) % page;
      bad += Verify(p + at, coord + at, 8, Pattern::Zero(), label);
    }
  }
  return bad;
}

Block AllocateBlock(const PlannedBlock& plan) {
  void* p = nullptr;
  switch (plan.kind) {
    case Kind::kMmap:
      p = MapFresh(plan.len);
      break;
    case Kind::kMalloc:
      p = std::malloc(plan.len);
      break;
    case Kind::kCalloc:
      p = std::calloc(1, plan.len);
      break;
    case Kind::kPosixMemalign:
      if (posix_memalign(&p, plan.align, plan.len) != 0) p = nullptr;
      break;
    case Kind::kAlignedAlloc:
      p = std::aligned_alloc(plan.align, plan.len);
      break;
  }
  if (p == nullptr) die("cannot allocate %s of %zu bytes", KindName(plan.kind), plan.len);
  if (reinterpret_cast<uintptr_t>(p) % plan.align != 0) {
    die("%s of %zu bytes at %p is not aligned to %zu", KindName(plan.kind), plan.len, p,
        plan.align);
  }
  return Block{plan.id,  plan.kind, static_cast<char*>(p),
               plan.len, 0,         std::vector<uint32_t>(ChunksFor(plan.len), 0)};
}

void ReleaseBlock(Block& b) {
  if (b.kind == Kind::kMmap) {
    if (munmap(b.base, b.len) != 0) die_errno("munmap");
  } else {
    std::free(b.base);
  }
  b.base = nullptr;
}

std::atomic<uint64_t> g_next_block_id{0};

// The blocks one thread owns, and what it does to them.
class Worker {
 public:
  // Operations are dealt out in turn, from a per-thread start, so each one occurs whenever a
  // thread has enough blocks; the rest of the choices are random.
  Worker(size_t index, std::vector<PlannedBlock> plan)
      : rng_(Mix(index + 1)), mapping_op_(index), heap_op_(index), plan_(std::move(plan)) {}

  // Phase 1: allocate the planned blocks, check fresh memory, write the first round.
  void Allocate() {
    for (const PlannedBlock& p : plan_) Adopt(AllocateBlock(p), kFirstRound);
  }

  // Phase 2: resize, unmap, free and discard, then allocate into the freed space.
  void Mutate() {
    std::vector<Block> pieces;
    std::vector<size_t> unmapped;
    std::vector<size_t> freed;
    for (Block& b : blocks_) {
      if (b.kind == Kind::kMmap) {
        MutateMapping(b, pieces, unmapped);
      } else {
        MutateHeapBlock(b, freed);
      }
    }
    std::erase_if(blocks_, [](const Block& b) { return b.base == nullptr; });
    for (Block& piece : pieces) blocks_.push_back(std::move(piece));
    for (size_t len : unmapped) {
      Adopt(AllocateBlock({g_next_block_id++, Kind::kMmap, len, PageSize()}), kSecondRound);
    }
    for (size_t i = 0; i < freed.size(); ++i) {
      const Kind kind = i % 2 == 0 ? Kind::kCalloc : Kind::kMalloc;
      Adopt(AllocateBlock({g_next_block_id++, kind, freed[i], 1}), kSecondRound);
    }
  }

  // Phase 3: verify every byte of every live block, then give it back.
  void VerifyAndRelease() {
    for (Block& b : blocks_) {
      bad_ += CheckModel(b, 0, b.len);
      verified_ += b.len;
      ReleaseBlock(b);
    }
    blocks_.clear();
  }

  std::vector<Block>& blocks() { return blocks_; }
  uint64_t bad() const { return bad_; }
  uint64_t verified() const { return verified_; }
  uint64_t mutations() const { return mutations_; }

 private:
  void Adopt(Block b, uint32_t seed) {
    // Only mmap and calloc promise zeroed memory; malloc may hand back reused space.
    if (b.kind == Kind::kMmap) bad_ += CheckFreshMapping(b.base, b.origin, b.len, b.label());
    if (b.kind == Kind::kCalloc) bad_ += Verify(b.base, 0, b.len, Pattern::Zero(), b.label());
    SetSeeds(b, 0, b.len, seed);
    WriteModel(b, 0, b.len);
    blocks_.push_back(std::move(b));
  }

  void MutateMapping(Block& b, std::vector<Block>& pieces, std::vector<size_t>& unmapped) {
    const size_t page = PageSize();
    const size_t pages = b.len / page;
    const uint64_t op = mapping_op_++ % 8;
    if (op == 7 || (op != 0 && pages < 4)) return;  // Left alone: verified at the end.
    ++mutations_;
    // Size of a shrink or partial unmap (those need pages >= 4).
    const size_t cut = rng_.Uniform(1, std::max<size_t>(1, pages / 4)) * page;
    switch (op) {
      case 0: {  // mremap bigger: the prefix moves with the block, the tail is fresh.
        const size_t old_len = b.len;
        Remap(b, old_len + rng_.Uniform(1, 8 * kMiB / page) * page);
        bad_ += CheckModel(b, 0, old_len);
        bad_ += CheckFreshMapping(b.base + old_len, b.origin + old_len, b.len - old_len, b.label());
        b.seeds.resize(ChunksFor(b.len));
        SetSeeds(b, old_len, b.len, kSecondRound);
        WriteModel(b, old_len, b.len);
        break;
      }
      case 1:  // mremap smaller.
        Remap(b, b.len - cut);
        b.seeds.resize(ChunksFor(b.len));
        bad_ += CheckModel(b, 0, b.len);
        break;
      case 2:  // Unmap the whole block; its size is allocated again later.
        unmapped.push_back(b.len);
        ReleaseBlock(b);
        break;
      case 3:  // Unmap the head.
        Unmap(b.base, cut);
        b.base += cut;
        b.origin += cut;
        b.len -= cut;
        b.seeds.erase(b.seeds.begin(), b.seeds.begin() + cut / kChunk);
        break;
      case 4:  // Unmap the tail.
        Unmap(b.base + b.len - cut, cut);
        b.len -= cut;
        b.seeds.resize(ChunksFor(b.len));
        break;
      case 5: {  // Unmap a middle range, leaving two pieces of one block.
        const size_t start = rng_.Uniform(1, pages - 1 - cut / page) * page;
        const size_t rest = start + cut;
        Unmap(b.base + start, cut);
        pieces.push_back(Block{
            b.id, b.kind, b.base + rest, b.len - rest, b.origin + rest,
            std::vector<uint32_t>(b.seeds.begin() + rest / kChunk, b.seeds.end()), b.counted});
        b.len = start;
        b.seeds.resize(ChunksFor(b.len));
        break;
      }
      case 6: {  // Discard one range in each half: one stays zero, the other is rewritten.
        const size_t half = pages / 2;
        const size_t n1 = rng_.Uniform(1, std::max<size_t>(1, half / 4));
        const size_t n2 = rng_.Uniform(1, std::max<size_t>(1, (pages - half) / 4));
        const size_t start1 = rng_.Uniform(0, half - n1) * page;
        const size_t start2 = (half + rng_.Uniform(0, pages - half - n2)) * page;
        Discard(b, start1, n1 * page);
        Discard(b, start2, n2 * page);
        SetSeeds(b, start1, start1 + n1 * page, 0);
        SetSeeds(b, start2, start2 + n2 * page, kSecondRound);
        WriteModel(b, start2, start2 + n2 * page);
        break;
      }
    }
  }

  void MutateHeapBlock(Block& b, std::vector<size_t>& freed) {
    const uint64_t op = heap_op_++ % 5;
    if (op == 4 || (op == 1 && b.len <= kThreshold)) return;  // Left alone.
    ++mutations_;
    switch (op) {
      case 0: {  // realloc bigger: the prefix is kept, the tail is indeterminate.
        const size_t old_len = b.len;
        Realloc(b, old_len + rng_.Uniform(1, old_len));
        bad_ += CheckModel(b, 0, old_len);
        b.seeds.resize(ChunksFor(b.len), kSecondRound);
        WriteModel(b, old_len, b.len);
        break;
      }
      case 1:  // realloc smaller, staying above the threshold.
        Realloc(b, rng_.Uniform(kThreshold, b.len - 1));
        b.seeds.resize(ChunksFor(b.len));
        bad_ += CheckModel(b, 0, b.len);
        break;
      case 2:
        freed.push_back(b.len);
        ReleaseBlock(b);
        break;
      case 3: {  // Discard whole pages inside the block, then restore their contents.
        const size_t page = PageSize();
        const auto addr = reinterpret_cast<uintptr_t>(b.base);
        const size_t first = (addr + page - 1) / page * page - addr;  // First whole page.
        const size_t pages = (b.len - first) / page;
        if (pages < 3) break;
        const size_t n = rng_.Uniform(1, std::min<size_t>(pages - 2, 16));
        const size_t start = first + rng_.Uniform(1, pages - 1 - n) * page;
        Discard(b, start, n * page);
        WriteModel(b, start, start + n * page);
        break;
      }
    }
  }

  void Remap(Block& b, size_t new_len) {
    void* p = mremap(b.base, b.len, new_len, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) die_errno("mremap");
    b.base = static_cast<char*>(p);
    b.len = new_len;
  }

  void Realloc(Block& b, size_t new_len) {
    void* p = std::realloc(b.base, new_len);
    if (p == nullptr) die("realloc(%p, %zu) failed", static_cast<void*>(b.base), new_len);
    b.base = static_cast<char*>(p);
    b.len = new_len;
  }

  static void Unmap(char* p, size_t len) {
    if (munmap(p, len) != 0) die_errno("partial munmap");
  }

  // MADV_DONTNEED on private anonymous memory must make the range read zero.
  void Discard(const Block& b, size_t start, size_t len) {
    if (madvise(b.base + start, len, MADV_DONTNEED) != 0) die_errno("madvise(MADV_DONTNEED)");
    bad_ += Verify(b.base + start, b.origin + start, len, Pattern::Zero(), b.label());
  }

  Rng rng_;
  uint64_t mapping_op_;
  uint64_t heap_op_;
  std::vector<PlannedBlock> plan_;
  std::vector<Block> blocks_;
  uint64_t bad_ = 0;
  uint64_t verified_ = 0;
  uint64_t mutations_ = 0;
};

// Splits total into sizes in [lo, hi], multiples of unit; a remainder below lo is merged into
// the last block so that no block falls under the shim's threshold.
std::vector<size_t> SplitSizes(size_t total, size_t lo, size_t hi, size_t unit, Rng& rng) {
  std::vector<size_t> sizes;
  while (total > 0) {
    const size_t len =
        total < 2 * lo ? total : std::min(total - lo, rng.Uniform(lo, hi) / unit * unit);
    sizes.push_back(len);
    total -= len;
  }
  return sizes;
}

std::vector<PlannedBlock> MakePlan(size_t mmap_bytes, size_t malloc_bytes) {
  Rng rng(0x5eed);
  std::vector<PlannedBlock> plan;
  for (size_t len : SplitSizes(mmap_bytes, 8 * kMiB, 64 * kMiB, PageSize(), rng)) {
    plan.push_back({plan.size(), Kind::kMmap, len, PageSize()});
  }
  size_t i = 0;
  for (size_t len : SplitSizes(malloc_bytes, kThreshold, 4 * kMiB, 1, rng)) {
    const size_t align = (64 * kKiB) << rng.Uniform(0, 5);  // 64 KiB .. 2 MiB
    switch (i++ % 8) {
      case 0:
        plan.push_back({plan.size(), Kind::kCalloc, len, 1});
        break;
      case 1:
        plan.push_back({plan.size(), Kind::kPosixMemalign, len, align});
        break;
      case 2:  // aligned_alloc wants a multiple of the alignment.
        plan.push_back(
            {plan.size(), Kind::kAlignedAlloc, (len + align - 1) / align * align, align});
        break;
      default:
        plan.push_back({plan.size(), Kind::kMalloc, len, 1});
    }
  }
  return plan;
}

template <typename F>
void RunPhase(std::vector<Worker>& workers, F phase) {
  std::vector<std::thread> threads;
  for (Worker& w : workers) threads.emplace_back([&w, &phase] { phase(w); });
  for (std::thread& t : threads) t.join();
}

// Counts blocks seen for the first time and, if required, fails on any outside the arena.
void CheckManaged(std::vector<Worker>& workers, bool require, size_t& managed, size_t& total) {
  const ArenaMap arena = ArenaMap::Load();
  size_t outside = 0;
  for (Worker& w : workers) {
    for (Block& b : w.blocks()) {
      const bool inside = arena.Contains(b.base, b.len);
      if (!b.counted) {
        b.counted = true;
        ++total;
        managed += inside ? 1 : 0;
      }
      if (require && !inside && ++outside <= kMaxReports) {
        std::fprintf(stderr, "extmem-workload: %s: %s %llu (%zu bytes at %p) is not in %s\n",
                     g_command, KindName(b.kind), static_cast<unsigned long long>(b.id), b.len,
                     static_cast<void*>(b.base), kArenaPath.data());
      }
    }
  }
  if (outside > 0) die("%zu blocks are not managed (--require-managed)", outside);
}

int RunStress(Options& options) {
  const uint64_t mmap_mib = options.Number("--mmap-mib", 0, 1 << 20).value_or(1024);
  const uint64_t malloc_mib = options.Number("--malloc-mib", 0, 1 << 20).value_or(256);
  const uint64_t threads = options.Number("--threads", 1, 1024).value_or(4);
  const bool require = options.Flag("--require-managed");
  options.Finish();
  const auto started = std::chrono::steady_clock::now();

  const std::vector<PlannedBlock> plan = MakePlan(mmap_mib * kMiB, malloc_mib * kMiB);
  g_next_block_id = plan.size();
  std::vector<std::vector<PlannedBlock>> shares(threads);
  for (size_t i = 0; i < plan.size(); ++i) shares[i % threads].push_back(plan[i]);
  std::vector<Worker> workers;
  for (size_t t = 0; t < threads; ++t) workers.emplace_back(t, std::move(shares[t]));

  size_t managed = 0;
  size_t total = 0;
  RunPhase(workers, [](Worker& w) { w.Allocate(); });
  CheckManaged(workers, require, managed, total);
  RunPhase(workers, [](Worker& w) { w.Mutate(); });
  CheckManaged(workers, require, managed, total);
  RunPhase(workers, [](Worker& w) { w.VerifyAndRelease(); });

  uint64_t bad = 0;
  uint64_t verified = 0;
  uint64_t mutations = 0;
  for (const Worker& w : workers) {
    bad += w.bad();
    verified += w.verified();
    mutations += w.mutations();
  }
  if (bad > 0) die("%llu bytes differ from the model", static_cast<unsigned long long>(bad));
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
  const bool gibs = verified >= (1 << 30);
  std::printf(
      "stress ok: mmap %llu MiB, malloc %llu MiB, threads %llu, managed blocks %zu/%zu, "
      "mutations %llu, verified %.2f %s in %.1f s\n",
      static_cast<unsigned long long>(mmap_mib), static_cast<unsigned long long>(malloc_mib),
      static_cast<unsigned long long>(threads), managed, total,
      static_cast<unsigned long long>(mutations),
      static_cast<double>(verified) / static_cast<double>(gibs ? 1 << 30 : kMiB),
      gibs ? "GiB" : "MiB", elapsed.count());
  return 0;
}

// ---------------------------------------------------------------------------------------
// syscalls

// An unlinked temporary file in $TMPDIR (or /tmp).
int TempFile() {
  const char* dir = std::getenv("TMPDIR");
  std::string path =
      std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/extmem-workload-XXXXXX";
  const int fd = mkstemp(path.data());
  if (fd < 0) die_errno(path.c_str());
  unlink(path.c_str());
  return fd;
}

// Checks file bytes [offset, offset + n) through g_scratch, away from managed memory.
uint64_t CheckFile(int fd, size_t offset, size_t n, const Pattern& pattern, const Label& label) {
  uint64_t bad = 0;
  for (size_t done = 0; done < n;) {
    const size_t len = std::min(sizeof g_scratch, n - done);
    TransferAll("pread of the output file", len, [&](size_t got) {
      return pread(fd, g_scratch + got, len - got, static_cast<off_t>(offset + done + got));
    });
    bad += Verify(g_scratch, done, len, pattern, label);
    done += len;
  }
  return bad;
}

int RunSyscalls(Options& options) {
  const bool require = options.Flag("--require-managed");
  options.Finish();
  constexpr size_t kLen = 8 * kMiB;
  constexpr size_t kOddOffset = 12345;  // Neither page- nor word-aligned.
  constexpr size_t kSkew = 3;           // Makes the pread destination unaligned too.
  constexpr size_t kGap = 2 * kMiB;
  const Pattern file_pattern = Pattern::Of(0xf11e, 1);

  const int src = TempFile();
  const size_t src_len = kOddOffset + kLen;
  for (size_t done = 0; done < src_len;) {
    const size_t len = std::min(sizeof g_scratch, src_len - done);
    Fill(g_scratch, done, len, file_pattern);
    TransferAll("write of the input file", len, [&](size_t got) {
      return pwrite(src, g_scratch + got, len - got, static_cast<off_t>(done + got));
    });
    done += len;
  }

  // The kernel, not the program, takes the first faults on these buffers.
  char* mapped = MapFresh(kLen);
  char* heap = MallocOrDie(kLen);
  char* blank = MapFresh(kLen);
  char* gap = MapFresh(kGap);
  char* sink = MallocOrDie(kLen + kGap);
  uint64_t bad = 0;

  TransferAll("read", kLen, [&](size_t got) { return read(src, mapped + got, kLen - got); });
  bad += Verify(mapped, 0, kLen, file_pattern, {"mmap buffer after read(2)", -1});
  TransferAll("pread", kLen - kSkew, [&](size_t got) {
    return pread(src, heap + kSkew + got, kLen - kSkew - got, static_cast<off_t>(kOddOffset + got));
  });
  bad += Verify(heap + kSkew, kOddOffset, kLen - kSkew, file_pattern,
                {"malloc buffer after pread(2)", -1});

  const int dst = TempFile();
  TransferAll("write", kLen, [&](size_t got) { return write(dst, blank + got, kLen - got); });
  TransferAll("write", kLen, [&](size_t got) { return write(dst, mapped + got, kLen - got); });
  bad += CheckFile(dst, 0, kLen, Pattern::Zero(), {"file written from untouched memory", -1});
  bad += CheckFile(dst, kLen, kLen, file_pattern, {"file written from a filled buffer", -1});

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) die_errno("pipe2");
  std::thread reader([&] {
    size_t got = 0;
    for (;;) {
      // Once full, read one more byte to prove the writer sent nothing extra.
      char extra;
      const size_t room = kLen + kGap - got;
      const ssize_t n =
          room > 0 ? read(pipe_fds[0], sink + got, room) : read(pipe_fds[0], &extra, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die_errno("read from the pipe");
      if (n == 0) break;
      if (room == 0) die("the pipe delivered more than %zu bytes", kLen + kGap);
      got += static_cast<size_t>(n);
    }
    if (got != kLen + kGap) die("the pipe delivered %zu of %zu bytes", got, kLen + kGap);
  });
  TransferAll("write to the pipe", kLen,
              [&](size_t done) { return write(pipe_fds[1], mapped + done, kLen - done); });
  TransferAll("write to the pipe", kGap,
              [&](size_t done) { return write(pipe_fds[1], gap + done, kGap - done); });
  close(pipe_fds[1]);
  reader.join();
  close(pipe_fds[0]);
  bad += Verify(sink, 0, kLen, file_pattern, {"pipe data from a filled buffer", -1});
  bad += Verify(sink + kLen, 0, kGap, Pattern::Zero(), {"pipe data from untouched memory", -1});

  if (bad > 0) die("%llu bytes differ", static_cast<unsigned long long>(bad));
  const ArenaMap arena = ArenaMap::Load();
  const struct {
    const char* name;
    const char* p;
    size_t len;
  } buffers[] = {{"read(2) buffer", mapped, kLen},
                 {"pread(2) buffer", heap, kLen},
                 {"untouched write(2) buffer", blank, kLen},
                 {"untouched pipe buffer", gap, kGap},
                 {"pipe reader's buffer", sink, kLen + kGap}};
  size_t managed = 0;
  for (const auto& buffer : buffers) {
    if (arena.Contains(buffer.p, buffer.len)) {
      ++managed;
    } else if (require) {
      std::fprintf(stderr, "extmem-workload: %s: the %s (%p) is not in %s\n", g_command,
                   buffer.name, static_cast<const void*>(buffer.p), kArenaPath.data());
    }
  }
  if (require && managed != std::size(buffers)) {
    die("only %zu of %zu buffers are managed (--require-managed)", managed, std::size(buffers));
  }
  close(src);
  close(dst);
  munmap(mapped, kLen);
  munmap(blank, kLen);
  munmap(gap, kGap);
  std::free(heap);
  std::free(sink);
  std::printf(
      "syscalls ok: read %zu MiB, pread %zu MiB at offset %zu, write %zu MiB, pipe %zu MiB, "
      "managed buffers %zu/%zu\n",
      kLen / kMiB, kLen / kMiB, kOddOffset, 2 * kLen / kMiB, (kLen + kGap) / kMiB, managed,
      std::size(buffers));
  return 0;
}

// ---------------------------------------------------------------------------------------
// fork

template <typename F>
int RunChild(F body) {
  // Unflushed output would otherwise be printed by both processes.
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) die_errno("fork");
  if (pid == 0) {
    body();
    _exit(0);
  }
  return wait_child(pid);
}

// For a child that is expected to die by SIGSEGV: no crash report and no core file.
void ExpectCrashInChild() {
  signal(SIGSEGV, SIG_DFL);
  const struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
}

void ExpectExit(const char* what, int status, int code) {
  if (!WIFEXITED(status) || WEXITSTATUS(status) != code) {
    die("%s: expected exit status %d, got %s", what, code, DescribeStatus(status).c_str());
  }
}

// Managed memory is not inherited by a forked child (MADV_DONTFORK), so touching it must kill
// the child with SIGSEGV; unmanaged memory is a private copy that the child may use.
const char* CheckTouchOutcome(const char* what, int status, bool managed) {
  if (!managed) {
    ExpectExit(what, status, 0);
    return "ok";
  }
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV) {
    die("%s the managed buffer: expected SIGSEGV, got %s", what, DescribeStatus(status).c_str());
  }
  return "SIGSEGV";
}

// Runs in a forked child: large allocations must work there, whatever the parent's arena.
void AllocateInChild() {
  uint64_t bad = 0;
  const Pattern pattern = Pattern::Of(0xc41d, 1);
  for (size_t len : {256 * kKiB, 1 * kMiB, 4 * kMiB, 32 * kMiB}) {
    char* p = MallocOrDie(len);
    Fill(p, 0, len, pattern);
    bad += Verify(p, 0, len, pattern, {"malloc block in the child", -1});
    std::free(p);
  }
  auto* zeroed = static_cast<char*>(std::calloc(1, 8 * kMiB));
  if (zeroed == nullptr) die("calloc in the child failed");
  bad += Verify(zeroed, 0, 8 * kMiB, Pattern::Zero(), {"calloc block in the child", -1});
  std::free(zeroed);
  char* mapped = MapFresh(16 * kMiB);
  bad += CheckFreshMapping(mapped, 0, 16 * kMiB, {"mmap block in the child", -1});
  Fill(mapped, 0, 16 * kMiB, pattern);
  bad += Verify(mapped, 0, 16 * kMiB, pattern, {"mmap block in the child", -1});
  if (munmap(mapped, 16 * kMiB) != 0) die_errno("munmap in the child");
  if (bad > 0) die("%llu bytes differ in the child", static_cast<unsigned long long>(bad));
}

int RunFork(Options& options) {
  options.Finish();
  constexpr size_t kLen = 64 * kMiB;
  const Pattern pattern = Pattern::Of(0xf0f0, 1);
  const Label parent_view = {"parent's buffer", -1};
  char* buffer = MapFresh(kLen);
  Fill(buffer, 0, kLen, pattern);
  const bool managed = ArenaMap::Load().Contains(buffer, kLen);

  ExpectExit("child that only exits", RunChild([] {}), 0);

  const int read_status = RunChild([&] {
    ExpectCrashInChild();
    if (Verify(buffer, 0, kLen, pattern, {"child's view of the buffer", -1}) > 0) _exit(1);
  });
  const char* read_outcome = CheckTouchOutcome("child reading", read_status, managed);

  const int write_status = RunChild([&] {
    ExpectCrashInChild();
    Fill(buffer, 0, kLen, Pattern::Of(0xbad, 1));
  });
  const char* write_outcome = CheckTouchOutcome("child writing", write_status, managed);
  if (const uint64_t bad = Verify(buffer, 0, kLen, pattern, parent_view); bad > 0) {
    die("a child's writes changed %llu bytes of the parent's buffer",
        static_cast<unsigned long long>(bad));
  }

  const int system_status = std::system("exit 3");
  if (system_status == -1) die_errno("system");
  ExpectExit("system(\"exit 3\")", system_status, 3);

  FILE* echo = popen("echo hello", "r");
  if (echo == nullptr) die_errno("popen");
  char line[64] = "";
  const bool got_line = std::fgets(line, sizeof line, echo) != nullptr;
  ExpectExit("popen(\"echo hello\")", pclose(echo), 0);
  if (!got_line || std::strcmp(line, "hello\n") != 0) {
    die("popen(\"echo hello\") read '%s', expected 'hello'", line);
  }

  char true_path[] = "/bin/true";
  char* const true_argv[] = {true_path, nullptr};
  pid_t pid = 0;
  if (const int err = posix_spawn(&pid, true_path, nullptr, nullptr, true_argv, environ)) {
    die("posix_spawn(/bin/true): %s", std::strerror(err));
  }
  ExpectExit("posix_spawn(/bin/true)", wait_child(pid), 0);
  ExpectExit("fork+execv(/bin/true)", RunChild([&] {
               execv(true_path, true_argv);
               _exit(127);
             }),
             0);

  ExpectExit("child allocating after fork", RunChild(AllocateInChild), 0);

  if (const uint64_t bad = Verify(buffer, 0, kLen, pattern, parent_view); bad > 0) {
    die("%llu bytes of the parent's buffer differ", static_cast<unsigned long long>(bad));
  }
  munmap(buffer, kLen);
  std::printf(
      "fork ok: 64 MiB buffer %s, child read %s, child write %s, parent intact, "
      "system/popen/posix_spawn/fork+exec ok, child allocations ok\n",
      managed ? "managed" : "unmanaged", read_outcome, write_outcome);
  return 0;
}

// ---------------------------------------------------------------------------------------
// hold, alloc-sizes

void SleepSeconds(uint64_t seconds) {
  timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += static_cast<time_t>(seconds);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR) {
  }
}

int RunHold(Options& options) {
  const std::optional<uint64_t> mib = options.Number("--mib", 1, 1 << 24);
  const std::optional<uint64_t> seconds = options.Number("--seconds", 0, 1 << 30);
  options.Finish();
  if (!mib) UsageError("hold: --mib N is required");
  const size_t len = *mib * kMiB;
  const Pattern pattern = Pattern::Of(0x401d, 1);
  char* buffer = MapFresh(len);
  Fill(buffer, 0, len, pattern);
  std::printf("ready pid=%d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  if (!seconds) {
    for (;;) pause();
  }
  SleepSeconds(*seconds);
  if (const uint64_t bad = Verify(buffer, 0, len, pattern, {"held buffer", -1}); bad > 0) {
    die("%llu bytes of the held buffer differ", static_cast<unsigned long long>(bad));
  }
  munmap(buffer, len);
  std::printf("hold ok: %llu MiB held for %llu s and verified\n",
              static_cast<unsigned long long>(*mib), static_cast<unsigned long long>(*seconds));
  return 0;
}

int RunAllocSizes(Options& options) {
  options.Finish();
  int managed = 0;
  int total = 0;
  for (size_t len : {4 * kKiB, 64 * kKiB, 128 * kKiB, 1 * kMiB}) {
    char* heap = MallocOrDie(len);
    char* mapped = MapFresh(len);
    const bool heap_managed = is_managed(heap);
    const bool mapped_managed = is_managed(mapped);
    std::printf("malloc %zu %s\n", len, heap_managed ? "managed" : "unmanaged");
    std::printf("mmap %zu %s\n", len, mapped_managed ? "managed" : "unmanaged");
    managed += (heap_managed ? 1 : 0) + (mapped_managed ? 1 : 0);
    total += 2;
    std::free(heap);
    munmap(mapped, len);
  }
  std::printf("alloc-sizes ok: %d/%d allocations managed\n", managed, total);
  return 0;
}

// Punches [p, p+len) out of the file mapped there (the shim's arena memfd) with
// fallocate on a descriptor of its own, as a program that found the file would: no
// userfaultfd event tells the daemon.
void PunchTheFileUnder(char* p, size_t len) {
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) die_errno("/proc/self/maps");
  char line[512];
  unsigned long start = 0, end = 0, offset = 0, inode = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof(line), maps) != nullptr) {
    found = std::sscanf(line, "%lx-%lx %*s %lx %*s %lu", &start, &end, &offset, &inode) == 4 &&
            reinterpret_cast<uintptr_t>(p) >= start && reinterpret_cast<uintptr_t>(p) < end;
  }
  std::fclose(maps);
  if (!found) die("no mapping at %p", static_cast<void*>(p));
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", start, end);
  const int fd = open(path, O_RDWR);
  if (fd < 0) die_errno(path);
  const off_t at = static_cast<off_t>(offset + (reinterpret_cast<uintptr_t>(p) - start));
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, static_cast<off_t>(len)) != 0) {
    die_errno("fallocate(PUNCH_HOLE)");
  }
  close(fd);
}

// The daemon learns of these only through userfaultfd UNMAP/REMAP events, and of a punch
// of the arena file only when the punched pages fault.
int RunBehindTheShim(Options& options) {
  options.Finish();
  const size_t len = 16 * kMiB;
  char* block = MapFresh(len);
  const Pattern pattern = Pattern::Of(0xbe11, 3);
  // Touch only the first half: the rest must still read zero after moving.
  Fill(block, 0, len / 2, pattern);

  // Unmap 1 MiB in the touched half.
  if (syscall(SYS_munmap, block + 2 * kMiB, kMiB) != 0) die_errno("munmap(2)");
  // Move 4 MiB that straddle the touched and untouched halves to a new address.
  char* target = static_cast<char*>(
      mmap(nullptr, 4 * kMiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (target == MAP_FAILED) die_errno("mmap(target)");
  char* const moved_from = block + 6 * kMiB;
  void* moved = reinterpret_cast<void*>(
      syscall(SYS_mremap, moved_from, 4 * kMiB, 4 * kMiB, MREMAP_MAYMOVE | MREMAP_FIXED, target));
  if (moved != target) die_errno("mremap(2)");

  // Punch 1 MiB of touched pages out of the arena file: they read as zeros (what a punch
  // gives any mapping of the file), and the daemon, which still holds them resident, must
  // not leave their faults looping.
  if (is_managed(block)) PunchTheFileUnder(block + 4 * kMiB, kMiB);

  uint64_t bad = Verify(block, 0, 2 * kMiB, pattern, {"head", -1});
  bad += Verify(block + 3 * kMiB, 3 * kMiB, kMiB, pattern, {"before the punched part", -1});
  if (is_managed(block)) {
    bad += CheckFreshMapping(block + 4 * kMiB, 4 * kMiB, kMiB, {"punched", -1});
    Fill(block + 4 * kMiB, 4 * kMiB, kMiB, pattern);
  }
  bad += Verify(block + 4 * kMiB, 4 * kMiB, 2 * kMiB, pattern, {"before the moved part", -1});
  bad += Verify(target, 6 * kMiB, 2 * kMiB, pattern, {"moved, touched", -1});
  bad += CheckFreshMapping(target + 2 * kMiB, 0, 2 * kMiB, {"moved, untouched", -1});
  bad += CheckFreshMapping(block + 10 * kMiB, 0, 6 * kMiB, {"tail, untouched", -1});
  // New writes to moved pages that were never touched go through the daemon too.
  Fill(target + 2 * kMiB, 8 * kMiB, 2 * kMiB, pattern);
  bad += Verify(target + 2 * kMiB, 8 * kMiB, 2 * kMiB, pattern, {"moved, rewritten", -1});
  if (bad > 0) die("%llu bytes differ", static_cast<unsigned long long>(bad));
  std::printf("behind-the-shim ok: block %s, unmapped 1 MiB, moved 4 MiB, punched 1 MiB\n",
              is_managed(block) ? "managed" : "unmanaged");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) UsageError("missing command");
  const std::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  g_command = argv[1];
  extmem::clients::die_context = g_command;
  InstallCrashReporter();
  Options options(argc, argv);
  if (command == "stress") return RunStress(options);
  if (command == "syscalls") return RunSyscalls(options);
  if (command == "fork") return RunFork(options);
  if (command == "hold") return RunHold(options);
  if (command == "alloc-sizes") return RunAllocSizes(options);
  if (command == "behind-the-shim") return RunBehindTheShim(options);
  UsageError("unknown command '%s'", argv[1]);
}
