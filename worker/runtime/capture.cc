#include "worker/runtime/capture.h"

#include <torch/cuda.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs_util.h"
#include "common/plan.h"
#include "common/status_macros.h"
#include "worker/data/open_data.h"
#include "worker/distill/cached_teacher.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/distill/distill_trainer.h"
#include "worker/distill/teacher_cache.h"
#include "worker/model/config.h"
#include "worker/train/eval.h"
#include "worker/train/trainer.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::JobSpec;

namespace {

// Everything a capture rank holds: the teacher, the rows and the key.
struct Capture {
  torch::Device device = torch::kCPU;
  std::unique_ptr<ColocatedTeacher> teacher;
  TeacherRunConfig run;  // the job's transport (TOPK at distill.temperature)
  std::map<std::string, std::unique_ptr<SequenceData>> data;  // "train", "eval"
  TeacherCacheKey key;
  int64_t micro_batch = 1;
};

torch::Device CaptureDevice(const JobSpec& spec, int rank) {
  if (spec.train().device() == "cpu" || !torch::cuda::is_available()) return torch::kCPU;
  const int devices = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(rank % devices));
}

absl::StatusOr<Capture> Prepare(const JobSpec& spec, int rank, int world) {
  if (spec.teacher().model().empty() || spec.teacher().cache().empty()) {
    return absl::InvalidArgumentError(
        "teacher.model and teacher.cache: capture needs both (the teacher to run, the cache to "
        "fill)");
  }
  const int threads =
      spec.train().threads() > 0
          ? spec.train().threads()
          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world);
  at::set_num_threads(threads);
  Capture c;
  c.device = CaptureDevice(spec, rank);
  c.micro_batch = std::max<int64_t>(1, spec.train().micro_batch());
  const common::JobPlan plan = common::MakePlan(spec);
  ASSIGN_OR_RETURN(ModelConfig student, LoadModelConfig(plan.student.config_path));
  ASSIGN_OR_RETURN(ModelConfig tc,
                   LoadModelConfig((fs::path(plan.teacher_dir) / "config.json").string()));
  ASSIGN_OR_RETURN(
      std::vector<FeaturePairPlan> pairs,
      PlanFeaturePairs(spec.distill(), student.num_hidden_layers, tc.num_hidden_layers));
  c.run = TeacherRunFor(plan, pairs);
  c.run.transport = distill::v1::TOPK;
  CacheRows rows;
  for (const char* split : {"train", "eval"}) {
    const auto& files = std::string(split) == "train" ? spec.data().train() : spec.data().eval();
    if (files.empty()) continue;
    ASSIGN_OR_RETURN(c.data[split], OpenSequenceData({files.begin(), files.end()},
                                                     DataOptionsOf(spec.data(), threads)));
    RETURN_IF_ERROR(c.data[split]->CheckVocab(student.vocab_size));
    (std::string(split) == "train" ? rows.train : rows.eval) = c.data[split]->rows();
  }
  ASSIGN_OR_RETURN(c.key, JobCacheKey(spec, student.vocab_size, c.run.capture_layers, rows, true));
  for (int64_t l : c.key.layers) {
    if (l >= tc.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("teacher.cache_layers: ", l,
                                                     " out of range, the teacher has ",
                                                     tc.num_hidden_layers, " layers"));
    }
  }
  ASSIGN_OR_RETURN(c.teacher, ColocatedTeacher::Load(plan.teacher_dir, student, plan.student.dir,
                                                     c.device, c.run));
  if (spec.data().tokenizer() != "bytes") {
    RETURN_IF_ERROR(CheckSameTokenizer(plan.teacher_dir, TokenizerJsonPath(spec.data().tokenizer()),
                                       "data.tokenizer"));
  }
  RETURN_IF_ERROR(CheckTeacherRunConfig(c.run, tc.num_hidden_layers, student.vocab_size));
  return c;
}

