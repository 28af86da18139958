#include "policy/policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "policy/clock_policy.hpp"
#include "policy/fifo_policy.hpp"
#include "policy/page_hints.hpp"

namespace extmem::daemon {
namespace {

using Pages = std::vector<uint64_t>;

// Trace page ids spread over a sparse range above 2^32 with runs crossing 512-page chunks,
// as an arena whose allocations are scattered.
uint64_t sparse_page(uint64_t id) {
  return (uint64_t{3} << 32) + (id / 300) * 5000 + id % 300;
}

// Drives a policy the way the mechanism does, and checks every scan's answer. Each
// resident page maps to whether its access bit was reset (so its next touch is reported).
class Mechanism {
 public:
  Mechanism(Policy& policy, size_t capacity, size_t batch = 8)
      : policy_(policy), capacity_(capacity), batch_(batch) {}

  // A touch misses if the page is not resident: it faults in, after reclaim if the resident
  // set is full. A touch of a reset page is reported through on_access.
  void touch(uint64_t page) {
    auto it = resident_.find(page);
    if (it != resident_.end()) {
      if (it->second) {
        ++minor_faults_;
        policy_.on_access(page);
      }
      it->second = false;
      return;
    }
    ++misses_;
    while (resident_.size() >= capacity_ && !::testing::Test::HasFatalFailure()) reclaim(batch_);
    resident_.emplace(page, false);
    policy_.on_resident(page);
  }

  // The application frees `page`.
  void free(uint64_t page) {
    if (resident_.erase(page) > 0) policy_.on_gone(page);
  }

  // One scan, checked, then applied. With `refuse_first` the first victim's eviction fails
  // and it comes back through on_resident.
  void reclaim(size_t want, bool refuse_first = false) {
    Policy::Scan scan;
    policy_.scan(want, &scan);
    if (want > 0 && !resident_.empty()) {
      ASSERT_FALSE(scan.victims.empty()) << "no progress";
    }
    ASSERT_LE(scan.victims.size(), want);
    std::unordered_set<uint64_t> victims;
    for (uint64_t page : scan.victims) {
      ASSERT_TRUE(resident_.contains(page)) << "victim " << page << " is not resident";
      ASSERT_TRUE(victims.insert(page).second) << "victim " << page << " returned twice";
    }
    std::unordered_set<uint64_t> reset;
    for (uint64_t page : scan.reset) {
      ASSERT_TRUE(resident_.contains(page)) << "reset " << page << " is not resident";
      ASSERT_FALSE(victims.contains(page)) << "page " << page << " is victim and reset";
      ASSERT_TRUE(reset.insert(page).second) << "reset " << page << " asked twice";
    }
    for (uint64_t page : scan.victims) resident_.erase(page);
    for (uint64_t page : scan.reset) resident_[page] = true;
    resets_ += scan.reset.size();
    if (refuse_first && !scan.victims.empty()) {
      resident_.emplace(scan.victims.front(), false);
      policy_.on_resident(scan.victims.front());
    }
    ASSERT_EQ(policy_.resident_pages(), resident_.size());
  }

  bool resident(uint64_t page) const { return resident_.contains(page); }
  size_t resident_count() const { return resident_.size(); }
  uint64_t misses() const { return misses_; }
  uint64_t resets() const { return resets_; }
  // Touches of reset pages: in extmemd each is a minor fault served by the daemon.
  uint64_t minor_faults() const { return minor_faults_; }

