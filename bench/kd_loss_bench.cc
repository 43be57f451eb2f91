// Peak memory and time of the chunked KD loss (worker/distill/kd_loss.h,
// HIDDEN transport, forward + backward) against the naive LibTorch way that
// materialises the [N, V] logits and probabilities of both models, on the
// same inputs in one run. Memory is what LibTorch allocates on the CPU (a
// counting allocator installed for the whole run); inputs are excluded, the
// gradients are included on both sides. Also checks that both give the same
// loss and gradients. See docs/benchmarks.md.
//
//   kd_loss_bench [--tokens 4096] [--vocab 32000] [--dim 512] [--chunk 128]
//                 [--threads 2] [--reps 2] [--skip-naive]
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/test_util/counting_allocator.h"
#include "worker/distill/kd_loss.h"

namespace {

using distill::worker::KdLossConfig;
using distill::worker::TeacherOutput;

using distill::testing::CountingCpuAllocator;

struct Options {
  int64_t tokens = 4096, vocab = 32000, dim = 512, chunk = 128;
  int threads = 2, reps = 2;
  bool naive = true;
};

struct Inputs {
  torch::Tensor h, w, targets, teacher_hidden, teacher_head;
};

struct Result {
  int64_t peak_bytes = 0;
  double seconds = 0;
  double loss = 0;
  torch::Tensor grad_h, grad_w;
};

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Forward KL at T with T^2, mixed with CE by alpha: the textbook way.
Result Naive(const Inputs& in, const KdLossConfig& c, CountingCpuAllocator* counter) {
  torch::Tensor h = in.h.clone().requires_grad_(true);
  torch::Tensor w = in.w.clone().requires_grad_(true);
  Result r;
  const int64_t before = counter->Reset();
  const auto start = std::chrono::steady_clock::now();
  {
    torch::Tensor z_s = torch::mm(h, w.t());
    torch::Tensor p;
    {
      torch::NoGradGuard no_grad;
      p = torch::softmax(torch::mm(in.teacher_hidden, in.teacher_head.t()) / c.temperature, 1);
    }
    torch::Tensor log_q = torch::log_softmax(z_s / c.temperature, 1);
    torch::Tensor kd = torch::kl_div(log_q, p, at::Reduction::None).sum(1).mean() *
                       (c.temperature * c.temperature);
    torch::Tensor ce = torch::nn::functional::cross_entropy(z_s, in.targets);
    torch::Tensor total = c.alpha * kd + (1.0 - c.alpha) * ce;
    total.backward();
    r.loss = total.item<double>();
  }
  r.seconds = Seconds(start);
  r.peak_bytes = counter->peak() - before;
  r.grad_h = h.grad();
  r.grad_w = w.grad();
  return r;
}

Result Chunked(const Inputs& in, const KdLossConfig& c, CountingCpuAllocator* counter) {
  torch::Tensor h = in.h.clone().requires_grad_(true);
  torch::Tensor w = in.w.clone().requires_grad_(true);
  TeacherOutput teacher;
  teacher.transport = distill::v1::HIDDEN;
  teacher.hidden = in.teacher_hidden;
  teacher.lm_head = in.teacher_head;
  Result r;
  const int64_t before = counter->Reset();
  const auto start = std::chrono::steady_clock::now();
  {
    auto loss = distill::worker::KdLoss(h, w, in.targets, teacher, c);
    if (!loss.ok()) {
      std::fprintf(stderr, "KdLoss: %s\n", loss.status().ToString().c_str());
      std::exit(1);
    }
    loss->total.backward();
    r.loss = loss->total.item<double>();
  }
  r.seconds = Seconds(start);
  r.peak_bytes = counter->peak() - before;
  r.grad_h = h.grad();
  r.grad_w = w.grad();
  return r;
}

double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--skip-naive") {
      o->naive = false;
      continue;
    }
    if ((v = next()) == nullptr) return false;
    if (a == "--tokens")
      o->tokens = std::atoll(v);
    else if (a == "--vocab")
      o->vocab = std::atoll(v);
    else if (a == "--dim")
      o->dim = std::atoll(v);
    else if (a == "--chunk")
      o->chunk = std::atoll(v);
    else if (a == "--threads")
      o->threads = std::atoi(v);
    else if (a == "--reps")
      o->reps = std::atoi(v);
    else
      return false;
  }
  return o->tokens > 0 && o->vocab > 0 && o->dim > 0 && o->chunk > 0 && o->threads > 0 &&
         o->reps > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: kd_loss_bench [--tokens N] [--vocab V] [--dim D] [--chunk C] [--threads "
                 "T] [--reps R] "
                 "[--skip-naive]\n");
    return 2;
  }
  at::set_num_threads(o.threads);
  torch::manual_seed(0);
  Inputs in;
  in.h = torch::randn({o.tokens, o.dim});
  in.w = torch::randn({o.vocab, o.dim}) / std::sqrt(static_cast<double>(o.dim));
  in.targets = torch::randint(0, o.vocab, {o.tokens}, torch::kLong);
  in.teacher_hidden = torch::randn({o.tokens, o.dim});
  in.teacher_head = torch::randn({o.vocab, o.dim}) / std::sqrt(static_cast<double>(o.dim));
  KdLossConfig config;  // forward KL, T = 2, alpha = 0.5, T^2
  config.chunk_tokens = o.chunk;

  static CountingCpuAllocator* counter = new CountingCpuAllocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(counter, 255);

  const double nv_bytes = static_cast<double>(o.tokens) * static_cast<double>(o.vocab) * 4.0;
  std::printf("N=%lld V=%lld d=%lld chunk=%lld threads=%d; one [N, V] fp32 tensor = %.1f MB\n",
              static_cast<long long>(o.tokens), static_cast<long long>(o.vocab),
              static_cast<long long>(o.dim), static_cast<long long>(o.chunk), o.threads,
              nv_bytes / 1e6);
  std::printf("%-8s %4s %12s %10s %12s %10s\n", "variant", "rep", "peak MB", "/ (N*V*4)", "seconds",
              "loss");
  Result best_naive, best_chunked;
  for (int rep = 0; rep < o.reps; ++rep) {
    // Alternate the order so that neither side always runs on a warm cache.
    for (int side = 0; side < 2; ++side) {
      const bool naive = (side == 0) == (rep % 2 == 0);
      if (naive && !o.naive) continue;
      Result r = naive ? Naive(in, config, counter) : Chunked(in, config, counter);
      std::printf("%-8s %4d %12.1f %10.3f %12.2f %10.6f\n", naive ? "naive" : "chunked", rep,
                  r.peak_bytes / 1e6, r.peak_bytes / nv_bytes, r.seconds, r.loss);
      std::fflush(stdout);
      Result& best = naive ? best_naive : best_chunked;
      if (!best.grad_h.defined() || r.seconds < best.seconds) best = std::move(r);
    }
  }
  std::printf("chunked: peak %.1f MB = %.3fx one [N, V] fp32 tensor, best %.2f s\n",
              best_chunked.peak_bytes / 1e6, best_chunked.peak_bytes / nv_bytes,
              best_chunked.seconds);
  if (o.naive) {
    std::printf("naive:   peak %.1f MB = %.3fx one [N, V] fp32 tensor, best %.2f s\n",
                best_naive.peak_bytes / 1e6, best_naive.peak_bytes / nv_bytes, best_naive.seconds);
    std::printf(
        "chunked / naive: peak %.3fx, time %.2fx; loss rel diff %.2e, grad_h %.2e, grad_w %.2e\n",
        static_cast<double>(best_chunked.peak_bytes) / static_cast<double>(best_naive.peak_bytes),
        best_chunked.seconds / best_naive.seconds,
        std::abs(best_chunked.loss - best_naive.loss) / best_naive.loss,
        RelDiff(best_chunked.grad_h, best_naive.grad_h),
        RelDiff(best_chunked.grad_w, best_naive.grad_w));
  }
  return 0;
}
