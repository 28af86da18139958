// Fault traces: one client's faults as the daemon saw them, for replaying through policies
// offline (tests/unit/trace_sim_test.cpp). `extmemd --record-faults DIR` writes one file
// per client, DIR/faults-PID.trace.
//
// Format: the 8 bytes "EXTMFLT1", then one record per fault: a LEB128 varint holding
// zigzag(page - previous page) << 3 | kind << 1 | tid_follows, followed by a varint tid
// when the faulting thread differs from the previous record's. Scans cost a byte a fault,
// so real traces stay small enough to commit.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "extmem/kernel/result.hpp"

namespace extmem::daemon {

enum class FaultKind : uint8_t {
  kFirstTouch = 0,    // an empty page, zero-filled
  kMajor = 1,         // an evicted page (or one being evicted), read back
  kMinor = 2,         // a resident page whose access bit was reset
  kWriteProtect = 3,  // the first write to a clean page
};

struct FaultRecord {
  uint64_t page;
  uint32_t tid;
  FaultKind kind;
  bool operator==(const FaultRecord&) const = default;
};

inline constexpr char kFaultTraceMagic[8] = {'E', 'X', 'T', 'M', 'F', 'L', 'T', '1'};

// Appends records to the in-memory encoding; pure.
class FaultTraceEncoder {
 public:
  FaultTraceEncoder();
  void add(const FaultRecord& r);
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
  uint64_t page_ = 0;
  uint32_t tid_ = 0;
};

// Decodes a whole trace; EINVAL with the offset when it is not one.
Result<std::vector<FaultRecord>> decode_fault_trace(std::string_view bytes);

// A trace file being written; flushed every 64 KiB, when asked and when destroyed. A
// failed write is logged once and ends the recording (the file keeps what was written
// before).
class FaultTraceFile {
 public:
  static Result<std::unique_ptr<FaultTraceFile>> create(const std::string& dir, int pid);
  ~FaultTraceFile();
  void add(const FaultRecord& r);
  void flush();

 private:
  FaultTraceFile() = default;
  std::string path_;
  std::ofstream out_;
  FaultTraceEncoder encoder_;
  bool failed_ = false;
};

}  // namespace extmem::daemon
