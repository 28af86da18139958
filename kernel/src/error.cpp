#include "extmem/kernel/result.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace extmem {

Error Error::make(int code, const char* fmt, ...) noexcept {
  Error e;
  e.code_ = code;
  va_list args;
  va_start(args, fmt);
  vsnprintf(e.context_, sizeof(e.context_), fmt, args);
  va_end(args);
  return e;
}

Error Error::from_errno(const char* fmt, ...) noexcept {
  Error e;
  e.code_ = errno;
  va_list args;
  va_start(args, fmt);
  vsnprintf(e.context_, sizeof(e.context_), fmt, args);
  va_end(args);
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
