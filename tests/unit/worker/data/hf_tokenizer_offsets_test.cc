// HfTokenizer::EncodeWithOffsets (worker/data/hf_tokenizer_offsets.cc):
// hand-checked cases on small tokenizers, then Hugging Face tokenizers'
// `encode(text).offsets` (tests/reference/hf_tokenizers.py, in bytes) for
// every reference tokenizer and the real Qwen3 tokenizer.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"
#include "worker/data/hf_tokenizer.h"

namespace distill::worker {
namespace {

using Offsets = std::vector<std::pair<size_t, size_t>>;

const char kMeta[] = "\xE2\x96\x81";  // ▁

nlohmann::json AddedToken(uint32_t id, const std::string& content, bool lstrip = false,
                          bool rstrip = false) {
  return {{"id", id},         {"content", content},  {"single_word", false}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", false}, {"special", true}};
}

// Llama-2 layout: Prepend + Replace normalizers, byte fallback, a BOS template.
nlohmann::json SentencePieceJson() {
  const std::string m = kMeta;
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 2 + b;
  }
  const std::vector<std::string> tokens = {m, "h", "i", m + "h", m + "hi"};
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = 258 + i;
  return {{"added_tokens", {AddedToken(0, "<unk>"), AddedToken(1, "<s>")}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", m}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", m}}}}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", {m + " h", m + "h i"}}}}};
}

// GPT-2 layout: NFC, a ByteLevel pre-tokenizer with its regex, the 256
// byte-level characters, "Ġh" and "Ġhi", and added tokens.
nlohmann::json ByteLevelJson() {
  nlohmann::json vocab = nlohmann::json::object();
  uint32_t id = 0;
  auto add_char = [&](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = id++;
  };
  // The GPT-2 byte-to-unicode alphabet.
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    add_char(printable ? b : 256 + n++);
  }
  vocab["\xC4\xA0h"] = id++;   // Ġh
  vocab["\xC4\xA0hi"] = id++;  // Ġhi
  return {
      {"added_tokens", {AddedToken(id, "<|im_end|>"), AddedToken(id + 1, "<mask>", true, true)}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC4\xA0 h", "\xC4\xA0h i"}}}}};
}

std::unique_ptr<HfTokenizer> MustLoad(const nlohmann::json& j) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::FromJson(j.dump(), "test.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

// EncodeWithOffsets, checking that its ids are Encode's.
Encoding MustEncode(const HfTokenizer& tok, const std::string& text, bool add_special = false) {
  absl::StatusOr<Encoding> enc = tok.EncodeWithOffsets(text, add_special);
  EXPECT_TRUE(enc.ok()) << enc.status();
  if (!enc.ok()) return {};
  absl::StatusOr<std::vector<uint32_t>> ids = tok.Encode(text, add_special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  if (ids.ok()) {
    EXPECT_EQ(enc->ids, *ids) << text;
  }
  EXPECT_EQ(enc->ids.size(), enc->offsets.size());
  return *std::move(enc);
}

TEST(HfTokenizerOffsetsTest, SentencePiecePrependedMetaCoversTheFirstCharacter) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  // "▁hi▁hi": the prepended ▁ takes the range of "h", the replaced space its own.
  Encoding enc = MustEncode(*tok, "hi hi");
  EXPECT_EQ(enc.ids, (std::vector<uint32_t>{262, 262}));
  EXPECT_EQ(enc.offsets, (Offsets{{0, 2}, {2, 5}}));
  // The BOS of the post-processor covers nothing.
  enc = MustEncode(*tok, "hi hi", /*add_special=*/true);
  EXPECT_EQ(enc.offsets, (Offsets{{0, 0}, {0, 2}, {2, 5}}));
}

TEST(HfTokenizerOffsetsTest, ByteFallbackTokensCoverTheWholeCharacter) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  // "▁h" + <0xC3> <0xA9> for "é" (bytes 1-2): each byte covers the character.
  const Encoding enc = MustEncode(*tok, "h\xC3\xA9");
  EXPECT_EQ(enc.ids, (std::vector<uint32_t>{261, 2 + 0xC3, 2 + 0xA9}));
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {1, 3}, {1, 3}}));
}

