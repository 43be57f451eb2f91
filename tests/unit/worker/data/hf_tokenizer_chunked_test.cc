// Chunked encoding (worker/data/hf_tokenizer_chunked.cc, Note [Chunked
// encoding]): a text cut into chunks and encoded on several threads gives the
// ids of the text pre-tokenized whole. The reference is the same tokenizer
// with a no-op Replace pre-tokenizer in front, which makes it take the
// whole-text path (one regex scan over the section, then BPE word by word).
// The real Qwen3 tokenizer is compared with its JS encoder, chunked, in
// tests/integration/qwen3_tokenizer_test.sh.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "tests/test_util/test_util.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker {
namespace {

// Qwen2/Qwen3's pre-tokenizer regex (lookahead, \p{L}, \p{N}).
const char kQwenPattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr uint32_t kEndId = 400;  // the added token "<|end|>"

nlohmann::json SplitStep(const std::string& regex) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}
nlohmann::json ByteLevelStep(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", false},
          {"use_regex", use_regex}};
}
// Replaces a character no test text holds: changes nothing, but the
// tokenizer no longer starts with a split, so it encodes texts whole.
nlohmann::json NoOpStep() {
  return {{"type", "Replace"}, {"pattern", {{"String", "\x01"}}}, {"content", "\x01"}};
}

// A byte-level BPE tokenizer.json: the 256 byte symbols plus merges of
// whitespace runs, newlines, CRLF, digits, words and "é", so that ids depend
// on where the pre-tokenizer cuts.
nlohmann::json ByteLevelJson(const nlohmann::json& pre_tokenizer, const nlohmann::json& normalizer) {
  const auto& sym = hf::ByteToUnicode();
  auto s = [&](const std::string& text) {
    std::string out;
    for (unsigned char c : text) out += sym[c];
    return out;
  };
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[sym[b]] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {" ", " "},   {"  ", "  "}, {"t", "h"},   {"th", "e"}, {" ", "the"}, {"\n", "\n"},
      {"\r", "\n"}, {"\t", "\t"}, {"1", "2"},   {"12", "3"}, {" ", "a"},   {"e", "s"},
      {"\xC3", "\xA9"}, {"'", "s"}, {" ", "\n"}, {"    ", "    "}, {"\n\n", "\n\n"}, {"c", "a"},
      {"ca", "f"},  {"caf", "\xC3\xA9"}, {" ", "caf\xC3\xA9"}, {"o", "n"}, {" ", "t"}};
  nlohmann::json merge_list = nlohmann::json::array();
  uint32_t next = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(s(a + b))) vocab[s(a + b)] = next++;
    merge_list.push_back(s(a) + " " + s(b));
  }
  nlohmann::json added = nlohmann::json::array();
  added.push_back({{"id", kEndId},
                   {"content", "<|end|>"},
                   {"single_word", false},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"normalized", false},
                   {"special", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre_tokenizer},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merge_list}}}};
}

std::unique_ptr<HfTokenizer> MustLoad(const nlohmann::json& j) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::FromJson(j.dump(), "test.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<uint32_t> MustEncode(const HfTokenizer& tok, const std::string& text, int threads,
                                 size_t chunk_bytes, std::atomic<uint64_t>* progress = nullptr) {
  EncodeOptions options;
  options.threads = threads;
  options.chunk_bytes = chunk_bytes;
  options.progress = progress;
  absl::StatusOr<std::vector<uint32_t>> ids = tok.Encode(text, options);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<uint32_t>{};
}

// Adversarial text: whitespace runs (some thousands of bytes, across many
// chunks), tabs, CRLF, blank lines of spaces, digits, contractions, accents
// composed and decomposed (NFD "e" + U+0301, also right after a newline), CJK,
// emoji with ZWJ, URLs, code, added tokens, a long line without a newline.
std::string AdversarialText(bool with_decomposed) {
  std::vector<std::string> fragments = {
      "the", " the", "  ", "   ", "\t", "\t\t", "\r\n", "\n", "\n\n", "\n  \n", " \n",
      "123", " 4567", "caf\xC3\xA9", " caf\xC3\xA9", "\xE6\x9D\xB1\xE4\xBA\xAC",
      "\xF0\x9F\x98\x80", "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
      "it's", " don't", "http://x.org/a?b=1&c=2", "int main() { return 0; }", "<|end|>", "!!",
      std::string(300, ' '), std::string(40, '\n'), "\n" + std::string(50, ' ') + "\n",
      " on the"};
  if (with_decomposed) {
    fragments.push_back("cafe\xCC\x81");
    fragments.push_back("\n\xCC\x81x");
  }
  std::string text = " ";
  uint64_t state = 12345;
  for (int i = 0; i < 4000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    text += fragments[(state >> 33) % fragments.size()];
    if (i == 2000) {
      for (int w = 0; w < 500; ++w) text += " word" + std::to_string(w);  // one long line
      text += std::string(5000, ' ') + std::string(600, '\n') + std::string(2000, ' ');
    }
  }
  return text + std::string(600, '\n');
}

