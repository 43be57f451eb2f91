// The byte encoding of the teacher's top-k for a block of token positions,
// as a teacher cache shard stores it (teacher_cache.h compresses and frames
// the bytes; this file only packs them). Two encodings (job.proto
// CacheEncoding):
//   EXACT   lossless: Decode(Encode(b)) == b bit for bit, the k entries of a
//           position in the order given (the teacher's: values descending).
//   COMPACT quantized values and delta-coded ids; Decode returns each
//           position's entries sorted by value descending (ties: lower id
//           first), ids exact, values within the documented error.
// The per-position scalars (the full row's log-sum-exp at each cached
// temperature, the target's logit) are float32 and kept exactly by both.
// Note [Cache codec] in cache_codec.cc says how each encoding packs a
// position and why. Pure functions; thread-safe.
#ifndef DISTILL_WORKER_DISTILL_CACHE_CODEC_H_
#define DISTILL_WORKER_DISTILL_CACHE_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

enum class CacheEncoding { kExact, kCompact };

// n positions, each with k (value, id) entries and m float32 scalars.
struct TopKBlock {
  int64_t positions = 0;        // n
  int32_t k = 0;                // entries per position
  int32_t scalars = 0;          // m
  std::vector<float> values;    // [n * k] raw teacher logits z (not divided by T)
  std::vector<int32_t> ids;     // [n * k] vocabulary ids in [0, vocab), distinct per position
  std::vector<float> extra;     // [n * m] per-position scalars
};

// Appends the encoding of `block` to `*out`. InvalidArgument (naming the
// position) for sizes that do not match n, k, m, an id outside [0, vocab) or
// repeated within a position, or a value that is not finite.
absl::Status EncodeTopK(const TopKBlock& block, CacheEncoding encoding, int64_t vocab,
                        std::string* out);

// Decodes exactly `positions` positions of (k, scalars) from `bytes`, which
// must be consumed exactly. DataLoss (saying what is wrong: truncated,
// trailing bytes, an id out of range or repeated) for bytes that EncodeTopK
// with these parameters cannot have produced.
absl::StatusOr<TopKBlock> DecodeTopK(std::string_view bytes, CacheEncoding encoding,
                                     int64_t positions, int32_t k, int32_t scalars,
                                     int64_t vocab);

// COMPACT's documented error: the largest |decoded - z| for an entry of value
// z in a position whose k values span [z_min, z_max]. With r = z_max - z_min
// and u = (z_max - z) / r it is r (sqrt(u) / 255 + 1 / (4 * 255^2)) plus
// float32 rounding: the position's largest value comes back exactly, the
// smallest within r / 255 (Note [Cache codec]).
float CompactValueErrorBound(float z, float z_max, float z_min);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_CACHE_CODEC_H_
