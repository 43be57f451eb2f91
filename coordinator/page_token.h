// ListJobs page tokens: "SEQ.STATE.CHECK" (hex seq, the state filter, a
// 32-bit check of both), so a client can only continue a listing the server
// began, with the same filter. Kept apart from service.cc so that the parser
// is fuzzed on its own (tests/fuzz/page_token_fuzz.cc). Pure functions;
// thread-safe.
#ifndef DISTILL_COORDINATOR_PAGE_TOKEN_H_
#define DISTILL_COORDINATOR_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace distill::coordinator {

// The token that continues a listing (state filter `state`) after the job
// with store sequence `seq` (> 0).
std::string MakePageToken(int64_t seq, int state);

// The seq a token continues after; InvalidArgument starting "page_token:"
// for a token this server did not issue (or issued for another state filter).
absl::StatusOr<int64_t> ParsePageToken(const std::string& token, int state);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_PAGE_TOKEN_H_
