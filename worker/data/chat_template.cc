#include "worker/data/chat_template.h"

#include <exception>
#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "jinja/value.h"
#include "json.h"

namespace distill::worker {
namespace {

namespace fs = std::filesystem;

// The named special tokens transformers passes to every chat template
// (PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES, when set).
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

// The assistant content of the probe conversation (ProbeEndOfTurn).
constexpr char kProbeContent[] = "<distill-probe-7f3a>";

// The message of an engine exception: raise_exception(MSG) arrives as
// "... Jinja Exception: MSG" inside the engine's error report (which quotes
// the template source); other errors keep the whole report.
std::string EngineError(const std::exception& e) {
  const std::string what = e.what();
  const std::string tag = "Jinja Exception: ";
  const size_t at = what.rfind(tag);
  if (at != std::string::npos) return what.substr(at + tag.size());
  return std::string(absl::StripAsciiWhitespace(what));
}

// transformers' message normalization before rendering
// (_normalize_chat_messages, _alias_reasoning_fields): keys whose value is
// null are dropped; the first non-null of reasoning_content / thinking /
// reasoning fills "thinking" (unless set) and "reasoning_content".
nlohmann::json TemplateMessages(const nlohmann::json& messages) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : messages) {
    if (!m.is_object()) {
      out.push_back(m);
      continue;
    }
    nlohmann::json clean = nlohmann::json::object();
    for (const auto& [k, v] : m.items()) {
      if (!v.is_null()) clean[k] = v;
    }
    for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
      if (!clean.contains(field)) continue;
      nlohmann::json reasoning = clean[field];
      if (!clean.contains("thinking")) clean["thinking"] = reasoning;
      clean["reasoning_content"] = reasoning;
      break;
    }
    out.push_back(std::move(clean));
  }
  return out;
}

// A special token in tokenizer_config.json: a string or {"content": ...}.
bool SpecialTokenText(const nlohmann::json& v, std::string* text) {
  if (v.is_string()) {
    *text = v.get<std::string>();
    return true;
  }
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    *text = v["content"].get<std::string>();
    return true;
  }
  return false;
}

// tokenizer_config.json's "chat_template": a string, or a list of
// {name, template} of which the one named "default" is used.
absl::StatusOr<std::string> ConfigTemplate(const nlohmann::json& config, const std::string& path) {
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json in ",
                                                   fs::path(path).parent_path().string(),
                                                   " has no chat_template"));
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::vector<std::string> names;
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string()) continue;
      names.push_back(entry["name"].get<std::string>());
      if (names.back() == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": chat_template has no template named ",
                                                   "'default' (named: ", absl::StrJoin(names, ", "),
                                                   ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": chat_template is neither a string nor a list of {name, template}"));
}

// The directory a tokenizer path names: itself, or the file's directory.
std::string TokenizerDir(const std::string& tokenizer_path) {
  std::error_code ec;
  if (fs::is_directory(tokenizer_path, ec)) return tokenizer_path;
  const std::string parent = fs::path(tokenizer_path).parent_path().string();
  return parent.empty() ? "." : parent;
}

absl::StatusOr<nlohmann::json> ReadConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return config;
}

}  // namespace

struct ChatTemplate::Program {
  jinja::program program;
};

ChatTemplate::ChatTemplate(std::string source, std::map<std::string, std::string> special_tokens,
                           std::string name, std::unique_ptr<Program> program)
    : source_(std::move(source)),
      special_tokens_(std::move(special_tokens)),
      name_(std::move(name)),
      program_(std::move(program)),
      end_of_turn_(absl::UnknownError("not probed yet")) {}

ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Load(
    const std::string& tokenizer_path) {
  const std::string dir = TokenizerDir(tokenizer_path);
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  const std::string jinja_path = (fs::path(dir) / "chat_template.jinja").string();
  std::error_code ec;
  const bool has_config = fs::exists(config_path, ec);
  const bool has_jinja = fs::exists(jinja_path, ec);
  if (!has_config && !has_jinja) {
    return absl::NotFoundError(
        absl::StrCat("no chat_template.jinja or tokenizer_config.json in ", dir));
  }
  nlohmann::json config = nlohmann::json::object();
  if (has_config) {
    ASSIGN_OR_RETURN(config, ReadConfig(config_path));
  }
  std::string source;
  std::string name;
  if (has_jinja) {
    ASSIGN_OR_RETURN(source, common::ReadFileToString(jinja_path));
    name = jinja_path;
  } else {
    ASSIGN_OR_RETURN(source, ConfigTemplate(config, config_path));
    name = config_path;
  }
  std::map<std::string, std::string> special_tokens;
  for (const char* key : kSpecialTokenNames) {
    std::string text;
    if (config.contains(key) && SpecialTokenText(config[key], &text)) special_tokens[key] = text;
  }
  return FromSource(source, special_tokens, name);
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromSource(
    const std::string& source, const std::map<std::string, std::string>& special_tokens,
    const std::string& name) {
  auto program = std::make_unique<Program>();
  try {
    jinja::lexer lexer;
    program->program = jinja::parse_from_tokens(lexer.tokenize(source));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template ", name, " does not parse: ", e.what()));
  }
  std::unique_ptr<ChatTemplate> t(
      new ChatTemplate(source, special_tokens, name, std::move(program)));
  t->end_of_turn_ = t->ProbeEndOfTurn();
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages,
                                                 bool add_generation_prompt) const {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template ", name_, ": messages must be a JSON array"));
  }
  // The variables transformers' render_jinja_template passes.
  nlohmann::json vars = {{"messages", TemplateMessages(messages)},
                         {"tools", nullptr},
                         {"documents", nullptr},
                         {"add_generation_prompt", add_generation_prompt}};
  for (const auto& [key, text] : special_tokens_) vars[key] = text;
  try {
    jinja::context ctx(source_);
    jinja::global_from_json(ctx, common_json::parse(vars.dump()), /*mark_input=*/false);
    jinja::runtime runtime(ctx);
    const jinja::value results = runtime.execute(program_->program);
    return jinja::runtime::gather_string_parts(results)->as_string().str();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("chat template ", name_, ": ", EngineError(e)));
  }
}