 private:
  Policy& policy_;
  size_t capacity_;
  size_t batch_;
  std::unordered_map<uint64_t, bool> resident_;
  uint64_t misses_ = 0;
  uint64_t resets_ = 0;
  uint64_t minor_faults_ = 0;
};

struct TraceStats {
  uint64_t misses;
  uint64_t resets;
};

TraceStats replay(std::string_view policy_name, const Pages& trace, size_t capacity) {
  std::unique_ptr<Policy> policy = make_policy(policy_name);
  Mechanism mechanism(*policy, capacity);
  for (uint64_t id : trace) {
    mechanism.touch(sparse_page(id));
    if (::testing::Test::HasFatalFailure()) break;
  }
  return {mechanism.misses(), mechanism.resets()};
}

// Ids [0, pages): 90% of accesses go to the first tenth.
Pages hot_cold_trace(uint64_t pages, size_t accesses, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> hot(0, pages / 10 - 1);
  std::uniform_int_distribution<uint64_t> cold(pages / 10, pages - 1);
  std::bernoulli_distribution is_hot(0.9);
  Pages trace;
  trace.reserve(accesses);
  for (size_t i = 0; i < accesses; ++i) trace.push_back(is_hot(rng) ? hot(rng) : cold(rng));
  return trace;
}

Pages sequential(uint64_t first, uint64_t count) {
  Pages trace(count);
  for (uint64_t i = 0; i < count; ++i) trace[i] = first + i;
  return trace;
}

TEST(PolicyRegistryTest, KnowsClockAndFifo) {
  const std::vector<std::string> names = policy_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "clock"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "fifo"), names.end());
  for (const std::string& name : names) {
    std::unique_ptr<Policy> policy = make_policy(name);
    ASSERT_NE(policy, nullptr) << name;
    EXPECT_EQ(policy->name(), name);
  }
  EXPECT_NE(make_policy(kDefaultPolicy), nullptr);
}

TEST(PolicyRegistryTest, UnknownNameGivesNull) {
  EXPECT_EQ(make_policy("nope"), nullptr);
  EXPECT_EQ(make_policy(""), nullptr);
}

TEST(FifoPolicyTest, EvictsInOrderOfBecomingResident) {
  const Pages p = {7, 511, 512, 1000, uint64_t{1} << 33, 3, 4096, 5, 9, (uint64_t{1} << 34) - 1};
  FifoPolicy fifo;
  for (uint64_t page : p) fifo.on_resident(page);
  fifo.on_access(p[0]);  // ignored
  Policy::Scan scan;
  fifo.scan(3, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[0], p[1], p[2]}));
  EXPECT_TRUE(scan.reset.empty());

  // p[3] freed; p[5] freed and back (a new arrival); p[4]'s eviction fails (also new).
  fifo.on_gone(p[3]);
  fifo.on_gone(p[5]);
  fifo.on_resident(p[5]);
  fifo.scan(2, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[4], p[6]}));
  fifo.on_resident(p[4]);
  EXPECT_EQ(fifo.resident_pages(), 5u);
  fifo.scan(10, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[7], p[8], p[9], p[5], p[4]}));
  EXPECT_TRUE(scan.reset.empty());
  EXPECT_EQ(fifo.resident_pages(), 0u);
  fifo.scan(1, &scan);
  EXPECT_TRUE(scan.victims.empty());
}

// A page freed and back k times before the hand moves has k + 1 entries (up to the count's
// limit): whatever k, it is evicted exactly once, after the page resident before it.
TEST(FifoPolicyTest, PageChurningFasterThanTheHandIsEvictedOnce) {
  for (int round_trips = 0; round_trips < 20; ++round_trips) {
    SCOPED_TRACE(round_trips);
    FifoPolicy fifo;
    fifo.on_resident(1);
    fifo.on_resident(2);
    for (int i = 0; i < round_trips; ++i) {
      fifo.on_gone(1);
      fifo.on_resident(1);
    }
    Policy::Scan scan;
    fifo.scan(10, &scan);
    EXPECT_EQ(scan.victims, round_trips == 0 ? (Pages{1, 2}) : (Pages{2, 1}));
    EXPECT_EQ(fifo.resident_pages(), 0u);
    fifo.on_resident(1);
    fifo.scan(10, &scan);
    EXPECT_EQ(scan.victims, (Pages{1}));
  }
}