struct Variant {
  const char* name;
  nlohmann::json pre_tokenizer;  // starts with an Isolated split: chunked
  nlohmann::json reference;      // the same with NoOpStep() in front: whole
  nlohmann::json normalizer;
};

std::vector<Variant> Variants() {
  const nlohmann::json nfc = {{"type", "NFC"}};
  // Replace is not local (Note [Chunked encoding]): normalized whole, then cut.
  const nlohmann::json not_local = {
      {"type", "Sequence"},
      {"normalizers",
       {nfc, {{"type", "Replace"}, {"pattern", {{"String", "\t"}}}, {"content", "  "}}}}};
  const nlohmann::json qwen = {{"type", "Sequence"},
                               {"pretokenizers", {SplitStep(kQwenPattern), ByteLevelStep(false)}}};
  const nlohmann::json qwen_ref = {
      {"type", "Sequence"},
      {"pretokenizers", {NoOpStep(), SplitStep(kQwenPattern), ByteLevelStep(false)}}};
  const nlohmann::json gpt2 = ByteLevelStep(true);  // the GPT-2 regex, in ByteLevel
  const nlohmann::json gpt2_ref = {{"type", "Sequence"},
                                   {"pretokenizers", {NoOpStep(), ByteLevelStep(true)}}};
  // Matches letters only: the gaps between matches are pieces too, and a gap
  // can span several chunks (the join falls back to one chunk there).
  const nlohmann::json letters = {{"type", "Sequence"},
                                  {"pretokenizers", {SplitStep(R"(\p{L}+)"), ByteLevelStep(false)}}};
  const nlohmann::json letters_ref = {
      {"type", "Sequence"},
      {"pretokenizers", {NoOpStep(), SplitStep(R"(\p{L}+)"), ByteLevelStep(false)}}};
  return {{"qwen_nfc", qwen, qwen_ref, nfc},
          {"qwen_no_normalizer", qwen, qwen_ref, nullptr},
          {"qwen_not_local_normalizer", qwen, qwen_ref, not_local},
          {"gpt2_bytelevel_regex", gpt2, gpt2_ref, nullptr},
          {"letters_only_split", letters, letters_ref, nfc}};
}

TEST(HfTokenizerChunkedTest, ChunkedEqualsWholeForAnyChunkSizeAndThreads) {
  for (const Variant& v : Variants()) {
    SCOPED_TRACE(v.name);
    std::unique_ptr<HfTokenizer> chunked = MustLoad(ByteLevelJson(v.pre_tokenizer, v.normalizer));
    std::unique_ptr<HfTokenizer> whole = MustLoad(ByteLevelJson(v.reference, v.normalizer));
    ASSERT_NE(chunked, nullptr);
    ASSERT_NE(whole, nullptr);
    const std::string text = AdversarialText(/*with_decomposed=*/true);
    const std::vector<uint32_t> want = MustEncode(*whole, text, 1, 1 << 20);
    ASSERT_GT(want.size(), 1000u);
    // The merges do fire: fewer ids than bytes.
    EXPECT_LT(want.size(), text.size());
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{16}, size_t{100}, size_t{4096}, size_t{1} << 20}) {
      for (int threads : {1, 3}) {
        EXPECT_EQ(MustEncode(*chunked, text, threads, chunk), want)
            << "chunk_bytes " << chunk << ", " << threads << " threads";
      }
    }
  }
}

TEST(HfTokenizerChunkedTest, PiecesDependOnContextAcrossCuts) {
  // "  \n  the": whitespace before a newline and the lookahead \s+(?!\S) make
  // the pieces depend on what follows each cut; spelled out by hand.
  std::unique_ptr<HfTokenizer> tok = MustLoad(ByteLevelJson(Variants()[0].pre_tokenizer, nullptr));
  ASSERT_NE(tok, nullptr);
  const std::string text = "a  \n  the\n\n x";
  // Pieces: "a" | "  \n" | " " | " the" | "\n\n" | " x".
  auto id = [&](const std::string& s) {
    std::string sym;
    for (unsigned char c : s) sym += hf::ByteToUnicode()[c];
    std::optional<uint32_t> v = tok->TokenToId(sym);
    EXPECT_TRUE(v.has_value()) << s;
    return v.value_or(0);
  };
  const std::vector<uint32_t> want = {id("a"), id("  "),  id("\n"), id(" "),
                                      id(" the"), id("\n\n"), id(" "), id("x")};
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{5}, size_t{1} << 20}) {
    for (int threads : {1, 4}) {
      EXPECT_EQ(MustEncode(*tok, text, threads, chunk), want) << chunk << " " << threads;
    }
  }
}

