// Fuzzes config.json parsing (worker/model/config.cc, torch-free): any text
// is a ModelConfig or an InvalidArgument naming the field; a parsed config
// must survive the round trip through ModelConfigToJson, and the parameter
// counts must not overflow (UBSan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "worker/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<distill::worker::ModelConfig> config =
      distill::worker::ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  (void)distill::worker::CountParameters(*config);
  for (int64_t layer = 0; layer < config->num_hidden_layers && layer < 64; ++layer) {
    (void)distill::worker::AttentionWindow(*config, layer);
  }
  absl::StatusOr<distill::worker::ModelConfig> again = distill::worker::ParseModelConfig(
      distill::worker::ModelConfigToJson(*config), "fuzz/config.json (written back)");
  if (!again.ok()) std::abort();  // what we write, we must read
  return 0;
}