// The hands' rules, step by step.
TEST(ClockPolicyTest, SecondChanceThenPromotionThenDemotion) {
  const Pages p = {10, 20, uint64_t{1} << 33, 40, 50, 60, 70, 80};
  ClockPolicy clock;
  for (uint64_t page : p) clock.on_resident(page);
  Policy::Scan scan;

  // All new: each is reset and requeued; no victim in the lap, so the oldest goes anyway.
  clock.scan(8, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[0]}));
  EXPECT_EQ(scan.reset, (Pages{p[1], p[2], p[3], p[4], p[5], p[6], p[7]}));

  // Reset and untouched: evicted; touched since: reset again and promoted.
  clock.on_access(p[2]);
  clock.on_access(p[4]);
  clock.scan(2, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[1], p[3]}));
  EXPECT_EQ(scan.reset, (Pages{p[2]}));

  // p[4] is promoted; once the inactive ring is low the active hand demotes p[2], which was
  // not touched after its reset, and the inactive hand evicts it.
  clock.scan(10, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[5], p[6], p[7], p[2]}));
  EXPECT_EQ(scan.reset, (Pages{p[4]}));
  EXPECT_EQ(clock.resident_pages(), 1u);

  // A touched active page is reset and kept while something else can go.
  clock.on_resident(p[0]);
  clock.on_access(p[4]);
  clock.scan(1, &scan);
  EXPECT_EQ(scan.victims, (Pages{p[0]}));
  EXPECT_EQ(scan.reset, (Pages{p[4]}));
}

TEST(ClockPolicyTest, PagesReadAheadAreEvictedAtTheFirstVisitWithoutAReset) {
  ClockPolicy clock;
  for (uint64_t page : {1, 2, 3}) clock.on_resident(page);    // faulted in
  for (uint64_t page : {4, 5, 6}) clock.on_read_ahead(page);  // read ahead of use
  Policy::Scan scan;
  clock.scan(3, &scan);
  // The faulted pages get their second chance (a reset); the pages read ahead, whose use
  // an unmapped page would only show at the cost of a reset each, go.
  EXPECT_EQ(scan.victims, (Pages{4, 5, 6}));
  EXPECT_EQ(scan.reset, (Pages{1, 2, 3}));
  // One used again faults back in, and is then an ordinary new page.
  clock.on_resident(4);
  clock.scan(4, &scan);
  EXPECT_EQ(scan.victims, (Pages{1, 2, 3}));
  EXPECT_EQ(scan.reset, (Pages{4}));
}

TEST(ClockPolicyTest, PageFreedAndBackBeforeTheHandIsTrackedOnce) {
  ClockPolicy clock;
  clock.on_resident(5);
  clock.on_resident(6);
  clock.on_gone(5);
  clock.on_gone(5);      // twice: ignored
  clock.on_access(5);    // not resident: ignored
  clock.on_resident(5);  // reuses its entry
  clock.on_resident(5);  // already resident: ignored
  EXPECT_EQ(clock.resident_pages(), 2u);
  Policy::Scan scan;
  Pages victims;
  for (int i = 0; i < 4; ++i) {
    clock.scan(4, &scan);
    victims.insert(victims.end(), scan.victims.begin(), scan.victims.end());
  }
  std::sort(victims.begin(), victims.end());
  EXPECT_EQ(victims, (Pages{5, 6}));
}

TEST(ClockPolicyTest, PageFreedFromTheActiveRingAndBackStaysActive) {
  ClockPolicy clock;
  for (uint64_t page : {1, 2, 3, 4, 10, 11, 12, 13}) clock.on_resident(page);
  Policy::Scan scan;
  clock.scan(8, &scan);
  EXPECT_EQ(scan.victims, (Pages{1}));
  for (uint64_t page : {2, 3, 4}) clock.on_access(page);
  clock.scan(4, &scan);
  EXPECT_EQ(scan.victims, (Pages{10, 11, 12, 13}));
  EXPECT_EQ(scan.reset, (Pages{2, 3, 4}));

  // Active: 2, 3 (new again), 4; inactive: 20. The active ring is large, so its hand
  // runs from the first step.
  clock.on_gone(3);
  clock.on_resident(3);
  clock.on_resident(20);
  clock.scan(1, &scan);
  EXPECT_EQ(scan.victims, (Pages{4}));
  EXPECT_EQ(scan.reset, (Pages{20, 3}));
  EXPECT_EQ(clock.resident_pages(), 3u);
}

