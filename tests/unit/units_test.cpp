#include "extmem/units.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace extmem {
namespace {

constexpr uint64_t kKiB = uint64_t{1} << 10;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kTiB = uint64_t{1} << 40;

// Parses text, returning the value; fails the test if parse_size rejects it.
uint64_t Parse(const char* text) {
  uint64_t value = 0xdeadbeef;
  EXPECT_TRUE(parse_size(text, &value)) << '"' << text << '"';
  return value;
}

// Checks that parse_size rejects text and leaves the output untouched.
void ExpectRejected(const char* text) {
  uint64_t value = 0xdeadbeef;
  EXPECT_FALSE(parse_size(text, &value)) << '"' << text << '"';
  EXPECT_EQ(value, 0xdeadbeefu) << '"' << text << "\" wrote the output on failure";
}

std::string Format(uint64_t bytes) {
  char buf[32];
  return format_size(bytes, buf, sizeof(buf));
}

TEST(ParseSizeTest, PlainBytes) {
  EXPECT_EQ(Parse("4096"), 4096u);
  EXPECT_EQ(Parse("0"), 0u);
  EXPECT_EQ(Parse("007"), 7u);
}

TEST(ParseSizeTest, BinarySuffixes) {
  EXPECT_EQ(Parse("128K"), 128 * kKiB);
  EXPECT_EQ(Parse("512M"), 512 * kMiB);
  EXPECT_EQ(Parse("1T"), kTiB);
  EXPECT_EQ(Parse("3G"), 3 * kGiB);
}

TEST(ParseSizeTest, SuffixesAreCaseInsensitive) {
  EXPECT_EQ(Parse("128k"), 128 * kKiB);
  EXPECT_EQ(Parse("512m"), 512 * kMiB);
  EXPECT_EQ(Parse("2g"), 2 * kGiB);
  EXPECT_EQ(Parse("1t"), kTiB);
}

TEST(ParseSizeTest, SuffixMayBeFollowedByIBOrB) {
  EXPECT_EQ(Parse("8GiB"), 8 * kGiB);
  EXPECT_EQ(Parse("64MB"), 64 * kMiB);
  EXPECT_EQ(Parse("4KiB"), 4 * kKiB);
  EXPECT_EQ(Parse("1TB"), kTiB);
}

TEST(ParseSizeTest, FractionWithSuffix) {
  EXPECT_EQ(Parse("2.5G"), 2 * kGiB + kGiB / 2);
  EXPECT_EQ(Parse("1.5T"), kTiB + kTiB / 2);
  EXPECT_EQ(Parse("0.25M"), kMiB / 4);
  EXPECT_EQ(Parse("1.0K"), kKiB);
}

TEST(ParseSizeTest, LongFractionWithTeraSuffixDoesNotOverflow) {
  // frac << 40 must not wrap: 99999999 needs 27 bits, shifted by 40 that is 67 bits.
  // Exact value: floor(1.99999999 * 2^40).
  EXPECT_EQ(Parse("1.99999999T"), uint64_t{2199023244556});
  EXPECT_EQ(Parse("1.123456789T"), uint64_t{1235253802809});
}

TEST(ParseSizeTest, RejectsMalformedInput) {
  ExpectRejected("");
  ExpectRejected("abc");
  ExpectRejected("12Q");
  ExpectRejected("-1");
  ExpectRejected("+1");
  ExpectRejected(" 1");
  ExpectRejected("1 ");
  ExpectRejected("K");
  ExpectRejected(".");
  ExpectRejected("1KK");
  ExpectRejected("1Ki");  // "i" without "B".
  ExpectRejected("1KBB");
  ExpectRejected("1.2.3G");
  ExpectRejected("4096B");  // "B" only follows a unit suffix.
  EXPECT_FALSE(parse_size(nullptr, nullptr));
}

TEST(ParseSizeTest, RejectsFractionWithoutSuffix) {
  ExpectRejected("1.5");
  ExpectRejected("0.1");
}

TEST(ParseSizeTest, RejectsOverflowFromSuffix) {
  ExpectRejected("99999999999T");
  ExpectRejected("16777216T");                              // 2^24 TiB = 2^64.
  EXPECT_EQ(Parse("16777215T"), uint64_t{16777215} << 40);  // The largest whole TiB count.
  ExpectRejected("17179869184G");                           // 2^34 GiB = 2^64.
}

TEST(ParseSizeTest, RejectsOverflowingDigitStrings) {
  ExpectRejected("99999999999999999999");  // 20 digits, above UINT64_MAX.
  ExpectRejected("18446744073709551616");  // UINT64_MAX + 1.
  ExpectRejected("123456789012345678901234567890");
  ExpectRejected("99999999999999999999K");
  EXPECT_EQ(Parse("9999999999999999999"), uint64_t{9999999999999999999u});  // 19 digits fit.
}

TEST(ParseSizeTest, AcceptsUint64MaxExactly) {
  // Not an overflow, so the contract says it parses.
  EXPECT_EQ(Parse("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(Parse("18446744073709551610"), UINT64_MAX - 5);
}

TEST(FormatSizeTest, BytesBelowOneKiBAreExact) {
  EXPECT_EQ(Format(0), "0 B");
  EXPECT_EQ(Format(100), "100 B");
  EXPECT_EQ(Format(1023), "1023 B");
}

TEST(FormatSizeTest, LargerSizesUseOneDecimalAndBinaryUnits) {
  EXPECT_EQ(Format(kKiB), "1.0 KiB");
  EXPECT_EQ(Format(4 * kKiB), "4.0 KiB");
  EXPECT_EQ(Format(1536), "1.5 KiB");
  EXPECT_EQ(Format(512 * kMiB), "512.0 MiB");
  EXPECT_EQ(Format(kGiB + kGiB / 2), "1.5 GiB");
  EXPECT_EQ(Format(kTiB), "1.0 TiB");
}

TEST(FormatSizeTest, TiBIsTheLargestUnit) {
  EXPECT_EQ(Format(2048 * kTiB), "2048.0 TiB");
  EXPECT_EQ(Format(UINT64_MAX), "16777216.0 TiB");
}

TEST(FormatSizeTest, ReturnsBufAndTruncatesToItsLength) {
  char buf[4] = {'x', 'x', 'x', 'x'};
  EXPECT_EQ(format_size(1536, buf, sizeof(buf)), buf);
  EXPECT_STREQ(buf, "1.5");
}

TEST(FormatSizeTest, ParsesBackWithinRounding) {
  // The number and unit format_size prints, fed back as a suffix, give the size again
  // (to the printed precision): "1.5 GiB" -> "1.5GiB".
  for (uint64_t bytes : {kKiB, 3 * kMiB / 2, 5 * kGiB / 2, 7 * kTiB}) {
    std::string text = Format(bytes);
    text.erase(text.find(' '), 1);
    EXPECT_EQ(Parse(text.c_str()), bytes) << text;
  }
}

}  // namespace
}  // namespace extmem
