// Fuzzes the checks a teacher stage runs on a request header it receives
// over MPI (worker/distill/stream_header.cc, Note [Stream header bounds])
// before it sizes a buffer from it. The first 8 bytes choose the limits (the
// spec's students and micro-batch tokens) and the sender; the next 80 are the
// header's ten int64 fields as they arrive. An accepted header must describe
// buffers within the limits: 1 <= b, 1 <= L, b * L <= max_tokens (computed
// without overflow here), packed 0 or 1, the student one of the spec's and
// the sender; a header always echoes itself as a reply.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "worker/distill/stream_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ts = distill::worker::teacher_stream;
  constexpr size_t kHeaderBytes = sizeof(int64_t) * ts::kHeaderLen;
  if (size < 8 + kHeaderBytes) return 0;
  ts::HeaderLimits limits;
  limits.students = data[0] % 9;
  uint32_t tokens = 0;
  std::memcpy(&tokens, data + 1, 3);
  limits.max_tokens = tokens;  // up to 2^24
  limits.transport = data[4] % 4;
  limits.top_k = data[5];
  const int64_t from = static_cast<int64_t>(data[6] % 10) - 1;  // -1: from the stage before
  ts::Header h{};
  std::memcpy(h.data(), data + 8, kHeaderBytes);
  (void)ts::DescribeHeader(h);
  if (!ts::CheckReplyHeader(h, h).ok()) std::abort();
  if (!ts::CheckRequestHeader(h, from, limits).ok()) return 0;
  const int64_t student = h[ts::kStudent];
  if (student < 0 || student >= limits.students || (from >= 0 && student != from)) std::abort();
  if (h[ts::kKind] == ts::kStop) return 0;
  const int64_t b = h[ts::kBatch], l = h[ts::kLength];
  if (b < 1 || l < 1) std::abort();
  if (static_cast<__int128>(b) * l > limits.max_tokens) std::abort();
  if (h[ts::kPacked] != 0 && h[ts::kPacked] != 1) std::abort();
  if (h[ts::kKind] == ts::kTrain &&
      (h[ts::kTransport] != limits.transport || h[ts::kTopK] != limits.top_k)) {
    std::abort();
  }
  return 0;
}
