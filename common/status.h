// Status / StatusOr: the error currency across module, thread and network boundaries.
//
// A Status is either OK or carries a code and a human-readable message that names the
// offending input ("spec: search.parameters.lr: must be > 0, got -1"). Exceptions from
// third-party libraries are caught where they are called and turned into a Status;
// none crosses a module edge. Broken internal invariants use LATTICE_CHECK instead.
//
// Thread-safety: values, freely copyable.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace lattice {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kUnauthenticated,
  kCancelled,
  kUnavailable,
  kIoError,
  kInternal,
  kDataLoss,  // stored data is missing or corrupt
  kInsufficientStorage,  // the disk holding the data directory is full (HTTP 507); retry once space is freed
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {StatusCode::kAlreadyExists, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) {
    return {StatusCode::kFailedPrecondition, std::move(msg)};
  }
  static Status Unauthenticated(std::string msg) { return {StatusCode::kUnauthenticated, std::move(msg)}; }
  static Status Cancelled(std::string msg) { return {StatusCode::kCancelled, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status IoError(std::string msg) { return {StatusCode::kIoError, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }
  static Status DataLoss(std::string msg) { return {StatusCode::kDataLoss, std::move(msg)}; }
  static Status InsufficientStorage(std::string msg) {
    return {StatusCode::kInsufficientStorage, std::move(msg)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "InvalidArgument: spec: ..." or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(const std::string& context) const;

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = Status::Internal("StatusOr constructed from OK status");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

namespace internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace internal

}  // namespace lattice

#define LATTICE_CONCAT_INNER(a, b) a##b
#define LATTICE_CONCAT(a, b) LATTICE_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define LATTICE_RETURN_IF_ERROR(expr)                      \
  do {                                                     \
    ::lattice::Status lattice_status_tmp_ = (expr);        \
    if (!lattice_status_tmp_.ok()) return lattice_status_tmp_; \
  } while (0)

// `LATTICE_ASSIGN_OR_RETURN(auto x, MakeX());` declares x or returns the error.
#define LATTICE_ASSIGN_OR_RETURN(lhs, expr) \
  LATTICE_ASSIGN_OR_RETURN_IMPL(LATTICE_CONCAT(lattice_statusor_, __LINE__), lhs, expr)
#define LATTICE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

// Broken invariant: abort with a message. Never for user input.
#define LATTICE_CHECK(cond)                                                       \
  do {                                                                            \
    if (!(cond)) ::lattice::internal::CheckFailed(__FILE__, __LINE__, #cond, ""); \
  } while (0)
#define LATTICE_CHECK_OK(expr)                                                      \
  do {                                                                              \
    ::lattice::Status lattice_check_tmp_ = (expr);                                  \
    if (!lattice_check_tmp_.ok())                                                   \
      ::lattice::internal::CheckFailed(__FILE__, __LINE__, #expr,                   \
                                       lattice_check_tmp_.ToString());              \
  } while (0)
