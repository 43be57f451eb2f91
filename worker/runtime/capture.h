// `distill-worker capture --spec SPEC` (and the capture a train job with both
// teacher.model and teacher.cache runs first): the teacher of a distill spec
// run once over every row of data.train and data.eval, its top-k, log-sum-exp
// at each cached temperature, eval target logits and cached layer outputs
// written to the teacher cache (worker/distill/teacher_cache.h). The forward
// and MakeTopK are the online TOPK job's, in micro-batches of
// train.micro_batch rows (the last one padded), so EXACT is bit-identical.
// Multi-rank (mpirun -np N): rank r captures shards r, r + N, ...; rank 0
// creates the directory first and writes the complete manifest after a
// barrier. Resumable: finished shards are kept. Runs on the calling thread.
#ifndef DISTILL_WORKER_RUNTIME_CAPTURE_H_
#define DISTILL_WORKER_RUNTIME_CAPTURE_H_

#include <cstdint>
#include <ostream>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"

namespace distill::worker {

struct CaptureResult {
  int64_t shards_written = 0;  // by this rank
  int64_t shards_kept = 0;     // found finished on disk (a resumed capture), by this rank
  int64_t tokens = 0;          // positions in the cache, all splits
  int64_t bytes = 0;           // the shards' bytes on disk
};

// Captures the teacher cache of a validated, defaults-filled distill spec
// with teacher.model and teacher.cache on this rank of `world` (null: one
// process). Progress lines go to `log` (rank 0). Errors name the field
// (the spec) or the file.
absl::StatusOr<CaptureResult> RunCapture(const distill::v1::JobSpec& spec, Communicator* world,
                                         std::ostream& log);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_RUNTIME_CAPTURE_H_
