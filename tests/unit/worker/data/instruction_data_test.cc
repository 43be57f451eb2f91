#include "worker/data/instruction_data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
using distill::testing::MakeTempDir;
using distill::testing::ReadJson;
using distill::testing::ReferencePath;
using distill::testing::WriteFile;

constexpr int64_t kIgn = kIgnoreTarget;

// One row as read.
struct Row {
  std::vector<int64_t> inputs, targets, positions;
};

Row ReadRow(const SequenceData& data, int64_t row) {
  Row r;
  const size_t n = static_cast<size_t>(data.seq_len());
  r.inputs.resize(n);
  r.targets.resize(n);
  r.positions.resize(n);
  data.Read(row, r.inputs.data(), r.targets.data(), r.positions.data());
  return r;
}

// A prompt_completion JSONL line; the byte tokenizer makes every character
// one id, so the rows below can be written by hand.
std::string Pc(const std::string& prompt, const std::string& completion) {
  return "{\"prompt\": \"" + prompt + "\", \"completion\": \"" + completion + "\"}\n";
}

InstructionOptions BytesOptions(int64_t seq_len) {
  InstructionOptions options;
  options.format = "prompt_completion";
  options.tokenizer = "bytes";
  options.seq_len = seq_len;
  return options;
}

std::unique_ptr<PackedExamples> OpenOk(const std::string& contents,
                                       const InstructionOptions& options) {
  const std::string path = MakeTempDir("instruction_data") + "/d.jsonl";
  WriteFile(path, contents);
  auto data = PackedExamples::Open({path}, options);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *std::move(data) : nullptr;
}

TEST(InstructionDataTest, PromptCompletionRowsByHand) {
  // "ab" + "cd": ids a b c d (no EOS with bytes), response c d. Slots:
  // (a -> b ignored), (b -> c), (c -> d); then "x" + "yz": (x -> y), (y -> z).
  // Sizes 3 and 2 fit one row of 6; one slot of padding.
  auto data = OpenOk(Pc("ab", "cd") + Pc("x", "yz"), BytesOptions(6));
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->rows(), 1);
  EXPECT_TRUE(data->packed());
  const Row r = ReadRow(*data, 0);
  EXPECT_EQ(r.inputs, (std::vector<int64_t>{'a', 'b', 'c', 'x', 'y', 0}));
  EXPECT_EQ(r.targets, (std::vector<int64_t>{kIgn, 'c', 'd', 'y', 'z', kIgn}));
  EXPECT_EQ(r.positions, (std::vector<int64_t>{0, 1, 2, 0, 1, 0}));
  EXPECT_EQ(data->counted_targets(), 4);
  const PackingStats& s = data->stats();
  EXPECT_EQ(s.examples, 2);
  EXPECT_EQ(s.real_slots, 5);
  EXPECT_EQ(s.total_slots, 6);
  EXPECT_EQ(s.Summary(),
            "2 examples, 0 truncated, 0 dropped, packed into 1 rows of 6 (efficiency 83.3%)");
}

TEST(InstructionDataTest, PackingIsBestFitDecreasingWithPositionsPerExample) {
  // Slot sizes 2, 4, 1, 3 into rows of 5: 4 opens row 0, 3 opens row 1, 2
  // best fits row 1, 1 fits row 0. Rows list examples in placement order.
  auto data =
      OpenOk(Pc("a", "bc") + Pc("d", "efgh") + Pc("i", "j") + Pc("k", "lmn"), BytesOptions(5));
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->rows(), 2);
  Row r0 = ReadRow(*data, 0), r1 = ReadRow(*data, 1);
  EXPECT_EQ(r0.inputs, (std::vector<int64_t>{'d', 'e', 'f', 'g', 'i'}));
  EXPECT_EQ(r0.targets, (std::vector<int64_t>{'e', 'f', 'g', 'h', 'j'}));
  EXPECT_EQ(r0.positions, (std::vector<int64_t>{0, 1, 2, 3, 0}));
  EXPECT_EQ(r1.inputs, (std::vector<int64_t>{'k', 'l', 'm', 'a', 'b'}));
  EXPECT_EQ(r1.positions, (std::vector<int64_t>{0, 1, 2, 0, 1}));
  EXPECT_DOUBLE_EQ(data->stats().efficiency(), 1.0);
}

