#include "worker/train/sharded_adamw.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker {

ShardLayout ShardLayout::Make(const std::vector<std::vector<int64_t>>& buckets,
                              const std::vector<int64_t>& numels, int rank, int ranks) {
  ShardLayout l;
  l.buckets = buckets;
  for (size_t k = 0; k < buckets.size(); ++k) {
    int64_t n = 0;
    for (int64_t i : buckets[k]) n += numels[static_cast<size_t>(i)];
    const int64_t chunk = (n + ranks - 1) / ranks;
    l.bucket_numel.push_back(n);
    l.chunk.push_back(chunk);
    // This rank's chunk [lo, hi) of the bucket, cut at parameter boundaries.
    const int64_t lo = std::min(n, chunk * rank), hi = std::min(n, chunk * (rank + 1));
    int64_t start = 0;  // of parameter i in the bucket
    for (int64_t i : buckets[k]) {
      const int64_t end = start + numels[static_cast<size_t>(i)];
      const int64_t b = std::max(lo, start), e = std::min(hi, end);
      if (b < e) {
        l.segments.push_back({i, b - start, e - b, static_cast<int64_t>(k), b - lo, l.shard_numel + (b - lo)});
      }
      start = end;
    }
    l.shard_numel += chunk;
  }
  return l;
}

ShardedAdamW::ShardedAdamW(std::vector<NamedParam> params, Communicator& comm, GradReducer* reducer,
                           const AdamWOptions& options)
    : params_(std::move(params)), comm_(comm), reducer_(reducer), options_(options) {}

absl::StatusOr<std::unique_ptr<ShardedAdamW>> ShardedAdamW::Create(
    std::vector<NamedParam> params, const std::vector<std::vector<int64_t>>& buckets, Communicator& comm,
    GradReducer* reducer, const AdamWOptions& options) {
  std::vector<int64_t> numels;
  for (const NamedParam& p : params) {
    if (!p.param.is_contiguous()) {
      return absl::InvalidArgumentError(absl::StrCat("sharded optimizer: parameter '", p.name, "' is not contiguous"));
    }
    numels.push_back(p.param.numel());
  }
  std::unique_ptr<ShardedAdamW> opt(new ShardedAdamW(std::move(params), comm, reducer, options));
  opt->layout_ = ShardLayout::Make(buckets, numels, comm.rank(), comm.size());
  const torch::Device device = opt->params_.empty() ? torch::Device(torch::kCPU) : opt->params_[0].param.device();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  opt->exp_avg_ = torch::zeros({opt->layout_.shard_numel}, f32);
  opt->exp_avg_sq_ = torch::zeros({opt->layout_.shard_numel}, f32);
  const bool low_precision = std::any_of(opt->params_.begin(), opt->params_.end(), [](const NamedParam& p) {
    return p.param.scalar_type() != torch::kFloat;
  });
  if (low_precision) {
    torch::NoGradGuard no_grad;
    opt->master_ = torch::zeros({opt->layout_.shard_numel}, f32);
    for (const ShardSegment& s : opt->layout_.segments) {
      opt->master_.narrow(0, s.shard_offset, s.length).copy_(opt->Flat(s.param).narrow(0, s.offset, s.length));
    }
  }
  return opt;
}

torch::Tensor ShardedAdamW::Flat(int64_t param) const {
  return params_[static_cast<size_t>(param)].param.detach().view({-1});
}

torch::Tensor ShardedAdamW::SegmentGrad(const ShardSegment& s) const {
  if (reducer_ != nullptr) return reducer_->chunk(s.bucket).narrow(0, s.chunk_offset, s.length);
  const torch::Tensor& g = params_[static_cast<size_t>(s.param)].param.grad();
  if (!g.defined()) return g;
  return g.view({-1}).narrow(0, s.offset, s.length);
}

void ShardedAdamW::ZeroGrad() {
  if (reducer_ != nullptr) {
    reducer_->ZeroChunks();
    return;
  }
  for (auto& p : params_) {
    if (p.param.grad().defined()) p.param.mutable_grad().zero_();
  }
}

