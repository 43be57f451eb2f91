// train_bench: training tokens/s of the C++ trainer's step on a randomly
// initialised model and random token batches (fixed seed). The Python side is
// bench/python_train.py; bench/run_train_bench.sh runs both side by side.
//
// The timed step mirrors RunFinetune (worker/train/trainer.cc) with
// grad_accum = 1: reseed, learning rate, zero grad, forward, CausalLmLoss,
// backward, ClipGradNorm, AdamW::Step, loss.item(). Prints one JSON line.
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_format.h"
#include "worker/model/config.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/model/lora.h"
#include "worker/train/optimizer.h"

namespace distill::worker {
namespace {

using Clock = std::chrono::steady_clock;

// The same hyperparameters as bench/python_train.py.
constexpr double kLr = 1e-4;
constexpr double kWeightDecay = 0.1;
constexpr double kClip = 1.0;
constexpr uint64_t kSeed = 1234;

struct BenchOptions {
  std::string config;     // HF config.json of the model
  int64_t seq_len = 128;  // tokens per sequence
  int64_t batch = 8;      // sequences per step
  int64_t steps = 20;     // timed steps
  int64_t warmup = 3;     // untimed steps before
  int threads = 2;        // intra-op threads (at::set_num_threads)
  bool lora = false;      // LoRA r=8 on q_proj/v_proj, base frozen
  bool profile = false;   // per-op self-time table of the timed steps on stderr
};

// --profile: self time per ATen op / autograd node, from RecordFunction
// callbacks (plain function pointers, hence the file-level state). Ops run on
// the training thread (CPU autograd runs backward on the caller's thread).
class OpProfiler {
 public:
  OpProfiler() {
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&Start, &End)
            .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  }
  ~OpProfiler() { at::removeCallback(handle_); }
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // The `top` ops by self time, per step, to stderr.
  static void Print(int64_t steps, size_t top) {
    std::vector<std::pair<std::string, Stat>> rows(Stats().begin(), Stats().end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
    double total = 0;
    for (const auto& r : rows) total += r.second.self_us;
    std::fprintf(stderr, "%-44s %10s %7s %8s\n", "op (self time per step)", "ms", "%", "calls");
    for (size_t i = 0; i < std::min(top, rows.size()); ++i) {
      const Stat& st = rows[i].second;
      std::fprintf(stderr, "%-44.44s %10.3f %6.1f%% %8.1f\n", rows[i].first.c_str(),
                   st.self_us / 1e3 / static_cast<double>(steps), 100.0 * st.self_us / total,
                   static_cast<double>(st.calls) / static_cast<double>(steps));
    }
    std::fprintf(stderr, "%-44s %10.3f\n", "total profiled",
                 total / 1e3 / static_cast<double>(steps));
  }

 private:
  struct Stat {
    double self_us = 0;
    int64_t calls = 0;
  };
  struct Frame {
    Clock::time_point start;
    double child_us = 0;
  };
  static std::unordered_map<std::string, Stat>& Stats() {
    static auto* stats = new std::unordered_map<std::string, Stat>();
    return *stats;
  }
  static std::vector<Frame>& Stack() {
    static thread_local std::vector<Frame> stack;
    return stack;
  }
  static std::unique_ptr<at::ObserverContext> Start(const at::RecordFunction&) {
    Stack().push_back({Clock::now(), 0.0});
    return nullptr;
  }
  static void End(const at::RecordFunction& fn, at::ObserverContext*) {
    std::vector<Frame>& stack = Stack();
    if (stack.empty()) return;
    const Frame f = stack.back();
    stack.pop_back();
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - f.start).count();
    if (!stack.empty()) stack.back().child_us += us;
    Stat& st = Stats()[fn.name()];
    st.self_us += us - f.child_us;
    ++st.calls;
  }

  at::CallbackHandle handle_;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "train_bench: %s\nusage: train_bench --config CONFIG.json [--seq-len L] [--batch B] "
               "[--steps N] [--warmup W] [--threads T] [--lora] [--profile]\n",
               why);
  std::exit(2);
}

BenchOptions ParseArgs(int argc, char** argv) {
  BenchOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--lora") {
      o.lora = true;
      continue;
    }
    if (arg == "--profile") {
      o.profile = true;
      continue;
    }
    if (i + 1 >= argc) Usage(("missing value for " + arg).c_str());
    const char* value = argv[++i];
    if (arg == "--config") {
      o.config = value;
    } else if (arg == "--seq-len") {
      o.seq_len = std::atoll(value);
    } else if (arg == "--batch") {
      o.batch = std::atoll(value);
    } else if (arg == "--steps") {
      o.steps = std::atoll(value);
    } else if (arg == "--warmup") {
      o.warmup = std::atoll(value);
    } else if (arg == "--threads") {
      o.threads = std::atoi(value);
    } else {
      Usage(("unknown flag " + arg).c_str());
    }
  }
  if (o.config.empty()) Usage("--config is required");
  if (o.seq_len < 1 || o.batch < 1 || o.steps < 1 || o.warmup < 0 || o.threads < 1) {
    Usage("--seq-len, --batch, --steps, --threads must be >= 1 and --warmup >= 0");
  }
  return o;
}

