#include "worker/distill/cached_teacher.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/data/open_data.h"
#include "worker/model/config.h"
#include "worker/train/trainer.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::JobSpec;

namespace {

absl::StatusOr<CacheSplitKey> SplitKey(const google::protobuf::RepeatedPtrField<std::string>& files,
                                       const DataOptions& o, int64_t rows) {
  CacheSplitKey k;
  for (const std::string& f : files) {
    ASSIGN_OR_RETURN(std::string sha, Sha256File(f));
    k.files.emplace_back(f, sha);
  }
  k.format = o.format;
  k.loss_on = o.loss_on;
  k.overflow = o.overflow;
  k.packing = o.pack;
  k.text_field = o.text_field;
  k.seq_len = o.seq_len;
  k.rows = rows;
  return k;
}

// sha256 of config.json and of every weight file (*.safetensors and the
// sharded index) of the teacher directory.
absl::Status HashTeacher(const std::string& dir, TeacherCacheKey* key) {
  ASSIGN_OR_RETURN(key->teacher_config, Sha256File((fs::path(dir) / "config.json").string()));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".safetensors") == std::string::npos) continue;
    ASSIGN_OR_RETURN(key->teacher_weights[name], Sha256File(e.path().string()));
  }
  if (ec) return absl::NotFoundError(absl::StrCat("teacher.model ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// Index of `t` among the cached temperatures (CheckCacheKey made sure it is one).
size_t TemperatureIndex(const TeacherCacheKey& key, double t) {
  return static_cast<size_t>(std::find(key.temperatures.begin(), key.temperatures.end(), t) -
                             key.temperatures.begin());
}

}  // namespace

absl::StatusOr<TeacherCacheKey> JobCacheKey(const JobSpec& spec, int64_t vocab,
                                            const std::vector<int64_t>& layers, CacheRows rows,
                                            bool capture) {
  TeacherCacheKey key;
  const auto& t = spec.teacher();
  if (capture) RETURN_IF_ERROR(HashTeacher(t.model(), &key));
  const std::string& tokenizer = spec.data().tokenizer();
  if (tokenizer == "bytes") {
    key.tokenizer = "bytes";
  } else {
    ASSIGN_OR_RETURN(key.tokenizer, Sha256File(TokenizerJsonPath(tokenizer)));
  }
  const DataOptions o = DataOptionsOf(spec.data(), 1);
  ASSIGN_OR_RETURN(key.splits["train"], SplitKey(spec.data().train(), o, rows.train));
  if (spec.data().eval_size() > 0) {
    ASSIGN_OR_RETURN(key.splits["eval"], SplitKey(spec.data().eval(), o, rows.eval));
  }
  key.vocab = vocab;
  key.top_k = spec.distill().top_k();
  key.encoding =
      t.cache_encoding() == distill::v1::COMPACT ? CacheEncoding::kCompact : CacheEncoding::kExact;
  std::set<double> temps = {spec.distill().temperature()};
  if (capture || spec.data().eval_size() > 0) temps.insert(1.0);
  if (capture) temps.insert(t.cache_temperatures().begin(), t.cache_temperatures().end());
  key.temperatures.assign(temps.begin(), temps.end());
  std::set<int64_t> ls(layers.begin(), layers.end());
  if (capture) ls.insert(t.cache_layers().begin(), t.cache_layers().end());
  key.layers.assign(ls.begin(), ls.end());
  return key;
}

absl::StatusOr<ModelConfig> CachedTeacher::LoadConfig(const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<TeacherCache> cache, TeacherCache::Open(dir));
  return LoadModelConfig(cache->teacher_config_path());
}

absl::StatusOr<std::unique_ptr<CachedTeacher>> CachedTeacher::Open(const JobSpec& spec,
                                                                   const TeacherSetup& setup) {
  const std::string& dir = spec.teacher().cache();
  ASSIGN_OR_RETURN(std::unique_ptr<TeacherCache> cache, TeacherCache::Open(dir));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(cache->teacher_config_path()));
  ASSIGN_OR_RETURN(TeacherCacheKey job, JobCacheKey(spec, setup.student.vocab_size,
                                                    setup.run.capture_layers, CacheRows(), false));
  // A reader learns the rows from the cache; each row's input hash is checked when read.
  for (auto& [name, split] : job.splits) {
    auto it = cache->key().splits.find(name);
    if (it != cache->key().splits.end()) split.rows = it->second.rows;
  }
  RETURN_IF_ERROR(CheckCacheKey(dir, job, cache->key(), /*exact=*/false));
  return std::unique_ptr<CachedTeacher>(
      new CachedTeacher(std::move(cache), std::move(config), setup.run));
}

