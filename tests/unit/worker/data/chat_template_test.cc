#include "worker/data/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

using nlohmann::json;

// The templates tests/reference/hf_chat_template.py rendered with
// transformers' apply_chat_template (REFERENCE_DIR/hf_chat_template/NAME.json).
const char* const kTemplates[] = {"qwen3", "chatml", "llama31", "mistral_nemo"};

json Golden(const std::string& name) {
  return distill::testing::ReadJson(
      distill::testing::ReferencePath("hf_chat_template/" + name + ".json"));
}

std::string Qwen3Dir() { return distill::testing::ReferencePath("qwen3_tokenizer"); }

// qwen3 through Load (the real tokenizer_config.json), the others from the
// sdist template source and the special tokens transformers passed.
std::unique_ptr<ChatTemplate> MakeTemplate(const std::string& name, const json& golden) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t =
      name == "qwen3"
          ? ChatTemplate::Load(Qwen3Dir())
          : ChatTemplate::FromSource(
                golden["source"].get<std::string>(),
                golden["special_tokens"].get<std::map<std::string, std::string>>(), name);
  EXPECT_TRUE(t.ok()) << name << ": " << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// Character-for-character equality, reporting the first difference.
void ExpectSameText(const std::string& actual, const std::string& expected,
                    const std::string& what) {
  if (actual == expected) return;
  size_t at = 0;
  while (at < actual.size() && at < expected.size() && actual[at] == expected[at]) ++at;
  const size_t from = at < 40 ? 0 : at - 40;
  ADD_FAILURE() << what << ": differs at byte " << at << " (lengths " << actual.size() << " vs "
                << expected.size() << ")\n  ours:         " << json(actual.substr(from, 100)).dump()
                << "\n  transformers: " << json(expected.substr(from, 100)).dump();
}

std::string CaseName(const std::string& tmpl, const json& c) {
  return tmpl + "/" + c["id"].get<std::string>() +
         (c["add_generation_prompt"].get<bool>() ? "/gen" : "/nogen");
}

TEST(ChatTemplateTest, RenderMatchesTransformers) {
  for (const char* name : kTemplates) {
    const json golden = Golden(name);
    auto t = MakeTemplate(name, golden);
    ASSERT_NE(t, nullptr);
    ASSERT_GE(golden["cases"].size(), 24u) << name;
    for (const json& c : golden["cases"]) {
      const std::string what = CaseName(name, c);
      absl::StatusOr<std::string> text =
          t->Render(c["messages"], c["add_generation_prompt"].get<bool>());
      if (c.contains("error")) {
        // A template's raise_exception: transformers' message, as InvalidArgument.
        ASSERT_FALSE(text.ok()) << what;
        EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << what;
        EXPECT_NE(text.status().message().find(c["error"].get<std::string>()), std::string::npos)
            << what << ": " << text.status();
        continue;
      }
      ASSERT_TRUE(text.ok()) << what << ": " << text.status();
      ExpectSameText(*text, c["text"].get<std::string>(), what);
    }
  }
}

TEST(ChatTemplateTest, LoadReadsTheRealQwen3TokenizerConfig) {
  const json golden = Golden("qwen3");
  for (const std::string& path : {Qwen3Dir(), Qwen3Dir() + "/tokenizer.json"}) {
    auto t = ChatTemplate::Load(path);
    ASSERT_TRUE(t.ok()) << path << ": " << t.status();
    EXPECT_EQ((*t)->source(), golden["source"].get<std::string>()) << path;
    EXPECT_EQ((*t)->special_tokens(),
              (golden["special_tokens"].get<std::map<std::string, std::string>>()))
        << path;
    EXPECT_NE((*t)->name().find("tokenizer_config.json"), std::string::npos) << (*t)->name();
  }
}

// A tokenizer directory with the given files.
std::string TokenizerDirWith(const std::map<std::string, std::string>& files) {
  const std::string dir = distill::testing::MakeTempDir("chat_template");
  for (const auto& [file, contents] : files)
    distill::testing::WriteFile(dir + "/" + file, contents);
  return dir;
}

