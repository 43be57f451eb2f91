// distill-worker: the trainer's command line. Parses arguments and calls into
// distill_worker; every error becomes one line on stderr and a non-zero exit.
//
//   distill-worker train --spec SPEC.yaml [--max-steps-this-run N]
//       (multi-rank jobs: mpirun -np N distill-worker train --spec SPEC.yaml)
//   distill-worker eval --model DIR [--adapter DIR] [--teacher DIR] --data FILE
//       --seq-len L [--format text|chat|prompt_completion] [--tokenizer T]
//       [--loss-on assistant|all] [--overflow truncate|drop] [--packing=false]
//       [--batch B] [--threads N]
//   distill-worker init --config CONFIG.json --out DIR [--seed S]
//   distill-worker merge --base DIR --adapter DIR --out DIR
//   distill-worker tokenize --tokenizer bytes|tokenizer.json --input FILE --output FILE.bin
//       [--text-field F] [--threads N] [--separator TOKEN] [--chunk-bytes N]
//   distill-worker COMMAND --help: the command's options (generated from the flags).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/confine.h"
#include "common/exit_codes.h"
#include "common/main_guard.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/open_data.h"
#include "worker/data/text_source.h"
#include "worker/data/token_shard.h"
#include "worker/distill/distill_trainer.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/model/hf_io.h"
#include "worker/model/lora.h"
#include "worker/report/metrics_sink.h"
#include "worker/report/report_grpc.h"
#include "worker/comm/mpi_communicator.h"
#include "worker/runtime/capture.h"
#include "worker/runtime/runtime.h"
#include "worker/train/eval.h"
#include "worker/train/trainer.h"

// The options of every command (absl/flags). On the command line a flag's
// '_' is written '-' (--seq-len); each command accepts only its own (Commands()).
// Help: "PLACEHOLDER: what it is"; the usage is generated from it.
ABSL_FLAG(std::string, spec, "", "SPEC.yaml: the job spec (mpirun -np N for a multi-rank job)");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT: serve this job's metrics on /metrics (docs/metrics.md), each rank on PORT + "
          "its local rank; for a run without a coordinator");
ABSL_FLAG(
    std::string, job_id, "",
    "ID: the job_id label of --metrics-listen's series (default: $DISTILL_JOB_ID, else the spec's "
    "name), and the job the output directory is claimed for (.distill-owner.json)");
ABSL_FLAG(int64_t, max_steps_this_run, 0,
          "N: stop after N steps of this run, with a checkpoint (0: run to the end)");
ABSL_FLAG(std::string, model, "", "DIR: the model (Hugging Face directory)");
ABSL_FLAG(std::string, adapter, "", "DIR: a LoRA adapter (peft directory) on the model");
ABSL_FLAG(std::string, teacher, "",
          "DIR: a teacher model: adds kl = KL(teacher || model) at T=1, top1_agreement, "
          "teacher_loss, teacher_ppl");
ABSL_FLAG(std::string, data, "",
          "FILE: tokens (.bin), text (.jsonl, .txt) tokenized and cached as FILE.<tag>.bin, or "
          "chat / prompt_completion examples (.jsonl, with --format)");
ABSL_FLAG(std::string, tokens, "", "FILE: the older name of --data");
ABSL_FLAG(std::string, format, "text",
          "F: text, chat ({\"messages\": [...]}, rendered with the tokenizer's chat template) or "
          "prompt_completion ({\"prompt\", \"completion\"}); for chat and prompt_completion the "
          "loss counts the responses only (--loss-on)");
ABSL_FLAG(std::string, loss_on, "assistant", "W: assistant (the responses) or all targets");
ABSL_FLAG(std::string, overflow, "truncate",
          "O: an example longer than seq-len + 1 tokens: truncate or drop");
ABSL_FLAG(bool, packing, true, "BOOL: pack several examples per row (false: one per row)");
ABSL_FLAG(int64_t, seq_len, 0, "L: tokens per sequence");
ABSL_FLAG(int64_t, batch, 8, "B: sequences per batch");
ABSL_FLAG(int64_t, threads, 0,
          "N: threads (eval: LibTorch's, 0 = all cores; tokenize: encoder threads, 1..256, "
          "default 1)");
