// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr
// (the abseil release in Debian 12 does not ship them).
#ifndef DISTILL_COMMON_STATUS_MACROS_H_
#define DISTILL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DISTILL_CONCAT_INNER_(a, b) a##b
#define DISTILL_CONCAT_(a, b) DISTILL_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status distill_status_ = (expr);           \
    if (!distill_status_.ok()) return distill_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares x from an OK StatusOr, or returns
// its status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  DISTILL_ASSIGN_OR_RETURN_IMPL_(DISTILL_CONCAT_(distill_statusor_, __LINE__), lhs, expr)

#define DISTILL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return statusor.status();             \
  lhs = std::move(statusor).value()

#endif  // DISTILL_COMMON_STATUS_MACROS_H_
