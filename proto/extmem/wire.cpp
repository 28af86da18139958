#include "extmem/wire.hpp"

#include <cstring>
#include <initializer_list>

namespace extmem::wire {

namespace {

class Writer {
 public:
  explicit Writer(std::byte* buf) : buf_(buf), pos_(kHeaderSize) {}
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void str(const char* s) {
    size_t n = strnlen(s, kMaxMessage);
    u16(static_cast<uint16_t>(n));
    memcpy(buf_ + pos_, s, n);
    pos_ += n;
  }
  size_t finish(MsgType type) {
    size_t end = pos_;
    pos_ = 0;
    u32(kMagic);
    u16(kVersion);
    u16(static_cast<uint16_t>(type));
    u32(static_cast<uint32_t>(end - kHeaderSize));
    return end;
  }

 private:
  void put(uint64_t v, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) buf_[pos_++] = static_cast<std::byte>(v >> (8 * i));
  }
  std::byte* buf_;
  size_t pos_;
};

class Reader {
 public:
  Reader(const std::byte* data, size_t size) : data_(data), size_(size) {}
  bool u16(uint16_t* v) { return get(v, 2); }
  bool u32(uint32_t* v) { return get(v, 4); }
  bool u64(uint64_t* v) { return get(v, 8); }
  DecodeError str(char* dst, size_t max_len) {
    uint16_t n;
    if (!u16(&n)) return DecodeError::kTruncated;
    if (n > max_len) return DecodeError::kBadString;
    if (size_ - pos_ < n) return DecodeError::kTruncated;
    for (size_t i = 0; i < n; ++i) {
      char c = static_cast<char>(data_[pos_ + i]);
      if (c < 0x20 || c > 0x7e) return DecodeError::kBadString;
      dst[i] = c;
    }
    dst[n] = '\0';
    pos_ += n;
    return DecodeError::kOk;
  }
  bool at_end() const { return pos_ == size_; }
  DecodeError finish() const {
    return pos_ == size_ ? DecodeError::kOk : DecodeError::kTrailingBytes;
  }