ABSL_FLAG(std::string, tokenizer, "",
          "T: bytes, a tokenizer.json, or its directory with tokenizer_config.json (eval: of "
          "text or examples; default bytes)");
ABSL_FLAG(std::string, text_field, "text", "F: the field of a .jsonl record that holds its text");
ABSL_FLAG(std::string, config, "", "CONFIG.json: a Hugging Face model config");
ABSL_FLAG(std::string, out, "", "DIR: the model directory to write");
ABSL_FLAG(int64_t, seed, 0, "S: the seed of the initial weights");
ABSL_FLAG(std::string, base, "", "DIR: the base model");
ABSL_FLAG(std::string, input, "", "FILE: the text (.txt: one document; .jsonl: one per line)");
ABSL_FLAG(std::string, output, "", "FILE.bin: the token shard to write");
ABSL_FLAG(std::string, separator, "",
          "TOKEN: the token after each document (default: the EOS token)");
ABSL_FLAG(int64_t, chunk_bytes, 65536,
          "N: a large text is encoded in chunks of about N bytes on the threads");

namespace distill::worker {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

// The options given on the command line, by their command-line names
// ("seq-len"); their values are in the flags.
using Given = std::set<std::string>;

// --metrics-listen: this rank's /metrics on PORT + its local rank (null
// without the flag).
absl::StatusOr<std::unique_ptr<MetricsSink>> MaybeMetricsSink(const distill::v1::JobSpec& spec,
                                                              const Communicator* world) {
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  if (listen.empty()) return std::unique_ptr<MetricsSink>();
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen: not HOST:PORT: '", listen, "'"));
  }
  if (port != 0) port += LocalRank();
  std::string job_id = absl::GetFlag(FLAGS_job_id);
  if (job_id.empty() && std::getenv("DISTILL_JOB_ID") != nullptr) job_id = std::getenv("DISTILL_JOB_ID");
  if (job_id.empty()) job_id = spec.name();
  if (job_id.empty()) job_id = "job";
  ASSIGN_OR_RETURN(std::unique_ptr<MetricsSink> sink,
                   MetricsSink::Create(absl::StrCat(listen.substr(0, colon), ":", port), job_id,
                                       world ? world->rank() : 0));
  std::cerr << "metrics: rank " << (world ? world->rank() : 0) << " serves /metrics on port " << sink->port()
            << std::endl;
  return sink;
}

absl::Status TrainRank(const distill::v1::JobSpec& spec, int64_t max_steps, Communicator* world) {
  // SIGUSR1 too: mpirun forwards it to every rank at once, while it answers
  // SIGTERM by killing them (deploy/slurm/distill.sbatch, "Stopping").
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGUSR1, OnSignal);
  const bool rank0 = world == nullptr || world->rank() == 0;
  ConsoleSink console;
  TrainOptions options;
  options.max_steps_this_run = max_steps;
  options.stop_requested = &g_stop;
  // Note [Output ownership]: the coordinator's job id (DISTILL_JOB_ID), or --job-id.
  if (const char* id = std::getenv("DISTILL_JOB_ID"); id != nullptr) options.job_id = id;
  if (options.job_id.empty()) options.job_id = absl::GetFlag(FLAGS_job_id);
  if (rank0) options.sinks.push_back(&console);
  // Launched by the coordinator (DISTILL_COORDINATOR set): every rank's
  // progress and heartbeats go to it too (a teacher rank's: heartbeats).
  std::unique_ptr<CoordinatorSink> coordinator;
  ASSIGN_OR_RETURN(coordinator, MakeCoordinatorSinkFromEnv());
  if (coordinator) options.sinks.push_back(coordinator.get());
  std::unique_ptr<MetricsSink> metrics;
  ASSIGN_OR_RETURN(metrics, MaybeMetricsSink(spec, world));
  if (metrics) options.sinks.push_back(metrics.get());
  ASSIGN_OR_RETURN(JobRankResult job, RunJobRank(spec, options, world));
  if (!job.is_student) {
    if (coordinator) coordinator->Finish(true);
    const TeacherStageStats& t = job.teacher;
    std::cout << absl::StrFormat("%s done: %d requests, busy %.1f%% of %.1f s, sent %.1f MB",
                                 job.layout.Role(job.layout.rank), t.requests,
                                 t.total_s > 0 ? 100.0 * t.busy_s / t.total_s : 0.0, t.total_s,
                                 t.bytes_sent / 1e6)
              << std::endl;
    return absl::OkStatus();
  }
  const TrainResult& r = job.train;
  if (coordinator) coordinator->Finish(r.finished);
  if (!r.finished && g_stop.load()) {
    return absl::CancelledError(
        absl::StrCat("stopped by signal at step ", r.steps_done, "; checkpoint saved"));
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
    std::cout
        << absl::StrFormat(
               "done: %d steps, train loss %.4f%s, %.0f tok/s, %d trainable params, %s (%d bytes)",
               r.steps_done, r.final_train_loss, eval, r.tokens_per_s, r.trainable_params,
               r.output_path, r.output_bytes)
        << std::endl;
  }
  return absl::OkStatus();
}

