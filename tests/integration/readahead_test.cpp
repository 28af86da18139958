// Swap-in read-ahead end to end: a real extmemd with a swap file and real clients reading
// evicted memory back in several orders (extmem-hints read-back). Every run checks every
// page's data; the counters come from the control plane.
#include <signal.h>

#include <chrono>
#include <optional>
#include <regex>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "extmem/v1/control.grpc.pb.h"
#include "harness.hpp"

namespace extmem::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct ReadBack {
  ProcessResult result;
  v1::Counters counters;  // the control plane's, after the read
};

// `mib` MiB written, pushed out under a 32 MiB limit, then read back in `order`.
ReadBack read_back(const std::string& order, const std::vector<std::string>& extra = {},
                   int mib = 16) {
  ScratchDir dir;
  Daemon daemon(dir,
                {"--swap", dir.file("swapfile"), "--swap-size", "512M", "--fault-threads", "2"});
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "32M";
  std::vector<std::string> argv = {hints_path(dir),     "read-back", "--mib",
                                   std::to_string(mib), "--order",   order};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Started client = start_process(dir, argv, options);
  ReadBack out;
  const bool ready = wait_for_output(client, "ready", 60s);
  std::optional<v1::ClientStats> view;
  if (ready) {
    auto stub = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + daemon.control_path(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::GetClientRequest request;
    request.mutable_client()->set_pid(client.pid);
    v1::GetClientResponse response;
    if (stub->GetClient(&context, request, &response).ok() && response.clients_size() == 1) {
      view = response.clients(0);
    }
  }
  kill(client.pid, SIGTERM);
  out.result = wait_process(client, 30s);
  EXPECT_TRUE(ready) << describe(out.result) << "\n--- daemon log\n" << daemon.log();
  EXPECT_TRUE(view.has_value()) << daemon.log();
  EXPECT_THAT(out.result.out, HasSubstr("mismatches 0")) << describe(out.result);
  if (view) out.counters = view->counters();
  return out;
}

TEST(Readahead, SequentialReaderUsesItsMarkers) {
  const ReadBack r = read_back("seq");
  const v1::Counters& c = r.counters;
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 3000u) << r.result.out;
  // The window grows to its maximum, so 16 MiB take a few dozen markers; the reader
  // walks over each.
  EXPECT_GE(c.prefetch_markers(), 8u) << c.DebugString();
  EXPECT_GE(c.prefetch_markers_used() * 10, c.prefetch_markers() * 9) << c.DebugString();
  EXPECT_LE(c.prefetch_markers_used() + c.prefetch_markers_unused(), c.prefetch_markers());
  // The application sees the same (extmem_get_stats).
  EXPECT_EQ(number_after(r.result.out, "prefetch_markers"), c.prefetch_markers()) << r.result.out;
  EXPECT_EQ(number_after(r.result.out, "prefetch_markers_used"), c.prefetch_markers_used());
  // Markers start the next read early: most of the data comes without a major fault
  // (without them, the window alone: 20 or more).
  EXPECT_LE(number_after(r.result.out, "read_major_faults"), 12u) << r.result.out;
}

TEST(Readahead, EveryWindowOfASequentialReaderStartsReadsAhead) {
  const ReadBack r = read_back("seq-pauses");
  const v1::Counters& c = r.counters;
  const uint64_t pages = number_after(r.result.out, "pages_read");
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 3000u) << r.result.out;
  // Every read-ahead window (at most 256 pages) carries a marker, and touching it tops the
  // stream up to three windows past it, in whole windows: reading 4096 pages back uses a
  // marker per window at least (31 measured; 13 when a marker started two windows).
  EXPECT_GE(c.prefetch_markers_used() * 256, pages) << c.DebugString();
  // So wherever the reader stops, about a window at least is in memory ahead of it
  // (measured: 425-593 pages, 338 when a marker started two windows).
  EXPECT_GE(number_after(r.result.out, "min_ahead"), 250u) << r.result.out;
}