// The scalars of `n` positions from logits chunk z (lse at each cached
// temperature, then for eval the target's logit), [n, m] float32.
torch::Tensor Scalars(const Capture& c, const torch::Tensor& z, const TeacherOutput& topk,
                      const torch::Tensor& targets, bool eval) {
  // The same expression as MakeTopK's lse (kd_loss.cc), for every temperature.
  const torch::Tensor zf = z.detach().narrow(1, 0, c.key.vocab).to(torch::kFloat);
  std::vector<torch::Tensor> cols;
  for (double t : c.key.temperatures) {
    cols.push_back(t == c.run.temperature ? topk.topk_lse : torch::logsumexp(zf / t, 1));
  }
  if (eval) {
    const torch::Tensor valid = targets.ne(kIgnoreTarget);
    const torch::Tensor zy = zf.gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1);
    cols.push_back(torch::where(valid, zy, torch::zeros_like(zy)));
  }
  return torch::stack(cols, 1);
}

// The teacher over rows `ids` of `split` (the first `real` kept: the rest
// pad the micro-batch), appended to *rows and *hashes.
absl::Status ForwardRows(Capture& c, const std::string& split, const std::vector<int64_t>& ids,
                         size_t real, std::vector<CacheRow>* rows, std::vector<uint64_t>* hashes) {
  const SequenceData& data = *c.data.at(split);
  TokenBatch b = MakeBatch(data, ids, c.device);
  torch::NoGradGuard no_grad;  // as ColocatedTeacher::Run
  std::map<int64_t, torch::Tensor> captured;
  LlamaForCausalLM& model = c.teacher->model();
  torch::Tensor h = model->Hidden(b.inputs, c.key.layers, &captured, b.positions);
  const int64_t L = data.seq_len(), n = h.size(0) * h.size(1), k = c.key.top_k;
  h = h.reshape({n, h.size(-1)});
  const torch::Tensor targets = b.targets.reshape({n});
  std::vector<torch::Tensor> values, topk_ids, scalars;
  const int64_t chunk = std::max<int64_t>(1, c.run.chunk_tokens);  // as BuildTeacherOutput
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t len = std::min(chunk, n - s);
    torch::Tensor z = model->Logits(h.narrow(0, s, len));
    ASSIGN_OR_RETURN(TeacherOutput part, MakeTopK(z, c.key.vocab, k, c.run.temperature));
    values.push_back(part.topk_logits);
    topk_ids.push_back(part.topk_ids);
    scalars.push_back(Scalars(c, z, part, targets.narrow(0, s, len), split == "eval"));
  }
  const torch::Tensor v = torch::cat(values).to(torch::kCPU).contiguous();
  const torch::Tensor id = torch::cat(topk_ids).to(torch::kCPU, torch::kInt).contiguous();
  const torch::Tensor x = torch::cat(scalars).to(torch::kCPU).contiguous();
  const torch::Tensor in = b.inputs.to(torch::kCPU).contiguous();
  std::vector<torch::Tensor> feats;
  for (int64_t l : c.key.layers) {
    const torch::Tensor& t = captured.at(l);
    feats.push_back(t.reshape({n, t.size(-1)}).to(torch::kCPU, torch::kFloat).contiguous());
  }
  const int64_t m = x.size(1);
  for (size_t r = 0; r < real; ++r) {
    const int64_t p0 = static_cast<int64_t>(r) * L;
    CacheRow row;
    row.topk.positions = L;
    row.topk.k = static_cast<int32_t>(k);
    row.topk.scalars = static_cast<int32_t>(m);
    row.topk.values.assign(v.data_ptr<float>() + p0 * k, v.data_ptr<float>() + (p0 + L) * k);
    row.topk.ids.assign(id.data_ptr<int32_t>() + p0 * k, id.data_ptr<int32_t>() + (p0 + L) * k);
    row.topk.extra.assign(x.data_ptr<float>() + p0 * m, x.data_ptr<float>() + (p0 + L) * m);
    for (const torch::Tensor& f : feats) {
      const int64_t d = f.size(1);
      row.features.emplace_back(f.data_ptr<float>() + p0 * d, f.data_ptr<float>() + (p0 + L) * d);
    }
    rows->push_back(std::move(row));
    hashes->push_back(RowInputHash(in.data_ptr<int64_t>() + p0, L));
  }
  return absl::OkStatus();
}

