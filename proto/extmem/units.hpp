// Human sizes ("512M", "2.5G", "4096"), shared by the shim's environment, the daemon's
// options and the CLI. Header-only and exception-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace extmem {

// Parses a size: a decimal number (fraction allowed with a suffix) and an optional
// binary suffix K, M, G, T (optionally followed by "iB" or "B"). Returns false on
// malformed input or overflow.
inline bool parse_size(const char* text, uint64_t* out) noexcept {
  if (text == nullptr || *text == '\0') return false;
  const char* p = text;
  uint64_t whole = 0;
  int digits = 0;
  for (; *p >= '0' && *p <= '9'; ++p, ++digits) {
    uint64_t digit = static_cast<uint64_t>(*p - '0');
    if (whole > (UINT64_MAX - digit) / 10) return false;
    whole = whole * 10 + digit;
  }
  uint64_t frac = 0, frac_scale = 1;
  if (*p == '.') {
    for (++p; *p >= '0' && *p <= '9'; ++p, ++digits) {
      if (frac_scale < 1000000000ULL) {
        frac = frac * 10 + static_cast<uint64_t>(*p - '0');
        frac_scale *= 10;
      }
    }
  }
  if (digits == 0) return false;
  unsigned shift = 0;
  switch (*p) {
    case 'k':
    case 'K':
      shift = 10;
      ++p;
      break;
    case 'm':
    case 'M':
      shift = 20;
      ++p;
      break;
    case 'g':
    case 'G':
      shift = 30;
      ++p;
      break;
    case 't':
    case 'T':
      shift = 40;
      ++p;
      break;
    default:
      break;
  }
  if (shift != 0 && p[0] == 'i' && p[1] == 'B')
    p += 2;
  else if (shift != 0 && p[0] == 'B')
    p += 1;
  if (*p != '\0') return false;
  if (frac_scale > 1 && shift == 0) return false;  // fractional bytes make no sense
  if (shift != 0 && whole > (UINT64_MAX >> shift)) return false;
  // 128 bits: frac < 10^9 shifted by up to 40 bits exceeds 64.
  __extension__ typedef unsigned __int128 Wide;
  Wide value =
      (static_cast<Wide>(whole) << shift) + ((static_cast<Wide>(frac) << shift) / frac_scale);
  if (value > UINT64_MAX) return false;
  *out = static_cast<uint64_t>(value);
  return true;
}

// "1.5 GiB", "512 MiB", "4.0 KiB", "100 B" into buf.
inline const char* format_size(uint64_t bytes, char* buf, size_t len) noexcept {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0)
    snprintf(buf, len, "%llu B", static_cast<unsigned long long>(bytes));
  else
    snprintf(buf, len, "%.1f %s", value, kUnits[unit]);
  return buf;
}

}  // namespace extmem
