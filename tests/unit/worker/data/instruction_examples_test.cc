#include "worker/data/instruction_examples.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReadJson;
using distill::testing::ReferencePath;
using distill::testing::WriteFile;

absl::StatusOr<TokenizedExamples> Load(const std::string& path, const std::string& tokenizer,
                                       const std::string& format = "prompt_completion",
                                       bool* from_cache = nullptr, int threads = 1) {
  absl::StatusOr<ExampleTokenizer> tok = ExampleTokenizer::Resolve(tokenizer);
  if (!tok.ok()) return tok.status();
  return LoadExamples(path, format, *tok, threads, from_cache);
}

std::vector<uint32_t> Ids(const TokenizedExamples& ex, int64_t i) {
  return {ex.ids.begin() + ex.begins[i], ex.ids.begin() + ex.begins[i + 1]};
}
std::vector<uint8_t> Response(const TokenizedExamples& ex, int64_t i) {
  return {ex.response.begin() + ex.begins[i], ex.response.begin() + ex.begins[i + 1]};
}

// The real Qwen3 tokenizer copied into a fresh directory (so a test may
// change its files), from the reference fixture.
std::string Qwen3TokenizerCopy() {
  const std::string dir = MakeTempDir("qwen3_tokenizer");
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(ReferencePath(std::string("hf_instruction_data/tokenizer/") + name),
                  dir + "/" + name);
  }
  return dir;
}

TEST(InstructionExamplesTest, PromptCompletionWithBytes) {
  const std::string path = MakeTempDir("instruction_examples") + "/d.jsonl";
  WriteFile(path,
            "{\"prompt\": \"ab\", \"completion\": \"c\", \"extra\": 1}\n\n \t\n{\"completion\": "
            "\"\", \"prompt\": \"d\"}\n");
  auto ex = Load(path, "bytes");
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2);
  EXPECT_EQ(Ids(*ex, 0), (std::vector<uint32_t>{'a', 'b', 'c'}));
  EXPECT_EQ(Response(*ex, 0), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(Ids(*ex, 1), (std::vector<uint32_t>{'d'}));
  EXPECT_EQ(Response(*ex, 1), (std::vector<uint8_t>{0}));
  EXPECT_EQ(ex->lines, (std::vector<uint32_t>{1, 4}));
}

// transformers' AutoTokenizer on the same directory: encode(prompt) +
// encode(completion) + [eos], each without special tokens
// (tests/reference/hf_instruction_data.py).
TEST(InstructionExamplesTest, PromptCompletionMatchesTransformersWithQwen3) {
  const std::string dir = MakeTempDir("instruction_examples");
  fs::copy_file(ReferencePath("hf_instruction_data/prompt_completion.jsonl"), dir + "/pc.jsonl");
  const nlohmann::json golden =
      ReadJson(ReferencePath("hf_instruction_data/prompt_completion.json"));
  ASSERT_TRUE(golden.is_array());
  // The directory or its tokenizer.json; one thread or several.
  const std::vector<std::pair<std::string, int>> runs = {
      {ReferencePath("hf_instruction_data/tokenizer"), 1},
      {ReferencePath("hf_instruction_data/tokenizer/tokenizer.json"), 3}};
  for (const auto& [tokenizer, threads] : runs) {
    bool from_cache = true;
    auto ex = Load(dir + "/pc.jsonl", tokenizer, "prompt_completion", &from_cache, threads);
    ASSERT_TRUE(ex.ok()) << ex.status();
    EXPECT_FALSE(from_cache);
    ASSERT_EQ(ex->size(), static_cast<int64_t>(golden.size()));
    for (size_t i = 0; i < golden.size(); ++i) {
      EXPECT_EQ(Ids(*ex, i), golden[i]["ids"].get<std::vector<uint32_t>>()) << "example " << i;
      EXPECT_EQ(Response(*ex, i), golden[i]["response"].get<std::vector<uint8_t>>())
          << "example " << i;
      EXPECT_EQ(ex->lines[i], golden[i]["line"].get<uint32_t>());
    }
    fs::remove(dir + "/pc.jsonl." + ExampleTokenizer::Resolve(tokenizer)->tag() +
               ".prompt_completion.examples");
  }
}