 private:
  template <class T>
  bool get(T* v, size_t bytes) {
    if (size_ - pos_ < bytes) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < bytes; ++i) x |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
    *v = static_cast<T>(x);
    pos_ += bytes;
    return true;
  }
  const std::byte* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

const char* describe(DecodeError error) noexcept {
  switch (error) {
    case DecodeError::kOk:
      return "ok";
    case DecodeError::kTruncated:
      return "message truncated";
    case DecodeError::kBadMagic:
      return "bad magic (not an extmem client)";
    case DecodeError::kBadVersion:
      return "unsupported protocol version";
    case DecodeError::kOversized:
      return "message too large";
    case DecodeError::kUnknownType:
      return "unknown message type";
    case DecodeError::kTrailingBytes:
      return "unexpected bytes after the message fields";
    case DecodeError::kBadString:
      return "bad string field";
  }
  return "unknown decode error";
}

DecodeError decode_header(const std::byte* data, size_t size, FrameHeader* out) noexcept {
  Reader r(data, size);
  uint32_t magic;
  uint16_t type;
  if (!r.u32(&magic) || !r.u16(&out->version) || !r.u16(&type) || !r.u32(&out->length)) {
    return DecodeError::kTruncated;
  }
  if (magic != kMagic) return DecodeError::kBadMagic;
  if (out->version != kVersion) return DecodeError::kBadVersion;
  if (out->length > kMaxPayload) return DecodeError::kOversized;
  if (size - kHeaderSize < out->length) return DecodeError::kTruncated;
  if (size - kHeaderSize > out->length) return DecodeError::kTrailingBytes;
  if (type < static_cast<uint16_t>(MsgType::kHello) || type > static_cast<uint16_t>(kLastMsgType)) {
    return DecodeError::kUnknownType;
  }
  out->type = static_cast<MsgType>(type);
  return DecodeError::kOk;
}

size_t encode(const Hello& msg, std::byte* buf) noexcept {
  Writer w(buf);
  w.u64(msg.dram_limit);
  w.u32(msg.flags);
  w.str(msg.policy);
  return w.finish(MsgType::kHello);
}

size_t encode(const Reply& msg, std::byte* buf) noexcept {
  Writer w(buf);
  w.u32(static_cast<uint32_t>(msg.status));
  w.u32(msg.flags);
  w.u64(msg.value);
  w.str(msg.message);
  return w.finish(MsgType::kReply);
}

size_t encode(const Register& msg, std::byte* buf) noexcept {
  Writer w(buf);
  w.u64(msg.arena_base);
  w.u64(msg.arena_size);
  return w.finish(MsgType::kRegister);
}

DecodeError decode(const std::byte* payload, size_t size, Hello* out) noexcept {
  Reader r(payload, size);
  if (!r.u64(&out->dram_limit) || !r.u32(&out->flags)) return DecodeError::kTruncated;
  if (DecodeError e = r.str(out->policy, kMaxPolicyName); e != DecodeError::kOk) return e;
  return r.finish();
}

DecodeError decode(const std::byte* payload, size_t size, Reply* out) noexcept {
  Reader r(payload, size);
  uint32_t status;
  if (!r.u32(&status) || !r.u32(&out->flags) || !r.u64(&out->value)) {
    return DecodeError::kTruncated;
  }
  out->status = static_cast<int32_t>(status);
  if (DecodeError e = r.str(out->message, kMaxMessage); e != DecodeError::kOk) return e;
  return r.finish();
}

DecodeError decode(const std::byte* payload, size_t size, Register* out) noexcept {
  Reader r(payload, size);
  if (!r.u64(&out->arena_base) || !r.u64(&out->arena_size)) return DecodeError::kTruncated;
  return r.finish();
}

size_t encode(const AttachHints& msg, std::byte* buf) noexcept {
  Writer w(buf);
  w.u64(msg.ring_bytes);
  return w.finish(MsgType::kAttachHints);
}

size_t encode(const SetPolicy& msg, std::byte* buf) noexcept {
  Writer w(buf);
  w.str(msg.policy);
  return w.finish(MsgType::kSetPolicy);
}

size_t encode(const GetStats&, std::byte* buf) noexcept {
  return Writer(buf).finish(MsgType::kGetStats);
}

namespace {

// The Stats counters in wire order.
template <class S, class Fn>
void for_each_stat(S& msg, Fn&& fn) {
  for (auto* field :
       {&msg.limit_bytes, &msg.resident_bytes, &msg.swapped_bytes, &msg.first_touch_faults,
        &msg.major_faults, &msg.minor_faults, &msg.evictions, &msg.prefetched_pages,
        &msg.hints_received, &msg.hints_applied, &msg.hints_invalid, &msg.hints_ring_full}) {
    fn(*field);
  }
}

}  // namespace

size_t encode(const Stats& msg, std::byte* buf) noexcept {
  Writer w(buf);
  for_each_stat(msg, [&](uint64_t v) { w.u64(v); });
  w.str(msg.policy);
  if (msg.marker_counters) {
    w.u64(msg.prefetch_markers);
    w.u64(msg.prefetch_markers_used);
  }
  return w.finish(MsgType::kStats);
}

DecodeError decode(const std::byte* payload, size_t size, AttachHints* out) noexcept {
  Reader r(payload, size);
  if (!r.u64(&out->ring_bytes)) return DecodeError::kTruncated;
  return r.finish();
}

DecodeError decode(const std::byte* payload, size_t size, SetPolicy* out) noexcept {
  Reader r(payload, size);
  if (DecodeError e = r.str(out->policy, kMaxPolicyName); e != DecodeError::kOk) return e;
  return r.finish();
}

DecodeError decode(const std::byte* payload, size_t size, GetStats*) noexcept {
  return Reader(payload, size).finish();
}

DecodeError decode(const std::byte* payload, size_t size, Stats* out) noexcept {
  Reader r(payload, size);
  bool ok = true;
  for_each_stat(*out, [&](uint64_t& v) { ok = ok && r.u64(&v); });
  if (!ok) return DecodeError::kTruncated;
  if (DecodeError e = r.str(out->policy, kMaxPolicyName); e != DecodeError::kOk) return e;
  // The marker counters follow when the daemon knows them (see kHelloReadsMarkerStats).
  out->marker_counters = !r.at_end();
  if (out->marker_counters &&
      (!r.u64(&out->prefetch_markers) || !r.u64(&out->prefetch_markers_used))) {
    return DecodeError::kTruncated;
  }
  return r.finish();
}

void copy_text(char* dst, size_t capacity, const char* src) noexcept {
  if (capacity == 0) return;
  size_t n = 0;
  for (; src[n] != '\0' && n + 1 < capacity; ++n) {
    char c = src[n];
    dst[n] = (c >= 0x20 && c <= 0x7e) ? c : '?';
  }
  dst[n] = '\0';
}

}  // namespace extmem::wire
