// Fuzzes the safetensors header (worker/model/safetensors_header.cc, what
// SafetensorsFile::Open checks before it hands out a tensor). The input is
// the whole file. A header that parses must describe tensors that lie inside
// the data section, match their shape and dtype, and do not overlap.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/model/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  auto header = distill::worker::ParseSafetensorsHeader(file, "fuzz/model.safetensors");
  if (!header.ok()) return 0;
  const uint64_t data_size = size - header->data_start;
  uint64_t covered = 0;
  for (const auto& t : header->tensors) {
    uint64_t bytes = *distill::worker::SafetensorsDtypeSize(t.dtype);
    for (int64_t d : t.shape) bytes *= static_cast<uint64_t>(d);
    if (t.begin > t.end || t.end > data_size || t.end - t.begin != bytes) std::abort();
    covered += t.end - t.begin;
  }
  if (covered > data_size) std::abort();  // only overlapping tensors could cover more
  return 0;
}
