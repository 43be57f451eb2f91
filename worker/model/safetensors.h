// Reading and writing the safetensors format (Hugging Face).
//
// A file is read through a read-only mmap; tensors handed out alias the
// mapping (zero-copy) and keep it alive. The header is checked fully on open:
// a truncated or lying file is InvalidArgument naming the file and the
// problem, never a crash. Objects are immutable after Open(): thread-safe.
#ifndef DISTILL_WORKER_MODEL_SAFETENSORS_H_
#define DISTILL_WORKER_MODEL_SAFETENSORS_H_

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

class SafetensorsFile {
 public:
  // Maps `path` and validates its header: JSON syntax, known dtypes (F32, F16,
  // BF16, F64, I64, I32, I16, I8, U8, BOOL), shapes, and data_offsets that lie
  // inside the file and match shape x dtype size.
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in file order (sorted, as the format stores them).
  const std::vector<std::string>& names() const { return names_; }
  bool Contains(const std::string& name) const { return entries_.count(name) > 0; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor in its stored dtype, aliasing the read-only mapping: clone it
  // (or convert with .to()) before writing into it. NotFound if absent.
  absl::StatusOr<torch::Tensor> Get(const std::string& name) const;

 private:
  struct Entry {
    torch::Dtype dtype;
    std::vector<int64_t> shape;
    size_t begin = 0;  // byte offsets into the data section
    size_t end = 0;
  };
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<void> mapping_;  // the whole file; unmapped when the last user is gone
  size_t size_ = 0;
  size_t data_start_ = 0;
  std::vector<std::string> names_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (contiguous CPU copies are made as needed) to `path`
// atomically: a temporary file in the same directory, then rename. Names must
// be unique. Supported dtypes as for reading.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// All tensors of a Hugging Face model directory: `model.safetensors`, or the
// shards listed in `model.safetensors.index.json` (weight_map). A name listed
// in the index but missing from its shard, or a missing shard file, is an
// error naming both files. Tensors alias the mappings (see Get()).
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadSafetensorsDir(const std::string& dir);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_SAFETENSORS_H_
