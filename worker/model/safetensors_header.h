// The header of a safetensors file, parsed and checked without LibTorch
// (safetensors.h maps the tensors; tests/fuzz/safetensors_fuzz.cc fuzzes
// this). Layout: 8-byte little-endian header length, the JSON header, the
// data section. Pure functions; thread-safe.
#ifndef DISTILL_WORKER_MODEL_SAFETENSORS_HEADER_H_
#define DISTILL_WORKER_MODEL_SAFETENSORS_HEADER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::worker {

// Bytes per element of a safetensors dtype name (F64, F32, F16, BF16, I64,
// I32, I16, I8, U8, BOOL); nullopt for any other name.
std::optional<size_t> SafetensorsDtypeSize(const std::string& dtype);

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // one SafetensorsDtypeSize knows
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                // 8 + the header's length
  std::vector<SafetensorsEntry> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
};

// Parses the header at the start of `file` (the whole file's bytes) and
// checks it: JSON syntax, an object of tensors (and __metadata__, strings
// only), known dtypes, shapes, and data_offsets inside the data section that
// match shape x dtype size and overlap no other tensor's. InvalidArgument
// starting "PATH: " and naming the tensor and field.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file,
                                                         const std::string& path);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_SAFETENSORS_HEADER_H_
