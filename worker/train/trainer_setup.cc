// Trainer::Create: the student, the data, the optimizer, resume and
// reporting, before the first step (trainer.h).
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/confine.h"
#include "common/output_owner.h"
#include "common/plan.h"
#include "common/status_macros.h"
#include "worker/comm/grad_reducer.h"
#include "worker/comm/loopback_communicator.h"
#include "worker/data/open_data.h"
#include "worker/model/hf_io.h"
#include "worker/train/checkpoint.h"
#include "worker/train/device_stats.h"
#include "worker/train/sharded_adamw.h"
#include "worker/train/trainer.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::JobSpec;

namespace {

absl::StatusOr<torch::Device> PickDevice(const std::string& name, int index) {
  const bool cuda = torch::cuda::is_available();
  if (name == "cpu" || (name == "auto" && !cuda)) return torch::Device(torch::kCPU);
  if (!cuda)
    return absl::FailedPreconditionError(
        "train.device: cuda requested but no CUDA device is available");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void SetThreads(int threads) {
  int n =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

LoraConfig LoraConfigOf(const distill::v1::LoraSpec& spec) {
  LoraConfig c;
  c.rank = spec.rank();
  c.alpha = spec.alpha();
  c.dropout = spec.dropout();
  c.target_modules.assign(spec.target_modules().begin(), spec.target_modules().end());
  c.rslora = spec.rslora();
  return c;
}

}  // namespace

DataOptions DataOptionsOf(const distill::v1::DataSpec& d, int threads) {
  DataOptions o;
  o.format = absl::AsciiStrToLower(distill::v1::DataFormat_Name(d.format()));
  o.tokenizer = d.tokenizer();
  o.text_field = d.text_field();
  o.loss_on = absl::AsciiStrToLower(distill::v1::LossOn_Name(d.loss_on()));
  o.overflow = absl::AsciiStrToLower(distill::v1::Overflow_Name(d.overflow()));
  o.pack = d.packing();
  o.seq_len = d.seq_len();
  o.threads = threads;
  return o;
}

Trainer::Trainer(const JobSpec& spec, const TrainOptions& options, TrainObjective& objective)
    : spec_(spec), t_(spec.train()), options_(options), objective_(objective) {}

Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const JobSpec& spec,
                                                         const TrainOptions& options,
                                                         TrainObjective& objective) {
  std::unique_ptr<Trainer> t(new Trainer(spec, options, objective));
  RETURN_IF_ERROR(t->SetUpDevice());
  RETURN_IF_ERROR(t->BuildStudent());
  RETURN_IF_ERROR(t->OpenData());
  RETURN_IF_ERROR(t->BuildOptimizer());
  RETURN_IF_ERROR(t->Resume());
  RETURN_IF_ERROR(t->OpenReporting());
  return t;
}

absl::Status Trainer::SetUpDevice() {
  SetThreads(t_.threads());
  ASSIGN_OR_RETURN(device_, PickDevice(t_.device(), options_.cuda_device));
  if (options_.students == nullptr) loopback_ = MakeLoopbackCommunicator();
  students_ = options_.students ? options_.students : loopback_.get();
  ranks_ = students_->size();
  rank_ = students_->rank();
  writer_ = rank_ == 0;
  bf16_ = t_.precision() == distill::v1::BF16 ||
          (t_.precision() == distill::v1::PRECISION_UNSPECIFIED && device_.is_cuda());
  return absl::OkStatus();
}

absl::Status Trainer::BuildStudent() {
  const common::StudentSource source = common::MakePlan(spec_).student;
  if (!source.model_dir.empty()) {
    ASSIGN_OR_RETURN(model_, LoadHfModel(source.model_dir));
  } else {
    ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(source.init_config));
    RETURN_IF_ERROR(CheckModelFits(config, source.init_config));
    model_ = InitModel(config, t_.seed());
  }
  base_model_ = source.model_dir.empty() ? source.init_config : source.model_dir;
  lora_ = source.lora;
  if (lora_) {
    lora_config_ = LoraConfigOf(source.lora_spec);
    RETURN_IF_ERROR(ApplyLora(model_, lora_config_, t_.seed()));
  }
  model_->to(device_);
  // bf16 weights (2 bytes per parameter); the optimizer keeps fp32 master
  // weights (BuildOptimizer).
  if (bf16_) model_->to(torch::kBFloat16);
  model_->set_activation_checkpointing(t_.activation_checkpointing());
  model_->train();
  return objective_.Prepare(model_, device_, bf16_);
}