// transformers' apply_chat_template on the real Qwen3 template: the ids of
// the rendered text, and the tokens inside the assistant spans
// (tests/reference/hf_instruction_data.py).
TEST(InstructionExamplesTest, ChatMatchesTransformersWithQwen3) {
  const std::string dir = MakeTempDir("instruction_examples_chat");
  fs::copy_file(ReferencePath("hf_instruction_data/chat.jsonl"), dir + "/chat.jsonl");
  const nlohmann::json golden = ReadJson(ReferencePath("hf_instruction_data/chat.json"));
  ASSERT_TRUE(golden.is_array());
  auto ex = Load(dir + "/chat.jsonl", ReferencePath("hf_instruction_data/tokenizer"), "chat",
                 nullptr, /*threads=*/2);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), static_cast<int64_t>(golden.size()));
  for (size_t i = 0; i < golden.size(); ++i) {
    EXPECT_EQ(Ids(*ex, i), golden[i]["ids"].get<std::vector<uint32_t>>()) << "conversation " << i;
    EXPECT_EQ(Response(*ex, i), golden[i]["response"].get<std::vector<uint8_t>>())
        << "conversation " << i;
    EXPECT_EQ(ex->lines[i], golden[i]["line"].get<uint32_t>());
  }
}

TEST(InstructionExamplesTest, BadConversationNamesFileAndLine) {
  auto tok = ExampleTokenizer::Resolve(ReferencePath("hf_instruction_data/tokenizer"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string ok =
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})";
  struct Case {
    std::string line;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {R"({"messages": [{"role": "user", "content": "hi"}]})", "no assistant turn"},
      {R"({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}, )"
       R"({"role": "assistant", "content": "yo"}]})",
       "unknown role 'robot'"},
      {R"({"conversation": []})", "missing field \"messages\""},
      {R"({"messages": "hi"})", ""},
      {R"({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]})",
       ""},
  };
  for (const Case& c : cases) {
    const std::string dir = MakeTempDir("instruction_examples_bad_chat");
    const std::string path = dir + "/d.jsonl";
    WriteFile(path, ok + "\n" + ok + "\n" + c.line + "\n");
    auto ex = tok->Tokenize(path, "chat", 1);
    ASSERT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_EQ(ex.status().message().rfind(path + ":3: ", 0), 0u) << ex.status();
    EXPECT_NE(ex.status().message().find(c.expect), std::string::npos) << ex.status();
  }
}

TEST(InstructionExamplesTest, ChatWithoutATemplateNamesFileAndLine) {
  const std::string dir = MakeTempDir("instruction_examples_no_template");
  const std::string path = dir + "/d.jsonl";
  WriteFile(
      path,
      "\n"
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})"
      "\n");
  auto ex = Load(path, "bytes", "chat");
  ASSERT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ex.status().message().find(path + ":2: chat data needs a Hugging Face tokenizer"),
            std::string::npos)
      << ex.status();

  const std::string tok = Qwen3TokenizerCopy();
  nlohmann::json config = ReadJson(tok + "/tokenizer_config.json");
  config.erase("chat_template");
  WriteFile(tok + "/tokenizer_config.json", config.dump());
  ex = Load(path, tok, "chat");
  ASSERT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ex.status().message().find(path + ":2: chat data needs a chat template: "),
            std::string::npos)
      << ex.status();
  EXPECT_NE(ex.status().message().find("chat_template"), std::string::npos) << ex.status();
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// Each bad line is InvalidArgument naming FILE:LINE and what is wrong, and
// leaves no cache.
TEST(InstructionExamplesTest, BadInputNamesFileAndLine) {
  struct Case {
    std::string line;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"a\", \"completion\": \"b\"",
       "invalid JSON at byte 34 of the line: syntax error"},
      {"{\"prompt\": \"a\xff\", \"completion\": \"b\"}", "invalid UTF-8 at byte 14 of the line"},
      {"[\"prompt\", \"completion\"]", "expected a JSON object"},
      {"{\"prompt\": \"a\"}", "missing field \"completion\""},
      {"{\"prompt\": 3, \"completion\": \"b\"}", "field \"prompt\" is not a string (number)"},
      {"{\"prompt\": \"a\", \"completion\": null}", "field \"completion\" is not a string (null)"},
      // out_of_range, not parse_error: it escaped the reader (jsonl_fuzz).
      {"{\"prompt\": \"a\", \"completion\": \"b\", \"n\": 1e99999}", "invalid JSON: "},
  };
  for (const Case& c : cases) {
    const std::string dir = MakeTempDir("instruction_examples_bad");
    const std::string path = dir + "/d.jsonl";
    WriteFile(path, "{\"prompt\": \"ok\", \"completion\": \"fine\"}\n\n" + c.line + "\n");
    auto ex = Load(path, "bytes");
    ASSERT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_NE(ex.status().message().find(path + ":3: " + c.expect), std::string::npos)
        << ex.status();
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1)
        << "a cache was left";
  }
}

