#include "worker/model/safetensors_header.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace distill::worker {
namespace {

// A file of `header` (JSON text) and `data_bytes` zero bytes of data.
std::string File(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + std::string(data_bytes, '\0');
}

TEST(SafetensorsHeaderTest, ParsesTensorsSortedWithMetadata) {
  auto h =
      ParseSafetensorsHeader(File(R"({"b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
               "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "__metadata__": {"format": "pt"}})",
                                  16),
                             "m.safetensors");
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[0].name, "a");
  EXPECT_EQ(h->tensors[1].dtype, "I64");
  EXPECT_EQ(h->metadata.at("format"), "pt");
}

// Found missing by tests/fuzz (issue 20): two tensors sharing bytes passed.
TEST(SafetensorsHeaderTest, OverlappingOffsetsNameBothTensors) {
  auto h =
      ParseSafetensorsHeader(File(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                  12),
                             "m.safetensors");
  ASSERT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << h.status();
  EXPECT_EQ(h.status().message(),
            "m.safetensors: tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]");
}

TEST(SafetensorsHeaderTest, EmptyTensorsOverlapNothing) {
  auto h =
      ParseSafetensorsHeader(File(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                  8),
                             "m.safetensors");
  EXPECT_TRUE(h.ok()) << h.status();
}

TEST(SafetensorsHeaderTest, ShortFileAndLyingLengthAreInvalid) {
  EXPECT_EQ(ParseSafetensorsHeader("1234", "m.safetensors").status().message(),
            "m.safetensors: file is 4 bytes, shorter than the 8-byte header length");
  std::string lying = File("{}", 0);
  lying[0] = 100;
  EXPECT_EQ(ParseSafetensorsHeader(lying, "m.safetensors").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distill::worker
