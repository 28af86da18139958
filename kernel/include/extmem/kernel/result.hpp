// Result<T>: the one error type inside extmem. An Error carries an errno and a short
// context; it never allocates, so the shim (which runs inside malloc) can use it too.
#pragma once

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <string>
#include <utility>
#include <variant>

namespace extmem {

class Error {
 public:
  Error() = default;
  // `fmt` is printf-style context, e.g. "UFFDIO_COPY at %#lx".
  [[gnu::format(printf, 2, 3)]] static Error make(int code, const char* fmt, ...) noexcept;
  // The current errno with context.
  [[gnu::format(printf, 1, 2)]] static Error from_errno(const char* fmt, ...) noexcept;

  int code() const noexcept { return code_; }
  const char* context() const noexcept { return context_; }
  // "context: strerror(code)".
  std::string message() const;

 private:
  static Error make_v(int code, const char* fmt, va_list args) noexcept;

  int code_ = 0;
  char context_[240] = {};
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return *std::get_if<0>(&v_); }
  T&& value() && { return std::move(*std::get_if<0>(&v_)); }
  const T& value() const& { return *std::get_if<0>(&v_); }
  T* operator->() { return std::get_if<0>(&v_); }
  T& operator*() & { return value(); }
  const Error& error() const { return *std::get_if<1>(&v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace extmem