// 192 pages used every round in 256 pages of DRAM, while 8 new pages a round pass through:
// the hot pages keep the active ring above 2/3 of memory, so its hand runs on every step.
constexpr uint64_t kHotPages = 192;
constexpr uint64_t kDram = 256;
constexpr uint64_t kStreamPerRound = 8;

void hot_round(Mechanism& m, uint64_t first_hot, uint64_t* next_stream) {
  for (uint64_t page = first_hot; page < first_hot + kHotPages; ++page) m.touch(page);
  for (uint64_t i = 0; i < kStreamPerRound; ++i) m.touch((*next_stream)++);
}

// Plain CLOCK (heat 0) resets every active page on every lap, so each page in use takes a
// minor fault per lap; with heat, a page found in use lap after lap is reset ever less often.
TEST(ClockHeatTest, APageInUseIsNotResetEveryLap) {
  uint64_t minor[2] = {0, 0};
  uint64_t misses[2] = {0, 0};
  for (const unsigned max_heat : {0u, ClockPolicy::kMaxHeat}) {
    SCOPED_TRACE(max_heat);
    ClockPolicy clock(max_heat);
    Mechanism m(clock, kDram);
    uint64_t stream = 100000;
    for (int round = 0; round < 3000 && !HasFatalFailure(); ++round) hot_round(m, 0, &stream);
    for (uint64_t page = 0; page < kHotPages; ++page) EXPECT_TRUE(m.resident(page)) << page;
    minor[max_heat > 0] = m.minor_faults();
    misses[max_heat > 0] = m.misses();
  }
  std::cout << "  minor faults: plain " << minor[0] << ", heat " << minor[1] << "\n";
  EXPECT_GT(minor[0], 20000u);  // the hand lapped the hot pages often
  EXPECT_LT(minor[1] * 4, minor[0]) << "plain " << minor[0] << ", heat " << minor[1];
  EXPECT_EQ(misses[1], misses[0]);  // hot pages never missed, stream pages always did
}

// The hot/cold trace at three DRAM sizes: heat never costs misses, and takes fewer minor
// faults. With DRAM as large as the hot set, plain CLOCK keeps resetting and demoting hot
// pages (the active ring may hold only 2/3 of DRAM); heat keeps them, and misses less.
TEST(ClockHeatTest, HotColdTraceFewerMinorFaultsNoMoreMisses) {
  const Pages trace = hot_cold_trace(10000, 400000, 42);
  for (const size_t dram : {1000u, 2000u, 5000u}) {
    SCOPED_TRACE(dram);
    uint64_t minor[2] = {0, 0};
    uint64_t misses[2] = {0, 0};
    for (const unsigned max_heat : {0u, ClockPolicy::kMaxHeat}) {
      ClockPolicy clock(max_heat);
      Mechanism m(clock, dram);
      for (uint64_t id : trace) m.touch(sparse_page(id));
      minor[max_heat > 0] = m.minor_faults();
      misses[max_heat > 0] = m.misses();
    }
    std::cout << "  DRAM " << dram << ": plain " << misses[0] << " misses, " << minor[0]
              << " minor faults; heat " << misses[1] << " misses, " << minor[1] << "\n";
    EXPECT_LE(static_cast<double>(misses[1]), 1.01 * static_cast<double>(misses[0]));
    EXPECT_LT(minor[1], minor[0]);
    if (dram == 1000) EXPECT_LT(minor[1] * 4, minor[0]);
  }
}