absl::Status Train(const Given&) {
  const int64_t max_steps = absl::GetFlag(FLAGS_max_steps_this_run);
  ASSIGN_OR_RETURN(distill::v1::JobSpec spec, common::LoadJobSpec(absl::GetFlag(FLAGS_spec)));
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> world, MaybeMpiWorld(spec));
  absl::Status st = TrainRank(spec, max_steps, world.get());
  if (st.ok() || world == nullptr || world->size() == 1 ||
      st.code() == absl::StatusCode::kCancelled)
    return st;
  // Note [Comm timeout]: one rank's error ends every rank, at once.
  std::string msg(st.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  world->Abort(absl::StrCat("distill-worker train: error: ", msg), common::ExitCodeFor(st));
  return st;  // not reached
}

// `capture`: the teacher cache of a distill spec (worker/runtime/capture.h),
// on every rank of an mpirun launch of any size.
absl::Status Capture(const Given&) {
  ASSIGN_OR_RETURN(distill::v1::JobSpec spec, common::LoadJobSpec(absl::GetFlag(FLAGS_spec)));
  if (spec.type() != distill::v1::DISTILL) {
    return absl::InvalidArgumentError("type: capture needs a distill spec (teacher.model, teacher.cache)");
  }
  std::unique_ptr<Communicator> world;
  if (LaunchedByMpirun()) {
    RETURN_IF_ERROR(InitMpi(nullptr, nullptr));
    ASSIGN_OR_RETURN(world, MpiWorld(spec.runtime().timeout_s()));
  }
  absl::Status st = RunCapture(spec, world.get(), std::cout).status();
  if (st.ok() || world == nullptr || world->size() == 1) return st;
  // Note [Comm timeout]: one rank's error ends every rank, at once.
  std::string msg(st.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  world->Abort(absl::StrCat("distill-worker capture: error: ", msg), common::ExitCodeFor(st));
  return st;  // not reached
}

void SetThreads(int64_t threads) {
  at::set_num_threads(
      static_cast<int>(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())));
}

// --data (or its older name --tokens) and the data options of eval.
absl::StatusOr<std::pair<std::string, DataOptions>> EvalData(const Given& given) {
  if (given.count("data") == given.count("tokens")) {
    return absl::InvalidArgumentError("eval needs the data: --data FILE (or its older name --tokens)");
  }
  const std::string path = absl::GetFlag(given.count("data") ? FLAGS_data : FLAGS_tokens);
  DataOptions o;
  o.format = absl::GetFlag(FLAGS_format);
  o.tokenizer = given.count("tokenizer") ? absl::GetFlag(FLAGS_tokenizer) : "bytes";
  o.text_field = absl::GetFlag(FLAGS_text_field);
  o.loss_on = absl::GetFlag(FLAGS_loss_on);
  o.overflow = absl::GetFlag(FLAGS_overflow);
  o.pack = absl::GetFlag(FLAGS_packing);
  o.seq_len = absl::GetFlag(FLAGS_seq_len);
  o.threads = at::get_num_threads();
  if (o.format != "text" && o.format != "chat" && o.format != "prompt_completion") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format: unknown value '", o.format, "', expected text, chat or prompt_completion"));
  }
  if (o.format == "text") {
    for (const char* only : {"loss-on", "overflow", "packing"}) {
      if (given.count(only)) {
        return absl::InvalidArgumentError(absl::StrCat("--", only, " applies to --format chat or prompt_completion"));
      }
    }
  }
  return std::make_pair(path, o);
}

