// Fuzzes the coordinator's ListJobs page tokens (coordinator/page_token.cc),
// which come from clients. The first byte picks the state filter; the rest
// is the token. A token that parses must give a seq > 0 whose issued token
// (MakePageToken) parses back to the same seq.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "coordinator/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int state = data[0] % 8;
  const std::string token(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<int64_t> seq = distill::coordinator::ParsePageToken(token, state);
  if (!seq.ok()) return 0;
  if (*seq <= 0) std::abort();
  const std::string issued = distill::coordinator::MakePageToken(*seq, state);
  absl::StatusOr<int64_t> again = distill::coordinator::ParsePageToken(issued, state);
  if (!again.ok() || *again != *seq) std::abort();
  return 0;
}
