// The teacher cache's top-k codec (worker/distill/cache_codec.h) on real
// teacher logits: bytes per token of EXACT and COMPACT, packed and after
// zstd level 3 with its checksum (one compressed block per data row of L
// positions, as the cache writes them), at several k; and what COMPACT's
// quantization does to the TOPK KD loss (worker/distill/kd_loss.h) and its
// gradient against EXACT, at several temperatures. See docs/benchmarks.md
// "Teacher cache".
//
//   cache_codec_bench --teacher DIR --student DIR --data FILE.bin
//       [--rows 8] [--seq 512] [--ks 16,64,128] [--temperatures 1,2,4,8]
//       [--loss_tokens 1024] [--threads 2] [--random_ids]
//
// DIR: Hugging Face model directories with the same vocabulary; FILE: raw
// little-endian uint32 token ids (the rows are spread evenly over it). Each
// position carries m = |temperatures| + 1 scalars (the full row's
// log-sum-exp at each temperature and the target's logit), as a capture with
// those temperatures stores them.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "worker/distill/cache_codec.h"
#include "worker/distill/teacher_cache.h"
#include "worker/distill/kd_loss.h"
#include "worker/model/hf_io.h"

ABSL_FLAG(std::string, teacher, "", "teacher model directory (Hugging Face)");
ABSL_FLAG(std::string, student, "", "student model directory, same vocabulary");
ABSL_FLAG(std::string, data, "", "token ids, raw little-endian uint32 (.bin)");
ABSL_FLAG(int64_t, rows, 8, "data rows, spread evenly over the file");
ABSL_FLAG(int64_t, seq, 512, "positions per row (L)");
ABSL_FLAG(std::string, ks, "16,64,128", "top-k sizes");
ABSL_FLAG(std::string, temperatures, "1,2,4,8", "temperatures (log-sum-exp scalars; loss)");
ABSL_FLAG(int64_t, loss_tokens, 1024, "positions of the loss comparison (from the first rows)");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(bool, random_ids, false,
          "replace each position's ids by k distinct uniform random ids (values kept): the "
          "sizes of a teacher whose top-k ids are unpredictable, an upper bound on their cost");

namespace {

using distill::worker::CacheEncoding;
using distill::worker::TopKBlock;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename T>
std::vector<T> ParseList(const std::string& s) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(s, ','))
    out.push_back(static_cast<T>(std::stod(std::string(part))));
  return out;
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

// `rows` windows of seq + 1 tokens, evenly spread over the file: [rows, seq + 1].
torch::Tensor ReadRows(const std::string& path, int64_t rows, int64_t seq) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int64_t tokens = static_cast<int64_t>(bytes.size() / 4);
  if (!in.good() && !in.eof()) Check(absl::NotFoundError(path), "data");
  if (tokens < rows * (seq + 1)) Check(absl::InvalidArgumentError(path + ": too short"), "data");
  torch::Tensor all = torch::from_blob(bytes.data(), {tokens}, torch::kInt32).to(torch::kLong);
  torch::Tensor out = torch::empty({rows, seq + 1}, torch::kLong);
  const int64_t stride = (tokens - (seq + 1)) / std::max<int64_t>(rows - 1, 1);
  for (int64_t r = 0; r < rows; ++r) out[r].copy_(all.narrow(0, r * stride, seq + 1));
  return out;
}

// One row's teacher output: the top k_max (values descending), the scalars.
struct RowTopK {
  torch::Tensor values, ids, scalars;  // [L, k_max] float, [L, k_max] long, [L, m] float
};

RowTopK TeacherRow(distill::worker::LlamaForCausalLM& teacher, const torch::Tensor& row,
                   int64_t k_max, const std::vector<double>& temps) {
  torch::NoGradGuard no_grad;
  const int64_t seq = row.size(0) - 1;
  torch::Tensor z = teacher->forward(row.narrow(0, 0, seq).unsqueeze(0))[0];  // [L, V]
  auto [values, ids] = z.topk(k_max, 1, true, true);
  std::vector<torch::Tensor> scalars;
  for (double t : temps) scalars.push_back(torch::logsumexp(z / t, 1));
  scalars.push_back(z.gather(1, row.narrow(0, 1, seq).unsqueeze(1)).squeeze(1));
  return {values.contiguous(), ids.contiguous(), torch::stack(scalars, 1).contiguous()};
}

