// distill-worker: the trainer's command line. Parses arguments and calls into
// distill_worker; every error becomes one line on stderr and a non-zero exit.
//
//   distill-worker train --spec SPEC.yaml [--max-steps-this-run N]
//       (multi-rank jobs: mpirun -np N distill-worker train --spec SPEC.yaml)
//   distill-worker eval --model DIR [--adapter DIR] [--teacher DIR] --tokens FILE.bin --seq-len L [--batch B]
//       [--threads N]
//   distill-worker init --config CONFIG.json --out DIR [--seed S]
//   distill-worker merge --base DIR --adapter DIR --out DIR
//   distill-worker tokenize --tokenizer bytes|tokenizer.json --input FILE --output FILE.bin
//       [--text-field F] [--threads N] [--separator TOKEN] [--chunk-bytes N]
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/text_source.h"
#include "worker/data/token_shard.h"
#include "worker/distill/distill_trainer.h"
#include "worker/distill/teacher.h"
#include "worker/model/hf_io.h"
#include "worker/model/lora.h"
#include "worker/runtime/runtime.h"
#include "worker/train/eval.h"
#include "worker/train/report_grpc.h"
#include "worker/train/trainer.h"

namespace distill::worker {
namespace {

constexpr char kUsage[] =
    "usage: distill-worker COMMAND [options]   (distill-worker --version: version, LibTorch, CUDA)\n"
    "  train    --spec SPEC.yaml [--max-steps-this-run N]\n"
    "  eval     --model DIR [--adapter DIR] --tokens FILE(.bin|.jsonl|.txt) --seq-len L [--batch B] [--threads N]\n"
    "           [--tokenizer bytes|tokenizer.json] [--text-field text]   (text is tokenized and cached as FILE.<tag>.bin)\n"
    "           [--teacher DIR]   (adds kl = KL(teacher || model) at T=1, top1_agreement, teacher_loss, teacher_ppl)\n"
    "  init     --config CONFIG.json --out DIR [--seed S]\n"
    "  merge    --base DIR --adapter DIR --out DIR\n"
    "  tokenize --tokenizer bytes|PATH/tokenizer.json --input FILE(.txt|.jsonl) --output FILE.bin\n"
    "           [--text-field text] [--threads N] [--separator TOKEN (default: the EOS token)]\n"
    "           [--chunk-bytes N (a large text is encoded in chunks of about N bytes; default 65536)]\n";

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

// --key value pairs after the command. Usage errors exit 2.
class Args {
 public:
  static absl::StatusOr<Args> Parse(int argc, char** argv, int first, const std::vector<std::string>& allowed) {
    Args a;
    for (int i = first; i < argc; ++i) {
      std::string k = argv[i];
      if (k.rfind("--", 0) != 0) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", k, "'"));
      k = k.substr(2);
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        return absl::InvalidArgumentError(absl::StrCat("unknown option --", k));
      }
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("option --", k, " needs a value"));
      a.values_[k] = argv[++i];
    }
    return a;
  }
  absl::StatusOr<std::string> Required(const std::string& k) const {
    auto it = values_.find(k);
    if (it == values_.end()) return absl::InvalidArgumentError(absl::StrCat("missing required option --", k));
    return it->second;
  }
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second;
  }
  absl::StatusOr<int64_t> Int(const std::string& k, int64_t def) const {
    auto it = values_.find(k);
    if (it == values_.end()) return def;
    int64_t v;
    if (!absl::SimpleAtoi(it->second, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("option --", k, ": expected an integer, got '", it->second, "'"));
    }
    return v;
  }

 private:
  std::map<std::string, std::string> values_;
};