int Run(const BenchOptions& o) {
  at::set_num_threads(o.threads);
  auto config = LoadModelConfig(o.config);
  if (!config.ok()) {
    std::fprintf(stderr, "train_bench: %s\n", config.status().ToString().c_str());
    return 1;
  }
  LlamaForCausalLM model = InitModel(*config, kSeed);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  if (o.lora) {
    if (absl::Status s = ApplyLora(model, LoraConfig{}, kSeed); !s.ok()) {
      std::fprintf(stderr, "train_bench: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  model->train();

  std::vector<NamedParam> trainable = TrainableParams(*model);
  AdamWOptions aopt;
  aopt.weight_decay = kWeightDecay;
  AdamW optimizer(trainable, aopt);
  int64_t trainable_count = 0;
  for (const auto& p : trainable) trainable_count += p.param.numel();

  torch::Generator data_gen = at::detail::createCPUGenerator(kSeed);
  const int64_t total = o.warmup + o.steps;
  torch::Tensor step_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble));
  double loss_value = 0;
  double phase_s[3] = {0, 0, 0};  // zero grad + forward + loss, backward, clip + update
  Clock::time_point start = Clock::now();
  std::clock_t cpu_start = std::clock();
  std::unique_ptr<OpProfiler> profiler;
  for (int64_t step = 0; step < total; ++step) {
    if (step == o.warmup) {
      if (o.profile) profiler = std::make_unique<OpProfiler>();
      start = Clock::now();
      cpu_start = std::clock();
    }
    // The batch (MakeBatch: one [B, L+1] window buffer, inputs and targets
    // as contiguous copies).
    torch::Tensor buf = at::randint(0, config->vocab_size, {o.batch, o.seq_len + 1}, data_gen,
                                    torch::TensorOptions().dtype(torch::kLong));
    torch::Tensor inputs = buf.narrow(1, 0, o.seq_len).contiguous();
    torch::Tensor targets = buf.narrow(1, 1, o.seq_len).contiguous();
    // RunFinetune's step, grad_accum = 1.
    torch::manual_seed(kSeed + static_cast<uint64_t>(step));
    const double lr = LearningRate(step, total, /*warmup=*/0, kLr, kLr);
    const Clock::time_point t0 = Clock::now();
    optimizer.ZeroGrad();
    step_loss.zero_();
    torch::Tensor loss = CausalLmLoss(model->forward(inputs), targets);
    const Clock::time_point t1 = Clock::now();
    (loss / 1).backward();
    step_loss += loss.detach().to(torch::kDouble);
    const Clock::time_point t2 = Clock::now();
    ClipGradNorm(trainable, kClip);
    optimizer.Step(lr);
    loss_value = step_loss.item<double>();
    if (step >= o.warmup) {
      phase_s[0] += std::chrono::duration<double>(t1 - t0).count();
      phase_s[1] += std::chrono::duration<double>(t2 - t1).count();
      phase_s[2] += std::chrono::duration<double>(Clock::now() - t2).count();
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  if (profiler) {
    profiler.reset();
    OpProfiler::Print(o.steps, 40);
  }
  if (!std::isfinite(loss_value)) {
    std::fprintf(stderr, "train_bench: loss is %f\n", loss_value);
    return 1;
  }
  const double steps = static_cast<double>(o.steps);
  const double tokens_per_s = steps * static_cast<double>(o.batch * o.seq_len) / seconds;
  std::printf(
      "%s\n",
      absl::StrFormat("{\"impl\": \"cpp\", \"params\": %d, \"trainable\": %d, \"seq_len\": %d, "
                      "\"batch\": %d, \"threads\": %d, \"tokens_per_s\": %.1f, \"step_ms\": %.3f, "
                      "\"cpu_ms\": %.3f, \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, \"opt_ms\": %.3f, "
                      "\"gflops\": %.2f, \"loss\": %.4f}",
                      params, trainable_count, o.seq_len, o.batch, at::get_num_threads(),
                      tokens_per_s, 1e3 * seconds / steps, 1e3 * cpu_seconds / steps,
                      1e3 * phase_s[0] / steps, 1e3 * phase_s[1] / steps, 1e3 * phase_s[2] / steps,
                      6.0 * static_cast<double>(params) * tokens_per_s / 1e9, loss_value)
          .c_str());
  return 0;
}

}  // namespace
}  // namespace distill::worker

int main(int argc, char** argv) {
  using namespace distill::worker;
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "train_bench: LibTorch error: %s\n", e.what_without_backtrace());
    return 1;
  }
}