absl::StatusOr<std::string> ChatTemplate::ProbeEndOfTurn() const {
  const nlohmann::json probe = {{{"role", "user"}, {"content", "Hello"}},
                                {{"role", "assistant"}, {"content", kProbeContent}}};
  ASSIGN_OR_RETURN(std::string text, Render(probe, /*add_generation_prompt=*/false));
  const size_t at = text.rfind(kProbeContent);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat template ", name_, ": an assistant message's content does not appear verbatim ",
        "in its rendering, so its end-of-turn marker is unknown"));
  }
  std::string marker = text.substr(at + sizeof(kProbeContent) - 1);
  const size_t last = marker.find_last_not_of(" \t\r\n");
  marker.erase(last == std::string::npos ? 0 : last + 1);
  return marker;
}

namespace {

// The conversation checks of RenderWithSpans (Note [Response spans]).
absl::Status CheckConversation(const ChatTemplate& t, const nlohmann::json& messages) {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template ", t.name(), ": messages must be a JSON array"));
  }
  bool has_assistant = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " is not an object with a string \"role\""));
    }
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("unknown role '", role, "' in message ", i,
                                                     " (known: system, user, assistant)"));
    }
    if (!m.contains("content") || !m["content"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " (", role, "): content is not a string"));
    }
    has_assistant = has_assistant || role == "assistant";
  }
  if (!has_assistant) return absl::InvalidArgumentError("the conversation has no assistant turn");
  return absl::OkStatus();
}

// The span of assistant message i in `text` (the whole conversation's
// rendering): Note [Response spans]. The marker is searched after the
// message's content when the content appears verbatim from `begin` on (so a
// marker inside the content is skipped), else from `begin` (a template that
// rewrites the content, as Qwen3 does with "<think>...</think>").
absl::StatusOr<std::pair<size_t, size_t>> ResponseSpan(const ChatTemplate& t,
                                                       const nlohmann::json& messages, size_t i,
                                                       const std::string& text,
                                                       const std::string& marker) {
  nlohmann::json prefix_messages = nlohmann::json::array();
  for (size_t j = 0; j < i; ++j) prefix_messages.push_back(messages[j]);
  ASSIGN_OR_RETURN(std::string prefix, t.Render(prefix_messages, /*add_generation_prompt=*/true));
  if (text.compare(0, prefix.size(), prefix) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat template ", t.name(), ": message ", i, " (assistant): the rendering of messages ",
        "[0, ", i, ") with the generation prompt is not a prefix of the whole conversation's, ",
        "so the response cannot be located"));
  }
  const size_t begin = prefix.size();
  const std::string content = messages[i]["content"].get<std::string>();
  size_t from = text.find(content, begin);
  from = from == std::string::npos ? begin : from + content.size();
  if (marker.empty()) return std::make_pair(begin, from);
  const size_t at = text.find(marker, from);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("chat template ", t.name(), ": message ", i,
                                                   " (assistant): its end-of-turn marker '", marker,
                                                   "' is not in the rendering"));
  }
  return std::make_pair(begin, at + marker.size());
}

}  // namespace

absl::StatusOr<ChatRendering> RenderWithSpans(const ChatTemplate& t,
                                              const nlohmann::json& messages) {
  RETURN_IF_ERROR(CheckConversation(t, messages));
  if (!t.EndOfTurnMarker().ok()) return t.EndOfTurnMarker().status();
  const std::string& marker = *t.EndOfTurnMarker();
  ChatRendering out;
  ASSIGN_OR_RETURN(out.text, t.Render(messages, /*add_generation_prompt=*/false));
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i]["role"] != "assistant") continue;
    ASSIGN_OR_RETURN(auto span, ResponseSpan(t, messages, i, out.text, marker));
    out.spans.push_back(span);
  }
  return out;
}

}  // namespace distill::worker
