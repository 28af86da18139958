// The frontier policy and fault recording with a real daemon and real clients: PageRank
// paged at half its memory computes exactly what it computes in RAM, and a client's
// recorded fault trace is one the policy simulator reads.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "client/fault_trace.hpp"
#include "harness.hpp"

namespace extmem::testing {
namespace {

namespace fs = std::filesystem;
using daemon::decode_fault_trace;
using daemon::FaultKind;
using daemon::FaultRecord;

std::string checksum_line(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("checksum: [^\n]*"))) return "";
  return m.str();
}

TEST(Frontier, PageRankAtHalfItsMemoryComputesWhatItComputesInRam) {
  ScratchDir dir;
  Daemon daemon(dir, {"--swap", dir.file("swapfile"), "--swap-size", "256M"});
  // About 12 MiB of arrays.
  const std::vector<std::string> argv = {
      EXTMEM_PAGERANK_PATH, "--vertices", "200000", "--avg-degree", "8", "--iterations", "4",
      "--threads",          "2"};
  ClientOptions in_ram;
  in_ram.preload_shim = false;
  const ProcessResult ram = run_process(dir, argv, in_ram);
  ASSERT_EQ(ram.exit_code, 0) << describe(ram);
  ClientOptions paged = client_options(daemon);
  paged.env["EXTMEM_DRAM"] = "6M";
  paged.env["EXTMEM_POLICY"] = "frontier";
  const ProcessResult r = run_process(dir, argv, paged);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  ASSERT_NE(checksum_line(ram.out), "") << ram.out;
  EXPECT_EQ(checksum_line(r.out), checksum_line(ram.out));
  EXPECT_GT(departed_counter(daemon, 0, "evictions"), 1000u) << daemon.log();
}

TEST(RecordFaults, RealClientTraceDecodesWithItsFaults) {
  ScratchDir dir;
  const std::string traces = dir.file("traces");
  fs::create_directory(traces);
  Daemon daemon(dir,
                {"--swap", dir.file("swapfile"), "--swap-size", "256M", "--record-faults", traces});
  ClientOptions options = client_options(daemon);
  options.env["EXTMEM_DRAM"] = "8M";
  const ProcessResult r = run_process(
      dir, {paging_path(dir), "integrity", "--mib", "32", "--threads", "2", "--seconds", "2"},
      options);
  ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n--- daemon log\n" << daemon.log();
  ASSERT_NE(departure_line(daemon, 0), "") << daemon.log();
  const uint64_t majors = departed_counter(daemon, 0, "major");

  // The file is complete once the daemon let go of the client.
  std::vector<FaultRecord> records;
  for (int i = 0; i < 100 && records.empty(); ++i) {
    for (const auto& entry : fs::directory_iterator(traces)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      auto decoded = decode_fault_trace(bytes.str());
      ASSERT_TRUE(decoded) << entry.path() << ": " << decoded.error().message();
      records = *decoded;
    }
    if (records.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  uint64_t first_touches = 0, major_records = 0;
  for (const FaultRecord& f : records) {
    first_touches += f.kind == FaultKind::kFirstTouch;
    major_records += f.kind == FaultKind::kMajor;
    EXPECT_NE(f.tid, 0u);
  }
  // 32 MiB is 8192 pages, first touched in windows; every major fault is recorded.
  EXPECT_GT(first_touches, 0u);
  EXPECT_GE(major_records, majors);
  EXPECT_GT(majors, 0u);
}

}  // namespace
}  // namespace extmem::testing