void PrintEval(const EvalResult& r) {
  std::cout << absl::StrFormat("{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %d}", r.loss, r.ppl, r.tokens)
            << std::endl;
}

void PrintEval(const TeacherEvalResult& r) {
  std::cout << absl::StrFormat(
                   "{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %d, \"kl\": %.9g, "
                   "\"top1_agreement\": %.9g, "
                   "\"teacher_loss\": %.9g, \"teacher_ppl\": %.9g}",
                   r.student.loss, r.student.ppl, r.student.tokens, r.kl, r.top1_agreement,
                   r.teacher.loss, r.teacher.ppl)
            << std::endl;
}

absl::Status Eval(const Given& given) {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const int64_t seq_len = absl::GetFlag(FLAGS_seq_len);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  if (seq_len < 1)
    return absl::InvalidArgumentError(absl::StrCat("--seq-len must be >= 1, got ", seq_len));
  if (batch < 1)
    return absl::InvalidArgumentError(absl::StrCat("--batch must be >= 1, got ", batch));
  SetThreads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(auto path_and_options, EvalData(given));
  const auto& [path, options] = path_and_options;
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadHfModel(model_dir));
  const std::string adapter = absl::GetFlag(FLAGS_adapter);
  if (!adapter.empty()) RETURN_IF_ERROR(LoadAdapter(model, adapter));
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceData> data, OpenSequenceData({path}, options));
  RETURN_IF_ERROR(data->CheckVocab(model->config().vocab_size));
  const std::string teacher_dir = absl::GetFlag(FLAGS_teacher);
  if (teacher_dir.empty()) {
    ASSIGN_OR_RETURN(EvalResult r, EvaluateLm(model, *data, batch, 0, torch::kCPU));
    std::cerr << "data: " << data->Describe() << std::endl;
    PrintEval(r);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ColocatedTeacher> teacher,
                   ColocatedTeacher::Load(teacher_dir, model->config(), model_dir, torch::kCPU));
  if (options.tokenizer != "bytes") {
    RETURN_IF_ERROR(teacher->CheckTokenizer(TokenizerJsonPath(options.tokenizer), "--tokenizer"));
  }
  ASSIGN_OR_RETURN(TeacherEvalResult r, EvaluateWithTeacher(model, teacher->model(), teacher->vocab(), *data, batch,
                                                            0, /*chunk_tokens=*/1024, torch::kCPU));
  std::cerr << "data: " << data->Describe() << std::endl;
  PrintEval(r);
  return absl::OkStatus();
}

absl::Status Init(const Given&) {
  const std::string out = absl::GetFlag(FLAGS_out);
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(absl::GetFlag(FLAGS_config)));
  RETURN_IF_ERROR(CheckModelFits(config, absl::GetFlag(FLAGS_config)));
  LlamaForCausalLM model = InitModel(config, static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  RETURN_IF_ERROR(SaveHfModel(model, out));
  std::cout << absl::StrFormat("wrote %s: %d parameters", out, CountParameters(config))
            << std::endl;
  return absl::OkStatus();
}

absl::Status Merge(const Given&) {
  const std::string out = absl::GetFlag(FLAGS_out);
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadHfModel(absl::GetFlag(FLAGS_base)));
  RETURN_IF_ERROR(LoadAdapter(model, absl::GetFlag(FLAGS_adapter)));
  MergeLora(model);
  RETURN_IF_ERROR(SaveHfModel(model, out));
  std::cout << "wrote " << out << std::endl;
  return absl::OkStatus();
}

