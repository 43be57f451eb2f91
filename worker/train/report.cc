#include "worker/train/report.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/confine.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::worker {
using nlohmann::json;

namespace {
// JSON has no NaN or infinity: write null for them.
json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// The objective's fields as keys of `j` (Note [Objective fields]).
void AddFields(const ObjectiveFields& f, json* j) {
  for (const auto& [name, v] : f.scalars) (*j)[name] = Num(v);
  for (const auto& [name, group] : f.groups) {
    json g = json::object();
    for (const auto& [key, v] : group) g[key] = Num(v);
    (*j)[name] = g;
  }
}
}  // namespace

double ObjectiveFields::Scalar(const std::string& name) const {
  auto it = scalars.find(name);
  return it == scalars.end() ? 0.0 : it->second;
}

void SetStepProgress(const StepRecord& r, distill::v1::Progress* p) {
  p->set_step(r.step);
  p->set_total_steps(r.total_steps);
  p->set_loss(r.loss);
  const ObjectiveFields& f = r.fields;
  p->set_ce_loss(f.Scalar("ce_loss"));
  p->set_kd_loss(f.Scalar("kd_loss"));
  p->mutable_feature_losses()->clear();
  if (auto it = f.groups.find("feature_losses"); it != f.groups.end()) {
    for (const auto& [name, value] : it->second) (*p->mutable_feature_losses())[name] = value;
  }
  p->set_tokens_per_second(r.tokens_per_s);
  p->set_step_seconds(r.step_s);
  p->set_eta_seconds(r.eta_s);
  p->set_teacher_seconds(f.Scalar("teacher_s"));
  p->set_stream_bytes_per_token(f.Scalar("stream_bytes_per_token"));
  p->set_memory_bytes(r.peak_rss_bytes);
  p->set_trainable_params(r.trainable_params);
  p->set_tokens(r.tokens);
  p->set_lr(r.lr);
  p->set_grad_norm(r.grad_norm);
  *p->mutable_rank_totals() = r.totals;
  p->set_mfu(r.mfu);
  p->set_gpu_memory_peak_bytes(r.gpu_memory_peak_bytes);
}

void SetEvalProgress(const EvalRecord& r, distill::v1::Progress* p) {
  p->set_eval_loss(r.loss);
  p->set_eval_step(r.step);
  // A distill objective's eval against the teacher; 0 for a finetune, which
  // adds none of them.
  p->set_eval_kl(r.fields.Scalar("kl"));
  p->set_eval_top1_agreement(r.fields.Scalar("top1_agreement"));
  p->set_eval_teacher_loss(r.fields.Scalar("teacher_loss"));
}

absl::StatusOr<std::unique_ptr<JsonLinesSink>> JsonLinesSink::Open(const std::string& path,
                                                                   int64_t truncate_after_step) {
  auto existing = common::ReadFileToString(path);
  if (existing.ok()) {
    std::istringstream in(*existing);
    std::string kept, line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;  // a line cut short by a crash
      if (j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() > truncate_after_step) {
        continue;
      }
      kept += line + "\n";
    }
    auto st = common::WriteFileAtomically(path, kept);
    if (!st.ok()) return st;
  }
  RETURN_IF_ERROR(common::CheckConfined(path, common::Access::kWrite));
  std::ofstream out(path, std::ios::app);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  return std::unique_ptr<JsonLinesSink>(new JsonLinesSink(std::move(out)));
}

void JsonLinesSink::OnStep(const StepRecord& r) {
  json j = {{"event", "train"},
            {"step", r.step},
            {"total_steps", r.total_steps},
            {"loss", Num(r.loss)},
            {"lr", r.lr},
            {"grad_norm", Num(r.grad_norm)},
            {"tokens", r.tokens},
            {"tokens_per_s", r.tokens_per_s},
            {"elapsed_s", r.elapsed_s},
            {"step_s", r.step_s},
            {"peak_rss_bytes", r.peak_rss_bytes},
            {"compute_s", r.compute_s},
            {"allreduce_s", r.allreduce_s},
            {"ranks", r.ranks}};
  AddFields(r.fields, &j);
  out_ << j.dump() << "\n";
  out_.flush();
}

void JsonLinesSink::OnEval(const EvalRecord& r) {
  json j = {{"event", "eval"},
            {"step", r.step},
            {"loss", Num(r.loss)},
            {"ppl", Num(r.ppl)},
            {"tokens", r.tokens}};
  AddFields(r.fields, &j);
  out_ << j.dump() << "\n";
  out_.flush();
}

void JsonLinesSink::OnMessage(const std::string& text) {
  out_ << json({{"event", "message"}, {"text", text}}).dump() << "\n";
  out_.flush();
}

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

namespace {
std::string FormatRate(double r) {
  if (r >= 1e6) return absl::StrFormat("%.2fM", r / 1e6);
  if (r >= 1e3) return absl::StrFormat("%.1fk", r / 1e3);
  return absl::StrFormat("%.0f", r);
}
}  // namespace

void ConsoleSink::OnStep(const StepRecord& r) {
  const ObjectiveFields& f = r.fields;
  // Where the step's time went: the student's compute, the objective's share
  // (distill: the teacher's forward, or waiting for dedicated teacher ranks),
  // all-reduce.
  std::string time;
  if (r.step_s > 0 && (!f.console_time_share.empty() || r.ranks > 1)) {
    time =
        absl::StrFormat(" | compute %.0f%%", 100.0 * r.compute_s / r.step_s) + f.console_time_share;
    if (r.ranks > 1) time += absl::StrFormat(" allreduce %.0f%%", 100.0 * r.allreduce_s / r.step_s);
    time += f.console_time_tail;
  }
  std::cout << absl::StrFormat("step %d/%d | loss %.4f%s | lr %.2e | %s tok/s%s | eta %s", r.step,
                               r.total_steps, r.loss, f.console_after_loss, r.lr,
                               FormatRate(r.tokens_per_s), time, FormatDuration(r.eta_s))
            << std::endl;
}

void ConsoleSink::OnEval(const EvalRecord& r) {
  std::cout << absl::StrFormat("eval step %d | loss %.4f | ppl %.3f%s | %d tokens", r.step, r.loss,
                               r.ppl, r.fields.console_after_loss, r.tokens)
            << std::endl;
}

void ConsoleSink::OnMessage(const std::string& text) { std::cout << text << std::endl; }

}  // namespace distill::worker
