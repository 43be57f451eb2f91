// zero_bench: memory per rank and step time of ZeRO-1/2, activation
// checkpointing and bf16 weights against plain data parallelism (issue 16),
// side by side in one mpirun. bench/zero_bench.sh runs it for S = 2 and 4
// ranks and turns its RESULT lines into the tables of docs/benchmarks.md.
//
// Each setting builds the real pieces as Trainer::BuildStudent and
// Trainer::BuildOptimizer do (worker/train/trainer_setup.cc): InitModel from
// the flags' config (bf16: the model cast to bf16), GradReducer over the
// world (reduce_scatter for ZeRO-2), AdamW for fp32 zero 0, else ShardedAdamW
// (zero 0 with bf16: over a loopback communicator, a shard of one). A step is
// Trainer::Step's with grad_accum 1: ZeroGrad, Arm, forward + CausalLmLoss,
// backward, Finish, ClipGradients(1), Update. The settings run interleaved:
// every repetition builds each of them in turn (order rotated), runs its
// warmup and timed steps, and frees it, so all see the same machine load.
//
// Memory is what LibTorch allocates on the CPU, counted by RawCountingAllocator
// (below) installed before anything is built,
// relative to the live bytes before the setting is built: after setup
// (weights, reducer buckets, optimizer state), after the first step (plus
// the gradients kept), and the peak during any step. Step time is the max
// over the ranks of each timed step (a barrier starts every step); the
// medians are over every timed step of every repetition.
//
//   mpirun -np S zero_bench [--hidden 512] [--layers 6] [--heads 8] [--inter 1408]
//       [--vocab 8192] [--seq 128] [--micro 2] [--threads 1] [--reps 3]
//       [--warmup 1] [--steps 2] [--settings zero0,zero1,...]
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "tests/test_util/counting_allocator.h"
#include "worker/comm/grad_reducer.h"
#include "worker/comm/loopback_communicator.h"
#include "worker/comm/mpi_communicator.h"
#include "worker/model/config.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/train/optimizer.h"
#include "worker/train/sharded_adamw.h"

ABSL_FLAG(int64_t, hidden, 512, "hidden size");
ABSL_FLAG(int64_t, layers, 6, "decoder layers");
ABSL_FLAG(int64_t, heads, 8, "attention heads (= key/value heads)");
ABSL_FLAG(int64_t, inter, 1408, "MLP intermediate size");
ABSL_FLAG(int64_t, vocab, 8192, "vocabulary size");
ABSL_FLAG(int64_t, seq, 128, "tokens per sequence");
ABSL_FLAG(int64_t, micro, 2, "sequences per rank per step (micro batch, grad_accum 1)");
ABSL_FLAG(int, threads, 1, "intra-op threads per rank, the same for every setting");
ABSL_FLAG(int, reps, 3, "repetitions, each running every setting");
ABSL_FLAG(int, warmup, 1, "untimed steps per setting and repetition (the first builds .grad)");
ABSL_FLAG(int, steps, 2, "timed steps per setting and repetition");
ABSL_FLAG(double, bucket_mb, 25, "gradient reducer bucket size (runtime.bucket_mb)");
ABSL_FLAG(std::string, settings, "zero0,zero1,zero2,zero0_ckpt,zero2_ckpt,bf16_zero0,bf16_zero1",
          "settings to run: zero{0,1,2}, optional bf16_ prefix, optional _ckpt suffix");