absl::Status Trainer::OpenData() {
  seq_len_ = spec_.data().seq_len();
  const int64_t vocab = model_->config().vocab_size;
  auto open = [&](const auto& paths) -> absl::StatusOr<std::unique_ptr<SequenceData>> {
    ASSIGN_OR_RETURN(std::unique_ptr<SequenceData> data,
                     OpenSequenceData({paths.begin(), paths.end()}, DataOptionsOf(spec_.data(), at::get_num_threads())));
    RETURN_IF_ERROR(data->CheckVocab(vocab));
    return data;
  };
  ASSIGN_OR_RETURN(train_data_, open(spec_.data().train()));
  if (spec_.data().eval_size() > 0) {
    ASSIGN_OR_RETURN(eval_data_, open(spec_.data().eval()));
  }
  SamplerOptions sopt;
  sopt.seq_len = seq_len_;
  sopt.seed = t_.seed();
  sopt.rank = rank_;
  sopt.world = ranks_;
  ASSIGN_OR_RETURN(sampler_, WindowSampler::ForRows(train_data_->rows(), sopt));
  return absl::OkStatus();
}

// AdamW, or ShardedAdamW for ZeRO across ranks or bf16 weights (Note
// [Data-parallel step]); the gradient reducer when there are ranks to average.
absl::Status Trainer::BuildOptimizer() {
  params_ = TrainableParams(*model_);
  for (NamedParam& p : objective_.ExtraParams()) params_.push_back(std::move(p));
  for (const NamedParam& p : params_) param_tensors_.push_back(p.param);
  AdamWOptions aopt;
  aopt.beta1 = t_.beta1();
  aopt.beta2 = t_.beta2();
  aopt.eps = t_.eps();
  aopt.weight_decay = t_.weight_decay();
  grads_ = options_.grads ? options_.grads : students_;
  zero_ = ranks_ > 1 ? spec_.runtime().zero() : 0;
  if (ranks_ > 1) {  // else nothing to average (Note [Data-parallel step])
    GradReducerOptions ropt;
    ropt.bucket_bytes = options_.bucket_bytes;
    ropt.reduce_scatter = zero_ == 2;
    ASSIGN_OR_RETURN(reducer_, GradReducer::Create(param_tensors_, *grads_, ropt));
  }
  if (zero_ == 0 && !bf16_) {
    optimizer_ = std::make_unique<AdamW>(params_, aopt);
    return absl::OkStatus();
  }
  const std::vector<std::vector<int64_t>> buckets =
      reducer_ ? reducer_->BucketLayout() : GradReducer::Plan(param_tensors_, options_.bucket_bytes);
  // Without ZeRO each rank keeps all the master weights: a shard of one.
  if (zero_ == 0) optimizer_loopback_ = MakeLoopbackCommunicator();
  Communicator& shards = zero_ == 0 ? *optimizer_loopback_ : *grads_;
  ASSIGN_OR_RETURN(optimizer_, ShardedAdamW::Create(params_, buckets, shards,
                                                    zero_ == 2 ? reducer_.get() : nullptr, aopt));
  return absl::OkStatus();
}