TEST(HfTokenizerOffsetsTest, ByteLevelTokensAreUntrimmed) {
  auto tok = MustLoad(ByteLevelJson());
  ASSERT_NE(tok, nullptr);
  // "hi", " hi", " h" + "!": the leading space belongs to its token.
  const Encoding enc = MustEncode(*tok, "hi hi h!");
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {1, 2}, {2, 5}, {5, 7}, {7, 8}}));
}

TEST(HfTokenizerOffsetsTest, ByteLevelSplitOfAMultiByteCharacterCoversIt) {
  auto tok = MustLoad(ByteLevelJson());
  ASSERT_NE(tok, nullptr);
  // U+4F60 is three byte-level tokens, each covering its 3 bytes.
  const Encoding enc = MustEncode(*tok, "h\xE4\xBD\xA0");
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {1, 4}, {1, 4}, {1, 4}}));
}

TEST(HfTokenizerOffsetsTest, NfcCompositionTakesTheBaseCharacter) {
  auto tok = MustLoad(ByteLevelJson());
  ASSERT_NE(tok, nullptr);
  // "e\u0301" is "é" after NFC: both its byte tokens cover "e" (bytes 0-1),
  // the removed mark covers nothing, as in Hugging Face; "x" keeps its range.
  const Encoding enc = MustEncode(*tok, "e\xCC\x81x");
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {0, 1}, {3, 4}}));
}

TEST(HfTokenizerOffsetsTest, AddedTokensCoverTheirMatchAndStrippedSpaces) {
  auto tok = MustLoad(ByteLevelJson());
  ASSERT_NE(tok, nullptr);
  // <|im_end|> (10 bytes) at 1; <mask> with lstrip/rstrip takes "  <mask> ".
  const Encoding enc = MustEncode(*tok, "h<|im_end|>i  <mask> h");
  ASSERT_EQ(enc.offsets.size(), 5u);
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {1, 11}, {11, 12}, {12, 21}, {21, 22}}));
}

