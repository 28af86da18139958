// The shim <-> daemon handshake: a small versioned binary protocol over a Unix
// SOCK_SEQPACKET socket (one message per packet). Little-endian, explicit encoding, no
// dependencies and no exceptions, so the shim can use it from inside malloc.
//
// Frame:   magic u32 "EXTM" | version u16 | type u16 | payload length u32 | payload
// Strings: length u16 | bytes (printable ASCII only)
//
// Sequence:
//   shim   -> Hello{dram_limit, flags, policy}
//   daemon -> Reply{status, flags}          [+ /dev/userfaultfd if kReplyCarriesUffdDevice]
//   shim   -> Register{arena_base, arena_size}  + [userfaultfd, memfd]
//   daemon -> Reply{status, flags, value = effective DRAM limit}
// Any error reply (status = errno) names the problem and ends the connection.
//
// After registration, if the daemon's reply has kReplyTakesRequests, the shim may send,
// one request at a time:
//   AttachHints{ring_bytes} + [hint ring memfd, doorbell eventfd] -> Reply (see hint_ring.hpp)
//   SetPolicy{policy}                                           -> Reply
//   GetStats{}                                                  -> Stats, or Reply on error
//     (Stats carries the read-ahead marker counters only if Hello had
//     kHelloReadsMarkerStats)
// An error reply to these leaves the connection open.
#pragma once

#include <cstddef>
#include <cstdint>

namespace extmem::wire {

inline constexpr uint32_t kMagic = 0x4d545845;  // "EXTM"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxPayload = 512;
inline constexpr size_t kMaxFrame = kHeaderSize + kMaxPayload;
inline constexpr size_t kMaxPolicyName = 31;
inline constexpr size_t kMaxMessage = 255;

enum class MsgType : uint16_t {
  kHello = 1,
  kReply = 2,
  kRegister = 3,
  kAttachHints = 4,
  kSetPolicy = 5,
  kGetStats = 6,
  kStats = 7,
};
inline constexpr MsgType kLastMsgType = MsgType::kStats;

// Hello flags.
inline constexpr uint32_t kHelloWantsUffdDevice = 1u << 0;  // cannot create a userfaultfd
// Decodes Stats with the read-ahead marker counters (the daemon sends them only then; an
// older daemon ignores the flag and sends Stats without them).
inline constexpr uint32_t kHelloReadsMarkerStats = 1u << 1;
// Reply flags.
inline constexpr uint32_t kReplyCarriesUffdDevice = 1u << 0;
// On the reply to Register: the daemon serves the requests below (an older one ignores
// them, so the shim would wait for an answer in vain).
inline constexpr uint32_t kReplyTakesRequests = 1u << 1;

struct Hello {
  uint64_t dram_limit = 0;  // bytes; 0 = the daemon's default
  uint32_t flags = 0;
  char policy[kMaxPolicyName + 1] = {};  // empty = the daemon's default
};

struct Reply {
  int32_t status = 0;  // 0 or an errno value
  uint32_t flags = 0;
  uint64_t value = 0;
  char message[kMaxMessage + 1] = {};
};

struct Register {
  uint64_t arena_base = 0;
  uint64_t arena_size = 0;
};

struct AttachHints {
  uint64_t ring_bytes = 0;  // sizeof(hints::HintRing) as the shim knows it
};

struct SetPolicy {
  char policy[kMaxPolicyName + 1] = {};
};

struct GetStats {};

// The calling client's memory and counters (see extmem_stats in extmem.h).
struct Stats {
  uint64_t limit_bytes = 0;
  uint64_t resident_bytes = 0;
  uint64_t swapped_bytes = 0;
  uint64_t first_touch_faults = 0;
  uint64_t major_faults = 0;
  uint64_t minor_faults = 0;
  uint64_t evictions = 0;
  uint64_t prefetched_pages = 0;
  uint64_t hints_received = 0;
  uint64_t hints_applied = 0;
  uint64_t hints_invalid = 0;
  uint64_t hints_ring_full = 0;
  char policy[kMaxPolicyName + 1] = {};
  // After the policy, only if the shim asked for them (kHelloReadsMarkerStats).
  bool marker_counters = false;
  uint64_t prefetch_markers = 0;
  uint64_t prefetch_markers_used = 0;
};

enum class DecodeError {
  kOk,
  kTruncated,  // shorter than its header or declared length
  kBadMagic,
  kBadVersion,
  kOversized,  // declared payload above kMaxPayload
  kUnknownType,
  kTrailingBytes,  // payload longer than its fields
  kBadString,      // too long or not printable ASCII
};
const char* describe(DecodeError error) noexcept;

struct FrameHeader {
  uint16_t version = 0;
  MsgType type = MsgType::kHello;
  uint32_t length = 0;
};

// Decodes and checks the header of a frame of `size` bytes. On kBadVersion, `out`
// still holds the version the peer speaks.
DecodeError decode_header(const std::byte* data, size_t size, FrameHeader* out) noexcept;

// Encoders write a whole frame into buf (at least kMaxFrame bytes) and return its size.
size_t encode(const Hello& msg, std::byte* buf) noexcept;
size_t encode(const Reply& msg, std::byte* buf) noexcept;
size_t encode(const Register& msg, std::byte* buf) noexcept;
size_t encode(const AttachHints& msg, std::byte* buf) noexcept;
size_t encode(const SetPolicy& msg, std::byte* buf) noexcept;
size_t encode(const GetStats& msg, std::byte* buf) noexcept;
size_t encode(const Stats& msg, std::byte* buf) noexcept;

// Decoders take the payload (after the header) and its declared length.
DecodeError decode(const std::byte* payload, size_t size, Hello* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, Reply* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, Register* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, AttachHints* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, SetPolicy* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, GetStats* out) noexcept;
DecodeError decode(const std::byte* payload, size_t size, Stats* out) noexcept;

// Copies a C string into a fixed field, truncating and keeping only printable ASCII.
void copy_text(char* dst, size_t capacity, const char* src) noexcept;

}  // namespace extmem::wire
