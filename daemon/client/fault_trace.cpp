#include "client/fault_trace.hpp"

#include <cerrno>

#include <spdlog/spdlog.h>

namespace extmem::daemon {
namespace {

constexpr size_t kFlushBytes = 64 * 1024;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view bytes, size_t* at, uint64_t* v) {
  *v = 0;
  for (unsigned shift = 0; shift < 64 && *at < bytes.size(); shift += 7) {
    const auto b = static_cast<uint8_t>(bytes[(*at)++]);
    *v |= uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

FaultTraceEncoder::FaultTraceEncoder() : bytes_(kFaultTraceMagic, sizeof(kFaultTraceMagic)) {}

void FaultTraceEncoder::add(const FaultRecord& r) {
  const auto delta = static_cast<int64_t>(r.page - page_);
  const uint64_t zigzag = (static_cast<uint64_t>(delta) << 1) ^ static_cast<uint64_t>(delta >> 63);
  const bool new_tid = r.tid != tid_;
  put_varint(bytes_, zigzag << 3 | uint64_t{static_cast<uint8_t>(r.kind)} << 1 | (new_tid ? 1 : 0));
  if (new_tid) put_varint(bytes_, r.tid);
  page_ = r.page;
  tid_ = r.tid;
}

Result<std::vector<FaultRecord>> decode_fault_trace(std::string_view bytes) {
  if (bytes.substr(0, sizeof(kFaultTraceMagic)) !=
      std::string_view(kFaultTraceMagic, sizeof(kFaultTraceMagic))) {
    return Error::make(EINVAL, "not a fault trace (no EXTMFLT1 header)");
  }
  std::vector<FaultRecord> records;
  uint64_t page = 0;
  uint32_t tid = 0;
  size_t at = sizeof(kFaultTraceMagic);
  while (at < bytes.size()) {
    const size_t start = at;
    uint64_t head = 0;
    uint64_t t = tid;
    if (!get_varint(bytes, &at, &head) ||
        ((head & 1) && (!get_varint(bytes, &at, &t) || t > UINT32_MAX))) {
      return Error::make(EINVAL, "fault trace: bad record at byte %zu", start);
    }
    const uint64_t zigzag = head >> 3;
    const auto delta = static_cast<int64_t>((zigzag >> 1) ^ (~(zigzag & 1) + 1));
    page += static_cast<uint64_t>(delta);
    tid = static_cast<uint32_t>(t);
    records.push_back({page, tid, static_cast<FaultKind>((head >> 1) & 3)});
  }
  return records;
}

Result<std::unique_ptr<FaultTraceFile>> FaultTraceFile::create(const std::string& dir, int pid) {
  const std::string path = dir + "/faults-" + std::to_string(pid) + ".trace";
  std::unique_ptr<FaultTraceFile> file(new FaultTraceFile());
  file->path_ = path;
  file->out_.open(path, std::ios::binary | std::ios::trunc);
  if (!file->out_) return Error::make(errno != 0 ? errno : EIO, "cannot create %s", path.c_str());
  return file;
}

FaultTraceFile::~FaultTraceFile() {
  flush();
}

void FaultTraceFile::add(const FaultRecord& r) {
  encoder_.add(r);
  if (encoder_.bytes().size() >= kFlushBytes) flush();
}

void FaultTraceFile::flush() {
  if (!failed_) {
    out_.write(encoder_.bytes().data(), static_cast<std::streamsize>(encoder_.bytes().size()));
    out_.flush();
    if (!out_) {
      failed_ = true;
      spdlog::warn("writing the fault trace {} failed; the rest of it is dropped", path_);
    }
  }
  encoder_.bytes().clear();
}

}  // namespace extmem::daemon
