#include "extmem/wire.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace extmem::wire {
namespace {

using Frame = std::vector<std::byte>;

template <class Msg>
Frame Encode(const Msg& msg) {
  Frame frame(kMaxFrame);
  frame.resize(encode(msg, frame.data()));
  return frame;
}

void PutU16(Frame* f, size_t at, uint16_t v) {
  (*f)[at] = static_cast<std::byte>(v);
  (*f)[at + 1] = static_cast<std::byte>(v >> 8);
}

void PutU32(Frame* f, size_t at, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) (*f)[at + i] = static_cast<std::byte>(v >> (8 * i));
}

// Decodes a whole frame (header then payload) the way the daemon and the shim do.
template <class Msg>
DecodeError DecodeFrame(const Frame& frame, MsgType expected, Msg* out) {
  FrameHeader header;
  DecodeError e = decode_header(frame.data(), frame.size(), &header);
  if (e != DecodeError::kOk) return e;
  EXPECT_EQ(header.type, expected);
  return decode(frame.data() + kHeaderSize, header.length, out);
}

std::string Repeat(char c, size_t n) {
  return std::string(n, c);
}

TEST(WireTest, HeaderLayoutIsLittleEndianMagicVersionTypeLength) {
  Register msg;
  msg.arena_base = 1;
  const Frame frame = Encode(msg);
  ASSERT_EQ(frame.size(), kHeaderSize + 16);
  // "EXTM" in memory order, then version 1, type 3, length 16: the bytes a peer sees.
  const uint8_t expected[kHeaderSize] = {'E', 'X', 'T', 'M', 1, 0, 3, 0, 16, 0, 0, 0};
  EXPECT_EQ(memcmp(frame.data(), expected, kHeaderSize), 0);
}

TEST(WireTest, HelloRoundTripsAllFields) {
  Hello in;
  in.dram_limit = 0x0123456789abcdefULL;
  in.flags = kHelloWantsUffdDevice | 0x80000000u;
  copy_text(in.policy, sizeof(in.policy), "lru-2q");
  const Frame frame = Encode(in);
  EXPECT_EQ(frame.size(), kHeaderSize + 8 + 4 + 2 + strlen("lru-2q"));

  Hello out;
  ASSERT_EQ(DecodeFrame(frame, MsgType::kHello, &out), DecodeError::kOk);
  EXPECT_EQ(out.dram_limit, in.dram_limit);
  EXPECT_EQ(out.flags, in.flags);
  EXPECT_STREQ(out.policy, "lru-2q");
}

TEST(WireTest, HelloRoundTripsEmptyAndMaxLengthPolicy) {
  Hello empty;
  Hello out;
  copy_text(out.policy, sizeof(out.policy), "stale");  // Must be overwritten with "".
  ASSERT_EQ(DecodeFrame(Encode(empty), MsgType::kHello, &out), DecodeError::kOk);
  EXPECT_STREQ(out.policy, "");

  Hello full;
  const std::string policy = Repeat('p', kMaxPolicyName);
  copy_text(full.policy, sizeof(full.policy), policy.c_str());
  ASSERT_EQ(DecodeFrame(Encode(full), MsgType::kHello, &out), DecodeError::kOk);
  EXPECT_EQ(std::string(out.policy), policy);
}

TEST(WireTest, ReplyRoundTripsAllFieldsIncludingNegativeStatus) {
  Reply in;
  in.status = -7;  // Carried as u32 on the wire; the sign must survive.
  in.flags = kReplyCarriesUffdDevice;
  in.value = UINT64_MAX;
  copy_text(in.message, sizeof(in.message), "dram limit above the daemon's maximum");
  Reply out;
  ASSERT_EQ(DecodeFrame(Encode(in), MsgType::kReply, &out), DecodeError::kOk);
  EXPECT_EQ(out.status, -7);
  EXPECT_EQ(out.flags, kReplyCarriesUffdDevice);
  EXPECT_EQ(out.value, UINT64_MAX);
  EXPECT_STREQ(out.message, in.message);
}

