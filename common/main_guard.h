// The edge of every binary (distill-coordinator, distill-worker, distillctl):
// an exception no layer below caught ends the process as one line on stderr,
// not an abort with a core dump (issue 20: a library's std::bad_alloc or
// std::filesystem_error must not crash the binary). Thread-compatible.
#ifndef DISTILL_COMMON_MAIN_GUARD_H_
#define DISTILL_COMMON_MAIN_GUARD_H_

#include <functional>

namespace distill::common {

// `main()`'s exit status; for an exception out of it, "PROGRAM: internal
// error: WHAT" on stderr and 1.
int RunCatchingExceptions(const char* program, const std::function<int()>& main);

}  // namespace distill::common

#endif  // DISTILL_COMMON_MAIN_GUARD_H_