TEST(InstructionExamplesTest, EmptyFileMissingFileAndUnknownFormat) {
  const std::string dir = MakeTempDir("instruction_examples");
  WriteFile(dir + "/empty.jsonl", "\n  \n");
  auto ex = Load(dir + "/empty.jsonl", "bytes");
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ex.status().message().find(dir + "/empty.jsonl: no examples"), std::string::npos);
  EXPECT_EQ(Load(dir + "/missing.jsonl", "bytes").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(dir + "/empty.jsonl", dir + "/no/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(dir + "/empty.jsonl", "bytes", "text").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(InstructionExamplesTest, CacheIsReusedWithoutTokenizing) {
  const std::string dir = MakeTempDir("instruction_examples_cache");
  const std::string path = dir + "/d.jsonl";
  WriteFile(path, "{\"prompt\": \"ab\", \"completion\": \"c\"}\n");
  bool from_cache = true;
  ASSERT_TRUE(Load(path, "bytes", "prompt_completion", &from_cache).ok());
  EXPECT_FALSE(from_cache);
  const std::string cache = dir + "/d.jsonl.bytes.prompt_completion.examples";
  ASSERT_TRUE(fs::exists(cache));

  // The file now holds no valid line, but it is older than the cache: the
  // examples come from the cache, so nothing was parsed or tokenized.
  const auto built = fs::last_write_time(cache);
  WriteFile(path, "not json\n");
  fs::last_write_time(path, built - std::chrono::seconds(5));
  auto ex = Load(path, "bytes", "prompt_completion", &from_cache);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_TRUE(from_cache);
  EXPECT_EQ(Ids(*ex, 0), (std::vector<uint32_t>{'a', 'b', 'c'}));

  // Newer than the cache: parsed again (and here refused).
  fs::last_write_time(path, built + std::chrono::seconds(5));
  EXPECT_EQ(Load(path, "bytes").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs::last_write_time(cache), built);  // the old cache is left as it was
}

TEST(InstructionExamplesTest, DamagedCacheIsRebuilt) {
  const std::string dir = MakeTempDir("instruction_examples_cache");
  const std::string path = dir + "/d.jsonl";
  WriteFile(path, "{\"prompt\": \"ab\", \"completion\": \"c\"}\n");
  ASSERT_TRUE(Load(path, "bytes").ok());
  const std::string cache = dir + "/d.jsonl.bytes.prompt_completion.examples";
  WriteFile(cache, "DSTLEXMP but not a cache");
  fs::last_write_time(cache, fs::last_write_time(path) + std::chrono::seconds(5));
  bool from_cache = true;
  auto ex = Load(path, "bytes", "prompt_completion", &from_cache);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_FALSE(from_cache);
  EXPECT_EQ(Ids(*ex, 0), (std::vector<uint32_t>{'a', 'b', 'c'}));
  EXPECT_TRUE(ReadExampleCache(cache).ok());
}

TEST(InstructionExamplesTest, TagFollowsTokenizerJsonAndConfigAndCacheFollowsTheirTimes) {
  const std::string tok = Qwen3TokenizerCopy();
  auto a = ExampleTokenizer::Resolve(tok);
  auto b = ExampleTokenizer::Resolve(tok + "/tokenizer.json");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tag(), b->tag());
  EXPECT_EQ(a->tag().rfind("tok-", 0), 0u) << a->tag();
  EXPECT_EQ(a->files(),
            (std::vector<std::string>{tok + "/tokenizer.json", tok + "/tokenizer_config.json"}));

  const std::string path = MakeTempDir("instruction_examples_tag") + "/d.jsonl";
  WriteFile(path, "{\"prompt\": \"Hi\", \"completion\": \" there\"}\n");
  bool from_cache = false;
  auto before = Load(path, tok, "prompt_completion", &from_cache);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_FALSE(from_cache);
  ASSERT_TRUE(fs::exists(ExampleCachePath(path, "prompt_completion", a->tag())));

  // A different EOS in tokenizer_config.json: another tag, another cache,
  // and the new EOS at the end.
  nlohmann::json config = ReadJson(tok + "/tokenizer_config.json");
  config["eos_token"] = "<|endoftext|>";
  WriteFile(tok + "/tokenizer_config.json", config.dump());
  auto c = ExampleTokenizer::Resolve(tok);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->tag(), a->tag());
  auto after = Load(path, tok, "prompt_completion", &from_cache);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(from_cache);
  EXPECT_NE(Ids(*after, 0).back(), Ids(*before, 0).back());
  EXPECT_EQ(Ids(*after, 0).back(), 151643u);  // <|endoftext|>
  ASSERT_TRUE(Load(path, tok, "prompt_completion", &from_cache).ok());
  EXPECT_TRUE(from_cache);

  // Same content but newer than the cache (copied back, say): rebuilt.
  const std::string cache = ExampleCachePath(path, "prompt_completion", c->tag());
  fs::last_write_time(tok + "/tokenizer.json",
                      fs::last_write_time(cache) + std::chrono::seconds(5));
  ASSERT_TRUE(Load(path, tok, "prompt_completion", &from_cache).ok());
  EXPECT_FALSE(from_cache);
}

}  // namespace
}  // namespace distill::worker