absl::Status Tokenize(const Given& given) {
  const std::string tokenizer = absl::GetFlag(FLAGS_tokenizer);
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (tokenizer == "bytes") {
    if (!absl::GetFlag(FLAGS_separator).empty() || given.count("threads") ||
        given.count("chunk-bytes")) {
      return absl::InvalidArgumentError(
          "--separator, --threads and --chunk-bytes need a tokenizer.json");
    }
    return TokenizeFileBytes(input, output, absl::GetFlag(FLAGS_text_field));
  }
  TokenizeFileOptions options;
  options.text_field = absl::GetFlag(FLAGS_text_field);
  options.separator = absl::GetFlag(FLAGS_separator);
  options.progress = isatty(STDERR_FILENO) != 0;  // no bar of \r updates in log files
  const int64_t threads = given.count("threads") ? absl::GetFlag(FLAGS_threads) : 1;
  if (threads < 1 || threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat("--threads ", threads, ": expected 1..256"));
  }
  options.threads = static_cast<int>(threads);
  const int64_t chunk = absl::GetFlag(FLAGS_chunk_bytes);
  if (chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chunk-bytes ", chunk, ": expected a positive number of bytes"));
  }
  options.chunk_bytes = static_cast<size_t>(chunk);
  ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> hf, HfTokenizer::Load(tokenizer));
  return TokenizeFile(*hf, input, output, options);
}

// A command: its options by command-line name, required ones first.
struct Command {
  const char* name;
  const char* what;  // one line, for the usage
  std::vector<std::string> required;
  std::vector<std::string> optional;
  absl::Status (*run)(const Given&);
};

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"train",
       "trains a job spec's student (mpirun -np N for a multi-rank job)",
       {"spec"},
       {"max-steps-this-run", "metrics-listen", "job-id"},
       &Train},
      {"capture",
       "runs a distill spec's teacher once and writes teacher.cache (mpirun -np N: N ranks share it)",
       {"spec"},
       {},
       &Capture},
      {"eval",
       "loss and perplexity of a model on tokens (and agreement with a teacher)",
       {"model", "seq-len"},
       {"data", "tokens", "format", "tokenizer", "loss-on", "overflow", "packing", "adapter", "teacher",
        "batch", "threads", "text-field"},
       &Eval},
      {"init", "writes a randomly initialised model", {"config", "out"}, {"seed"}, &Init},
      {"merge",
       "merges a LoRA adapter into its base model",
       {"base", "adapter", "out"},
       {},
       &Merge},
      {"tokenize",
       "tokenizes a text file into a token shard",
       {"tokenizer", "input", "output"},
       {"text-field", "threads", "separator", "chunk-bytes"},
       &Tokenize},
  };
  return kCommands;
}

// The flag behind a command-line option: absl names it with '_'.
absl::CommandLineFlag* FlagOf(const std::string& option) {
  return absl::FindCommandLineFlag(absl::StrReplaceAll(option, {{"-", "_"}}));
}

// "  --seq-len L    tokens per sequence" from the flag's help ("L: tokens per sequence").
std::string OptionHelp(const std::string& option, bool required) {
  const absl::CommandLineFlag* flag = FlagOf(option);
  std::string help = flag->Help();
  std::string value = "VALUE";
  if (const size_t colon = help.find(": "); colon != std::string::npos) {
    value = help.substr(0, colon);
    help = help.substr(colon + 2);
  }
  if (required) help = absl::StrCat("required; ", help);
  const std::string def = flag->DefaultValue();
  if (!required && !def.empty() && !absl::StrContains(help, "default")) {
    absl::StrAppend(&help, " (default ", def, ")");
  }
  return absl::StrFormat("    %-30s %s\n", absl::StrCat("--", option, " ", value), help);
}

std::string CommandUsage(const Command& c) {
  std::string out = absl::StrFormat("  %-9s %s\n", c.name, c.what);
  for (const std::string& o : c.required) out += OptionHelp(o, true);
  for (const std::string& o : c.optional) out += OptionHelp(o, false);
  return out;
}

std::string Usage() {
  std::string out =
      "usage: distill-worker COMMAND [--option VALUE | --option=VALUE]...\n"
      "       distill-worker COMMAND --help   (the command's options)\n"
      "       distill-worker --version        (version, LibTorch, CUDA)\n";
  for (const Command& c : Commands()) out += CommandUsage(c);
  return out;
}