TEST(WireTest, ReplyRoundTripsMaxLengthMessage) {
  Reply in;
  in.status = ENOMEM;
  const std::string message = Repeat('m', kMaxMessage);
  copy_text(in.message, sizeof(in.message), message.c_str());
  const Frame frame = Encode(in);
  EXPECT_LE(frame.size(), kMaxFrame);
  Reply out;
  ASSERT_EQ(DecodeFrame(frame, MsgType::kReply, &out), DecodeError::kOk);
  EXPECT_EQ(out.status, ENOMEM);
  EXPECT_EQ(std::string(out.message), message);
}

TEST(WireTest, RegisterRoundTripsAllFields) {
  Register in;
  in.arena_base = 0x7f0000000000ULL;
  in.arena_size = 0xffffffffffffffffULL;
  Register out;
  ASSERT_EQ(DecodeFrame(Encode(in), MsgType::kRegister, &out), DecodeError::kOk);
  EXPECT_EQ(out.arena_base, in.arena_base);
  EXPECT_EQ(out.arena_size, in.arena_size);
}

TEST(WireTest, DecodeHeaderReportsTruncatedForEveryPrefix) {
  Reply msg;
  copy_text(msg.message, sizeof(msg.message), "hello");
  const Frame frame = Encode(msg);
  for (size_t len = 0; len < frame.size(); ++len) {
    FrameHeader header;
    EXPECT_EQ(decode_header(frame.data(), len, &header), DecodeError::kTruncated) << len;
  }
  FrameHeader header;
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kOk);
  EXPECT_EQ(header.version, kVersion);
  EXPECT_EQ(header.type, MsgType::kReply);
  EXPECT_EQ(header.length, frame.size() - kHeaderSize);
}

TEST(WireTest, DecodeHeaderRejectsBadMagic) {
  Frame frame = Encode(Register{});
  PutU32(&frame, 0, 0x4d545846);  // One bit off "EXTM".
  FrameHeader header;
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kBadMagic);
}

TEST(WireTest, DecodeHeaderRejectsBadVersionAndReportsPeerVersion) {
  Frame frame = Encode(Register{});
  PutU16(&frame, 4, 7);
  FrameHeader header;
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kBadVersion);
  // The daemon quotes this in its error reply, so it must be the peer's, not ours.
  EXPECT_EQ(header.version, 7);

  PutU16(&frame, 4, 0);
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kBadVersion);
  EXPECT_EQ(header.version, 0);
}

TEST(WireTest, DecodeHeaderRejectsDeclaredLengthAboveMaxPayload) {
  // A frame that really is that long: only the limit, not a size mismatch, can reject it.
  Frame frame(kHeaderSize + kMaxPayload + 1);
  PutU32(&frame, 0, kMagic);
  PutU16(&frame, 4, kVersion);
  PutU16(&frame, 6, static_cast<uint16_t>(MsgType::kHello));
  PutU32(&frame, 8, static_cast<uint32_t>(kMaxPayload + 1));
  FrameHeader header;
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kOversized);

  PutU32(&frame, 8, UINT32_MAX);
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kOversized);

  // Exactly kMaxPayload is allowed.
  frame.resize(kHeaderSize + kMaxPayload);
  PutU32(&frame, 8, static_cast<uint32_t>(kMaxPayload));
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kOk);
  EXPECT_EQ(header.length, kMaxPayload);
}

TEST(WireTest, DecodeHeaderChecksDeclaredLengthAgainstFrameSize) {
  Frame frame = Encode(Register{});
  const uint32_t payload = static_cast<uint32_t>(frame.size() - kHeaderSize);
  FrameHeader header;

  PutU32(&frame, 8, payload + 1);  // Declares more than arrived.
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kTruncated);

  PutU32(&frame, 8, payload - 1);  // Declares less than arrived.
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kTrailingBytes);

  PutU32(&frame, 8, payload);
  frame.push_back(std::byte{0});  // Extra byte after a correct frame.
  EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kTrailingBytes);
}

TEST(WireTest, DecodeHeaderRejectsUnknownTypes) {
  Frame frame = Encode(Register{});
  FrameHeader header;
  for (uint16_t type : {uint16_t{0}, uint16_t{8}, uint16_t{0x100}, uint16_t{0xffff}}) {
    PutU16(&frame, 6, type);
    EXPECT_EQ(decode_header(frame.data(), frame.size(), &header), DecodeError::kUnknownType)
        << type;
  }
}

