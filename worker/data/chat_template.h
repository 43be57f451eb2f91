// Chat templates: a model's Jinja chat template rendered exactly as
// transformers' apply_chat_template(messages, tokenize=False, ...) renders it
// (llama.cpp's C++ Jinja engine, distill_jinja: scripts/fetch_jinja.sh), and
// the response span of every assistant message in a rendered conversation.
// A ChatTemplate is immutable after Load/FromSource; Render runs the engine on
// the shared parsed program, so use one ChatTemplate per thread. Errors are
// Status (the engine's exceptions are caught here): InvalidArgument for a bad
// template or conversation, NotFound for missing files.
#ifndef DISTILL_WORKER_DATA_CHAT_TEMPLATE_H_
#define DISTILL_WORKER_DATA_CHAT_TEMPLATE_H_

#include <cstddef>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

class ChatTemplate {
 public:
  // From a tokenizer directory or a tokenizer.json path: the template is
  // chat_template.jinja beside it when present, else tokenizer_config.json's
  // "chat_template" (a string, or a list of {name, template}: the one named
  // "default"); special tokens (bos_token, eos_token, unk_token, sep_token,
  // pad_token, cls_token, mask_token: a string or {"content": ...}) from
  // tokenizer_config.json, as transformers passes them to the template.
  // NotFound when neither file exists; InvalidArgument naming the file when
  // it is not JSON or "tokenizer_config.json in DIR has no chat_template".
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Load(const std::string& tokenizer_path);

  // From template source and the special tokens transformers would pass
  // (name -> token text, e.g. {"eos_token", "<|im_end|>"}). `name` appears in
  // every error. InvalidArgument when the source does not parse.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromSource(
      const std::string& source, const std::map<std::string, std::string>& special_tokens,
      const std::string& name);

  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

  // transformers' apply_chat_template(messages, tokenize=False,
  // add_generation_prompt=...): `messages` is a JSON array of objects
  // {"role", "content", optional others (reasoning_content)}; as transformers
  // does, keys whose value is null are dropped and reasoning_content /
  // thinking / reasoning alias each other; tools and documents are none.
  // A template's raise_exception(MSG) becomes InvalidArgument containing MSG;
  // any other failure while rendering is InvalidArgument too.
  absl::StatusOr<std::string> Render(const nlohmann::json& messages,
                                     bool add_generation_prompt) const;

  // What the template appends after an assistant message's content, right-
  // trimmed of whitespace ("<|im_end|>" for ChatML and Qwen, "<|eot_id|>" for
  // Llama 3.x, "</s>" for Mistral): the text after the content of the probe
  // conversation [user, assistant] rendered without a generation prompt.
  // Computed once; an error when the probe does not render.
  const absl::StatusOr<std::string>& EndOfTurnMarker() const { return end_of_turn_; }

  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }
  const std::map<std::string, std::string>& special_tokens() const { return special_tokens_; }

 private:
  struct Program;  // the parsed template (the engine's types stay out of this header)
  ChatTemplate(std::string source, std::map<std::string, std::string> special_tokens,
               std::string name, std::unique_ptr<Program> program);
  absl::StatusOr<std::string> ProbeEndOfTurn() const;

  std::string source_;
  std::map<std::string, std::string> special_tokens_;
  std::string name_;
  std::unique_ptr<Program> program_;
  absl::StatusOr<std::string> end_of_turn_;
};

// A conversation rendered once (`text`, add_generation_prompt=false) and, for
// every assistant message in order, its response span [begin, end) in bytes
// of `text`. See Note [Response spans] in chat_template.cc.
struct ChatRendering {
  std::string text;
  std::vector<std::pair<size_t, size_t>> spans;
};

// Note [Response spans] (the contract; how in chat_template.cc): for the
// assistant message i, begin = the length of Render(messages[:i],
// add_generation_prompt=true), which must be a prefix of the whole rendering;
// end = just after the end-of-turn marker (ChatTemplate::EndOfTurnMarker())
// that closes message i, searched after the message's content, excluding the
// whitespace after it. So the span holds what the model must generate after
// the generation prompt: for Qwen3's last assistant turn
// "<think>\n\n</think>\n\nCONTENT<|im_end|>" (the template inserts the think
// block), "CONTENT<|im_end|>" for earlier turns.
// InvalidArgument: messages not an array of objects, no assistant message
// ("has no assistant turn"), a role other than system/user/assistant
// ("unknown role 'X' in message 2"), content not a string, a prefix that is
// not one (naming the message index), the marker not found, or Render's.
absl::StatusOr<ChatRendering> RenderWithSpans(const ChatTemplate& t,
                                              const nlohmann::json& messages);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_CHAT_TEMPLATE_H_
