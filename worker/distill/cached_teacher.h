// The cached teacher: a Teacher (teacher.h) that reads the teacher cache
// (teacher_cache.h) written by `distill-worker capture` instead of running a
// model; no teacher weights are loaded. Next() returns the TOPK output of the
// batch's rows (TokenBatch::rows, read by SequenceData row index) with the
// log-sum-exp at the job's temperature and the cached layers' outputs.
// Evaluate() scores the student against the cached top-k: the KL at T = 1 is
// over the k ids plus one tail bucket, a lower bound of the full KL (the
// tail merges the other V - k entries); top-1 agreement uses the first
// top-k entry; the teacher's loss is exact (its target logit is cached).
// Thread-compatible: the training thread owns it.
#ifndef DISTILL_WORKER_DISTILL_CACHED_TEACHER_H_
#define DISTILL_WORKER_DISTILL_CACHED_TEACHER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/distill/teacher.h"
#include "worker/distill/teacher_cache.h"

namespace distill::worker {

// The rows a job's data gives, for the cache key (SequenceData::rows; -1:
// not known yet, taken from the cache).
struct CacheRows {
  int64_t train = -1;
  int64_t eval = -1;
};

// The cache key a defaults-filled distill spec needs: its data splits (files
// hashed, the options that change rows), tokenizer, V = `vocab`, top_k,
// encoding, temperatures and teacher `layers`. `capture`: the key capture
// writes, with the teacher's hashes (teacher.model), every temperature
// (distill.temperature, teacher.cache_temperatures, 1.0) and the rows;
// otherwise what a reader needs (distill.temperature, and 1.0 when there is
// eval data). Errors name the file that cannot be read.
absl::StatusOr<TeacherCacheKey> JobCacheKey(const distill::v1::JobSpec& spec, int64_t vocab,
                                            const std::vector<int64_t>& layers, CacheRows rows,
                                            bool capture);

class CachedTeacher : public Teacher {
 public:
  // Opens teacher.cache of `spec` and checks it against the job (teacher.h
  // TeacherSetup: its run's temperature and capture layers, V): mismatches
  // are FailedPrecondition naming the field (CheckCacheKey).
  static absl::StatusOr<std::unique_ptr<CachedTeacher>> Open(const distill::v1::JobSpec& spec,
                                                             const TeacherSetup& setup);
  // The teacher's config.json kept in the cache at `dir`.
  static absl::StatusOr<ModelConfig> LoadConfig(const std::string& dir);

  const ModelConfig& config() const override { return config_; }
  int64_t vocab() const override { return cache_->key().vocab; }
  // InvalidArgument when the batch lacks its row indices; DataLoss for a
  // damaged shard; FailedPrecondition for rows of other data.
  absl::StatusOr<TeacherBatch> Next(const TokenBatch& batch) override;
  absl::StatusOr<TeacherEvalResult> Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                             int64_t batch, int64_t max_rows, int64_t chunk_tokens,
                                             const torch::Device& device, EvalShard shard) override;
  int Lookahead() const override { return 0; }
  absl::Status Enqueue(const TokenBatch&) override { return absl::OkStatus(); }
  absl::Status Stop() override { return absl::OkStatus(); }
  std::string Placement() const override { return ""; }

  // "cache DIR (exact, top-64, 12345 tokens)".
  std::string Describe() const;

 private:
  // The TOPK output (and features) of `batch`'s rows of `split`, the lse at
  // cached temperature index `t`; for eval also the target logits [N].
  struct Rows {
    TeacherBatch batch;
    torch::Tensor target_logits;
  };
  absl::StatusOr<Rows> Read(const std::string& split, const TokenBatch& batch, size_t t);

  CachedTeacher(std::unique_ptr<TeacherCache> cache, ModelConfig config, TeacherRunConfig run)
      : cache_(std::move(cache)), config_(std::move(config)), run_(std::move(run)) {}
  std::unique_ptr<TeacherCache> cache_;
  ModelConfig config_;
  TeacherRunConfig run_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_CACHED_TEACHER_H_
