// Deterministic, rank-aware, resumable sampling of training windows.
//
// The stream of N tokens is cut into W = floor((N - 1) / L) windows of L + 1
// tokens starting at multiples of L (inputs are the first L, targets the last
// L). Epoch e visits all W windows in a permutation that depends only on
// (seed, e). Windows are dealt globally: global micro-batch k holds positions
// [k*b*world, (k+1)*b*world) of the epoch-ordered stream, and rank r takes
// the b consecutive positions starting at k*b*world + r*b. So world ranks of
// micro-batch b see exactly the windows one rank of micro-batch b*world sees.
// Not thread-safe (one owner).
#ifndef DISTILL_WORKER_DATA_SAMPLER_H_
#define DISTILL_WORKER_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::worker {

struct SamplerOptions {
  int64_t seq_len = 256;  // L: tokens per input window
  uint64_t seed = 0;      // picks the permutation of every epoch
  int rank = 0;           // this rank among `world` data-parallel ranks
  int world = 1;
};

class WindowSampler {
 public:
  // InvalidArgument if the stream holds no full window (N < L + 1) or the
  // rank layout is wrong.
  static absl::StatusOr<WindowSampler> Create(int64_t num_tokens, const SamplerOptions& options);
  // The same order over `num_rows` rows of a SequenceData (sequence_data.h:
  // for plain text, row i is window i); options.seq_len is not used.
  // InvalidArgument if num_rows < 1 or the rank layout is wrong.
  static absl::StatusOr<WindowSampler> ForRows(int64_t num_rows, const SamplerOptions& options);

  int64_t num_windows() const { return num_windows_; }
  // Token offsets of this rank's next micro-batch of `b` windows; advances the
  // global position by b * world.
  std::vector<int64_t> Next(int64_t b);
  // The same, as window (row) indices: Next(b)[i] == NextRows(b)[i] * L.
  std::vector<int64_t> NextRows(int64_t b);

  // Global windows consumed so far (all ranks); the whole resumable state.
  int64_t position() const { return position_; }
  void set_position(int64_t position) { position_ = position; }

 private:
  WindowSampler(int64_t num_windows, const SamplerOptions& options);
  int64_t WindowAt(int64_t global_position);  // window index at a stream position

  int64_t num_windows_;
  SamplerOptions options_;
  int64_t position_ = 0;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> perm_;  // permutation of the cached epoch
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_SAMPLER_H_