TEST(InstructionDataTest, UnpackedIsOneExamplePerRowInFileOrder) {
  InstructionOptions options = BytesOptions(5);
  options.pack = false;
  auto data = OpenOk(Pc("a", "bc") + Pc("d", "efgh"), options);
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->rows(), 2);
  const Row r0 = ReadRow(*data, 0);
  EXPECT_EQ(r0.inputs, (std::vector<int64_t>{'a', 'b', 0, 0, 0}));
  EXPECT_EQ(r0.targets, (std::vector<int64_t>{'b', 'c', kIgn, kIgn, kIgn}));
  EXPECT_EQ(r0.positions, (std::vector<int64_t>{0, 1, 0, 1, 2}));
  EXPECT_EQ(ReadRow(*data, 1).inputs, (std::vector<int64_t>{'d', 'e', 'f', 'g', 0}));
  EXPECT_EQ(data->stats().Summary(),
            "2 examples, 0 truncated, 0 dropped, one per row in 2 rows of 5 (efficiency 60.0%)");
}

// The example segments of a row (split where a position is 0), without the
// padding (no counted target, inputs 0).
std::vector<Row> Segments(const Row& r) {
  std::vector<Row> segments;
  for (size_t j = 0; j < r.inputs.size(); ++j) {
    if (r.positions[j] == 0) segments.emplace_back();
    segments.back().inputs.push_back(r.inputs[j]);
    segments.back().targets.push_back(r.targets[j]);
    segments.back().positions.push_back(r.positions[j]);
  }
  std::vector<Row> examples;
  for (Row& segment : segments) {
    const bool padding =
        std::all_of(segment.targets.begin(), segment.targets.end(),
                    [](int64_t t) { return t == kIgn; }) &&
        std::all_of(segment.inputs.begin(), segment.inputs.end(), [](int64_t i) { return i == 0; });
    if (!padding) examples.push_back(std::move(segment));
  }
  return examples;
}

// Every example's slots are the same packed or alone in a row.
TEST(InstructionDataTest, PackedRowsHoldTheUnpackedExamplesSlotForSlot) {
  std::string contents;
  for (int i = 0; i < 40; ++i) {
    contents += Pc(std::string(1 + (i * 7) % 11, static_cast<char>('a' + i % 26)),
                   std::string(1 + (i * 5) % 13, static_cast<char>('A' + i % 26)));
  }
  const std::string path = MakeTempDir("instruction_data") + "/d.jsonl";
  WriteFile(path, contents);
  InstructionOptions options = BytesOptions(32);
  std::vector<std::vector<Row>> by_packing;
  for (bool pack : {true, false}) {
    options.pack = pack;
    auto data = PackedExamples::Open({path}, options);
    ASSERT_TRUE(data.ok()) << data.status();
    std::vector<Row> examples;
    for (int64_t row = 0; row < (*data)->rows(); ++row) {
      for (Row& segment : Segments(ReadRow(**data, row))) examples.push_back(std::move(segment));
    }
    std::sort(examples.begin(), examples.end(), [](const Row& a, const Row& b) {
      return std::tie(a.inputs, a.targets) < std::tie(b.inputs, b.targets);
    });
    by_packing.push_back(std::move(examples));
  }
  ASSERT_EQ(by_packing[0].size(), 40u);
  ASSERT_EQ(by_packing[1].size(), 40u);
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(by_packing[0][i].inputs, by_packing[1][i].inputs);
    EXPECT_EQ(by_packing[0][i].targets, by_packing[1][i].targets);
    EXPECT_EQ(by_packing[0][i].positions, by_packing[1][i].positions);
  }
}