TEST(ChatTemplateTest, LoadPrefersChatTemplateJinjaAndReadsTokenObjects) {
  const json config = {{"chat_template", "from config"},
                       {"bos_token", {{"content", "<s>"}, {"lstrip", false}}},
                       {"eos_token", "</s>"},
                       {"pad_token", nullptr}};
  const std::string dir =
      TokenizerDirWith({{"tokenizer_config.json", config.dump()},
                        {"chat_template.jinja",
                         "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"
                         "{{ eos_token }}\n"}});
  auto t = ChatTemplate::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE((*t)->name().find("chat_template.jinja"), std::string::npos) << (*t)->name();
  EXPECT_EQ((*t)->special_tokens(),
            (std::map<std::string, std::string>{{"bos_token", "<s>"}, {"eos_token", "</s>"}}));
  auto text = (*t)->Render(json::array({{{"role", "user"}, {"content", "hi"}}}), false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<s>hi</s>");  // Jinja drops the source's one trailing newline
}

TEST(ChatTemplateTest, LoadPicksTheDefaultOfNamedTemplates) {
  const json config = {{"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                      {{"name", "default"}, {"template", "D"}}})}};
  auto t = ChatTemplate::Load(TokenizerDirWith({{"tokenizer_config.json", config.dump()}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->source(), "D");

  const json no_default = {
      {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}}})}};
  auto bad = ChatTemplate::Load(TokenizerDirWith({{"tokenizer_config.json", no_default.dump()}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("tool_use"), std::string::npos) << bad.status();
}

TEST(ChatTemplateTest, LoadErrorsNameTheFile) {
  const std::string dir = TokenizerDirWith({{"tokenizer_config.json", R"({"eos_token": "</s>"})"}});
  auto none = ChatTemplate::Load(dir);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(), "tokenizer_config.json in " + dir + " has no chat_template");

  auto missing = ChatTemplate::Load(TokenizerDirWith({}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();

  const std::string bad_dir = TokenizerDirWith({{"tokenizer_config.json", "{not json"}});
  auto bad = ChatTemplate::Load(bad_dir);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_NE(bad.status().message().find(bad_dir + "/tokenizer_config.json"), std::string::npos)
      << bad.status();
}

TEST(ChatTemplateTest, FromSourceRejectsATemplateThatDoesNotParse) {
  auto t = ChatTemplate::FromSource("{% if messages %}unclosed", {}, "broken");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("broken"), std::string::npos) << t.status();
}

TEST(ChatTemplateTest, EndOfTurnMarkerPerTemplate) {
  const std::map<std::string, std::string> want = {{"qwen3", "<|im_end|>"},
                                                   {"chatml", "<|im_end|>"},
                                                   {"llama31", "<|eot_id|>"},
                                                   {"mistral_nemo", "</s>"}};
  for (const char* name : kTemplates) {
    auto t = MakeTemplate(name, Golden(name));
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->EndOfTurnMarker().ok()) << name << ": " << t->EndOfTurnMarker().status();
    EXPECT_EQ(*t->EndOfTurnMarker(), want.at(name)) << name;
  }
}

std::string Strip(const std::string& s, const char* chars, bool left, bool right) {
  size_t b = left ? s.find_first_not_of(chars) : 0;
  if (b == std::string::npos) return "";
  size_t e = right ? s.find_last_not_of(chars) + 1 : s.size();
  return s.substr(b, e - b);
}

// Qwen3's response for assistant message i: the template's own rule (its
// reasoning split and think block; Note [Response spans]).
std::string Qwen3Response(const json& messages, size_t i) {
  const json& m = messages[i];
  std::string content = m["content"].get<std::string>();
  std::string reasoning;
  if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) {
    reasoning = m["reasoning_content"].get<std::string>();
  } else if (content.find("</think>") != std::string::npos) {
    const std::string before = content.substr(0, content.find("</think>"));
    const size_t open = before.rfind("<think>");
    reasoning =
        Strip(open == std::string::npos ? before : before.substr(open + 7), "\n", true, false);
    reasoning = Strip(reasoning, "\n", false, true);
    content = Strip(content.substr(content.rfind("</think>") + 8), "\n", true, false);
  }
  size_t last_user = 0;
  for (size_t j = 0; j < messages.size(); ++j) {
    if (messages[j]["role"] == "user") last_user = j;
  }
  if (i > last_user && (i + 1 == messages.size() || !reasoning.empty())) {
    return "<think>\n" + Strip(reasoning, "\n", true, true) + "\n</think>\n\n" +
           Strip(content, "\n", true, false) + "<|im_end|>";
  }
  return content + "<|im_end|>";
}

// The text each template's response span must hold.
std::string ExpectedResponse(const std::string& tmpl, const json& messages, size_t i) {
  const std::string content = messages[i]["content"].get<std::string>();
  if (tmpl == "qwen3") return Qwen3Response(messages, i);
  if (tmpl == "chatml") return content + "<|im_end|>";
  if (tmpl == "llama31") return Strip(content, " \t\n\r", true, true) + "<|eot_id|>";  // | trim
  return content + "</s>";  // mistral_nemo
}

TEST(ChatTemplateTest, SpansHoldEachAssistantResponse) {
  for (const char* name : kTemplates) {
    const json golden = Golden(name);
    auto t = MakeTemplate(name, golden);
    ASSERT_NE(t, nullptr);
    int checked = 0;
    for (const json& c : golden["cases"]) {
      const json& messages = c["messages"];
      std::vector<size_t> assistants;
      bool has_system = false;
      for (size_t i = 0; i < messages.size(); ++i) {
        if (messages[i]["role"] == "assistant") assistants.push_back(i);
        has_system = has_system || messages[i]["role"] == "system";
      }
      if (c["add_generation_prompt"].get<bool>() || c.contains("error") || assistants.empty()) {
        continue;
      }
      const std::string what = CaseName(name, c);
      absl::StatusOr<ChatRendering> r = RenderWithSpans(*t, messages);
      if (std::string(name) == "mistral_nemo" && has_system) {
        // Mistral moves the system message into the last user turn, so no
        // shorter conversation's rendering is a prefix of the whole one.
        ASSERT_FALSE(r.ok()) << what;
        EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what;
        EXPECT_NE(r.status().message().find("message " + std::to_string(assistants[0])),
                  std::string::npos)
            << what << ": " << r.status();
        continue;
      }
      ASSERT_TRUE(r.ok()) << what << ": " << r.status();
      ExpectSameText(r->text, c["text"].get<std::string>(), what);
      ASSERT_EQ(r->spans.size(), assistants.size()) << what;
      for (size_t k = 0; k < assistants.size(); ++k) {
        const auto [begin, end] = r->spans[k];
        ASSERT_LE(begin, end) << what;
        ASSERT_LE(end, r->text.size()) << what;
        ExpectSameText(r->text.substr(begin, end - begin),
                       ExpectedResponse(name, messages, assistants[k]),
                       what + " span " + std::to_string(k));
        ++checked;
      }
    }
    EXPECT_GE(checked, 10) << name;  // mistral_nemo: 11 (no system message)
  }
}

TEST(ChatTemplateTest, Qwen3LastTurnSpanIncludesTheThinkBlock) {
  auto t = ChatTemplate::Load(Qwen3Dir());
  ASSERT_TRUE(t.ok()) << t.status();
  const json messages = json::array({{{"role", "user"}, {"content", "Hi"}},
                                     {{"role", "assistant"}, {"content", "Hello."}},
                                     {{"role", "user"}, {"content", "Bye"}},
                                     {{"role", "assistant"}, {"content", "Goodbye."}}});
  auto r = RenderWithSpans(**t, messages);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->spans.size(), 2u);
  auto span = [&](size_t k) {
    return r->text.substr(r->spans[k].first, r->spans[k].second - r->spans[k].first);
  };
  EXPECT_EQ(span(0), "Hello.<|im_end|>");
  EXPECT_EQ(span(1), "<think>\n\n</think>\n\nGoodbye.<|im_end|>");
  EXPECT_EQ(r->text.substr(r->spans[1].second), "\n");  // the newline after the marker stays out
}

TEST(ChatTemplateTest, RenderWithSpansRejectsBadConversations) {
  const json golden = Golden("chatml");
  auto t = MakeTemplate("chatml", golden);
  ASSERT_NE(t, nullptr);
  auto expect_invalid = [&](const json& messages, const std::string& needle) {
    auto r = RenderWithSpans(*t, messages);
    ASSERT_FALSE(r.ok()) << messages.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  const json user = {{"role", "user"}, {"content", "Hi"}};
  const json assistant = {{"role", "assistant"}, {"content", "Hello"}};
  expect_invalid(json::array({user}), "has no assistant turn");
  expect_invalid(json::array({user, assistant, {{"role", "tool"}, {"content", "x"}}}),
                 "unknown role 'tool' in message 2");
  expect_invalid(json::array({user, {{"role", "assistant"}, {"content", nullptr}}}),
                 "content is not a string");
  expect_invalid(json::array({user, {{"role", "assistant"}, {"content", json::array({"a", "b"})}}}),
                 "content is not a string");
  expect_invalid(json::array({user, {{"content", "no role"}}}), "message 1");
  expect_invalid(json::object({{"role", "user"}}), "array");
}

}  // namespace
}  // namespace distill::worker