std::string CachedTeacher::Describe() const {
  return absl::StrFormat("cache %s (%s, top-%d, %d tokens)", cache_->dir(),
                         EncodingName(cache_->key().encoding), cache_->key().top_k,
                         cache_->tokens());
}

absl::StatusOr<CachedTeacher::Rows> CachedTeacher::Read(const std::string& split,
                                                        const TokenBatch& batch, size_t t) {
  const TeacherCacheKey& key = cache_->key();
  const int64_t b = batch.inputs.size(0), L = batch.inputs.size(1), k = key.top_k;
  if (static_cast<int64_t>(batch.rows.size()) != b) {
    return absl::InvalidArgumentError(
        "the cached teacher needs the batch's row indices (TokenBatch::rows)");
  }
  const torch::Tensor inputs = batch.inputs.to(torch::kCPU).contiguous();
  const int32_t m = ScalarsPerPosition(key, split);
  const int64_t d = cache_->geometry().hidden;
  torch::Tensor values = torch::empty({b * L, k}, torch::kFloat);
  torch::Tensor ids = torch::empty({b * L, k}, torch::kLong);
  torch::Tensor lse = torch::empty({b * L}, torch::kFloat);
  torch::Tensor target = torch::empty({b * L}, torch::kFloat);
  std::vector<torch::Tensor> features;
  for (size_t l = 0; l < key.layers.size(); ++l) features.push_back(torch::empty({b * L, d}));
  Rows out;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t* in = inputs.data_ptr<int64_t>() + i * L;
    int64_t bytes = 0;
    ASSIGN_OR_RETURN(CacheRow row, cache_->ReadRow(split, batch.rows[static_cast<size_t>(i)],
                                                   RowInputHash(in, L), &bytes));
    out.batch.bytes += bytes;
    std::copy(row.topk.values.begin(), row.topk.values.end(), values.data_ptr<float>() + i * L * k);
    int64_t* id = ids.data_ptr<int64_t>() + i * L * k;
    for (size_t j = 0; j < row.topk.ids.size(); ++j) id[j] = row.topk.ids[j];
    for (int64_t p = 0; p < L; ++p) {
      lse.data_ptr<float>()[i * L + p] = row.topk.extra[static_cast<size_t>(p * m) + t];
      if (split == "eval") {
        target.data_ptr<float>()[i * L + p] = row.topk.extra[static_cast<size_t>(p * m + m - 1)];
      }
    }
    for (size_t l = 0; l < features.size(); ++l) {
      std::copy(row.features[l].begin(), row.features[l].end(),
                features[l].data_ptr<float>() + i * L * d);
    }
  }
  const torch::Device device = batch.inputs.device();
  TeacherOutput& o = out.batch.output;
  o.transport = distill::v1::TOPK;
  o.topk_logits = values.to(device);
  o.topk_ids = ids.to(device);
  o.topk_lse = lse.to(device);
  for (size_t l = 0; l < features.size(); ++l) {
    out.batch.features[key.layers[l]] = features[l].to(device);
  }
  out.target_logits = target.to(device);
  return out;
}

absl::StatusOr<TeacherBatch> CachedTeacher::Next(const TokenBatch& batch) {
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(Rows rows,
                   Read("train", batch, TemperatureIndex(cache_->key(), run_.temperature)));
  // Only the layers the job maps travel on (the cache may hold more).
  std::map<int64_t, torch::Tensor> features;
  for (int64_t l : run_.capture_layers) features[l] = rows.batch.features.at(l);
  rows.batch.features = std::move(features);
  rows.batch.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::move(rows.batch);
}

namespace {

// Student-vs-cached-teacher sums over counted targets, in double.
struct CachedSums {
  double ce_s = 0, ce_t = 0, kl = 0, agree = 0;
  int64_t count = 0;

