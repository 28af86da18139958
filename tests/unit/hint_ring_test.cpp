// The hint ring (proto/extmem/hint_ring.hpp): producers never block, the consumer takes
// exactly what was published, in order, and nothing a client writes into the shared
// memory makes the consumer take more than it asks for or read outside the ring.
#include "extmem/hint_ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace extmem::hints {
namespace {

struct Ring {
  Ring() : ring(new HintRing()) { init_ring(ring.get()); }
  std::unique_ptr<HintRing> ring;
};

TEST(HintRingTest, TakesWhatWasPushedInOrder) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  for (uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(push(r.ring.get(), 4096 * i, 4096, i % 8, false), PushResult::kQueued);
  }
  HintEntry out[16];
  ASSERT_EQ(consumer.take(out), 10u);
  for (uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(out[i].addr, 4096 * i);
    EXPECT_EQ(out[i].len, 4096u);
    EXPECT_EQ(out[i].hint, i % 8);
  }
  EXPECT_EQ(consumer.take(out), 0u);
}

TEST(HintRingTest, FullRingDropsAndCountsThenAcceptsAgainOnceTaken) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  for (uint64_t i = 0; i < kEntries; ++i) {
    ASSERT_EQ(push(r.ring.get(), i, 1, 0, false), PushResult::kQueued);
  }
  EXPECT_EQ(push(r.ring.get(), 0, 1, 0, false), PushResult::kFull);
  EXPECT_EQ(push(r.ring.get(), 0, 1, 0, false), PushResult::kFull);
  EXPECT_EQ(consumer.dropped_full(), 2u);
  HintEntry out[4];
  ASSERT_EQ(consumer.take(out), 4u);
  EXPECT_EQ(out[3].addr, 3u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(push(r.ring.get(), 9, 1, 0, false), PushResult::kQueued);
  EXPECT_EQ(push(r.ring.get(), 0, 1, 0, false), PushResult::kFull);
}

TEST(HintRingTest, TakeNeverReturnsMoreThanAsked) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  for (int i = 0; i < 100; ++i) ASSERT_EQ(push(r.ring.get(), i, 1, 0, false), PushResult::kQueued);
  HintEntry out[100];
  EXPECT_EQ(consumer.take(std::span(out).first(7)), 7u);
  EXPECT_EQ(consumer.take(out), 93u);
}

TEST(HintRingTest, DoorbellIsRungOnceForUrgentHintsWhileArmed) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  // Not armed: no doorbell.
  EXPECT_EQ(push(r.ring.get(), 0, 1, 3, true), PushResult::kQueued);
  // Armed with an entry waiting: the consumer is told to look again.
  EXPECT_TRUE(consumer.arm_doorbell());
  HintEntry out[8];
  EXPECT_EQ(consumer.take(out), 1u);
  EXPECT_FALSE(consumer.arm_doorbell());
  // A lazy hint leaves the doorbell armed; the first urgent one rings it, once.
  EXPECT_EQ(push(r.ring.get(), 0, 1, 5, false), PushResult::kQueued);
  EXPECT_EQ(push(r.ring.get(), 0, 1, 3, true), PushResult::kQueuedRingDoorbell);
  EXPECT_EQ(push(r.ring.get(), 0, 1, 3, true), PushResult::kQueued);
}

TEST(HintRingTest, ConcurrentProducersLoseNothingTheyQueued) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  constexpr int kThreads = 4, kEach = 20000;
  std::atomic<uint64_t> queued{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (uint64_t i = 0; i < kEach; ++i) {
        if (push(r.ring.get(), (uint64_t(t) << 32) | i, 1, 0, false) == PushResult::kQueued) {
          ++queued;
        }
      }
    });
  }
  std::set<uint64_t> seen;
  HintEntry out[64];
  std::thread stopper([&] {
    for (auto& p : producers) p.join();
    done = true;
  });
  for (;;) {
    const bool finished = done.load();
    const size_t n = consumer.take(out);
    for (size_t i = 0; i < n; ++i) EXPECT_TRUE(seen.insert(out[i].addr).second) << out[i].addr;
    if (finished && n == 0) break;
  }
  stopper.join();
  EXPECT_EQ(seen.size(), queued.load());
  EXPECT_EQ(queued.load() + consumer.dropped_full(), uint64_t{kThreads} * kEach);
}

TEST(HintRingTest, GarbageInTheSharedMemoryIsTakenAtMostAsAskedAndNeverBlocks) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  std::mt19937_64 rng(7);
  HintEntry out[32];
  for (int round = 0; round < 2000; ++round) {
    // A hostile client rewrites random words of the ring, indices and sequences included.
    auto* words = reinterpret_cast<std::atomic<uint64_t>*>(r.ring.get());
    for (int i = 0; i < 64; ++i) {
      words[rng() % (sizeof(HintRing) / 8)].store(rng() % 4 == 0 ? rng() % 4096 : rng());
    }
    EXPECT_LE(consumer.take(out), std::size(out));
    consumer.arm_doorbell();
  }
}

TEST(HintRingTest, ForgedSequencesAreTakenAsEntriesForTheDaemonToValidate) {
  Ring r;
  RingConsumer consumer(r.ring.get());
  // A client may publish any content by writing the sequence the consumer expects.
  r.ring->slots[0].addr = 0xdead000;
  r.ring->slots[0].hint = 99;
  r.ring->slots[0].sequence = 1;
  HintEntry out[4];
  ASSERT_EQ(consumer.take(out), 1u);
  EXPECT_EQ(out[0].hint, 99u);
  EXPECT_EQ(out[0].addr, 0xdead000u);
}

TEST(HintRingTest, NamesEveryHint) {
  for (uint32_t h = 0; h <= kMaxHint; ++h) EXPECT_STRNE(hint_name(h), "unknown") << h;
  EXPECT_STREQ(hint_name(kMaxHint + 1), "unknown");
}

}  // namespace
}  // namespace extmem::hints