// k distinct ids drawn uniformly from [0, vocab) for each of n positions.
std::vector<int32_t> RandomIds(int64_t n, int32_t k, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> draw(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids;
  for (int64_t p = 0; p < n; ++p) {
    std::unordered_set<int32_t> row;
    while (static_cast<int32_t>(row.size()) < k) {
      const int32_t id = draw(rng);
      if (row.insert(id).second) ids.push_back(id);
    }
  }
  return ids;
}

TopKBlock MakeBlock(const RowTopK& row, int32_t k, int64_t vocab, uint64_t seed) {
  TopKBlock b;
  b.positions = row.values.size(0);
  b.k = k;
  b.scalars = static_cast<int32_t>(row.scalars.size(1));
  torch::Tensor v = row.values.narrow(1, 0, k).contiguous();
  torch::Tensor i = row.ids.narrow(1, 0, k).to(torch::kInt).contiguous();
  b.values.assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
  b.ids.assign(i.data_ptr<int32_t>(), i.data_ptr<int32_t>() + i.numel());
  if (absl::GetFlag(FLAGS_random_ids)) b.ids = RandomIds(b.positions, k, vocab, seed);
  b.extra.assign(row.scalars.data_ptr<float>(),
                 row.scalars.data_ptr<float>() + row.scalars.numel());
  return b;
}

size_t Zstd(const std::string& bytes) {  // the frame the cache writes for a row
  absl::StatusOr<std::string> frame = distill::worker::CompressCacheFrame(bytes);
  Check(frame.status(), "zstd");
  return frame->size();
}

struct SizeStats {
  double packed = 0, zstd = 0, zmin = 1e30, zmax = 0, enc_s = 0, dec_s = 0;
  int64_t tokens = 0;
};

// Encodes, compresses and decodes one row; EXACT must come back bit for bit.
TopKBlock Measure(const TopKBlock& b, CacheEncoding e, int64_t vocab, SizeStats* s) {
  std::string bytes;
  double t0 = Now();
  Check(distill::worker::EncodeTopK(b, e, vocab, &bytes), "encode");
  s->enc_s += Now() - t0;
  t0 = Now();
  auto d = distill::worker::DecodeTopK(bytes, e, b.positions, b.k, b.scalars, vocab);
  s->dec_s += Now() - t0;
  Check(d.status(), "decode");
  if (e == CacheEncoding::kExact && (d->values != b.values || d->ids != b.ids)) {
    Check(absl::InternalError("EXACT did not round trip"), "decode");
  }
  const double per_token = static_cast<double>(Zstd(bytes)) / b.positions;
  s->packed += static_cast<double>(bytes.size());
  s->zstd += per_token * b.positions;
  s->zmin = std::min(s->zmin, per_token);
  s->zmax = std::max(s->zmax, per_token);
  s->tokens += b.positions;
  return *std::move(d);
}

// The first `n` positions of decoded blocks as the TOPK transport at T.
distill::worker::TeacherOutput Transport(const std::vector<TopKBlock>& blocks, int64_t n, int32_t k,
                                         int32_t m, int temp_index) {
  std::vector<float> values, scalars;
  std::vector<int64_t> ids;
  for (const TopKBlock& b : blocks) {
    values.insert(values.end(), b.values.begin(), b.values.end());
    ids.insert(ids.end(), b.ids.begin(), b.ids.end());
    scalars.insert(scalars.end(), b.extra.begin(), b.extra.end());
  }
  distill::worker::TeacherOutput t;
  t.transport = distill::v1::TOPK;
  t.topk_logits = torch::tensor(values).view({-1, k}).narrow(0, 0, n);
  t.topk_ids = torch::tensor(ids).view({-1, k}).narrow(0, 0, n);
  t.topk_lse = torch::tensor(scalars).view({-1, m}).narrow(0, 0, n).select(1, temp_index);
  t.topk_lse = t.topk_lse.contiguous();
  return t;
}

struct LossAndGrad {
  double loss;
  torch::Tensor grad_h, grad_w;
};

LossAndGrad KdAt(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                 const distill::worker::TeacherOutput& teacher, double temperature) {
  distill::worker::KdLossConfig c;
  c.loss = distill::v1::FORWARD_KL;
  c.temperature = temperature;
  c.alpha = 1.0;  // the soft loss alone: CE does not depend on the cache
  c.t2_scale = true;
  torch::Tensor hh = h.detach().clone().requires_grad_(true);
  torch::Tensor ww = w.detach().clone().requires_grad_(true);
  auto r = distill::worker::KdLoss(hh, ww, targets, teacher, c);
  Check(r.status(), "KdLoss");
  r->total.backward();
  return {r->total.item<double>(), hh.grad(), ww.grad()};
}

double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const auto ks = ParseList<int32_t>(absl::GetFlag(FLAGS_ks));
  const auto temps = ParseList<double>(absl::GetFlag(FLAGS_temperatures));
  const int64_t seq = absl::GetFlag(FLAGS_seq), rows = absl::GetFlag(FLAGS_rows);
  auto teacher = distill::worker::LoadHfModel(absl::GetFlag(FLAGS_teacher));
  Check(teacher.status(), "teacher");
  auto student = distill::worker::LoadHfModel(absl::GetFlag(FLAGS_student));
  Check(student.status(), "student");
  (*teacher)->eval();
  (*student)->eval();
  const int64_t vocab = (*teacher)->config().vocab_size;
  const int32_t k_max = *std::max_element(ks.begin(), ks.end());
  const auto m = static_cast<int32_t>(temps.size() + 1);
  torch::Tensor data = ReadRows(absl::GetFlag(FLAGS_data), rows, seq);
  std::printf("teacher %s, student %s, V = %lld, %lld rows of L = %lld, m = %d scalars\n",
              absl::GetFlag(FLAGS_teacher).c_str(), absl::GetFlag(FLAGS_student).c_str(),
              static_cast<long long>(vocab), static_cast<long long>(rows),
              static_cast<long long>(seq), m);

  std::vector<std::vector<TopKBlock>> exact(ks.size()), compact(ks.size());
  std::vector<SizeStats> exact_stats(ks.size()), compact_stats(ks.size());
  for (int64_t r = 0; r < rows; ++r) {
    const RowTopK row = TeacherRow(*teacher, data[r], k_max, temps);
    for (size_t i = 0; i < ks.size(); ++i) {
      const TopKBlock b = MakeBlock(row, ks[i], vocab, static_cast<uint64_t>(r));
      exact[i].push_back(Measure(b, CacheEncoding::kExact, vocab, &exact_stats[i]));
      compact[i].push_back(Measure(b, CacheEncoding::kCompact, vocab, &compact_stats[i]));
    }
  }
  std::printf(
      "\n|   k | encoding | packed B/token | zstd B/token (rows: min..max) | zstd B/logit |"
      " encode MB/s | decode MB/s |\n");
  for (size_t i = 0; i < ks.size(); ++i) {
    const std::pair<const char*, SizeStats> both[] = {{"exact", exact_stats[i]},
                                                      {"compact", compact_stats[i]}};
    for (const auto& [name, s] : both) {
      const double t = static_cast<double>(s.tokens);
      std::printf("| %3d | %-8s | %14.1f | %10.1f (%.1f..%.1f) | %12.2f | %11.0f | %11.0f |\n",
                  ks[i], name, s.packed / t, s.zstd / t, s.zmin, s.zmax, s.zstd / t / ks[i],
                  s.packed / s.enc_s / 1e6, s.packed / s.dec_s / 1e6);
    }
  }

  // The loss: the student's final hidden state and lm_head on the first rows.
  const int64_t n = std::min(absl::GetFlag(FLAGS_loss_tokens), rows * seq);
  torch::Tensor h, targets;
  {
    torch::NoGradGuard no_grad;
    const int64_t need = (n + seq - 1) / seq;
    torch::Tensor in = data.narrow(0, 0, need);
    h = (*student)->Hidden(in.narrow(1, 0, seq)).reshape({-1, (*student)->config().hidden_size});
    h = h.narrow(0, 0, n).contiguous();
    targets = in.narrow(1, 1, seq).reshape({-1}).narrow(0, 0, n).contiguous();
  }
  const torch::Tensor w = (*student)->LmHeadWeight().detach();
  std::printf("\nKD loss (forward KL, T^2, alpha = 1) on %lld positions, COMPACT against EXACT\n",
              static_cast<long long>(n));
  std::printf(
      "|   k |  T | loss exact | loss compact | rel. loss diff | rel. grad_h diff |"
      " rel. grad_W diff |\n");
  for (size_t i = 0; i < ks.size(); ++i) {
    for (size_t t = 0; t < temps.size(); ++t) {
      const auto e = KdAt(h, w, targets, Transport(exact[i], n, ks[i], m, t), temps[t]);
      const auto c = KdAt(h, w, targets, Transport(compact[i], n, ks[i], m, t), temps[t]);
      std::printf("| %3d | %2g | %10.5f | %12.5f | %14.2e | %16.2e | %16.2e |\n", ks[i], temps[t],
                  e.loss, c.loss, std::abs(c.loss - e.loss) / std::abs(e.loss),
                  RelDiff(c.grad_h, e.grad_h), RelDiff(c.grad_w, e.grad_w));
    }
  }
  return 0;
}
