#include "client/swap_record.hpp"

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

namespace extmem::daemon {
namespace {

namespace bip = boost::interprocess;

// A header no real swap file has (inode 0), unique to this test process.
SwapRecordHeader test_header() {
  SwapRecordHeader h;
  h.pid = getpid();
  h.start_time = 12345;
  h.arena_base = 0x7f0000000000;
  h.arena_size = 1ULL << 30;
  h.swap_device = static_cast<uint64_t>(getpid());
  h.swap_inode = 0;
  h.limit_pages = 1000;
  snprintf(h.policy, sizeof(h.policy), "fifo");
  return h;
}

class SwapRecordTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& name : SwapRecord::list(test_header().swap_device, 0)) {
      bip::shared_memory_object::remove(name.c_str());
    }
  }
};

TEST_F(SwapRecordTest, WhatIsWrittenIsWhatAnotherOpenReads) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok()) << record.error().message();
  (*record)->set_in_swap(5, true);
  (*record)->set_in_swap(511, true);
  (*record)->set_in_swap(512 * 7 + 64, true);
  (*record)->set_in_swap(5, false);
  (*record)->set_cluster(0, 0);  // cluster 0 is a real cluster, not "none"
  (*record)->set_cluster(7, 42);

  auto names = SwapRecord::list(test_header().swap_device, 0);
  ASSERT_EQ(names.size(), 1u);
  auto again = SwapRecord::open(names[0]);
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ((*again)->header().pid, getpid());
  EXPECT_STREQ((*again)->header().policy, "fifo");
  EXPECT_EQ((*again)->chunk_count(), 512u);  // 1 GiB in 2 MiB chunks
  EXPECT_FALSE((*again)->in_swap(5));
  EXPECT_TRUE((*again)->in_swap(511));
  EXPECT_TRUE((*again)->in_swap(512 * 7 + 64));
  EXPECT_FALSE((*again)->in_swap(512 * 7 + 65));
  EXPECT_EQ((*again)->cluster(0), 0u);
  EXPECT_EQ((*again)->cluster(7), 42u);
  EXPECT_EQ((*again)->cluster(8), SwapRecord::kNoCluster);
}

SwapRecordTerms terms_of(uint64_t limit_pages, const char* policy) {
  SwapRecordTerms t{limit_pages, limit_pages / 4, 200, {}};
  snprintf(t.policy, sizeof(t.policy), "%s", policy);
  return t;
}

TEST_F(SwapRecordTest, TermsAreTheRegisteredOnesUntilChangedThenTheLatest) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok());
  auto reopened = [&] {
    auto opened = SwapRecord::open((*record)->name());
    EXPECT_TRUE(opened.ok());
    return std::move(*opened);
  };
  SwapRecordTerms t = reopened()->terms();
  EXPECT_EQ(t.limit_pages, 1000u);
  EXPECT_STREQ(t.policy, "fifo");
  for (uint64_t limit : {2000, 3000, 4000}) {
    (*record)->save_terms(terms_of(limit, limit == 4000 ? "frontier" : "clock"));
  }
  t = reopened()->terms();
  EXPECT_EQ(t.limit_pages, 4000u);
  EXPECT_EQ(t.min_pages, 1000u);
  EXPECT_EQ(t.weight, 200u);
  EXPECT_STREQ(t.policy, "frontier");
  EXPECT_EQ(reopened()->header().limit_pages, 1000u) << "the header keeps the registered terms";
}

// A daemon killed in the middle of saving leaves a torn slot: the one before it is used.
TEST_F(SwapRecordTest, ATornSaveFallsBackToTheTermsBeforeIt) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok());
  (*record)->save_terms(terms_of(2000, "clock"));
  (*record)->save_terms(terms_of(3000, "frontier"));
  {
    bip::shared_memory_object shm(bip::open_only, (*record)->name().c_str(), bip::read_write);
    bip::mapped_region region(shm, bip::read_write);
    char* base = static_cast<char*>(region.get_address());
    char* latest =
        static_cast<char*>(memmem(base, region.get_size(), "frontier", strlen("frontier")));
    ASSERT_NE(latest, nullptr);
    latest[0] = 'F';
  }
  auto opened = SwapRecord::open((*record)->name());
  ASSERT_TRUE(opened.ok());
  SwapRecordTerms t = (*opened)->terms();
  EXPECT_EQ(t.limit_pages, 2000u);
  EXPECT_STREQ(t.policy, "clock");
}

TEST_F(SwapRecordTest, OnlyRecordsOfTheSameSwapFileAreListed) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(SwapRecord::list(test_header().swap_device, 0).size(), 1u);
  EXPECT_TRUE(SwapRecord::list(test_header().swap_device, 1).empty());
  (*record)->remove();
  EXPECT_TRUE(SwapRecord::list(test_header().swap_device, 0).empty());
}

// A damaged header is refused with a reason instead of being trusted.
TEST_F(SwapRecordTest, DamagedOrForeignRecordsAreRefused) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok());
  const std::string name = (*record)->name();
  auto corrupt = [&](size_t offset, char value) {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    bip::mapped_region region(shm, bip::read_write);
    static_cast<char*>(region.get_address())[offset] = value;
  };
  corrupt(offsetof(SwapRecordHeader, arena_size), 0x55);
  auto opened = SwapRecord::open(name);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(std::string(opened.error().context()).find("checksum"), std::string::npos);

  corrupt(0, 'X');
  opened = SwapRecord::open(name);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(std::string(opened.error().context()).find("not an extmem swap record"),
            std::string::npos);

  EXPECT_FALSE(SwapRecord::open("extmem.no.such.record").ok());
}

TEST_F(SwapRecordTest, AnotherVersionIsRefused) {
  auto record = SwapRecord::create(test_header());
  ASSERT_TRUE(record.ok());
  {
    bip::shared_memory_object shm(bip::open_only, (*record)->name().c_str(), bip::read_write);
    bip::mapped_region region(shm, bip::read_write);
    auto* h = static_cast<SwapRecordHeader*>(region.get_address());
    h->version = 99;
    h->checksum = swap_record_checksum(*h);
  }
  auto opened = SwapRecord::open((*record)->name());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code(), EPROTONOSUPPORT);
}

}  // namespace
}  // namespace extmem::daemon