TEST(Readahead, SequentialReaderAtItsLimitKeepsItsStream) {
  // 48 MiB through a 32 MiB limit: the reader's reads need the room reclaim makes. A
  // marker that found no room would lose its stream to a major fault; waiting for the
  // room keeps it (measured: 12 major faults, 22 when markers gave up).
  const ReadBack r = read_back("seq", {}, 48);
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 10000u) << r.result.out;
  EXPECT_LE(number_after(r.result.out, "read_major_faults"), 16u) << r.result.out;
}

TEST(Readahead, PagesReadAheadAreEvictedWithoutAnAccessReset) {
  // 48 MiB pushed out and read back through a 32 MiB limit under clock. The pages written
  // (first touches) are each reset once before eviction, their second chance; the pages
  // read back ahead of the reader are evicted without one, so there are fewer resets than
  // evictions. Measured: 47-48k resets for 58-59k evictions; 69-71k when read-ahead pages
  // were reset like any new page.
  const ReadBack r = read_back("seq", {}, 48);
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 10000u) << r.result.out;
  EXPECT_LT(r.counters.access_resets(), r.counters.evictions()) << r.counters.DebugString();
}

TEST(Readahead, RandomReaderPlacesFewMarkers) {
  const ReadBack r = read_back("random");
  const v1::Counters& c = r.counters;
  const uint64_t pages = number_after(r.result.out, "pages_read");
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 3000u) << r.result.out;
  // Its faults rarely continue one another: reads stay single pages, without markers.
  EXPECT_LE(c.prefetch_markers(), pages / 100) << c.DebugString();
  EXPECT_GE(number_after(r.result.out, "read_major_faults"), pages / 2) << r.result.out;
}

TEST(Readahead, MarkersOfRunsReadInVainAreEvictedUnused) {
  // Every other block of 128 pages, in random order: each block's marker starts a read of
  // the pages after it, which the reader never wants; pressure then evicts them.
  const ReadBack r = read_back("blocks");
  const v1::Counters& c = r.counters;
  ASSERT_GT(c.prefetch_markers(), 16u) << c.DebugString();
  EXPECT_GT(c.prefetch_markers_unused(), 0u) << c.DebugString();
  EXPECT_LT(c.prefetch_markers_used() * 10, c.prefetch_markers() * 8) << c.DebugString();
  // Everything was pushed out after the read: every marker was used or evicted.
  EXPECT_EQ(c.prefetch_markers_used() + c.prefetch_markers_unused(), c.prefetch_markers())
      << c.DebugString();
}

TEST(Readahead, WindowSweeperReadsEachWindowWithOneMajorFault) {
  // 64 MiB read back through a 32 MiB limit in 2 MiB windows, each swept, in random
  // order. Once two swept windows show the pattern, the fault that starts a window reads
  // the rest of it at once, up to the window's last page, which lies in the next 2 MiB
  // chunk of the arena when the window does not start a chunk. Measured: 33-41 major
  // faults for the 32 windows (34-41 also without the whole-window read, since a marker
  // in every window keeps three windows read ahead; 45-48 when a marker started two
  // windows and each window ramped up through them). The bar: one and a half a window.
  const ReadBack r = read_back("windows", {}, 64);
  const uint64_t pages = number_after(r.result.out, "pages_read");
  ASSERT_EQ(pages, 64u * 256) << r.result.out;
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 10000u) << r.result.out;
  EXPECT_LE(number_after(r.result.out, "read_major_faults"), 48u) << r.result.out;
}

TEST(Readahead, StridedReaderTakesFarFewerMajorFaultsThanPagesItReads) {
  const ReadBack r = read_back("stride", {"--stride", "16"});
  const uint64_t pages = number_after(r.result.out, "pages_read");
  ASSERT_EQ(pages, 256u) << r.result.out;
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 3000u) << r.result.out;
  // Without stride detection: one major fault per page read.
  EXPECT_LE(number_after(r.result.out, "read_major_faults"), pages / 4) << r.result.out;
}

TEST(Readahead, BackwardReaderTakesFarFewerMajorFaultsThanPagesItReads) {
  const ReadBack r = read_back("backward");
  const uint64_t pages = number_after(r.result.out, "pages_read");
  ASSERT_GT(number_after(r.result.out, "evicted_before"), 3000u) << r.result.out;
  EXPECT_LE(number_after(r.result.out, "read_major_faults"), pages / 8) << r.result.out;
}

}  // namespace
}  // namespace extmem::testing
