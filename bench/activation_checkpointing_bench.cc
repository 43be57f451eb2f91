// Step time and peak memory of a Llama student's forward + backward with and
// without activation checkpointing (worker/model/activation_checkpoint.h,
// Note [Activation checkpointing]), side by side in one run on the same
// model and batch. Memory is what LibTorch allocates on the CPU while the
// step runs (a counting allocator installed for the whole run): activations,
// logits and the parameter gradients; the weights and the batch are excluded.
// Also checks that both give the same gradients. See docs/benchmarks.md.
//
//   activation_checkpointing_bench [--hidden 512] [--intermediate 1408]
//       [--layers 8] [--heads 8] [--kv-heads 8] [--vocab 8192] [--seq 512]
//       [--batch 4] [--threads 2] [--reps 3]
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/test_util/counting_allocator.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"

namespace {

using distill::testing::CountingCpuAllocator;
using distill::worker::LlamaForCausalLM;

struct Options {
  int64_t hidden = 512, intermediate = 1408, layers = 8, heads = 8, kv_heads = 8, vocab = 8192;
  int64_t seq = 512, batch = 4;
  int threads = 2, reps = 3;
};

struct Sample {
  int64_t peak_bytes = 0;
  double seconds = 0;
};

// One forward + backward from cleared gradients; the gradients stay in the model.
Sample RunStep(LlamaForCausalLM& model, const torch::Tensor& ids, const torch::Tensor& targets,
               bool checkpointing, CountingCpuAllocator* counter) {
  model->set_activation_checkpointing(checkpointing);
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  Sample s;
  const int64_t before = counter->Reset();
  const auto start = std::chrono::steady_clock::now();
  {
    torch::Tensor loss = distill::worker::CausalLmLoss(model->forward(ids), targets);
    loss.backward();
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.peak_bytes = counter->peak() - before;
  return s;
}

std::vector<torch::Tensor> Grads(LlamaForCausalLM& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.grad().clone());
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Summary {
  double median = 0, min = 0, max = 0;
};

Summary Summarize(const std::vector<double>& v) {
  return {Median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "--hidden")
      o->hidden = std::atoll(v);
    else if (a == "--intermediate")
      o->intermediate = std::atoll(v);
    else if (a == "--layers")
      o->layers = std::atoll(v);
    else if (a == "--heads")
      o->heads = std::atoll(v);
    else if (a == "--kv-heads")
      o->kv_heads = std::atoll(v);
    else if (a == "--vocab")
      o->vocab = std::atoll(v);
    else if (a == "--seq")
      o->seq = std::atoll(v);
    else if (a == "--batch")
      o->batch = std::atoll(v);
    else if (a == "--threads")
      o->threads = std::atoi(v);
    else if (a == "--reps")
      o->reps = std::atoi(v);
    else
      return false;
  }
  return o->hidden > 0 && o->intermediate > 0 && o->layers > 0 && o->heads > 0 && o->kv_heads > 0 &&
         o->heads % o->kv_heads == 0 && o->hidden % o->heads == 0 && o->vocab > 0 && o->seq > 0 &&
         o->batch > 0 && o->threads > 0 && o->reps > 0;
}

distill::worker::ModelConfig MakeConfig(const Options& o) {
  distill::worker::ModelConfig c;
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.intermediate;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads;
  c.head_dim = o.hidden / o.heads;
  return c;
}

void PrintSummary(const char* name, const std::vector<double>& seconds,
                  const std::vector<double>& peak_mb) {
  const Summary t = Summarize(seconds), m = Summarize(peak_mb);
  std::printf("%-8s time median %.3f s [%.3f, %.3f]  peak median %.1f MB [%.1f, %.1f]\n", name,
              t.median, t.min, t.max, m.median, m.min, m.max);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: activation_checkpointing_bench [--hidden D] [--intermediate I] "
                 "[--layers L] [--heads H] [--kv-heads K] [--vocab V] [--seq T] [--batch B] "
                 "[--threads N] [--reps R]\n");
    return 2;
  }
  at::set_num_threads(o.threads);
  LlamaForCausalLM model = distill::worker::InitModel(MakeConfig(o), 0);
  model->train();
  torch::manual_seed(0);
  const torch::Tensor ids = torch::randint(0, o.vocab, {o.batch, o.seq}, torch::kLong);
  const torch::Tensor targets = torch::randint(0, o.vocab, {o.batch, o.seq}, torch::kLong);

  static CountingCpuAllocator* counter = new CountingCpuAllocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(counter, 255);

  std::printf("D=%lld I=%lld L=%lld heads=%lld/%lld V=%lld T=%lld B=%lld threads=%d reps=%d\n",
              static_cast<long long>(o.hidden), static_cast<long long>(o.intermediate),
              static_cast<long long>(o.layers), static_cast<long long>(o.heads),
              static_cast<long long>(o.kv_heads), static_cast<long long>(o.vocab),
              static_cast<long long>(o.seq), static_cast<long long>(o.batch), o.threads, o.reps);
  std::printf("%-8s %4s %12s %10s\n", "variant", "rep", "peak MB", "seconds");
  RunStep(model, ids, targets, false, counter);  // warm-up: first-touch allocations, thread pool
  std::vector<double> seconds[2], peak_mb[2];
  std::vector<torch::Tensor> grads[2];
  for (int rep = 0; rep < o.reps; ++rep) {
    // Alternate the order so that neither side always runs on a warm cache.
    for (int side = 0; side < 2; ++side) {
      const bool ckpt = (side == 0) == (rep % 2 == 1);
      const Sample s = RunStep(model, ids, targets, ckpt, counter);
      std::printf("%-8s %4d %12.1f %10.3f\n", ckpt ? "ckpt" : "plain", rep, s.peak_bytes / 1e6,
                  s.seconds);
      std::fflush(stdout);
      seconds[ckpt].push_back(s.seconds);
      peak_mb[ckpt].push_back(s.peak_bytes / 1e6);
      if (rep == 0) grads[ckpt] = Grads(model);
    }
  }
  bool equal = grads[0].size() == grads[1].size();
  for (size_t i = 0; equal && i < grads[0].size(); ++i) {
    equal = torch::equal(grads[0][i], grads[1][i]);
  }
  PrintSummary("plain", seconds[0], peak_mb[0]);
  PrintSummary("ckpt", seconds[1], peak_mb[1]);
  std::printf("ckpt / plain: time %.2fx, peak %.3fx (medians); gradients %s\n",
              Median(seconds[1]) / Median(seconds[0]), Median(peak_mb[1]) / Median(peak_mb[0]),
              equal ? "equal bit for bit" : "DIFFER");
  return equal ? 0 : 1;
}