template <class Msg>
void ExpectEveryPrefixTruncated(const Msg& msg) {
  const Frame frame = Encode(msg);
  const std::byte* payload = frame.data() + kHeaderSize;
  const size_t size = frame.size() - kHeaderSize;
  for (size_t len = 0; len < size; ++len) {
    Msg out;
    EXPECT_EQ(decode(payload, len, &out), DecodeError::kTruncated) << "prefix " << len;
  }
  Msg out;
  EXPECT_EQ(decode(payload, size, &out), DecodeError::kOk);
}

TEST(WireTest, PayloadDecodersReportTruncatedForEveryPrefix) {
  Hello hello;
  copy_text(hello.policy, sizeof(hello.policy), "fifo");
  ExpectEveryPrefixTruncated(hello);
  Reply reply;
  copy_text(reply.message, sizeof(reply.message), "no such policy");
  ExpectEveryPrefixTruncated(reply);
  ExpectEveryPrefixTruncated(Register{});
  ExpectEveryPrefixTruncated(AttachHints{});
  SetPolicy set;
  copy_text(set.policy, sizeof(set.policy), "clock");
  ExpectEveryPrefixTruncated(set);
  Stats stats;
  copy_text(stats.policy, sizeof(stats.policy), "fifo");
  ExpectEveryPrefixTruncated(stats);
}

TEST(WireTest, RequestsAfterRegistrationRoundTripAllFields) {
  AttachHints attach;
  attach.ring_bytes = 0x123456789abcdef0;
  AttachHints attach_out;
  ASSERT_EQ(DecodeFrame(Encode(attach), MsgType::kAttachHints, &attach_out), DecodeError::kOk);
  EXPECT_EQ(attach_out.ring_bytes, attach.ring_bytes);

  SetPolicy set;
  copy_text(set.policy, sizeof(set.policy), Repeat('p', kMaxPolicyName).c_str());
  SetPolicy set_out;
  ASSERT_EQ(DecodeFrame(Encode(set), MsgType::kSetPolicy, &set_out), DecodeError::kOk);
  EXPECT_STREQ(set_out.policy, set.policy);

  GetStats get_out;
  ASSERT_EQ(DecodeFrame(Encode(GetStats{}), MsgType::kGetStats, &get_out), DecodeError::kOk);
  EXPECT_EQ(Encode(GetStats{}).size(), kHeaderSize);

  Stats stats;
  uint64_t* fields[] = {&stats.limit_bytes,        &stats.resident_bytes,   &stats.swapped_bytes,
                        &stats.first_touch_faults, &stats.major_faults,     &stats.minor_faults,
                        &stats.evictions,          &stats.prefetched_pages, &stats.hints_received,
                        &stats.hints_applied,      &stats.hints_invalid,    &stats.hints_ring_full};
  for (size_t i = 0; i < std::size(fields); ++i) *fields[i] = (uint64_t{1} << 40) + i;
  copy_text(stats.policy, sizeof(stats.policy), "clock");
  Stats out;
  ASSERT_EQ(DecodeFrame(Encode(stats), MsgType::kStats, &out), DecodeError::kOk);
  EXPECT_EQ(memcmp(&out, &stats, offsetof(Stats, policy)), 0);
  EXPECT_STREQ(out.policy, "clock");
  EXPECT_FALSE(out.marker_counters);
}

TEST(WireTest, StatsCarryTheMarkerCountersOnlyWhenAskedFor) {
  Stats stats;
  stats.prefetch_markers = 40;
  stats.prefetch_markers_used = 38;
  // For a shim that did not ask (an older one, which rejects trailing bytes): not sent.
  const Frame plain = Encode(stats);
  stats.marker_counters = true;
  const Frame extended = Encode(stats);
  EXPECT_EQ(extended.size(), plain.size() + 16);
  Stats out;
  ASSERT_EQ(DecodeFrame(extended, MsgType::kStats, &out), DecodeError::kOk);
  EXPECT_TRUE(out.marker_counters);
  EXPECT_EQ(out.prefetch_markers, 40u);
  EXPECT_EQ(out.prefetch_markers_used, 38u);
  // From an older daemon: they read as zero.
  Stats old;
  ASSERT_EQ(DecodeFrame(plain, MsgType::kStats, &old), DecodeError::kOk);
  EXPECT_FALSE(old.marker_counters);
  EXPECT_EQ(old.prefetch_markers, 0u);
}

