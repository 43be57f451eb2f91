#include "coordinator/page_token.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace distill::coordinator {
namespace {

uint32_t TokenCheck(int64_t seq, int state) {
  uint64_t x = static_cast<uint64_t>(seq) * 0x9E3779B97F4A7C15ULL ^
               (static_cast<uint64_t>(state) << 40) ^ 0xD1B54A32D192ED03ULL;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  return static_cast<uint32_t>(x >> 32);
}

}  // namespace

std::string MakePageToken(int64_t seq, int state) {
  return absl::StrFormat("%x.%d.%08x", seq, state, TokenCheck(seq, state));
}

absl::StatusOr<int64_t> ParsePageToken(const std::string& token, int state) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  int64_t seq = 0;
  int st = 0;
  uint32_t check = 0;
  if (parts.size() != 3 || !absl::SimpleHexAtoi(parts[0], &seq) ||
      !absl::SimpleAtoi(parts[1], &st) || !absl::SimpleHexAtoi(parts[2], &check) || seq <= 0 ||
      st != state || check != TokenCheck(seq, st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not a token of this listing: '", token, "'"));
  }
  return seq;
}

}  // namespace distill::coordinator