// Shard `s` of `split`: its rows in micro-batches, the last one padded with
// its last row so every forward has the online job's shape.
absl::Status CaptureShard(Capture& c, TeacherCacheWriter& writer, const CacheGeometry& g,
                          const std::string& split, int64_t s) {
  const int64_t first = s * g.shard_rows;
  const int64_t last = std::min(first + g.shard_rows, c.data.at(split)->rows());
  std::vector<CacheRow> rows;
  std::vector<uint64_t> hashes;
  for (int64_t r = first; r < last; r += c.micro_batch) {
    std::vector<int64_t> ids;
    for (int64_t i = r; i < std::min(r + c.micro_batch, last); ++i) ids.push_back(i);
    const size_t real = ids.size();
    while (static_cast<int64_t>(ids.size()) < c.micro_batch) ids.push_back(ids.back());
    RETURN_IF_ERROR(ForwardRows(c, split, ids, real, &rows, &hashes));
  }
  return writer.WriteShard(split, s, rows, hashes);
}

// Rank 0 creates (or checks) the directory before the others open it.
absl::StatusOr<std::unique_ptr<TeacherCacheWriter>> OpenWriter(const JobSpec& spec,
                                                               const Capture& c,
                                                               const CacheGeometry& g,
                                                               Communicator* world) {
  const bool rank0 = world == nullptr || world->rank() == 0;
  const std::string& dir = spec.teacher().cache();
  std::string config_json;
  absl::StatusOr<std::unique_ptr<TeacherCacheWriter>> writer = absl::UnknownError("not opened");
  if (rank0) {
    ASSIGN_OR_RETURN(config_json, common::ReadFileToString(
                                      (fs::path(spec.teacher().model()) / "config.json").string()));
    writer = TeacherCacheWriter::Open(dir, c.key, g, config_json);
  }
  if (world == nullptr || world->size() == 1) return writer;
  torch::Tensor ok = torch::tensor(std::vector<double>{rank0 && !writer.ok() ? 1.0 : 0.0});
  RETURN_IF_ERROR(world->AllReduce(ok, ReduceOp::kSum, "capture: rank 0 opened the cache"));
  if (rank0) return writer;
  if (ok.item<double>() > 0.5) {
    return absl::AbortedError(absl::StrCat("teacher.cache ", dir, ": rank 0 could not open it"));
  }
  return TeacherCacheWriter::Open(dir, c.key, g, config_json);
}

}  // namespace

absl::StatusOr<CaptureResult> RunCapture(const JobSpec& spec, Communicator* world,
                                         std::ostream& log) {
  const int rank = world ? world->rank() : 0, size = world ? world->size() : 1;
  ASSIGN_OR_RETURN(Capture c, Prepare(spec, rank, size));
  CacheGeometry g;
  g.hidden = c.teacher->config().hidden_size;
  // Whole micro-batches per shard: the last forward of a shard is the only padded one.
  g.shard_rows = std::max<int64_t>(1, 64 / c.micro_batch) * c.micro_batch;
  ASSIGN_OR_RETURN(std::unique_ptr<TeacherCacheWriter> writer, OpenWriter(spec, c, g, world));
  g = writer->geometry();  // a resumed capture keeps the directory's
  CaptureResult out;
  for (const auto& [split, key] : c.key.splits) {
    const int64_t shards = writer->shards(split);
    for (int64_t s = rank; s < shards; s += size) {
      if (writer->ShardDone(split, s)) {
        ++out.shards_kept;
        continue;
      }
      RETURN_IF_ERROR(CaptureShard(c, *writer, g, split, s));
      ++out.shards_written;
      log << absl::StrFormat("capture: %s shard %d/%d written (rank %d)", split, s + 1, shards,
                             rank)
          << std::endl;
    }
  }
  if (world && world->size() > 1) RETURN_IF_ERROR(world->Barrier("capture: every shard written"));
  for (const auto& [split, key] : c.key.splits) out.tokens += key.rows * key.seq_len;
  out.bytes = writer->bytes_on_disk();
  if (rank == 0) {
    RETURN_IF_ERROR(writer->Finish());
    log << absl::StrFormat(
               "capture done: %s, %d tokens, %d bytes on disk, %.1f B/token (%s, top-%d, %d "
               "shards written, %d kept)",
               spec.teacher().cache(), out.tokens, out.bytes,
               static_cast<double>(out.bytes) /
                   static_cast<double>(std::max<int64_t>(1, out.tokens)),
               EncodingName(c.key.encoding), c.key.top_k, out.shards_written, out.shards_kept)
        << std::endl;
  }
  return out;
}

}  // namespace distill::worker