namespace distill::worker {
namespace {

using Clock = std::chrono::steady_clock;

using distill::testing::CountingCpuAllocator;

constexpr double kLr = 1e-4;
constexpr double kClip = 1.0;
constexpr double kTimeoutS = 600;

struct Setting {
  std::string name;
  int zero = 0;
  bool ckpt = false;
  bool bf16 = false;
};

absl::StatusOr<Setting> ParseSetting(const std::string& name) {
  Setting s{name};
  std::string rest = name;
  if (rest.rfind("bf16_", 0) == 0) {
    s.bf16 = true;
    rest = rest.substr(5);
  }
  const std::string suffix = "_ckpt";
  if (rest.size() > suffix.size() &&
      rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0) {
    s.ckpt = true;
    rest.resize(rest.size() - suffix.size());
  }
  if (rest != "zero0" && rest != "zero1" && rest != "zero2") {
    return absl::InvalidArgumentError(absl::StrCat("unknown setting ", name));
  }
  s.zero = rest.back() - '0';
  return s;
}

ModelConfig MakeConfig() {
  ModelConfig c;
  c.vocab_size = absl::GetFlag(FLAGS_vocab);
  c.hidden_size = absl::GetFlag(FLAGS_hidden);
  c.intermediate_size = absl::GetFlag(FLAGS_inter);
  c.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  c.num_attention_heads = absl::GetFlag(FLAGS_heads);
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

// One setting's model, reducer and optimizer, as the trainer builds them.
struct Built {
  LlamaForCausalLM model{nullptr};
  std::vector<NamedParam> params;
  std::unique_ptr<GradReducer> reducer;
  std::unique_ptr<Communicator> loopback;
  std::unique_ptr<Optimizer> optimizer;
  int64_t numel = 0;
};

absl::StatusOr<std::unique_ptr<Built>> Build(const Setting& s, Communicator& world) {
  auto b = std::make_unique<Built>();
  b->model = InitModel(MakeConfig(), 0);
  if (s.bf16) b->model->to(torch::kBFloat16);
  b->model->set_activation_checkpointing(s.ckpt);
  b->model->train();
  b->params = TrainableParams(*b->model);
  std::vector<torch::Tensor> tensors;
  for (const NamedParam& p : b->params) {
    tensors.push_back(p.param);
    b->numel += p.param.numel();
  }
  const int64_t bucket_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_bucket_mb) * (1 << 20));
  if (world.size() > 1) {
    GradReducerOptions ropt;
    ropt.bucket_bytes = bucket_bytes;
    ropt.reduce_scatter = s.zero == 2;
    ASSIGN_OR_RETURN(b->reducer, GradReducer::Create(tensors, world, ropt));
  }
  const int zero = world.size() > 1 ? s.zero : 0;
  if (zero == 0 && !s.bf16) {
    b->optimizer = std::make_unique<AdamW>(b->params, AdamWOptions{});
    return b;
  }
  const auto buckets =
      b->reducer ? b->reducer->BucketLayout() : GradReducer::Plan(tensors, bucket_bytes);
  if (zero == 0) b->loopback = MakeLoopbackCommunicator();
  Communicator& shards = zero == 0 ? *b->loopback : world;
  ASSIGN_OR_RETURN(b->optimizer,
                   ShardedAdamW::Create(b->params, buckets, shards,
                                        zero == 2 ? b->reducer.get() : nullptr, AdamWOptions{}));
  return b;
}

// Trainer::Step with one micro-batch; `backward_peak` gets the counter's peak
// up to the reducer's Finish, after which the counter restarts its peak, so
// that its peak at the end is the clip-and-update phase's.
absl::Status Step(Built& b, const torch::Tensor& ids, const torch::Tensor& targets,
                  CountingCpuAllocator& counter, int64_t* backward_peak) {
  b.optimizer->ZeroGrad();
  if (b.reducer) b.reducer->Arm();
  {
    torch::Tensor loss = CausalLmLoss(b.model->forward(ids), targets);
    loss.backward();
  }
  if (b.reducer) RETURN_IF_ERROR(b.reducer->Finish());
  *backward_peak = counter.peak();
  counter.Reset();
  RETURN_IF_ERROR(b.optimizer->ClipGradients(kClip).status());
  return b.optimizer->Update(kLr);
}

// The maximum of `v` over the ranks.
absl::StatusOr<double> MaxOverRanks(Communicator& world, double v) {
  torch::Tensor mine = torch::tensor({v}, torch::kDouble);
  torch::Tensor all = torch::empty({world.size()}, torch::kDouble);
  RETURN_IF_ERROR(world.AllGather(mine, all, "zero_bench max"));
  return all.max().item<double>();
}

// One setting's run in one repetition; bytes are this rank's, relative to
// the live bytes before building, maxed over the ranks.
struct Sample {
  double setup = 0, persistent = 0, peak = 0;
  double peak_update = 0;  // of the clip-and-update phase
  int64_t numel = 0;
  std::vector<double> seconds;  // timed steps, max over ranks
};

absl::StatusOr<Sample> RunOnce(const Setting& s, Communicator& world, CountingCpuAllocator& counter,
                               const torch::Tensor& ids, const torch::Tensor& targets) {
  Sample out;
  const int64_t base = counter.Reset();
  int64_t peak = base, peak_update = base;
  double persistent = -1;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<Built> b, Build(s, world));
    out.numel = b->numel;
    ASSIGN_OR_RETURN(out.setup, MaxOverRanks(world, static_cast<double>(counter.Reset() - base)));
    const int warmup = absl::GetFlag(FLAGS_warmup), steps = absl::GetFlag(FLAGS_steps);
    for (int i = 0; i < warmup + steps; ++i) {
      RETURN_IF_ERROR(world.Barrier("zero_bench step"));
      counter.Reset();
      const auto start = Clock::now();
      int64_t backward_peak = 0;
      RETURN_IF_ERROR(Step(*b, ids, targets, counter, &backward_peak));
      const double sec = std::chrono::duration<double>(Clock::now() - start).count();
      peak_update = std::max(peak_update, counter.peak());
      peak = std::max({peak, backward_peak, counter.peak()});
      if (persistent < 0) persistent = static_cast<double>(counter.Reset() - base);
      ASSIGN_OR_RETURN(const double worst, MaxOverRanks(world, sec));
      if (i >= warmup) out.seconds.push_back(worst);
    }
  }
  ASSIGN_OR_RETURN(out.persistent, MaxOverRanks(world, persistent));
  ASSIGN_OR_RETURN(out.peak, MaxOverRanks(world, static_cast<double>(peak - base)));
  ASSIGN_OR_RETURN(out.peak_update, MaxOverRanks(world, static_cast<double>(peak_update - base)));
  return out;
}

