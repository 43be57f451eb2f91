#include "worker/data/instruction_cache.h"

#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'T', 'L', 'E', 'X', 'M', 'P'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;

template <typename T>
void Put(std::string& out, const T* values, size_t n) {
  out.append(reinterpret_cast<const char*>(values), n * sizeof(T));
}

// Reads the file front to back, refusing to run past its end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* values, size_t n) {
    if (n > (bytes_.size() - pos_) / sizeof(T)) return false;
    std::memcpy(values, bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }
  size_t left() const { return bytes_.size() - pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

// DataLoss unless the arrays agree with each other.
absl::Status CheckConsistent(const std::string& path, const TokenizedExamples& ex) {
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat(path, ": corrupt example cache (", std::string(what), ")"));
  };
  if (ex.begins.front() != 0 || ex.begins.back() != ex.ids.size()) return corrupt("example bounds");
  for (size_t i = 1; i < ex.begins.size(); ++i) {
    if (ex.begins[i] < ex.begins[i - 1]) return corrupt("example bounds");
  }
  for (uint8_t r : ex.response) {
    if (r > 1) return corrupt("response mask");
  }
  return absl::OkStatus();
}

}  // namespace

void TokenizedExamples::Add(const std::vector<uint32_t>& example_ids,
                            const std::vector<uint8_t>& example_response, uint32_t line) {
  ids.insert(ids.end(), example_ids.begin(), example_ids.end());
  response.insert(response.end(), example_response.begin(), example_response.end());
  begins.push_back(ids.size());
  lines.push_back(line);
}

void TokenizedExamples::Append(const TokenizedExamples& other) {
  const uint64_t base = ids.size();
  ids.insert(ids.end(), other.ids.begin(), other.ids.end());
  response.insert(response.end(), other.response.begin(), other.response.end());
  for (size_t i = 1; i < other.begins.size(); ++i) begins.push_back(base + other.begins[i]);
  lines.insert(lines.end(), other.lines.begin(), other.lines.end());
}

absl::Status WriteExampleCache(const std::string& path, const TokenizedExamples& examples) {
  const uint64_t counts[2] = {static_cast<uint64_t>(examples.size()), examples.ids.size()};
  const uint32_t version[2] = {kVersion, 0};
  std::string out;
  out.reserve(kHeaderBytes + examples.begins.size() * 8 + examples.lines.size() * 4 +
              examples.ids.size() * 5);
  out.append(kMagic, sizeof(kMagic));
  Put(out, version, 2);
  Put(out, counts, 2);
  Put(out, examples.begins.data(), examples.begins.size());
  Put(out, examples.lines.data(), examples.lines.size());
  Put(out, examples.ids.data(), examples.ids.size());
  Put(out, examples.response.data(), examples.response.size());
  return common::WriteFileAtomically(path, out);
}

absl::StatusOr<TokenizedExamples> ReadExampleCache(const std::string& path) {
  absl::StatusOr<std::string> bytes = common::ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  Reader in(*bytes);
  char magic[8];
  uint32_t version[2];
  uint64_t counts[2];
  if (!in.Get(magic, 8) || std::memcmp(magic, kMagic, 8) != 0 || !in.Get(version, 2) ||
      version[0] != kVersion) {
    return absl::DataLossError(absl::StrCat(path, ": not an example cache of version ", kVersion));
  }
  if (!in.Get(counts, 2) || counts[0] > in.left() / 12 || counts[1] > in.left() / 5 ||
      in.left() != (counts[0] + 1) * 8 + counts[0] * 4 + counts[1] * 5) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt example cache (size)"));
  }
  TokenizedExamples ex;
  ex.begins.resize(counts[0] + 1);
  ex.lines.resize(counts[0]);
  ex.ids.resize(counts[1]);
  ex.response.resize(counts[1]);
  in.Get(ex.begins.data(), ex.begins.size());
  in.Get(ex.lines.data(), ex.lines.size());
  in.Get(ex.ids.data(), ex.ids.size());
  in.Get(ex.response.data(), ex.response.size());
  RETURN_IF_ERROR(CheckConsistent(path, ex));
  return ex;
}

}  // namespace distill::worker