// A Hello payload whose policy string is `policy` byte for byte, length prefix included.
Frame HelloPayload(const std::string& policy) {
  Frame p(12, std::byte{0});
  p.push_back(static_cast<std::byte>(policy.size()));
  p.push_back(static_cast<std::byte>(policy.size() >> 8));
  for (char c : policy) p.push_back(static_cast<std::byte>(c));
  return p;
}

TEST(WireTest, HelloRejectsPolicyLongerThanItsField) {
  Hello out;
  Frame ok = HelloPayload(Repeat('a', kMaxPolicyName));
  EXPECT_EQ(decode(ok.data(), ok.size(), &out), DecodeError::kOk);
  Frame too_long = HelloPayload(Repeat('a', kMaxPolicyName + 1));
  EXPECT_EQ(decode(too_long.data(), too_long.size(), &out), DecodeError::kBadString);
}

TEST(WireTest, ReplyRejectsMessageLongerThanItsField) {
  // status, flags, value, then a string declaring kMaxMessage + 1 bytes that are all present.
  Frame p(16, std::byte{0});
  const size_t n = kMaxMessage + 1;
  p.push_back(static_cast<std::byte>(n));
  p.push_back(static_cast<std::byte>(n >> 8));
  p.insert(p.end(), n, std::byte{'m'});
  Reply out;
  EXPECT_EQ(decode(p.data(), p.size(), &out), DecodeError::kBadString);
}

TEST(WireTest, StringsRejectNonPrintableBytes) {
  Hello out;
  for (char bad : {'\0', '\n', '\x1f', '\x7f', '\x80', '\xff'}) {
    std::string policy = "ab";
    policy += bad;
    policy += "cd";
    Frame p = HelloPayload(policy);
    EXPECT_EQ(decode(p.data(), p.size(), &out), DecodeError::kBadString)
        << "byte " << static_cast<int>(static_cast<unsigned char>(bad));
  }
  // The printable range's ends are accepted.
  Frame p = HelloPayload(" ~");
  EXPECT_EQ(decode(p.data(), p.size(), &out), DecodeError::kOk);
  EXPECT_STREQ(out.policy, " ~");
}

TEST(WireTest, DescribeNamesEveryError) {
  for (DecodeError e :
       {DecodeError::kOk, DecodeError::kTruncated, DecodeError::kBadMagic, DecodeError::kBadVersion,
        DecodeError::kOversized, DecodeError::kUnknownType, DecodeError::kTrailingBytes,
        DecodeError::kBadString}) {
    EXPECT_STRNE(describe(e), "unknown decode error") << static_cast<int>(e);
  }
  EXPECT_STREQ(describe(DecodeError::kOk), "ok");
}

TEST(WireTest, CopyTextReplacesControlCharactersAndNonAscii) {
  char dst[16];
  copy_text(dst, sizeof(dst), "a\tb\nc\x7f\xc3\xa9");
  EXPECT_STREQ(dst, "a?b?c???");
}

TEST(WireTest, CopyTextTruncatesToCapacity) {
  char dst[8];
  memset(dst, 'X', sizeof(dst));
  copy_text(dst, sizeof(dst), "0123456789");
  EXPECT_STREQ(dst, "0123456");  // capacity - 1 characters and the terminator.

  char one[1] = {'X'};
  copy_text(one, sizeof(one), "abc");
  EXPECT_EQ(one[0], '\0');
}

TEST(WireTest, CopyTextWithZeroCapacityWritesNothing) {
  // A zero-capacity field has no room even for the terminator.
  char guard[2] = {'G', 'G'};
  copy_text(guard, 0, "abc");
  EXPECT_EQ(guard[0], 'G') << "copy_text wrote a terminator into a zero-capacity buffer";
}

TEST(WireTest, CopyTextOutputAlwaysEncodesAndDecodes) {
  // Whatever copy_text produces must be accepted by the decoder, or a reply would be lost.
  Reply in;
  const std::string noisy = std::string("bad\x01\x02\x1b[31m") + Repeat('z', 400);
  copy_text(in.message, sizeof(in.message), noisy.c_str());
  Reply out;
  ASSERT_EQ(DecodeFrame(Encode(in), MsgType::kReply, &out), DecodeError::kOk);
  EXPECT_EQ(strlen(out.message), kMaxMessage);
  EXPECT_EQ(std::string(out.message, 8), "bad???[3");
}

