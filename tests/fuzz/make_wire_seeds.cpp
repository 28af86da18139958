// Writes the wire fuzzer's seeds (tests/fuzz/corpus/wire) from real encoded messages, and
// a few broken on purpose, one for each decode error. With --check it compares instead,
// so a change of the wire format that leaves the seeds stale fails a test.
//   make_wire_seeds DIR            write the seeds into DIR
//   make_wire_seeds --check DIR    exit 1 if a seed in DIR is missing or differs
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "extmem/wire.hpp"

namespace {

namespace wire = extmem::wire;
using Bytes = std::vector<unsigned char>;

template <class Msg>
Bytes encoded(const Msg& msg) {
  std::byte frame[wire::kMaxFrame];
  const size_t len = wire::encode(msg, frame);
  const auto* begin = reinterpret_cast<const unsigned char*>(frame);
  return Bytes(begin, begin + len);
}

void put_le(Bytes* bytes, size_t offset, uint64_t value, size_t width) {
  for (size_t i = 0; i < width; ++i)
    (*bytes)[offset + i] = static_cast<unsigned char>(value >> (8 * i));
}

// A frame's payload length field follows what was done to the payload.
Bytes with_length_fixed(Bytes frame) {
  put_le(&frame, 8, frame.size() - wire::kHeaderSize, 4);
  return frame;
}

wire::Hello hello(uint64_t limit, uint32_t flags, const char* policy) {
  wire::Hello msg;
  msg.dram_limit = limit;
  msg.flags = flags;
  wire::copy_text(msg.policy, sizeof(msg.policy), policy);
  return msg;
}

wire::Reply reply(int32_t status, uint32_t flags, uint64_t value, const char* message) {
  wire::Reply msg;
  msg.status = status;
  msg.flags = flags;
  msg.value = value;
  wire::copy_text(msg.message, sizeof(msg.message), message);
  return msg;
}

std::vector<std::pair<std::string, Bytes>> seeds() {
  std::vector<std::pair<std::string, Bytes>> out;
  // What the shim and the daemon send.
  out.emplace_back("hello_default", encoded(wire::Hello{}));
  out.emplace_back("hello_limit_policy", encoded(hello(256ULL << 20, 0, "clock")));
  out.emplace_back("hello_wants_device", encoded(hello(0, wire::kHelloWantsUffdDevice, "fifo")));
  out.emplace_back("reply_ok", encoded(reply(0, 0, 0, "ok")));
  out.emplace_back("reply_lends_device", encoded(reply(0, wire::kReplyCarriesUffdDevice, 0, "ok")));
  out.emplace_back("reply_registered", encoded(reply(0, 0, 64ULL << 20, "registered")));
  out.emplace_back("reply_error",
                   encoded(reply(EINVAL, 0, 0, "unknown policy 'lru' (known: clock, fifo)")));
  out.emplace_back("reply_longest_message",
                   encoded(reply(EPROTO, 0, 0, std::string(wire::kMaxMessage, 'x').c_str())));
  out.emplace_back("register", encoded(wire::Register{0x7f0000000000, 256ULL << 30}));
  out.emplace_back("register_huge", encoded(wire::Register{0xfffffffffffff000, UINT64_MAX}));
  out.emplace_back("attach_hints", encoded(wire::AttachHints{33088}));
  wire::SetPolicy set_policy;
  wire::copy_text(set_policy.policy, sizeof(set_policy.policy), "fifo");
  out.emplace_back("set_policy", encoded(set_policy));
  out.emplace_back("get_stats", encoded(wire::GetStats{}));
  wire::Stats stats;
  stats.limit_bytes = 64ULL << 20;
  stats.resident_bytes = 60ULL << 20;
  stats.major_faults = 1234;
  stats.hints_received = 10;
  wire::copy_text(stats.policy, sizeof(stats.policy), "clock");
  out.emplace_back("stats", encoded(stats));

  // One per decode error.
  Bytes frame = encoded(hello(0, 0, "clock"));
  Bytes bad_magic = frame;
  bad_magic[0] = 'G';
  out.emplace_back("bad_magic", bad_magic);
  Bytes bad_version = frame;
  put_le(&bad_version, 4, 2, 2);
  out.emplace_back("bad_version", bad_version);
  Bytes oversized = frame;
  put_le(&oversized, 8, wire::kMaxPayload + 1, 4);
  out.emplace_back("oversized", oversized);
  out.emplace_back("truncated", Bytes(frame.begin(), frame.end() - 3));
  out.emplace_back("header_only", Bytes(frame.begin(), frame.begin() + wire::kHeaderSize - 1));
  Bytes unknown_type = frame;
  put_le(&unknown_type, 6, static_cast<uint16_t>(wire::kLastMsgType) + 1, 2);
  out.emplace_back("unknown_type", unknown_type);
  Bytes trailing = encoded(wire::Register{0x10000000, 1 << 20});
  trailing.push_back(0);
  out.emplace_back("trailing_bytes", with_length_fixed(trailing));
  Bytes bad_string = frame;
  bad_string[wire::kHeaderSize + 14] = 0x01;  // the policy's first character
  out.emplace_back("bad_string", bad_string);
  // A policy one character longer than the field allows.
  Bytes long_policy = encoded(hello(0, 0, ""));
  put_le(&long_policy, wire::kHeaderSize + 12, wire::kMaxPolicyName + 1, 2);
  long_policy.insert(long_policy.end(), wire::kMaxPolicyName + 1, 'p');
  out.emplace_back("policy_too_long", with_length_fixed(long_policy));
  return out;
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  const bool check = argc == 3 && strcmp(argv[1], "--check") == 0;
  if (argc != 2 && !check) {
    fprintf(stderr, "usage: make_wire_seeds [--check] DIR\n");
    return 2;
  }
  const std::string dir = argv[argc - 1];
  int stale = 0;
  for (const auto& [name, bytes] : seeds()) {
    const std::string path = dir + "/" + name;
    if (check) {
      if (read_file(path) != bytes) {
        fprintf(stderr, "%s is missing or stale: regenerate with make_wire_seeds %s\n",
                path.c_str(), dir.c_str());
        ++stale;
      }
      continue;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return stale == 0 ? 0 : 1;
}
