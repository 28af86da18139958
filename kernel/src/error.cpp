#include "extmem/kernel/result.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace extmem {

Error Error::make(int code, const char* fmt, ...) noexcept {
  va_list args;
  va_start(args, fmt);
  Error e = make_v(code, fmt, args);
  va_end(args);
  return e;
}

Error Error::from_errno(const char* fmt, ...) noexcept {
  const int code = errno;  // before anything else can change it
  va_list args;
  va_start(args, fmt);
  Error e = make_v(code, fmt, args);
  va_end(args);
  return e;
}

Error Error::make_v(int code, const char* fmt, va_list args) noexcept {
  Error e;
  e.code_ = code;
  vsnprintf(e.context_, sizeof(e.context_), fmt, args);
  return e;
}

std::string Error::message() const {
  std::string text = context_;
  if (code_ != 0) {
    text += ": ";
    text += strerrordesc_np(code_) ? strerrordesc_np(code_) : "unknown error";
  }
  return text;
}

}  // namespace extmem
