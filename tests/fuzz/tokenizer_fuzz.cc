// Fuzzes a tokenizer.json (worker/data/hf_tokenizer*.cc) and encoding with
// it. The input is the tokenizer.json text, optionally a NUL byte and then
// the text to encode (a default text without one). A loaded tokenizer must
// encode, with and without offsets, and decode what it encoded, each giving
// a value or a Status: no crash, no uncaught exception, no sanitizer report.
// Encoding with and without offsets must agree (HfTokenizer's contract).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "worker/data/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json(input.substr(0, nul));
  const std::string_view text = nul == std::string_view::npos
                                    ? std::string_view("Hello world, h\xC3\xA9llo 123!\n<s> x")
                                    : input.substr(nul + 1);
  auto tokenizer = distill::worker::HfTokenizer::FromJson(json, "fuzz/tokenizer.json");
  if (!tokenizer.ok()) return 0;
  const auto& t = **tokenizer;
  for (bool special : {false, true}) {
    absl::StatusOr<std::vector<uint32_t>> ids = t.Encode(text, special);
    absl::StatusOr<distill::worker::Encoding> with_offsets = t.EncodeWithOffsets(text, special);
    if (ids.ok() && with_offsets.ok() && with_offsets->ids != *ids) std::abort();
    if (ids.ok()) (void)t.Decode(*ids, /*skip_special_tokens=*/special);
  }
  return 0;
}