TEST(InstructionDataTest, LossOnAllCountsEveryTarget) {
  InstructionOptions options = BytesOptions(6);
  options.loss_on = "all";
  auto data = OpenOk(Pc("ab", "cd") + Pc("x", "yz"), options);
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(ReadRow(*data, 0).targets, (std::vector<int64_t>{'b', 'c', 'd', 'y', 'z', kIgn}));
  EXPECT_EQ(data->counted_targets(), 5);
}

// Examples of 7, 4 and 9 tokens with L = 5 (at most 6 tokens): truncation
// cuts the first to "pppccc" (a response left), the third to "pppppp" (none).
constexpr char kOverflowData[] = R"({"prompt": "ppp", "completion": "cccc"}
{"prompt": "p", "completion": "ccc"}
{"prompt": "pppppp", "completion": "ccc"}
)";

TEST(InstructionDataTest, OverflowTruncateKeepsTheFirstTokensAndDropsWhatLosesItsResponse) {
  auto data = OpenOk(kOverflowData, BytesOptions(5));
  ASSERT_NE(data, nullptr);
  const PackingStats& s = data->stats();
  EXPECT_EQ(s.examples, 3);
  EXPECT_EQ(s.truncated, 1);
  EXPECT_EQ(s.dropped_overflow, 0);
  EXPECT_EQ(s.dropped_no_response, 1);
  EXPECT_EQ(s.Summary(),
            "3 examples, 1 truncated, 1 dropped (no response tokens left), packed into 2 rows of 5 "
            "(efficiency 80.0%)");
  const Row r0 = ReadRow(*data, 0);
  EXPECT_EQ(r0.inputs, (std::vector<int64_t>{'p', 'p', 'p', 'c', 'c'}));
  EXPECT_EQ(r0.targets, (std::vector<int64_t>{kIgn, kIgn, 'c', 'c', 'c'}));
}

TEST(InstructionDataTest, OverflowDropLeavesLongExamplesOut) {
  InstructionOptions options = BytesOptions(5);
  options.overflow = "drop";
  auto data = OpenOk(kOverflowData, options);
  ASSERT_NE(data, nullptr);
  const PackingStats& s = data->stats();
  EXPECT_EQ(s.truncated, 0);
  EXPECT_EQ(s.dropped_overflow, 2);
  EXPECT_EQ(s.dropped_no_response, 0);
  EXPECT_EQ(data->rows(), 1);
  EXPECT_EQ(ReadRow(*data, 0).inputs, (std::vector<int64_t>{'p', 'c', 'c', 0, 0}));
  EXPECT_EQ(s.Summary(),
            "3 examples, 0 truncated, 2 dropped (over 6 tokens), packed into 1 rows of 5 "
            "(efficiency 60.0%)");
}

TEST(InstructionDataTest, EmptyCompletionHasNoResponseAndIsDropped) {
  auto data = OpenOk(Pc("abc", "") + Pc("d", "e"), BytesOptions(4));
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(data->stats().dropped_no_response, 1);
  EXPECT_EQ(data->rows(), 1);
  EXPECT_EQ(data->counted_targets(), 1);
}

TEST(InstructionDataTest, NothingLeftIsAnError) {
  const std::string path = MakeTempDir("instruction_data") + "/d.jsonl";
  WriteFile(path, Pc("abc", ""));
  auto data = PackedExamples::Open({path}, BytesOptions(4));
  ASSERT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(data.status().message().find("no example left to train on: 1 examples"),
            std::string::npos)
      << data.status();
}