// 16 of the hot pages, at full heat, stop being used: each is still reset on a due lap,
// found unused on the next one, demoted and evicted, within a bounded number of laps.
TEST(ClockHeatTest, APageThatWentColdIsStillEvicted) {
  constexpr uint64_t kCold = 16;
  for (const unsigned max_heat : {0u, ClockPolicy::kMaxHeat}) {
    SCOPED_TRACE(max_heat);
    ClockPolicy clock(max_heat);
    Mechanism m(clock, kDram);
    uint64_t stream = 100000;
    for (int round = 0; round < 1000 && !HasFatalFailure(); ++round) hot_round(m, 0, &stream);
    // A lap of the active hand takes at most kHotPages / kStreamPerRound rounds: while the
    // active ring holds over 2/3 of the pages (176 of 256 here) it steps with the inactive
    // hand, which steps at least once per victim. A page is reset within 2^max_heat laps
    // and demoted on the next; the inactive hand's lap is shorter than the active one's.
    const int lap = static_cast<int>(kHotPages / kStreamPerRound);
    const int bound = static_cast<int>((1u << max_heat) + 3) * lap;
    auto cold_resident = [&] {
      uint64_t n = 0;
      for (uint64_t page = 0; page < kCold; ++page) n += m.resident(page);
      return n;
    };
    int rounds = 0;
    for (; cold_resident() > 0 && rounds < bound && !HasFatalFailure(); ++rounds) {
      for (uint64_t page = kCold; page < kHotPages; ++page) m.touch(page);
      for (uint64_t i = 0; i < kStreamPerRound; ++i) m.touch(stream++);
    }
    EXPECT_EQ(cold_resident(), 0u) << "after " << rounds << " rounds";
    std::cout << "  heat " << max_heat << ": cold pages evicted in " << rounds << " rounds\n";
    for (uint64_t page = kCold; page < kHotPages; ++page) EXPECT_TRUE(m.resident(page)) << page;
  }
}

// Threads that sweep random 2 MiB windows (the `window` benchmark): the heat's reset laps
// are shared by a window's pages, so a window is evicted and read back in long runs. When
// they were staggered by page, windows came back as scattered single pages: a whole-window
// read of 12 reads averaging 60 KiB in the benchmark.
TEST(ClockHeatTest, SweptWindowsAreEvictedInLongRuns) {
  constexpr uint64_t kWindow = 512;
  constexpr uint64_t kWindows = 64;
  ClockPolicy clock;
  Mechanism m(clock, kWindows * kWindow / 2, 256);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> pick(0, kWindows - 1);
  uint64_t runs = 0, visits_with_misses = 0;
  for (int visit = 0; visit < 4000 && !HasFatalFailure(); ++visit) {
    const uint64_t first = pick(rng) * kWindow;
    uint64_t window_runs = 0;
    for (uint64_t page = first; page < first + kWindow; ++page) {
      if (!m.resident(page) && (page == first || m.resident(page - 1))) ++window_runs;
    }
    if (visit >= 1000 && window_runs > 0) {  // after the first fill
      runs += window_runs;
      ++visits_with_misses;
    }
    for (uint64_t page = first; page < first + kWindow; ++page) m.touch(page);
  }
  ASSERT_GT(visits_with_misses, 500u);
  const double mean = static_cast<double>(runs) / static_cast<double>(visits_with_misses);
  std::cout << "  runs of evicted pages per window that missed: " << mean << "\n";
  EXPECT_LT(mean, 4.0);
}

// Random operations against a model: victims and resets are resident, distinct and
// disjoint, refused victims come back, and the resident count stays exact.
TEST(PolicyModelTest, RandomOperationsKeepInvariants) {
  for (const std::string& name : policy_names()) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE(std::string(name) + " seed " + std::to_string(seed));
      std::unique_ptr<Policy> policy = make_policy(name);
      Mechanism mechanism(*policy, 150, 4);
      std::mt19937_64 rng(seed);
      std::uniform_int_distribution<uint64_t> id(0, 399);
      std::uniform_int_distribution<size_t> want(0, 8);
      std::uniform_int_distribution<int> op(0, 99);
      for (int i = 0; i < 5000 && !HasFatalFailure(); ++i) {
        const int o = op(rng);
        const uint64_t page = sparse_page(id(rng));
        if (o < 55) {
          mechanism.touch(page);
        } else if (o < 70) {
          mechanism.free(page);
        } else {
          mechanism.reclaim(want(rng), o < 78);
        }
        ASSERT_EQ(policy->resident_pages(), mechanism.resident_count());
      }
    }
  }
}