// The newest checkpoint under OUTPUT/checkpoints, when the spec resumes.
absl::Status Trainer::Resume() {
  const fs::path out_dir(spec_.output());
  RETURN_IF_ERROR(common::CheckConfined(spec_.output(), common::Access::kWrite));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(spec_.output(), ": cannot create output directory: ", ec.message()));
  }
  ckpt_root_ = (out_dir / "checkpoints").string();
  final_output_ = (out_dir / (lora_ ? "adapter" : "model")).string();
  if (writer_) RETURN_IF_ERROR(ClaimOutput());
  if (!spec_.checkpoint().resume()) return absl::OkStatus();
  std::optional<std::string> latest = LatestCheckpoint(ckpt_root_);
  if (!latest) return absl::OkStatus();
  ASSIGN_OR_RETURN(CheckpointState st, LoadCheckpoint(*latest, params_, *optimizer_));
  if (st.identity) {
    const std::vector<std::string> diffs =
        common::IdentityDifferences(*st.identity, common::IdentityOf(spec_));
    if (!diffs.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          *latest, ": a checkpoint of another run, which differs in ", absl::StrJoin(diffs, ", "),
          ": write to another output directory, or set checkpoint.resume: false"));
    }
  }
  if (st.job_type != objective_.job_type()) {
    return absl::FailedPreconditionError(absl::StrCat(*latest, ": checkpoint is of a ", st.job_type,
                                                      " job, the spec is type ",
                                                      objective_.job_type()));
  }
  if (st.method != (lora_ ? "lora" : "full")) {
    return absl::FailedPreconditionError(absl::StrCat(*latest, ": checkpoint is for method ",
                                                      st.method, ", the spec says ",
                                                      lora_ ? "lora" : "full"));
  }
  start_step_ = st.step;
  tokens_ = st.tokens;
  sampler_->set_position(st.sampler_position);
  result_.resumed_from = st.step;
  return absl::OkStatus();
}

// Student 0: Note [Output ownership], and what an interrupted earlier run
// left half-written (staging dirs and temp files of its checkpoints and
// output); no other process writes the directory now that it is ours.
absl::Status Trainer::ClaimOutput() {
  RETURN_IF_ERROR(common::ClaimOutput(spec_.output(), options_.job_id, common::IdentityOf(spec_)));
  const int removed =
      common::RemoveStaleStaging(spec_.output()) + common::RemoveStaleStaging(ckpt_root_);
  if (removed > 0) {
    std::cerr << spec_.output() << ": removed " << removed
              << " half-written file(s) of an interrupted run" << std::endl;
  }
  return absl::OkStatus();
}

// The sinks (and metrics.jsonl on rank 0), the start lines, and the
// run's extent.
absl::Status Trainer::OpenReporting() {
  std::vector<ReportSink*> sinks = options_.sinks;
  if (writer_) {
    ASSIGN_OR_RETURN(
        jsonl_,
        JsonLinesSink::Open((fs::path(spec_.output()) / "metrics.jsonl").string(), start_step_));
    sinks.push_back(jsonl_.get());
  }
  report_ = Fanout(std::move(sinks));
  result_.trainable_params = CountTrainableParameters(*model_);
  for (const auto& p : model_->parameters()) result_.total_params += p.numel();
  if (start_step_ > 0)
    report_.OnMessage(absl::StrCat("resumed from checkpoint at step ", start_step_));
  std::string dp;
  if (ranks_ > 1) {
    dp = absl::StrFormat(", %d data-parallel ranks (%s %s, %d buckets)", ranks_, grads_->backend(),
                         zero_ == 2 ? "reduce-scatter" : "all-reduce", reducer_->stats().buckets);
  }
  if (zero_ > 0) absl::StrAppendFormat(&dp, ", ZeRO-%d across %d ranks", zero_, ranks_);
  if (bf16_) absl::StrAppend(&dp, ", bf16 weights with fp32 master weights");
  absl::StrAppendFormat(&dp, ", optimizer state %d bytes per rank", optimizer_->StateBytes());
  report_.OnMessage(absl::StrFormat(
      "training %s: %d parameters, %d trainable, train data %s, device %s, %d threads%s%s",
      lora_ ? "lora" : "full", result_.total_params, result_.trainable_params, train_data_->Describe(),
      device_.str(), at::get_num_threads(), dp, objective_.Describe()));
  tokens_per_step_ = int64_t{t_.micro_batch()} * t_.grad_accum() * seq_len_ * ranks_;
  flops_per_token_ = TrainingFlopsPerToken(model_->config(), seq_len_);
  const auto& rt = spec_.runtime();
  const double peak_tflops = rt.has_peak_tflops() ? rt.peak_tflops()
                             : device_.is_cuda()  ? CudaPeakTflops(CudaDeviceName(device_.index()), bf16_)
                                                  : 0.0;
  peak_flops_ = peak_tflops * 1e12;
  end_step_ = options_.max_steps_this_run > 0
                  ? std::min<int64_t>(t_.steps(), start_step_ + options_.max_steps_this_run)
                  : t_.steps();
  micro_left_ = (end_step_ - start_step_) * t_.grad_accum();
  return absl::OkStatus();
}

}  // namespace distill::worker