// Peak bytes of CausalLmLoss forward + backward on [micro, seq, vocab]
// logits of `dtype` (the logits and their gradient included), max over ranks:
// the part of a step's activations that grows with the vocabulary, not the
// layers, and that checkpointing does not touch.
absl::StatusOr<double> LogitsPeak(Communicator& world, CountingCpuAllocator& counter,
                                  torch::Dtype dtype, const torch::Tensor& targets) {
  const int64_t base = counter.Reset();
  {
    torch::Tensor logits =
        torch::randn({targets.size(0), targets.size(1), absl::GetFlag(FLAGS_vocab)},
                     torch::dtype(dtype))
            .requires_grad_(true);
    CausalLmLoss(logits, targets).backward();
  }
  return MaxOverRanks(world, static_cast<double>(counter.peak() - base));
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Totals {
  double setup = 0, persistent = 0, peak = 0, peak_update = 0;  // max over repetitions
  int64_t numel = 0;
  std::vector<double> seconds;
};

void PrintSummary(const std::vector<Setting>& settings, const std::map<std::string, Totals>& totals,
                  int ranks, int64_t tokens, const double logits_peak[2]) {
  const double plain = Median(totals.at(settings.front().name).seconds);
  std::printf("%-16s %10s %9s %9s %9s %9s %10s %7s\n", "setting", "params", "setup/p", "persist/p",
              "peak/p", "step ms", "[min,max]", "x first");
  for (const Setting& s : settings) {
    const Totals& t = totals.at(s.name);
    const double n = static_cast<double>(t.numel), med = Median(t.seconds);
    const auto [lo, hi] = std::minmax_element(t.seconds.begin(), t.seconds.end());
    std::printf("%-16s %10lld %9.2f %9.2f %9.2f %9.1f [%.0f,%.0f] %7.3f\n", s.name.c_str(),
                static_cast<long long>(t.numel), t.setup / n, t.persistent / n, t.peak / n,
                1e3 * med, 1e3 * *lo, 1e3 * *hi, med / plain);
    std::printf(
        "RESULT "
        "{\"setting\":\"%s\",\"ranks\":%d,\"zero\":%d,\"ckpt\":%d,\"bf16\":%d,\"params\":%lld,"
        "\"tokens\":%lld,\"setup\":%.0f,\"persistent\":%.0f,\"peak\":%.0f,\"peak_update\":%.0f,"
        "\"logits_peak\":%.0f,"
        "\"seconds\":[%s]}\n",
        s.name.c_str(), ranks, s.zero, s.ckpt, s.bf16, static_cast<long long>(t.numel),
        static_cast<long long>(tokens), t.setup, t.persistent, t.peak, t.peak_update,
        logits_peak[s.bf16], absl::StrJoin(t.seconds, ",", [](std::string* o, double v) {
                               absl::StrAppendFormat(o, "%.5f", v);
                             }).c_str());
  }
  std::fflush(stdout);
}

// The repetitions: every setting in turn, the order rotated by one each time.
absl::Status RunAll(const std::vector<Setting>& settings, Communicator& world,
                    CountingCpuAllocator& counter) {
  const int64_t micro = absl::GetFlag(FLAGS_micro), seq = absl::GetFlag(FLAGS_seq);
  torch::manual_seed(1 + world.rank());
  const torch::Tensor ids =
      torch::randint(0, absl::GetFlag(FLAGS_vocab), {micro, seq}, torch::kLong);
  const torch::Tensor targets =
      torch::randint(0, absl::GetFlag(FLAGS_vocab), {micro, seq}, torch::kLong);
  const bool lead = world.rank() == 0;
  std::map<std::string, Totals> totals;
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (size_t k = 0; k < settings.size(); ++k) {
      const Setting& s = settings[(k + static_cast<size_t>(rep)) % settings.size()];
      ASSIGN_OR_RETURN(Sample x, RunOnce(s, world, counter, ids, targets));
      Totals& t = totals[s.name];
      t.numel = x.numel;
      t.setup = std::max(t.setup, x.setup);
      t.persistent = std::max(t.persistent, x.persistent);
      t.peak = std::max(t.peak, x.peak);
      t.peak_update = std::max(t.peak_update, x.peak_update);
      t.seconds.insert(t.seconds.end(), x.seconds.begin(), x.seconds.end());
      if (lead) {
        std::printf(
            "rep %d %-16s setup %.1f MB persistent %.1f MB peak %.1f MB (update %.1f) step ms %s\n",
            rep, s.name.c_str(), x.setup / 1e6, x.persistent / 1e6, x.peak / 1e6,
            x.peak_update / 1e6, absl::StrJoin(x.seconds, " ", [](std::string* o, double v) {
                                   absl::StrAppendFormat(o, "%.0f", 1e3 * v);
                                 }).c_str());
        std::fflush(stdout);
      }
    }
  }
  double logits_peak[2];
  ASSIGN_OR_RETURN(logits_peak[0], LogitsPeak(world, counter, torch::kFloat, targets));
  ASSIGN_OR_RETURN(logits_peak[1], LogitsPeak(world, counter, torch::kBFloat16, targets));
  if (lead) PrintSummary(settings, totals, world.size(), micro * seq, logits_peak);
  return absl::OkStatus();
}