// Every page is touched between scans, so all look hot: scans must still yield victims.
TEST(PolicyProgressTest, EveryPageAccessedStillYieldsVictims) {
  for (const std::string& name : policy_names()) {
    SCOPED_TRACE(name);
    std::unique_ptr<Policy> policy = make_policy(name);
    Mechanism mechanism(*policy, 256);
    for (int round = 0; round < 200 && !HasFatalFailure(); ++round) {
      for (uint64_t page = 0; page < 300; ++page) mechanism.touch(page);
      mechanism.reclaim(1 + round % 5);
    }
  }
}

TEST(PolicyProgressTest, ScanBeyondTheResetBudgetStillEvicts) {
  ClockPolicy clock;
  for (uint64_t page = 0; page < 10000; ++page) clock.on_resident(page);
  Policy::Scan scan;
  for (int i = 0; i < 3; ++i) {
    clock.scan(1, &scan);
    EXPECT_EQ(scan.victims.size(), 1u);
    EXPECT_LE(scan.reset.size(), 5u);
    for (uint64_t page : scan.reset) clock.on_access(page);
  }
}

// A working set of 10000 pages, 90% of the accesses to 1000 hot ones, in 2000 pages of
// DRAM: CLOCK keeps the hot pages, FIFO cycles them out.
TEST(PolicyTraceTest, ClockKeepsTheHotSet) {
  const Pages trace = hot_cold_trace(10000, 400000, 42);
  const TraceStats with_clock = replay("clock", trace, 2000);
  const TraceStats with_fifo = replay("fifo", trace, 2000);
  EXPECT_GE(static_cast<double>(with_fifo.misses), 1.3 * static_cast<double>(with_clock.misses))
      << "clock misses " << with_clock.misses << ", fifo misses " << with_fifo.misses;
  // About one reset per miss (the second chance), plus the hot pages' promotions.
  EXPECT_LE(static_cast<double>(with_clock.resets), 1.5 * static_cast<double>(with_clock.misses));
}

// A sequential pass over three times the DRAM in the middle of the hot/cold trace: CLOCK
// gives the pass's pages a second chance only, so the hot set survives it.
TEST(PolicyTraceTest, SequentialPassDoesNotFlushTheHotSet) {
  Pages trace = hot_cold_trace(10000, 100000, 7);
  const Pages pass = sequential(10000, 6000);
  const Pages after = hot_cold_trace(10000, 100000, 8);
  trace.insert(trace.end(), pass.begin(), pass.end());
  trace.insert(trace.end(), after.begin(), after.end());
  const TraceStats with_clock = replay("clock", trace, 2000);
  const TraceStats with_fifo = replay("fifo", trace, 2000);
  EXPECT_GE(static_cast<double>(with_fifo.misses), 1.3 * static_cast<double>(with_clock.misses))
      << "clock misses " << with_clock.misses << ", fifo misses " << with_fifo.misses;
  EXPECT_LE(static_cast<double>(with_clock.resets), 1.5 * static_cast<double>(with_clock.misses));
}

// Looping over more pages than fit misses every time under any of these policies; CLOCK's
// second chances must not make it worse than FIFO.
TEST(PolicyTraceTest, LoopLargerThanDramIsNoWorseThanFifo) {
  Pages trace;
  for (int round = 0; round < 10; ++round) {
    const Pages loop = sequential(0, 3000);
    trace.insert(trace.end(), loop.begin(), loop.end());
  }
  const TraceStats with_clock = replay("clock", trace, 2000);
  const TraceStats with_fifo = replay("fifo", trace, 2000);
  EXPECT_LE(static_cast<double>(with_clock.misses), 1.05 * static_cast<double>(with_fifo.misses))
      << "clock misses " << with_clock.misses << ", fifo misses " << with_fifo.misses;
  EXPECT_LE(with_clock.resets, 2 * with_clock.misses);
}

