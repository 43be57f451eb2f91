#include "worker/train/report.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs_util.h"

namespace distill::worker {
using nlohmann::json;

namespace {
// JSON has no NaN or infinity: write null for them.
json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
}  // namespace

absl::StatusOr<std::unique_ptr<JsonLinesSink>> JsonLinesSink::Open(const std::string& path,
                                                                   int64_t truncate_after_step) {
  auto existing = common::ReadFileToString(path);
  if (existing.ok()) {
    std::istringstream in(*existing);
    std::string kept, line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;  // a line cut short by a crash
      if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > truncate_after_step) {
        continue;
      }
      kept += line + "\n";
    }
    auto st = common::WriteFileAtomically(path, kept);
    if (!st.ok()) return st;
  }
  std::ofstream out(path, std::ios::app);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  return std::unique_ptr<JsonLinesSink>(new JsonLinesSink(std::move(out)));
}

void JsonLinesSink::OnStep(const StepRecord& r) {
  json j = {{"event", "train"},      {"step", r.step},         {"total_steps", r.total_steps},
            {"loss", Num(r.loss)},   {"lr", r.lr},             {"grad_norm", Num(r.grad_norm)},
            {"tokens", r.tokens},    {"tokens_per_s", r.tokens_per_s}, {"elapsed_s", r.elapsed_s}};
  out_ << j.dump() << "\n";
  out_.flush();
}

void JsonLinesSink::OnEval(const EvalRecord& r) {
  json j = {{"event", "eval"}, {"step", r.step}, {"loss", Num(r.loss)}, {"ppl", Num(r.ppl)}, {"tokens", r.tokens}};
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
  std::cout << absl::StrFormat("step %d/%d | loss %.4f | lr %.2e | %s tok/s | eta %s", r.step, r.total_steps,
                               r.loss, r.lr, FormatRate(r.tokens_per_s), FormatDuration(r.eta_s))
            << std::endl;
}

void ConsoleSink::OnEval(const EvalRecord& r) {
  std::cout << absl::StrFormat("eval step %d | loss %.4f | ppl %.3f | %d tokens", r.step, r.loss, r.ppl, r.tokens)
            << std::endl;
}

void ConsoleSink::OnMessage(const std::string& text) { std::cout << text << std::endl; }

}  // namespace distill::worker
