// Small absl::Status helpers beside status_macros.h.
#ifndef DISTILL_COMMON_STATUS_UTIL_H_
#define DISTILL_COMMON_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace distill::common {

// `st` with "PREFIX: " before its message (a file, a field, a rank's role),
// the code kept; OK stays OK.
inline absl::Status WithPrefix(const absl::Status& st, absl::string_view prefix) {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat(prefix, ": ", st.message()));
}

}  // namespace distill::common

#endif  // DISTILL_COMMON_STATUS_UTIL_H_