// 1M resident pages in 256 KiB runs scattered over a 256 GiB range above 2^32: each
// 512-page chunk of flags serves only 64 pages, the worst case for memory per page.
// Frontier may take more there: each run starts a stream whose first pages go to its
// embedded CLOCK, so every chunk has two sets of flags.
TEST(PolicyMemoryTest, TenBytesPerResidentPage) {
  constexpr uint64_t kPages = uint64_t{1} << 20;
  for (const std::string& name : policy_names()) {
    SCOPED_TRACE(name);
    const uint64_t budget = (name == "frontier" ? 16 : 10) * kPages;
    std::unique_ptr<Policy> policy = make_policy(name);
    for (uint64_t i = 0; i < kPages; ++i) {
      policy->on_resident((uint64_t{1} << 32) + (i / 64) * 4096 + i % 64);
    }
    EXPECT_EQ(policy->resident_pages(), kPages);
    EXPECT_LE(policy->memory_bytes(), budget);
    // Turning the rings over moves entries between blocks; memory must stay put.
    Policy::Scan scan;
    for (int i = 0; i < 100; ++i) {
      policy->scan(4096, &scan);
      for (uint64_t page : scan.victims) policy->on_resident(page);
      for (uint64_t page : scan.reset) policy->on_access(page);
    }
    EXPECT_EQ(policy->resident_pages(), kPages);
    EXPECT_LE(policy->memory_bytes(), budget);
  }
}

// Dense arrays, as PageRank's: frontier's pages are nearly all stream pages.
TEST(PolicyMemoryTest, FrontierTakesSixBytesPerPageOfDenseArrays) {
  constexpr uint64_t kPages = uint64_t{1} << 20;
  std::unique_ptr<Policy> policy = make_policy("frontier");
  for (uint64_t i = 0; i < kPages; ++i) policy->on_resident((uint64_t{1} << 32) + i);
  EXPECT_LE(policy->memory_bytes(), 6 * kPages);
}

TEST(PolicyMemoryTest, FreedPagesGiveMemoryBack) {
  constexpr uint64_t kPages = uint64_t{1} << 20;
  for (const std::string& name : policy_names()) {
    SCOPED_TRACE(name);
    std::unique_ptr<Policy> policy = make_policy(name);
    for (uint64_t page = 0; page < kPages; ++page) policy->on_resident(page);
    const uint64_t full = policy->memory_bytes();
    for (uint64_t page = 0; page < kPages; ++page) policy->on_gone(page);
    EXPECT_EQ(policy->resident_pages(), 0u);
    EXPECT_LE(policy->memory_bytes(), full / 20);
  }
}

// Pages freed, and fresh ones or the same made resident, with no reclaim to move the
// hands: stale entries must not pile up.
TEST(PolicyMemoryTest, ChurnWithoutScansStaysBounded) {
  constexpr uint64_t kResident = 10000;
  for (const std::string& name : policy_names()) {
    SCOPED_TRACE(name);
    std::unique_ptr<Policy> policy = make_policy(name);
    Pages resident = sequential(0, kResident);
    for (uint64_t page : resident) policy->on_resident(page);
    std::mt19937_64 rng(3);
    uint64_t next = kResident;
    uint64_t peak = 0;
    for (int i = 0; i < 200000; ++i) {
      uint64_t& page = resident[rng() % kResident];
      policy->on_gone(page);
      if (rng() % 2 == 0) page = next++;  // else the same page comes back
      policy->on_resident(page);
      peak = std::max(peak, policy->memory_bytes());
    }
    EXPECT_EQ(policy->resident_pages(), kResident);
    EXPECT_LE(peak, 10 * kResident + 64 * 1024);
  }
}