TEST(HfTokenizerChunkedTest, ProgressCountsEveryByteOnce) {
  for (const Variant& v : Variants()) {
    SCOPED_TRACE(v.name);
    const std::string text = AdversarialText(/*with_decomposed=*/false);  // NFC: same length
    for (const nlohmann::json& pre : {v.pre_tokenizer, v.reference}) {
      std::unique_ptr<HfTokenizer> tok = MustLoad(ByteLevelJson(pre, nullptr));
      ASSERT_NE(tok, nullptr);
      for (size_t chunk : {size_t{64}, size_t{1} << 20}) {
        std::atomic<uint64_t> progress{0};
        MustEncode(*tok, text, 3, chunk, &progress);
        EXPECT_EQ(progress.load(), text.size()) << "chunk_bytes " << chunk;
      }
    }
  }
}

TEST(HfTokenizerChunkedTest, InvalidUtf8IsRejectedBeforeChunking) {
  std::unique_ptr<HfTokenizer> tok = MustLoad(ByteLevelJson(Variants()[0].pre_tokenizer, nullptr));
  ASSERT_NE(tok, nullptr);
  std::string text = AdversarialText(false);
  text[text.size() / 2] = '\xFF';
  EncodeOptions options;
  options.threads = 3;
  options.chunk_bytes = 64;
  absl::StatusOr<std::vector<uint32_t>> ids = tok->Encode(text, options);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ids.status().message().find("byte offset"), std::string::npos) << ids.status();
}

// ---- TokenizeFile (hf_tokenizer_file.cc)

std::vector<uint32_t> ReadIds(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint32_t> ids(bytes.size() / 4);
  std::memcpy(ids.data(), bytes.data(), ids.size() * 4);
  return ids;
}

TEST(HfTokenizerChunkedTest, TokenizeFileTxtShowsProgressAndMatchesEncode) {
  std::unique_ptr<HfTokenizer> tok = MustLoad(ByteLevelJson(Variants()[0].pre_tokenizer, nullptr));
  ASSERT_NE(tok, nullptr);
  const std::string dir = distill::testing::MakeTempDir();
  const std::string input = dir + "/big.txt", output = dir + "/big.bin";
  std::string text;
  while (text.size() < (2 << 20)) text += AdversarialText(false);
  { std::ofstream(input, std::ios::binary) << text; }
  TokenizeFileOptions options;
  options.threads = 2;
  options.chunk_bytes = 64 << 10;
  options.separator = "<|end|>";
  options.progress_min_bytes = 1 << 20;  // show the bar for this 2 MB file
  ::testing::internal::CaptureStderr();
  const absl::Status status = TokenizeFile(*tok, input, output, options);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_NE(err.find("] 100.0%"), std::string::npos) << err.substr(0, 300);
  EXPECT_NE(err.find("MB/s, 2 threads)"), std::string::npos) << err;
  std::vector<uint32_t> want = MustEncode(*tok, text, 1, 1 << 30);
  want.push_back(kEndId);
  EXPECT_EQ(ReadIds(output), want);
  std::filesystem::remove_all(dir);
}

TEST(HfTokenizerChunkedTest, TokenizeFileJsonlReportsTheFirstBadLine) {
  std::unique_ptr<HfTokenizer> tok = MustLoad(ByteLevelJson(Variants()[0].pre_tokenizer, nullptr));
  ASSERT_NE(tok, nullptr);
  const std::string dir = distill::testing::MakeTempDir();
  const std::string input = dir + "/docs.jsonl", output = dir + "/docs.bin";
  std::string lines;
  for (int i = 1; i <= 200; ++i) {
    if (i == 150) {
      lines += "{\"text\": \"broken\n";  // line 150: invalid JSON
    } else if (i == 170) {
      lines += "{\"body\": \"no text\"}\n";  // line 170: no text field
    } else if (i % 10 == 0) {
      lines += "  \n";  // blank lines are skipped, but counted
    } else {
      lines += "{\"text\": \"doc " + std::to_string(i) + " the caf\\u00e9\"}\n";
    }
  }
  { std::ofstream(input, std::ios::binary) << lines; }
  TokenizeFileOptions options;
  options.threads = 4;
  options.separator = "<|end|>";
  const absl::Status status = TokenizeFile(*tok, input, output, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(input + ":150: invalid JSON"), std::string::npos) << status;

  // Good documents only: each is encoded alone and followed by the separator.
  std::string good;
  std::vector<uint32_t> want;
  for (int i = 1; i <= 40; ++i) {
    if (i % 10 == 0) {
      good += "\n";
      continue;
    }
    const std::string doc = "doc " + std::to_string(i) + "  the\tcaf\xC3\xA9";
    good += nlohmann::json({{"text", doc}}).dump() + "\n";
    const std::vector<uint32_t> ids = MustEncode(*tok, doc, 1, 1 << 20);
    want.insert(want.end(), ids.begin(), ids.end());
    want.push_back(kEndId);
  }
  { std::ofstream(input, std::ios::binary) << good; }
  ASSERT_TRUE(TokenizeFile(*tok, input, output, options).ok());
  EXPECT_EQ(ReadIds(output), want);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace distill::worker