// Random input must never crash or overread (run under ASan to see the latter), and every
// outcome must be either ok or one of the named errors.
TEST(WireTest, RandomBuffersNeverCrashTheDecoders) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<size_t> length(0, kMaxFrame + 8);
  size_t header_ok = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    // Half the buffers start from a valid header so the payload decoders get exercised too.
    Frame buf(length(rng));
    for (std::byte& b : buf) b = static_cast<std::byte>(byte(rng));
    if (iter % 2 == 0 && buf.size() >= kHeaderSize) {
      PutU32(&buf, 0, kMagic);
      PutU16(&buf, 4, kVersion);
      PutU16(&buf, 6, static_cast<uint16_t>(1 + iter / 2 % 3));
      PutU32(&buf, 8, static_cast<uint32_t>(buf.size() - kHeaderSize));
    }
    FrameHeader header;
    DecodeError e = decode_header(buf.data(), buf.size(), &header);
    if (e != DecodeError::kOk) {
      EXPECT_STRNE(describe(e), "unknown decode error");
      continue;
    }
    ++header_ok;
    ASSERT_LE(header.length, kMaxPayload);
    ASSERT_EQ(header.length + kHeaderSize, buf.size());
    // Copy the payload to an exact-size heap block so ASan catches any overread.
    std::unique_ptr<std::byte[]> payload(new std::byte[header.length]);
    memcpy(payload.get(), buf.data() + kHeaderSize, header.length);
    DecodeError pe = DecodeError::kOk;
    switch (header.type) {
      case MsgType::kHello: {
        Hello h;
        pe = decode(payload.get(), header.length, &h);
        if (pe == DecodeError::kOk) EXPECT_LE(strlen(h.policy), kMaxPolicyName);
        break;
      }
      case MsgType::kReply: {
        Reply r;
        pe = decode(payload.get(), header.length, &r);
        if (pe == DecodeError::kOk) EXPECT_LE(strlen(r.message), kMaxMessage);
        break;
      }
      case MsgType::kRegister: {
        Register g;
        pe = decode(payload.get(), header.length, &g);
        break;
      }
    }
    EXPECT_STRNE(describe(pe), "unknown decode error");
  }
  // The valid-header half really reached the payload decoders.
  EXPECT_GT(header_ok, 5000u);
}

TEST(WireTest, RequestsRejectTrailingBytesAndBadPolicyNames) {
  Frame frame = Encode(GetStats{});
  frame.push_back(std::byte{0});
  GetStats get;
  EXPECT_EQ(decode(frame.data() + kHeaderSize, frame.size() - kHeaderSize, &get),
            DecodeError::kTrailingBytes);
  frame = Encode(AttachHints{});
  frame.push_back(std::byte{0});
  AttachHints attach;
  EXPECT_EQ(decode(frame.data() + kHeaderSize, frame.size() - kHeaderSize, &attach),
            DecodeError::kTrailingBytes);
  // A SetPolicy payload is a Hello's policy string alone.
  Frame payload = HelloPayload(Repeat('p', kMaxPolicyName + 1));
  SetPolicy set;
  EXPECT_EQ(decode(payload.data() + 12, payload.size() - 12, &set), DecodeError::kBadString);
  payload = HelloPayload("cl\x01ck");
  EXPECT_EQ(decode(payload.data() + 12, payload.size() - 12, &set), DecodeError::kBadString);
}

TEST(WireTest, PayloadDecodersRejectTrailingBytes) {
  Hello hello;
  Frame frame = Encode(hello);
  frame.push_back(std::byte{'x'});
  Hello hello_out;
  EXPECT_EQ(decode(frame.data() + kHeaderSize, frame.size() - kHeaderSize, &hello_out),
            DecodeError::kTrailingBytes);

  frame = Encode(Reply{});
  frame.push_back(std::byte{0});
  Reply reply_out;
  EXPECT_EQ(decode(frame.data() + kHeaderSize, frame.size() - kHeaderSize, &reply_out),
            DecodeError::kTrailingBytes);

  frame = Encode(Register{});
  frame.push_back(std::byte{0});
  Register register_out;
  EXPECT_EQ(decode(frame.data() + kHeaderSize, frame.size() - kHeaderSize, &register_out),
            DecodeError::kTrailingBytes);
}

}  // namespace
}  // namespace extmem::wire
