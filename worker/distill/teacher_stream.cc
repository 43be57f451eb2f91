#include "worker/distill/teacher_stream.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker::teacher_stream {

torch::Tensor MakeHeader(Kind kind, int64_t student, int64_t request, int64_t b, int64_t l,
                         const TeacherRunConfig& run, bool packed) {
  torch::Tensor h = torch::zeros({kHeaderLen}, torch::kLong);
  auto a = h.accessor<int64_t, 1>();
  a[kKind] = kind;
  a[kStudent] = student;
  a[kRequest] = request;
  a[kBatch] = b;
  a[kLength] = l;
  a[kPacked] = packed ? 1 : 0;
  a[kTransport] = run.transport;
  a[kTopK] = run.top_k;
  int64_t bits = 0;
  static_assert(sizeof(bits) == sizeof(run.temperature));
  std::memcpy(&bits, &run.temperature, sizeof(bits));
  a[kTemperatureBits] = bits;
  a[kCaptureHash] = CaptureHash(run.capture_layers);
  return h;
}

Header ToHeader(const torch::Tensor& header) {
  Header h{};
  auto a = header.accessor<int64_t, 1>();
  for (int f = 0; f < kHeaderLen; ++f) h[f] = a[f];
  return h;
}

HeaderLimits LimitsFor(const TeacherRunConfig& run, int64_t students, int64_t max_tokens) {
  const Header want = ToHeader(MakeHeader(kTrain, 0, 0, 0, 0, run));
  HeaderLimits limits;
  limits.students = students;
  limits.max_tokens = max_tokens;
  limits.transport = want[kTransport];
  limits.top_k = want[kTopK];
  limits.temperature_bits = want[kTemperatureBits];
  limits.capture_hash = want[kCaptureHash];
  return limits;
}

std::string DescribeHeader(const torch::Tensor& header) { return DescribeHeader(ToHeader(header)); }

int64_t CaptureHash(const std::vector<int64_t>& layers) {
  // FNV-1a over the (sorted, unique) layer numbers.
  uint64_t h = 1469598103934665603ull;
  for (int64_t l : layers) {
    h ^= static_cast<uint64_t>(l + 1);
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h & 0x7fffffffffffffffull);
}

std::vector<int64_t> LayerParams(const ModelConfig& c) {
  return std::vector<int64_t>(static_cast<size_t>(c.num_hidden_layers), DecoderLayerParameters(c));
}

int64_t EmbedParams(const ModelConfig& c) { return c.vocab_size * c.hidden_size; }
int64_t HeadParams(const ModelConfig& c) { return c.hidden_size + c.vocab_size * c.hidden_size; }

absl::StatusOr<std::vector<StageRange>> SplitTeacher(const ModelConfig& teacher, int stages) {
  return SplitTeacherLayers(LayerParams(teacher), EmbedParams(teacher), HeadParams(teacher),
                            stages);
}

int StageOf(const std::vector<StageRange>& stages, int64_t layer) {
  for (size_t j = 0; j < stages.size(); ++j) {
    if (layer >= stages[j].begin && layer < stages[j].end) return static_cast<int>(j);
  }
  return 0;  // layer -1 (the embedding) is stage 0's
}

int64_t Bytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

absl::Status PendingSends::Send(const torch::Tensor& t, int dst, int tag, const std::string& what) {
  torch::Tensor c = t.contiguous();
  ASSIGN_OR_RETURN(std::unique_ptr<Work> work, comm_.SendAsync(c, dst, tag, what));
  bytes_ += Bytes(c);
  works_.push_back({std::move(c), std::move(work)});
  return absl::OkStatus();
}

absl::Status PendingSends::Reap() {
  size_t kept = 0;
  for (size_t i = 0; i < works_.size(); ++i) {
    if (works_[i].work->Test()) {
      RETURN_IF_ERROR(works_[i].work->Wait());  // complete: returns at once, with any error
    } else {
      if (kept != i) works_[kept] = std::move(works_[i]);
      ++kept;
    }
  }
  works_.resize(kept);
  return absl::OkStatus();
}

absl::Status PendingSends::Drain() {
  for (Item& item : works_) RETURN_IF_ERROR(item.work->Wait());
  works_.clear();
  return absl::OkStatus();
}

}  // namespace distill::worker::teacher_stream