// Stage 1 holds the full averaged gradient: ClipGradNorm's own arithmetic.
// Stage 2 sums the squares of this rank's chunks (in float64) over the ranks.
absl::StatusOr<double> ShardedAdamW::ClipGradients(double max_norm) {
  if (reducer_ == nullptr) return ClipGradNorm(params_, max_norm);
  if (layout_.chunk.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  // On the chunks' device: one host sync, after the all-reduce.
  torch::Tensor total = torch::zeros({1}, reducer_->chunk(0).options().dtype(torch::kDouble));
  for (size_t k = 0; k < layout_.chunk.size(); ++k) {
    total += reducer_->chunk(static_cast<int64_t>(k)).to(torch::kDouble).square().sum();
  }
  RETURN_IF_ERROR(comm_.AllReduce(total, ReduceOp::kSum, "gradient norm"));
  const double norm = std::sqrt(total.item<double>());
  if (max_norm > 0) {
    const double coef = std::min(1.0, max_norm / (norm + 1e-6));  // as ClipGradNorm
    if (coef < 1.0) {
      for (size_t k = 0; k < layout_.chunk.size(); ++k) {
        reducer_->chunk(static_cast<int64_t>(k)).mul_(coef);
      }
    }
  }
  return norm;
}

absl::Status ShardedAdamW::Update(double lr) {
  ++step_;
  for (const ShardSegment& s : layout_.segments) {
    torch::Tensor g = SegmentGrad(s);
    if (!g.defined()) continue;
    torch::Tensor p = master_.defined() ? master_.narrow(0, s.shard_offset, s.length)
                                        : Flat(s.param).narrow(0, s.offset, s.length);
    torch::Tensor m = exp_avg_.narrow(0, s.shard_offset, s.length);
    torch::Tensor v = exp_avg_sq_.narrow(0, s.shard_offset, s.length);
    AdamWUpdate(p, g, m, v, lr, step_, params_[static_cast<size_t>(s.param)].decay, options_);
  }
  return Gather();
}

absl::Status ShardedAdamW::Gather() {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < layout_.chunk.size(); ++k) RETURN_IF_ERROR(GatherBucket(static_cast<int64_t>(k)));
  return absl::OkStatus();
}

// Bucket k's chunks (this rank's updated values, padding zero) gathered
// into every parameter of the bucket.
absl::Status ShardedAdamW::GatherBucket(int64_t k) {
  const std::vector<int64_t>& members = layout_.buckets[static_cast<size_t>(k)];
  const torch::Tensor& head = params_[static_cast<size_t>(members.front())].param;
  const int64_t chunk = layout_.chunk[static_cast<size_t>(k)];
  torch::Tensor mine = torch::zeros({chunk}, head.options().requires_grad(false));
  for (const ShardSegment& s : layout_.segments) {
    if (s.bucket != k) continue;
    torch::Tensor src = master_.defined() ? master_.narrow(0, s.shard_offset, s.length)
                                          : Flat(s.param).narrow(0, s.offset, s.length);
    mine.narrow(0, s.chunk_offset, s.length).copy_(src);
  }
  torch::Tensor all = torch::empty({chunk * comm_.size()}, mine.options());
  RETURN_IF_ERROR(comm_.AllGather(mine, all, absl::StrCat("updated weights of bucket ", k)));
  int64_t offset = 0;
  for (int64_t i : members) {
    torch::Tensor flat = Flat(i);
    flat.copy_(all.narrow(0, offset, flat.numel()));
    offset += flat.numel();
  }
  return absl::OkStatus();
}

int64_t ShardedAdamW::StateBytes() const {
  return exp_avg_.nbytes() + exp_avg_sq_.nbytes() + (master_.defined() ? master_.nbytes() : 0);
}

// Every rank of the optimizer's communicator writes its shard (Note
// [Optimizer state files]); with a shard of one (bf16 without ZeRO) the
// other students hold the same state and write nothing.
std::string ShardedAdamW::StateFile(int rank) const {
  return rank < comm_.size() ? ShardStateFile(rank, comm_.size()) : "";
}

std::vector<std::pair<std::string, torch::Tensor>> ShardedAdamW::StateTensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const ShardSegment& s : layout_.segments) {
    const std::string& name = params_[static_cast<size_t>(s.param)].name;
    out.emplace_back(SegmentKey("exp_avg", name, s.offset), exp_avg_.narrow(0, s.shard_offset, s.length));
    out.emplace_back(SegmentKey("exp_avg_sq", name, s.offset), exp_avg_sq_.narrow(0, s.shard_offset, s.length));
    if (master_.defined()) {
      out.emplace_back(SegmentKey("master", name, s.offset), master_.narrow(0, s.shard_offset, s.length));
    }
  }
  out.emplace_back("step", torch::tensor(step_, torch::kLong));
  return out;
}

// This rank's segments from a checkpoint of any rank count. A checkpoint
// without master weights (written with fp32 weights) starts the master from
// the restored weights.
absl::Status ShardedAdamW::LoadState(const OptimizerStateReader& reader) {
  torch::NoGradGuard no_grad;
  for (const ShardSegment& s : layout_.segments) {
    const std::string& name = params_[static_cast<size_t>(s.param)].name;
    for (auto [kind, dst] : {std::pair<const char*, torch::Tensor*>{"exp_avg", &exp_avg_},
                             {"exp_avg_sq", &exp_avg_sq_}, {"master", &master_}}) {
      if (!dst->defined()) continue;
      torch::Tensor into = dst->narrow(0, s.shard_offset, s.length);
      if (std::string(kind) == "master" && !reader.Has(kind, name)) {
        into.copy_(Flat(s.param).narrow(0, s.offset, s.length));
        continue;
      }
      ASSIGN_OR_RETURN(torch::Tensor t, reader.Read(kind, name, s.offset, s.length));
      into.copy_(t);
    }
  }
  step_ = reader.step();
  return absl::OkStatus();
}

}  // namespace distill::worker