absl::Status Main(int argc, char** argv) {
  std::vector<Setting> settings;
  for (const auto& name : absl::StrSplit(absl::GetFlag(FLAGS_settings), ',', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(Setting s, ParseSetting(std::string(name)));
    settings.push_back(s);
  }
  if (settings.empty()) return absl::InvalidArgumentError("--settings is empty");
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  // Installed before anything is built: every tensor below is counted.
  // Installed for the whole run (tests/test_util/counting_allocator.h).
  auto* counter = new CountingCpuAllocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(counter, 255);
  RETURN_IF_ERROR(InitMpi(&argc, &argv));
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> world, MpiWorld(kTimeoutS));
  if (world->rank() == 0) {
    std::printf(
        "ranks %d threads/rank %d: D=%lld L=%lld heads=%lld I=%lld V=%lld seq=%lld micro=%lld "
        "reps=%d warmup=%d steps=%d bucket_mb=%g\n",
        world->size(), absl::GetFlag(FLAGS_threads),
        static_cast<long long>(absl::GetFlag(FLAGS_hidden)),
        static_cast<long long>(absl::GetFlag(FLAGS_layers)),
        static_cast<long long>(absl::GetFlag(FLAGS_heads)),
        static_cast<long long>(absl::GetFlag(FLAGS_inter)),
        static_cast<long long>(absl::GetFlag(FLAGS_vocab)),
        static_cast<long long>(absl::GetFlag(FLAGS_seq)),
        static_cast<long long>(absl::GetFlag(FLAGS_micro)), absl::GetFlag(FLAGS_reps),
        absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_steps), absl::GetFlag(FLAGS_bucket_mb));
  }
  absl::Status st = RunAll(settings, *world, *counter);
  if (!st.ok()) world->Abort(absl::StrCat("zero_bench: ", st.ToString()), 1);
  return world->Barrier("zero_bench end");
}

}  // namespace
}  // namespace distill::worker

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status st = distill::worker::Main(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "zero_bench: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