// The options after the command, as (command-line name, value), checked
// against the command's: an argument that is not an option, an option of
// another command or one without its value is a usage error.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> SplitOptions(const Command& c,
                                                                              int argc,
                                                                              char** argv) {
  std::vector<std::pair<std::string, std::string>> options;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0)
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (std::find(c.required.begin(), c.required.end(), name) == c.required.end() &&
        std::find(c.optional.begin(), c.optional.end(), name) == c.optional.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    }
    if (eq != std::string::npos) {
      options.emplace_back(name, arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      options.emplace_back(name, argv[++i]);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("option --", name, " needs a value"));
    }
  }
  return options;
}

// Sets the flags (absl parses and checks each value) and checks that the
// command's required options are all given.
absl::StatusOr<Given> SetFlags(const Command& c,
                               const std::vector<std::pair<std::string, std::string>>& options) {
  Given given;
  for (const auto& [name, value] : options) {
    absl::CommandLineFlag* flag = FlagOf(name);
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      if (flag->IsOfType<int64_t>()) {
        return absl::InvalidArgumentError(
            absl::StrCat("option --", name, ": expected an integer, got '", value, "'"));
      }
      return absl::InvalidArgumentError(absl::StrCat("option --", name, ": ", error));
    }
    given.insert(name);
  }
  for (const std::string& r : c.required) {
    if (!given.count(r))
      return absl::InvalidArgumentError(absl::StrCat("missing required option --", r));
  }
  return given;
}

// Under a coordinator: Note [Confinement at use] (DISTILL_DATA_ROOT,
// DISTILL_OUTPUT_ROOT) and Note [Cache directory] (DISTILL_CACHE_DIR).
absl::Status ConfineFromEnv() {
  RETURN_IF_ERROR(common::ConfineFromEnv());
  const char* cache = std::getenv("DISTILL_CACHE_DIR");
  if (cache == nullptr || *cache == '\0') return absl::OkStatus();
  RETURN_IF_ERROR(common::CheckConfined(cache, common::Access::kWrite));
  std::error_code ec;
  std::filesystem::create_directories(cache, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("DISTILL_CACHE_DIR ", cache, ": cannot create: ", ec.message()));
  }
  return absl::OkStatus();
}

// Runs the command; LibTorch's exceptions become errors.
absl::Status Run(const Command& c,
                 const std::vector<std::pair<std::string, std::string>>& options) {
  try {
    RETURN_IF_ERROR(ConfineFromEnv());
    ASSIGN_OR_RETURN(Given given, SetFlags(c, options));
    return c.run(given);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(e.what());
  }
}

int Main(int argc, char** argv) {
  const std::string first = argc < 2 ? "" : argv[1];
  if (argc < 2 || first == "--help" || first == "help") {
    std::cout << Usage();
    return argc < 2 ? 2 : 0;
  }
  if (first == "--version") {
    std::cout << common::VersionLine("distill-worker") << "\n";
    return 0;
  }
  auto it = std::find_if(Commands().begin(), Commands().end(),
                         [&](const Command& c) { return first == c.name; });
  if (it == Commands().end()) {
    std::cerr << "distill-worker: unknown command '" << first << "'\n" << Usage();
    return 2;
  }
  const Command& cmd = *it;
  if (argc == 3 && std::string(argv[2]) == "--help") {
    std::cout << "usage: distill-worker " << cmd.name << " [--option VALUE]...\n"
              << CommandUsage(cmd);
    return 0;
  }
  auto options = SplitOptions(cmd, argc, argv);
  if (!options.ok()) {
    std::cerr << "distill-worker " << cmd.name << ": " << options.status().message() << "\n"
              << CommandUsage(cmd);
    return 2;
  }
  const absl::Status st = Run(cmd, *options);
  if (!st.ok()) {
    std::string msg(st.message());
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::cerr << "distill-worker " << cmd.name << ": error: " << msg << std::endl;
    return common::ExitCodeFor(st);  // Note [Exit codes]
  }
  return 0;
}

}  // namespace
}  // namespace distill::worker

// A command's own exceptions are caught in Run() and named there.
int main(int argc, char** argv) {
  return distill::common::RunCatchingExceptions(
      "distill-worker", [&] { return distill::worker::Main(argc, argv); });
}