absl::Status TrainRank(const distill::v1::JobSpec& spec, int64_t max_steps, Communicator* world) {
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  const bool rank0 = world == nullptr || world->rank() == 0;
  ConsoleSink console;
  TrainOptions options;
  options.max_steps_this_run = max_steps;
  options.stop_requested = &g_stop;
  // Launched by the coordinator (DISTILL_COORDINATOR set): progress and
  // heartbeats go to it too. Only rank 0 (student 0) reports.
  std::unique_ptr<CoordinatorSink> coordinator;
  if (rank0) {
    options.sinks.push_back(&console);
    ASSIGN_OR_RETURN(coordinator, MakeCoordinatorSinkFromEnv());
    if (coordinator) options.sinks.push_back(coordinator.get());
  }
  ASSIGN_OR_RETURN(JobRankResult job, RunJobRank(spec, options, world));
  if (!job.is_student) {
    const TeacherStageStats& t = job.teacher;
    std::cout << absl::StrFormat("%s done: %d requests, busy %.1f%% of %.1f s, sent %.1f MB",
                                 job.layout.Role(job.layout.rank), t.requests,
                                 t.total_s > 0 ? 100.0 * t.busy_s / t.total_s : 0.0, t.total_s, t.bytes_sent / 1e6)
              << std::endl;
    return absl::OkStatus();
  }
  const TrainResult& r = job.train;
  if (coordinator) coordinator->Finish(r.finished);
  if (!r.finished && g_stop.load()) {
    return absl::CancelledError(absl::StrCat("stopped by signal at step ", r.steps_done, "; checkpoint saved"));
  }
  if (!rank0) return absl::OkStatus();
  if (r.finished && r.resumed_from < r.steps_done) {
    std::string eval;
    if (r.has_eval) eval = absl::StrFormat(", eval loss %.4f ppl %.3f", r.eval_loss, r.eval_ppl);
    const ObjectiveFields& f = r.eval_fields;  // distill: the student against its teacher
    if (f.scalars.count("kl") > 0) {
      eval += absl::StrFormat(" kl %.4f top1 %.1f%% (teacher ppl %.3f)", f.Scalar("kl"),
                              100.0 * f.Scalar("top1_agreement"), f.Scalar("teacher_ppl"));
    }
    std::cout << absl::StrFormat("done: %d steps, train loss %.4f%s, %.0f tok/s, %d trainable params, %s (%d bytes)",
                                 r.steps_done, r.final_train_loss, eval,
                                 r.tokens_per_s, r.trainable_params, r.output_path, r.output_bytes)
              << std::endl;
  }
  return absl::OkStatus();
}

absl::Status Train(const Args& args) {
  ASSIGN_OR_RETURN(std::string spec_path, args.Required("spec"));
  ASSIGN_OR_RETURN(int64_t max_steps, args.Int("max-steps-this-run", 0));
  ASSIGN_OR_RETURN(distill::v1::JobSpec spec, common::LoadJobSpec(spec_path));
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> world, MaybeMpiWorld(spec));
  absl::Status st = TrainRank(spec, max_steps, world.get());
  if (st.ok() || world == nullptr || world->size() == 1 || st.code() == absl::StatusCode::kCancelled) return st;
  // Note [Comm timeout]: one rank's error ends every rank, at once.
  std::string msg(st.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  world->Abort(absl::StrCat("distill-worker train: error: ", msg), 1);
  return st;  // not reached
}

void SetThreads(int64_t threads) {
  at::set_num_threads(static_cast<int>(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())));
}

absl::Status Eval(const Args& args) {
  ASSIGN_OR_RETURN(std::string model_dir, args.Required("model"));
  ASSIGN_OR_RETURN(std::string tokens_path, args.Required("tokens"));
  RETURN_IF_ERROR(args.Required("seq-len").status());
  ASSIGN_OR_RETURN(int64_t seq_len, args.Int("seq-len", 0));
  ASSIGN_OR_RETURN(int64_t batch, args.Int("batch", 8));
  ASSIGN_OR_RETURN(int64_t threads, args.Int("threads", 0));
  if (seq_len < 1) return absl::InvalidArgumentError(absl::StrCat("--seq-len must be >= 1, got ", seq_len));
  if (batch < 1) return absl::InvalidArgumentError(absl::StrCat("--batch must be >= 1, got ", batch));
  SetThreads(threads);
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadHfModel(model_dir));
  const std::string adapter = args.Get("adapter");
  if (!adapter.empty()) RETURN_IF_ERROR(LoadAdapter(model, adapter));
  ASSIGN_OR_RETURN(std::string shard, EnsureTokenShard(tokens_path, args.Get("tokenizer", "bytes"),
                                                       args.Get("text-field", "text"), at::get_num_threads()));
  ASSIGN_OR_RETURN(TokenDataset data, TokenDataset::Open({shard}));
  RETURN_IF_ERROR(data.CheckVocab(model->config().vocab_size));
  const std::string teacher_dir = args.Get("teacher");
  if (teacher_dir.empty()) {
    ASSIGN_OR_RETURN(EvalResult r, EvaluateLm(model, data, seq_len, batch, 0, torch::kCPU));
    std::cout << absl::StrFormat("{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %d}", r.loss, r.ppl, r.tokens)
              << std::endl;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Teacher> teacher, Teacher::Load(teacher_dir, model->config(), model_dir, torch::kCPU));
  const std::string tokenizer = args.Get("tokenizer", "bytes");
  if (tokenizer != "bytes") RETURN_IF_ERROR(teacher->CheckTokenizer(tokenizer, "--tokenizer"));
  ASSIGN_OR_RETURN(TeacherEvalResult r, EvaluateWithTeacher(model, teacher->model(), teacher->vocab(), data, seq_len,
                                                            batch, 0, /*chunk_tokens=*/1024, torch::kCPU));
  std::cout << absl::StrFormat(
                   "{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %d, \"kl\": %.9g, \"top1_agreement\": %.9g, "
                   "\"teacher_loss\": %.9g, \"teacher_ppl\": %.9g}",
                   r.student.loss, r.student.ppl, r.student.tokens, r.kl, r.top1_agreement, r.teacher.loss,
                   r.teacher.ppl)
            << std::endl;
  return absl::OkStatus();
}