// Hints, for every policy: pages declared cold go first, hot pages last.
class PolicyHintTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyHintTest, ColdPagesAreEvictedBeforeAnyOther) {
  std::unique_ptr<Policy> policy = make_policy(GetParam());
  Mechanism mechanism(*policy, 1000);
  for (uint64_t page = 0; page < 600; ++page) mechanism.touch(sparse_page(page));
  // Cold: a run in the middle, across a chunk boundary of the sparse layout.
  policy->on_hint(sparse_page(400), 50, PageHint::kCold);
  Policy::Scan scan;
  policy->scan(30, &scan);
  ASSERT_EQ(scan.victims.size(), 30u);
  for (size_t i = 0; i < 30; ++i) EXPECT_EQ(scan.victims[i], sparse_page(400 + i));
  // The last 20 cold pages, then whatever the policy's own scan finds (clock may find
  // none yet: its first pass only resets new pages).
  policy->scan(30, &scan);
  ASSERT_GE(scan.victims.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(scan.victims[i], sparse_page(430 + i));
  EXPECT_EQ(policy->resident_pages(), 570u - scan.victims.size());
}

TEST_P(PolicyHintTest, ColdHintOnPagesNotResidentIsHarmless) {
  std::unique_ptr<Policy> policy = make_policy(GetParam());
  policy->on_hint(0, uint64_t{1} << 20, PageHint::kCold);
  Mechanism mechanism(*policy, 100);
  for (uint64_t page = 0; page < 300; ++page) mechanism.touch(page);
  EXPECT_EQ(mechanism.resident_count(), 100u);
}

TEST_P(PolicyHintTest, HotPagesStayWhileAnyOtherPageCanGo) {
  std::unique_ptr<Policy> policy = make_policy(GetParam());
  Mechanism mechanism(*policy, 200);
  policy->on_hint(1000, 100, PageHint::kHot);
  for (uint64_t page = 1000; page < 1100; ++page) mechanism.touch(page);
  // A scan through ten times the limit, touching each page once.
  for (uint64_t page = 0; page < 2000; ++page) mechanism.touch(page);
  for (uint64_t page = 1000; page < 1100; ++page) EXPECT_TRUE(mechanism.resident(page)) << page;
  // Hot pages only are left: they go too, reclaim always progresses.
  policy->on_hint(0, 1000, PageHint::kHot);
  policy->on_hint(1100, 900, PageHint::kHot);
  mechanism.reclaim(50);
  EXPECT_LT(mechanism.resident_count(), 200u);
}

TEST_P(PolicyHintTest, NormalForgetsHotAndColdMakesHotPagesOrdinary) {
  std::unique_ptr<Policy> policy = make_policy(GetParam());
  Mechanism mechanism(*policy, 100);
  policy->on_hint(0, 100, PageHint::kHot);
  policy->on_hint(40, 20, PageHint::kNormal);  // splits the hot range
  for (uint64_t page = 0; page < 100; ++page) mechanism.touch(page);
  for (uint64_t page = 100; page < 120; ++page) mechanism.touch(page);
  uint64_t evicted_normal = 0;
  for (uint64_t page = 0; page < 100; ++page) {
    if (page < 40 || page >= 60) {
      EXPECT_TRUE(mechanism.resident(page)) << page;
    } else {
      evicted_normal += !mechanism.resident(page);
    }
  }
  EXPECT_GT(evicted_normal, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PolicyHintTest, ::testing::ValuesIn(policy_names()));

TEST(PageHintsTest, HotRangesSplitMergeAndClear) {
  PageHints hints;
  hints.set_hot(10, 10, true);
  hints.set_hot(15, 10, true);  // overlaps: [10, 25)
  for (uint64_t p = 0; p < 30; ++p) EXPECT_EQ(hints.hot(p), p >= 10 && p < 25) << p;
  hints.set_hot(12, 2, false);
  for (uint64_t p = 0; p < 30; ++p) {
    EXPECT_EQ(hints.hot(p), p >= 10 && p < 25 && (p < 12 || p >= 14)) << p;
  }
  hints.set_hot(0, UINT64_MAX, false);
  EXPECT_FALSE(hints.any_hot());
  hints.set_hot(UINT64_MAX - 5, 100, true);  // clamped at the end of the page space
  EXPECT_TRUE(hints.hot(UINT64_MAX - 1));
}

}  // namespace
}  // namespace extmem::daemon
