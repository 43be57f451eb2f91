// Optimizer state in a checkpoint directory, written by one rank (plain
// AdamW) or by every rank (its ZeRO shard), read back by any number of ranks.
//
// Note [Optimizer state files]: the state is a set of float32 pieces of
// flattened per-parameter tensors ("kinds": exp_avg, exp_avg_sq and, with bf16
// weights, master), plus the step count:
//   optimizer.safetensors                    plain AdamW: "NAME.exp_avg" and
//                                            "NAME.exp_avg_sq" in the
//                                            parameter's shape, and "step";
//   optimizer-RRRRR-of-SSSSS.safetensors     rank R's shard of S: 1-D
//                                            "KIND/NAME@OFFSET" holding
//                                            elements [OFFSET, OFFSET + n)
//                                            of NAME's flattened KIND, and
//                                            "step".
// A reader indexes every piece of every file by (kind, name) and serves any
// element range from whichever pieces cover it. So a checkpoint of S ranks
// resumes on S' ranks (each rank reads its own new ranges: re-sharding), and
// plain and sharded optimizers read each other's checkpoints.
#ifndef DISTILL_WORKER_TRAIN_OPTIMIZER_STATE_H_
#define DISTILL_WORKER_TRAIN_OPTIMIZER_STATE_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::worker {

class SafetensorsFile;

inline constexpr char kPlainStateFile[] = "optimizer.safetensors";

// "optimizer-00001-of-00003.safetensors".
std::string ShardStateFile(int rank, int ranks);
// "exp_avg/layers.0.mlp.up.weight@1024".
std::string SegmentKey(const std::string& kind, const std::string& name, int64_t offset);

class OptimizerStateReader {
 public:
  // Indexes the optimizer files of checkpoint `dir`: the plain file or a
  // complete set of shard files (all S of the same S). NotFound when there
  // are none; InvalidArgument naming the file for a malformed one, a
  // missing shard or disagreeing step counts.
  static absl::StatusOr<std::unique_ptr<OptimizerStateReader>> Open(const std::string& dir);
  ~OptimizerStateReader();

  int64_t step() const { return step_; }
  int shards() const { return shards_; }  // files written (1 for the plain file)
  bool Has(const std::string& kind, const std::string& name) const;
  // Elements [offset, offset + length) of NAME's flattened KIND, as a
  // contiguous float32 tensor; InvalidArgument naming the parameter and the
  // first element no piece covers.
  absl::StatusOr<torch::Tensor> Read(const std::string& kind, const std::string& name,
                                     int64_t offset, int64_t length) const;

 private:
  struct Piece {
    int64_t offset = 0;
    torch::Tensor values;  // 1-D, aliasing its file's mapping
  };
  OptimizerStateReader() = default;
  absl::Status Index(const SafetensorsFile& file, bool plain);

  std::string dir_;
  int64_t step_ = -1;
  int shards_ = 0;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::pair<std::string, std::string>, std::vector<Piece>> pieces_;  // by (kind, name)
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_OPTIMIZER_STATE_H_
