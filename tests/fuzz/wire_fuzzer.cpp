// Fuzzes the handshake decoder (proto/extmem/wire.hpp): the first code of the privileged
// daemon that reads bytes from any local process. Beyond "no crash", it checks that
// decoding is exact: what decodes re-encodes to the very same bytes, every error is one
// of the named ones, and every message the encoders can write decodes back to itself.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "extmem/wire.hpp"

namespace {

using extmem::wire::AttachHints;
using extmem::wire::DecodeError;
using extmem::wire::FrameHeader;
using extmem::wire::GetStats;
using extmem::wire::Hello;
using extmem::wire::MsgType;
using extmem::wire::Register;
using extmem::wire::Reply;
using extmem::wire::SetPolicy;
using extmem::wire::Stats;
namespace wire = extmem::wire;

// A violated property aborts, which libFuzzer reports as a crash with the input saved.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (false)

bool is_named(DecodeError e) {
  return e >= DecodeError::kOk && e <= DecodeError::kBadString &&
         strcmp(wire::describe(e), "unknown decode error") != 0;
}

// A decoded string field: NUL-terminated within its capacity, printable ASCII only.
void check_text(const char* text, size_t max_len) {
  const size_t n = strnlen(text, max_len + 1);
  FUZZ_CHECK(n <= max_len);
  for (size_t i = 0; i < n; ++i) FUZZ_CHECK(text[i] >= 0x20 && text[i] <= 0x7e);
}

void check_fields(const Hello& m) {
  check_text(m.policy, wire::kMaxPolicyName);
}
void check_fields(const Reply& m) {
  check_text(m.message, wire::kMaxMessage);
}
void check_fields(const Register&) {}
void check_fields(const AttachHints&) {}
void check_fields(const SetPolicy& m) {
  check_text(m.policy, wire::kMaxPolicyName);
}
void check_fields(const GetStats&) {}
void check_fields(const Stats& m) {
  check_text(m.policy, wire::kMaxPolicyName);
}

bool same(const Hello& a, const Hello& b) {
  return a.dram_limit == b.dram_limit && a.flags == b.flags && strcmp(a.policy, b.policy) == 0;
}
bool same(const Reply& a, const Reply& b) {
  return a.status == b.status && a.flags == b.flags && a.value == b.value &&
         strcmp(a.message, b.message) == 0;
}
bool same(const Register& a, const Register& b) {
  return a.arena_base == b.arena_base && a.arena_size == b.arena_size;
}
bool same(const AttachHints& a, const AttachHints& b) {
  return a.ring_bytes == b.ring_bytes;
}
bool same(const SetPolicy& a, const SetPolicy& b) {
  return strcmp(a.policy, b.policy) == 0;
}
bool same(const GetStats&, const GetStats&) {
  return true;
}
bool same(const Stats& a, const Stats& b) {
  return memcmp(&a, &b, offsetof(Stats, policy)) == 0 && strcmp(a.policy, b.policy) == 0;
}

constexpr MsgType type_of(const Hello&) {
  return MsgType::kHello;
}
constexpr MsgType type_of(const Reply&) {
  return MsgType::kReply;
}
constexpr MsgType type_of(const Register&) {
  return MsgType::kRegister;
}
constexpr MsgType type_of(const AttachHints&) {
  return MsgType::kAttachHints;
}
constexpr MsgType type_of(const SetPolicy&) {
  return MsgType::kSetPolicy;
}
constexpr MsgType type_of(const GetStats&) {
  return MsgType::kGetStats;
}
constexpr MsgType type_of(const Stats&) {
  return MsgType::kStats;
}
// Whether a message has a string field (only those can fail with kBadString).
constexpr bool has_text(MsgType type) {
  return type == MsgType::kHello || type == MsgType::kReply || type == MsgType::kSetPolicy ||
         type == MsgType::kStats;
}

// Decodes `payload` as a Msg. A payload decoders only fail on their own fields; one that
// decodes is re-encoded, and must come out byte for byte (and, when `frame` is the whole
// frame it came in, with the same header).
template <class Msg>
void decode_payload(const std::byte* payload, size_t size, const std::byte* frame) {
  Msg msg;
  const DecodeError e = wire::decode(payload, size, &msg);
  FUZZ_CHECK(e == DecodeError::kOk || e == DecodeError::kTruncated ||
             e == DecodeError::kTrailingBytes ||
             (e == DecodeError::kBadString && has_text(type_of(msg))));
  if (e != DecodeError::kOk) return;
  check_fields(msg);
  std::byte encoded[wire::kMaxFrame];
  const size_t len = wire::encode(msg, encoded);
  FUZZ_CHECK(len == wire::kHeaderSize + size);
  FUZZ_CHECK(memcmp(encoded + wire::kHeaderSize, payload, size) == 0);
  if (frame != nullptr) FUZZ_CHECK(memcmp(encoded, frame, len) == 0);
}

// The input as a frame, as the daemon and the shim receive it.
void decode_frame(const std::byte* data, size_t size) {
  FrameHeader header;
  const DecodeError e = wire::decode_header(data, size, &header);
  FUZZ_CHECK(is_named(e));
  FUZZ_CHECK(e != DecodeError::kBadString);  // a header has no strings
  if (size < wire::kHeaderSize) FUZZ_CHECK(e == DecodeError::kTruncated);
  if (e == DecodeError::kBadVersion) {
    // The daemon names the version the peer speaks in its reply.
    const uint16_t version = static_cast<uint16_t>(static_cast<unsigned>(data[4]) |
                                                   (static_cast<unsigned>(data[5]) << 8));
    FUZZ_CHECK(header.version == version && version != wire::kVersion);
  }
  if (e != DecodeError::kOk) return;
  FUZZ_CHECK(header.version == wire::kVersion);
  FUZZ_CHECK(header.length <= wire::kMaxPayload && header.length == size - wire::kHeaderSize);
  const std::byte* payload = data + wire::kHeaderSize;
  // Each decoder on the payload: the one the header names must reproduce the whole frame.
  decode_payload<Hello>(payload, header.length, header.type == MsgType::kHello ? data : nullptr);
  decode_payload<Reply>(payload, header.length, header.type == MsgType::kReply ? data : nullptr);
  decode_payload<Register>(payload, header.length,
                           header.type == MsgType::kRegister ? data : nullptr);
  decode_payload<AttachHints>(payload, header.length,
                              header.type == MsgType::kAttachHints ? data : nullptr);
  decode_payload<SetPolicy>(payload, header.length,
                            header.type == MsgType::kSetPolicy ? data : nullptr);
  decode_payload<GetStats>(payload, header.length,
                           header.type == MsgType::kGetStats ? data : nullptr);
  decode_payload<Stats>(payload, header.length, header.type == MsgType::kStats ? data : nullptr);
}

// Encodes `msg` and expects the decoders to give it back.
template <class Msg>
void round_trip(const Msg& msg) {
  std::byte frame[wire::kMaxFrame];
  const size_t len = wire::encode(msg, frame);
  FUZZ_CHECK(len >= wire::kHeaderSize && len <= wire::kMaxFrame);
  FrameHeader header;
  FUZZ_CHECK(wire::decode_header(frame, len, &header) == DecodeError::kOk);
  FUZZ_CHECK(header.type == type_of(msg));
  Msg decoded;
  FUZZ_CHECK(wire::decode(frame + wire::kHeaderSize, header.length, &decoded) == DecodeError::kOk);
  FUZZ_CHECK(same(msg, decoded));
}

// Messages built from the input, their strings through copy_text as the senders do: any
// text must become a field that encodes and decodes.
void encode_messages(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  Hello hello;
  hello.dram_limit = input.ConsumeIntegral<uint64_t>();
  hello.flags = input.ConsumeIntegral<uint32_t>();
  const std::string policy = input.ConsumeRandomLengthString(64);
  wire::copy_text(hello.policy, sizeof(hello.policy), policy.c_str());
  check_fields(hello);
  round_trip(hello);

  Reply reply;
  reply.status = input.ConsumeIntegral<int32_t>();
  reply.flags = input.ConsumeIntegral<uint32_t>();
  reply.value = input.ConsumeIntegral<uint64_t>();
  const std::string message = input.ConsumeRandomLengthString(400);
  wire::copy_text(reply.message, sizeof(reply.message), message.c_str());
  check_fields(reply);
  round_trip(reply);

  Register reg;
  reg.arena_base = input.ConsumeIntegral<uint64_t>();
  reg.arena_size = input.ConsumeIntegral<uint64_t>();
  round_trip(reg);

  AttachHints attach;
  attach.ring_bytes = input.ConsumeIntegral<uint64_t>();
  round_trip(attach);
  SetPolicy set;
  wire::copy_text(set.policy, sizeof(set.policy), input.ConsumeRandomLengthString(64).c_str());
  round_trip(set);
  round_trip(GetStats{});
  Stats stats;
  for (uint64_t* field : {&stats.limit_bytes, &stats.major_faults, &stats.hints_ring_full}) {
    *field = input.ConsumeIntegral<uint64_t>();
  }
  wire::copy_text(stats.policy, sizeof(stats.policy), input.ConsumeRandomLengthString(64).c_str());
  round_trip(stats);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  decode_frame(bytes, size);
  // The input as a bare payload too, so the decoders see every length, not only the
  // ones a valid header allows.
  decode_payload<Hello>(bytes, size, nullptr);
  decode_payload<Reply>(bytes, size, nullptr);
  decode_payload<Register>(bytes, size, nullptr);
  decode_payload<AttachHints>(bytes, size, nullptr);
  decode_payload<SetPolicy>(bytes, size, nullptr);
  decode_payload<GetStats>(bytes, size, nullptr);
  decode_payload<Stats>(bytes, size, nullptr);
  encode_messages(data, size);
  return 0;
}