absl::Status Init(const Args& args) {
  ASSIGN_OR_RETURN(std::string config_path, args.Required("config"));
  ASSIGN_OR_RETURN(std::string out, args.Required("out"));
  ASSIGN_OR_RETURN(int64_t seed, args.Int("seed", 0));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  LlamaForCausalLM model = InitModel(config, static_cast<uint64_t>(seed));
  RETURN_IF_ERROR(SaveHfModel(model, out));
  std::cout << absl::StrFormat("wrote %s: %d parameters", out, CountParameters(config)) << std::endl;
  return absl::OkStatus();
}

absl::Status Merge(const Args& args) {
  ASSIGN_OR_RETURN(std::string base, args.Required("base"));
  ASSIGN_OR_RETURN(std::string adapter, args.Required("adapter"));
  ASSIGN_OR_RETURN(std::string out, args.Required("out"));
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadHfModel(base));
  RETURN_IF_ERROR(LoadAdapter(model, adapter));
  MergeLora(model);
  RETURN_IF_ERROR(SaveHfModel(model, out));
  std::cout << "wrote " << out << std::endl;
  return absl::OkStatus();
}

absl::Status Tokenize(const Args& args) {
  ASSIGN_OR_RETURN(std::string tokenizer, args.Required("tokenizer"));
  ASSIGN_OR_RETURN(std::string input, args.Required("input"));
  ASSIGN_OR_RETURN(std::string output, args.Required("output"));
  if (tokenizer == "bytes") {
    if (!args.Get("separator", "").empty() || !args.Get("threads", "").empty() ||
        !args.Get("chunk-bytes", "").empty()) {
      return absl::InvalidArgumentError(
          "--separator, --threads and --chunk-bytes need a tokenizer.json");
    }
    return TokenizeFileBytes(input, output, args.Get("text-field", "text"));
  }
  TokenizeFileOptions options;
  options.text_field = args.Get("text-field", "text");
  options.separator = args.Get("separator", "");
  options.progress = isatty(STDERR_FILENO) != 0;  // no bar of \r updates in log files
  const std::string threads = args.Get("threads", "1");
  if (!absl::SimpleAtoi(threads, &options.threads) || options.threads < 1 || options.threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat("--threads ", threads, ": expected 1..256"));
  }
  const std::string chunk = args.Get("chunk-bytes", "65536");
  if (!absl::SimpleAtoi(chunk, &options.chunk_bytes) || options.chunk_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chunk-bytes ", chunk, ": expected a positive number of bytes"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> hf, HfTokenizer::Load(tokenizer));
  return TokenizeFile(*hf, input, output, options);
}

int Main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version") {
    std::cout << common::VersionLine("distill-worker") << "\n";
    return 0;
  }
  static const std::map<std::string, std::pair<std::vector<std::string>, absl::Status (*)(const Args&)>> kCommands = {
      {"train", {{"spec", "max-steps-this-run"}, &Train}},
      {"eval", {{"model", "adapter", "teacher", "tokens", "seq-len", "batch", "threads", "tokenizer", "text-field"}, &Eval}},
      {"init", {{"config", "out", "seed"}, &Init}},
      {"merge", {{"base", "adapter", "out"}, &Merge}},
      {"tokenize", {{"tokenizer", "input", "output", "text-field", "threads", "separator", "chunk-bytes"}, &Tokenize}},
  };
  auto it = kCommands.find(cmd);
  if (it == kCommands.end()) {
    std::cerr << "distill-worker: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  }
  auto args = Args::Parse(argc, argv, 2, it->second.first);
  if (!args.ok()) {
    std::cerr << "distill-worker " << cmd << ": " << args.status().message() << "\n" << kUsage;
    return 2;
  }
  absl::Status st;
  try {
    st = it->second.second(*args);
  } catch (const c10::Error& e) {
    st = absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    st = absl::InternalError(e.what());
  }
  if (!st.ok()) {
    std::string msg(st.message());
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::cerr << "distill-worker " << cmd << ": error: " << msg << std::endl;
    return st.code() == absl::StatusCode::kCancelled ? 130 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace distill::worker

int main(int argc, char** argv) { return distill::worker::Main(argc, argv); }