  // ls: the student's log-softmax rows [n, V]; y [n]; the teacher's top-k
  // values and ids [n, k], lse at T = 1 and target logits [n].
  void Add(const torch::Tensor& ls, const torch::Tensor& y, const torch::Tensor& values,
           const torch::Tensor& ids, const torch::Tensor& lse, const torch::Tensor& zy) {
    ce_s -= ls.gather(1, y.unsqueeze(1)).sum().item<double>();
    ce_t += (lse - zy).to(torch::kDouble).sum().item<double>();
    const torch::Tensor lp = values - lse.unsqueeze(1);  // log p over the k ids
    const torch::Tensor lq = ls.gather(1, ids);
    const torch::Tensor p_tail = (1 - lp.exp().sum(1)).clamp(1e-12, 1);
    const torch::Tensor q_tail = (1 - lq.exp().sum(1)).clamp(1e-12, 1);
    kl += ((lp.exp() * (lp - lq)).sum(1) + p_tail * (p_tail.log() - q_tail.log()))
              .to(torch::kDouble)
              .sum()
              .item<double>();
    agree += ls.argmax(1).eq(ids.select(1, 0)).sum().item<double>();
    count += y.size(0);
  }
};

}  // namespace

absl::StatusOr<TeacherEvalResult> CachedTeacher::Evaluate(LlamaForCausalLM& student,
                                                          const SequenceData& data, int64_t batch,
                                                          int64_t max_rows, int64_t chunk_tokens,
                                                          const torch::Device& device,
                                                          EvalShard shard) {
  const TeacherCacheKey& key = cache_->key();
  auto eval = key.splits.find("eval");
  if (eval == key.splits.end() || eval->second.rows != data.rows()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "teacher.cache ", cache_->dir(), ": data.eval (", data.rows(), " rows) is not cached"));
  }
  if (batch < 1 || chunk_tokens < 1)
    return absl::InvalidArgumentError("eval: batch and chunk_tokens must be >= 1");
  const int64_t rows = max_rows > 0 ? std::min(data.rows(), max_rows) : data.rows();
  const size_t t1 = TemperatureIndex(key, 1.0);
  torch::InferenceMode guard;
  const bool was_training = student->is_training();
  student->eval();
  CachedSums sums;
  std::vector<int64_t> ids;
  auto flush = [&]() -> absl::Status {
    TokenBatch b = MakeBatch(data, ids, device);
    ASSIGN_OR_RETURN(Rows t, Read("eval", b, t1));
    torch::Tensor hs = student->Hidden(b.inputs, {}, nullptr, b.positions);
    hs = CountedOnly(b, hs.reshape({-1, hs.size(-1)}));
    const torch::Tensor y = CountedOnly(b, b.targets.reshape({-1}));
    const TeacherOutput& o = t.batch.output;
    const torch::Tensor v = CountedOnly(b, o.topk_logits), id = CountedOnly(b, o.topk_ids);
    const torch::Tensor lse = CountedOnly(b, o.topk_lse), zy = CountedOnly(b, t.target_logits);
    for (int64_t c = 0; c < y.size(0); c += chunk_tokens) {
      const int64_t len = std::min(chunk_tokens, y.size(0) - c);
      torch::Tensor ls =
          torch::log_softmax(student->Logits(hs.narrow(0, c, len)).to(torch::kFloat), -1);
      sums.Add(ls, y.narrow(0, c, len), v.narrow(0, c, len), id.narrow(0, c, len),
               lse.narrow(0, c, len), zy.narrow(0, c, len));
    }
    ids.clear();
    return absl::OkStatus();
  };
  absl::Status st;
  for (int64_t i = shard.rank; i < rows && st.ok(); i += std::max(1, shard.world)) {
    ids.push_back(i);
    if (static_cast<int64_t>(ids.size()) == batch) st = flush();
  }
  if (st.ok() && !ids.empty()) st = flush();
  if (was_training) student->train();
  RETURN_IF_ERROR(st);
  TeacherEvalResult r;
  r.student = MeanEvalResult(sums.ce_s, sums.count);
  r.teacher = MeanEvalResult(sums.ce_t, sums.count);
  const double n = static_cast<double>(std::max<int64_t>(1, sums.count));
  r.kl = sums.kl / n;
  r.top1_agreement = sums.agree / n;
  return r;
}

}  // namespace distill::worker