TEST(InstructionDataTest, SeveralFilesInOrderAndCheckVocabNamesFileAndLine) {
  const std::string dir = MakeTempDir("instruction_data");
  WriteFile(dir + "/a.jsonl", Pc("ab", "c"));
  WriteFile(dir + "/b.jsonl", "\n" + Pc("ab", "c") + Pc("ab", "\u00ff"));
  InstructionOptions options = BytesOptions(2);
  options.pack = false;
  auto data = PackedExamples::Open({dir + "/a.jsonl", dir + "/b.jsonl"}, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->rows(), 3);
  EXPECT_TRUE((*data)->CheckVocab(256).ok());
  // U+00FF is bytes C3 BF: the first id >= 'c' + 1 is in b.jsonl line 3.
  const absl::Status s = (*data)->CheckVocab('c' + 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(dir + "/b.jsonl:3: token id 195 (token 2 of the example)"),
            std::string::npos)
      << s;
}

TEST(InstructionDataTest, OptionsApplyWhenRowsAreBuiltSoTheCacheServesThemAll) {
  const std::string path = MakeTempDir("instruction_data") + "/d.jsonl";
  WriteFile(path, kOverflowData);
  auto first = PackedExamples::Open({path}, BytesOptions(5));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->stats().files_from_cache, 0);
  InstructionOptions options = BytesOptions(3);
  options.loss_on = "all";
  options.overflow = "drop";
  options.pack = false;
  auto second = PackedExamples::Open({path}, options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->stats().files_from_cache, 1);
  EXPECT_EQ((*second)->stats().dropped_overflow, 2);
  ASSERT_EQ((*second)->rows(), 1);  // "pccc": 4 tokens = L + 1, all 3 targets counted
  EXPECT_EQ((*second)->counted_targets(), 3);
  EXPECT_EQ(ReadRow(**second, 0).targets, (std::vector<int64_t>{'c', 'c', 'c'}));
}

// Qwen3 conversations one per row: the rendered ids shifted by one, and only
// the targets transformers' spans mark (tests/reference/hf_instruction_data.py).
TEST(InstructionDataTest, ChatRowsTrainOnTheAssistantTokensOnly) {
  const std::string dir = MakeTempDir("instruction_data_chat");
  std::filesystem::copy_file(ReferencePath("hf_instruction_data/chat.jsonl"), dir + "/chat.jsonl");
  const nlohmann::json golden = ReadJson(ReferencePath("hf_instruction_data/chat.json"));
  ASSERT_TRUE(golden.is_array());
  InstructionOptions options;
  options.format = "chat";
  options.tokenizer = ReferencePath("hf_instruction_data/tokenizer");
  options.seq_len = 64;
  options.pack = false;
  auto data = PackedExamples::Open({dir + "/chat.jsonl"}, options);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ((*data)->rows(), static_cast<int64_t>(golden.size()));
  int64_t counted = 0;
  for (size_t i = 0; i < golden.size(); ++i) {
    const auto ids = golden[i]["ids"].get<std::vector<int64_t>>();
    const auto response = golden[i]["response"].get<std::vector<int>>();
    const Row r = ReadRow(**data, static_cast<int64_t>(i));
    for (size_t k = 0; k + 1 < ids.size(); ++k) {
      EXPECT_EQ(r.inputs[k], ids[k]) << "conversation " << i << " slot " << k;
      EXPECT_EQ(r.targets[k], response[k + 1] ? ids[k + 1] : kIgn)
          << "conversation " << i << " slot " << k;
      EXPECT_EQ(r.positions[k], static_cast<int64_t>(k));
      counted += response[k + 1];
    }
  }
  EXPECT_EQ((*data)->counted_targets(), counted);
}

TEST(InstructionDataTest, BadOptionsAreInvalidArgument) {
  for (auto change : std::vector<void (*)(InstructionOptions&)>{
           [](InstructionOptions& o) { o.format = "text"; },
           [](InstructionOptions& o) { o.loss_on = "prompt"; },
           [](InstructionOptions& o) { o.overflow = "split"; },
           [](InstructionOptions& o) { o.seq_len = 0; }}) {
    InstructionOptions options = BytesOptions(4);
    change(options);
    EXPECT_EQ(PackedExamples::Open({"/nonexistent.jsonl"}, options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace distill::worker
