#include "common/yaml_proto.h"

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "google/protobuf/descriptor.h"

namespace distill::common {
namespace {

using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

absl::Status FieldError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// The prefix of the enum's value names that users may omit: what precedes
// UNSPECIFIED in the first value ("TRAIN_METHOD_" of
// TRAIN_METHOD_UNSPECIFIED), else the longest common prefix of all values up
// to an underscore ("COMM_" of COMM_AUTO, COMM_MPI, COMM_NCCL).
std::string EnumPrefix(const EnumDescriptor* e) {
  std::string name = e->value(0)->name();
  size_t pos = name.rfind("UNSPECIFIED");
  if (pos != std::string::npos) return name.substr(0, pos);
  if (e->value_count() < 2) return "";
  std::string common = name;
  for (int i = 1; i < e->value_count(); ++i) {
    const std::string& v = e->value(i)->name();
    size_t n = 0;
    while (n < common.size() && n < v.size() && common[n] == v[n]) ++n;
    common.resize(n);
  }
  pos = common.rfind('_');
  return pos == std::string::npos ? "" : common.substr(0, pos + 1);
}

absl::StatusOr<int> ParseEnum(const FieldDescriptor* field, const std::string& text,
                              const std::string& path) {
  const EnumDescriptor* e = field->enum_type();
  const std::string prefix = EnumPrefix(e);
  std::string upper = absl::AsciiStrToUpper(text);
  std::vector<std::string> allowed;
  for (int i = 0; i < e->value_count(); ++i) {
    const std::string& name = e->value(i)->name();
    if (name.size() >= 11 && name.compare(name.size() - 11, 11, "UNSPECIFIED") == 0) continue;
    std::string short_name = name;
    if (!prefix.empty() && name.rfind(prefix, 0) == 0) short_name = name.substr(prefix.size());
    allowed.push_back(absl::AsciiStrToLower(short_name));
    if (upper == name || upper == short_name) return e->value(i)->number();
  }
  return FieldError(path, absl::StrCat("unknown value '", text,
                                       "', expected one of: ", absl::StrJoin(allowed, ", ")));
}

absl::Status SetScalar(const YAML::Node& node, Message* msg, const FieldDescriptor* field,
                       const std::string& path) {
  if (!node.IsScalar()) {
    return FieldError(path, "expected a single value, got a list or mapping");
  }
  const std::string& s = node.Scalar();
  const Reflection* r = msg->GetReflection();
  const bool rep = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(s, &v)) return FieldError(path, absl::StrCat("expected an integer, got '", s, "'"));
      rep ? r->AddInt32(msg, field, v) : r->SetInt32(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(s, &v)) return FieldError(path, absl::StrCat("expected an integer, got '", s, "'"));
      rep ? r->AddInt64(msg, field, v) : r->SetInt64(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(s, &v)) return FieldError(path, absl::StrCat("expected a non-negative integer, got '", s, "'"));
      rep ? r->AddUInt32(msg, field, v) : r->SetUInt32(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(s, &v)) return FieldError(path, absl::StrCat("expected a non-negative integer, got '", s, "'"));
      rep ? r->AddUInt64(msg, field, v) : r->SetUInt64(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v;
      if (!absl::SimpleAtod(s, &v)) return FieldError(path, absl::StrCat("expected a number, got '", s, "'"));
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        rep ? r->AddDouble(msg, field, v) : r->SetDouble(msg, field, v);
      } else {
        rep ? r->AddFloat(msg, field, static_cast<float>(v)) : r->SetFloat(msg, field, static_cast<float>(v));
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      std::string l = absl::AsciiStrToLower(s);
      bool v;
      if (l == "true" || l == "yes" || l == "on") {
        v = true;
      } else if (l == "false" || l == "no" || l == "off") {
        v = false;
      } else {
        return FieldError(path, absl::StrCat("expected true or false, got '", s, "'"));
      }
      rep ? r->AddBool(msg, field, v) : r->SetBool(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING:
      rep ? r->AddString(msg, field, s) : r->SetString(msg, field, s);
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      ASSIGN_OR_RETURN(int v, ParseEnum(field, s, path));
      rep ? r->AddEnumValue(msg, field, v) : r->SetEnumValue(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return FieldError(path, "internal: message handled elsewhere");
  }
  return absl::OkStatus();
}

absl::Status FillMessage(const YAML::Node& node, Message* msg, const std::string& path);

absl::Status FillField(const YAML::Node& value, Message* msg, const FieldDescriptor* field,
                       const std::string& path) {
  if (value.IsNull()) return absl::OkStatus();  // `key:` with nothing: absent.
  const Reflection* r = msg->GetReflection();
  if (field->is_repeated()) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!value.IsSequence()) return FieldError(path, "expected a list");
      for (size_t i = 0; i < value.size(); ++i) {
        RETURN_IF_ERROR(FillMessage(value[i], r->AddMessage(msg, field), absl::StrCat(path, "[", i, "]")));
      }
      return absl::OkStatus();
    }
    if (value.IsScalar()) return SetScalar(value, msg, field, path);
    if (!value.IsSequence()) return FieldError(path, "expected a list");
    for (size_t i = 0; i < value.size(); ++i) {
      RETURN_IF_ERROR(SetScalar(value[i], msg, field, absl::StrCat(path, "[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return FillMessage(value, r->MutableMessage(msg, field), path);
  }
  return SetScalar(value, msg, field, path);
}

absl::Status FillMessage(const YAML::Node& node, Message* msg, const std::string& path) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return FieldError(path.empty() ? "spec" : path, "expected a mapping of field: value");
  }
  const google::protobuf::Descriptor* desc = msg->GetDescriptor();
  std::map<std::string, int> lines;  // key -> its line, to refuse a key given twice
  for (const auto& kv : node) {
    ASSIGN_OR_RETURN(const std::string key, YamlKey(kv.first, path));
    const std::string field_path = Join(path, key);
    const int line = kv.first.Mark().line + 1;
    auto [seen, fresh] = lines.emplace(key, line);
    if (!fresh) {
      return FieldError(field_path, absl::StrCat("given twice (lines ", seen->second, " and ",
                                                 line, ")"));
    }
    const FieldDescriptor* field = desc->FindFieldByName(key);
    if (field == nullptr) {
      std::vector<std::string> names;
      for (int i = 0; i < desc->field_count(); ++i) names.push_back(desc->field(i)->name());
      return FieldError(field_path, absl::StrCat("unknown field; known fields here: ",
                                                 absl::StrJoin(names, ", ")));
    }
    RETURN_IF_ERROR(FillField(kv.second, msg, field, field_path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckUtf8(absl::string_view text, absl::string_view source) {
  int line = 1, column = 1;
  for (size_t i = 0; i < text.size(); ++column) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    // Bytes in the sequence and the smallest code point that needs them.
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = n > 0 && i + n <= text.size();
    for (int k = 1; ok && k < n; ++k) {
      const unsigned char cont = static_cast<unsigned char>(text[i + k]);
      ok = (cont >> 6) == 2;
      cp = (cp << 6) | (cont & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": invalid UTF-8 at line ", line, ", column ", column));
    }
    // YAML allows no C0 control character but tab, LF and CR; a NUL also
    // makes yaml-cpp guess UTF-16 or UTF-32 and mangle the text.
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return absl::InvalidArgumentError(absl::StrCat(source, ": control character ",
                                                     static_cast<int>(c), " at line ", line,
                                                     ", column ", column));
    }
    if (c == '\n') {
      ++line;
      column = 0;
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> YamlKey(const YAML::Node& key, const std::string& path) {
  if (key.IsScalar()) return key.Scalar();
  return FieldError(path.empty() ? "spec" : path,
                    absl::StrCat("line ", key.Mark().line + 1,
                                 ": a key must be a plain name, not a list or mapping"));
}

absl::Status YamlToProto(absl::string_view text, absl::string_view source,
                         google::protobuf::Message* message) {
  RETURN_IF_ERROR(CheckUtf8(text, source));
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML/JSON: line ",
                                                   e.mark.line + 1, ", column ", e.mark.column + 1,
                                                   ": ", e.msg));
  }
  absl::Status filled = FillMessage(root, message, "");
  return source.empty() ? filled : WithPrefix(filled, source);
}

}  // namespace distill::common