TEST(HfTokenizerOffsetsTest, DroppedCharactersShiftNothing) {
  // No unk token: "é" is dropped, "b" keeps its own bytes.
  auto tok = MustLoad(
      {{"model",
        {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", nlohmann::json::array()}}}});
  ASSERT_NE(tok, nullptr);
  const Encoding enc = MustEncode(*tok,
                                  "a\xC3\xA9"
                                  "b");
  EXPECT_EQ(enc.ids, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(enc.offsets, (Offsets{{0, 1}, {3, 4}}));
}

TEST(HfTokenizerOffsetsTest, InvalidUtf8IsInvalidArgument) {
  auto tok = MustLoad(ByteLevelJson());
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<Encoding> enc = tok->EncodeWithOffsets("ab\xC3", false);
  ASSERT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(enc.status().message()).find("byte offset 2"), std::string::npos)
      << enc.status();
}

// ---- Hugging Face tokenizers as the reference (tests/reference/hf_tokenizers.py).

std::string HfDir() { return distill::testing::ReferenceDir() + "/hf_tokenizers"; }

std::vector<uint32_t> ReadU32(const std::string& path) {
  const std::string bytes = distill::testing::ReadFile(path);
  std::vector<uint32_t> v(bytes.size() / 4);
  for (size_t i = 0; i < v.size(); ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
    v[i] = b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24;
  }
  return v;
}

Offsets ReadOffsets(const std::string& path) {
  const std::vector<uint32_t> v = ReadU32(path);
  Offsets offsets;
  for (size_t i = 0; i + 1 < v.size(); i += 2) offsets.emplace_back(v[i], v[i + 1]);
  return offsets;
}

// "" when equal; else the first differing token.
std::string FirstDifference(const Encoding& got, const std::vector<uint32_t>& ids,
                            const Offsets& offsets, const std::string& text) {
  if (got.ids == ids && got.offsets == offsets) return "";
  size_t i = 0;
  while (i < ids.size() && i < got.ids.size() && ids[i] == got.ids[i] &&
         offsets[i] == got.offsets[i]) {
    ++i;
  }
  auto at = [&](const std::vector<uint32_t>& id, const Offsets& off) {
    if (i >= id.size() || i >= off.size()) return std::string("(end)");
    const auto [b, e] = off[i];
    return "id " + std::to_string(id[i]) + " [" + std::to_string(b) + ", " + std::to_string(e) +
           ") \"" + (b <= e && e <= text.size() ? text.substr(b, e - b) : "?") + "\"";
  };
  return "token " + std::to_string(i) + " of " + std::to_string(ids.size()) + ": HF " +
         at(ids, offsets) + ", ours " + at(got.ids, got.offsets);
}

TEST(HfTokenizerOffsetsReferenceTest, OffsetsEqualHfTokenizersInBytes) {
  const std::string manifest_text = distill::testing::ReadFile(HfDir() + "/manifest.json");
  ASSERT_FALSE(manifest_text.empty()) << "run tests/reference/hf_tokenizers.py";
  const nlohmann::json manifest = nlohmann::json::parse(manifest_text);
  int compared = 0;
  for (const nlohmann::json& c : manifest["cases"]) {
    // Without an unk token BPE drops a character it does not know; Hugging
    // Face then places the tokens after it by their lengths alone, shifted
    // left over the dropped bytes, where ours cover the bytes they come from
    // (DroppedCharactersShiftNothing checks that case).
    if (c["name"] == "bpe_without_unk") continue;
    const std::string dir = HfDir() + "/cases/" + c["name"].get<std::string>();
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(dir + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (const nlohmann::json& t : manifest["texts"]) {
      const std::string name = t.get<std::string>();
      if (name == "brown_val") continue;  // no offsets written (hf_tokenizers.py)
      const std::string text = distill::testing::ReadFile(HfDir() + "/texts/" + name + ".txt");
      for (const bool special : {false, true}) {
        const std::string prefix = dir + "/" + name + (special ? ".special_" : ".");
        const std::vector<uint32_t> ids = ReadU32(prefix + "ids.bin");
        const Offsets offsets = ReadOffsets(prefix + "offsets.bin");
        ASSERT_EQ(ids.size(), offsets.size()) << prefix;
        absl::StatusOr<Encoding> enc = (*tok)->EncodeWithOffsets(text, special);
        ASSERT_TRUE(enc.ok()) << c["name"] << " " << name << ": " << enc.status();
        EXPECT_EQ(FirstDifference(*enc, ids, offsets, text), "")
            << c["name"] << " " << name << (special ? " (special)" : "");
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 40);
}

// The real Qwen3 tokenizer of the reference_qwen3_tokenizer fixture, on a
// conversation in its chat format (hf_tokenizers.py's chat text, whose HF
// offsets come from the same tokenizer.json).
TEST(HfTokenizerOffsetsReferenceTest, Qwen3ChatOffsetsEqualHfAndCoverTheSpecialTokens) {
  const std::string path = distill::testing::ReferenceDir() + "/qwen3_tokenizer/tokenizer.json";
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = distill::testing::ReadFile(HfDir() + "/texts/chat.txt");
  ASSERT_FALSE(text.empty());
  const Encoding enc = MustEncode(**tok, text);
  const std::string prefix = HfDir() + "/cases/qwen3/chat.";
  EXPECT_EQ(
      FirstDifference(enc, ReadU32(prefix + "ids.bin"), ReadOffsets(prefix + "offsets.bin"), text),
      "");
  int specials = 0;
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    const std::optional<std::string> token = (*tok)->IdToToken(enc.ids[i]);
    ASSERT_TRUE(token.has_value());
    if (*token == "<|im_start|>" || *token == "<|im_end|>" || *token == "<think>" ||
        *token == "</think>") {
      const auto [b, e] = enc.offsets[i];
      EXPECT_EQ(text.substr(b, e - b), *token) << "token " << i;
      ++specials;
    }
  }
  EXPECT_EQ(specials, 2 + 3 * 2);
}

}  // namespace
}  // namespace distill::worker
