#include "common/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "common/yaml_proto.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace distill::common {
namespace {

using distill::v1::JobSpec;
using nlohmann::json;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("sweep: ", what));
}

// Deeper sweep values are refused: a spec's structured fields nest a few
// levels, and the walks over a value (here, nlohmann's dump, protobuf's JSON
// parser) recurse once per level.
constexpr int kMaxValueDepth = 32;

// A YAML value as JSON: quoted scalars stay strings; plain ones become
// integers, numbers, booleans or null when they read as one. `where` names
// the value in errors (a non-scalar key, nesting deeper than kMaxValueDepth).
absl::StatusOr<json> YamlToJson(const YAML::Node& node, const std::string& where, int depth = 0) {
  if ((node.IsSequence() || node.IsMap()) && depth >= kMaxValueDepth) {
    return Bad(absl::StrCat(where, ": nested deeper than ", kMaxValueDepth, " levels"));
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& v : node) {
      ASSIGN_OR_RETURN(json item, YamlToJson(v, where, depth + 1));
      out.push_back(std::move(item));
    }
    return out;
  }
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& kv : node) {
      ASSIGN_OR_RETURN(const std::string key, YamlKey(kv.first, absl::StrCat("sweep: ", where)));
      ASSIGN_OR_RETURN(out[key], YamlToJson(kv.second, where, depth + 1));
    }
    return out;
  }
  if (!node.IsScalar()) return nullptr;
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted
  int64_t i;
  double d;
  if (absl::SimpleAtoi(s, &i)) return i;
  if (absl::SimpleAtod(s, &d) && absl::ascii_isdigit(s.back())) return d;
  if (s == "true" || s == "false") return s == "true";
  if (s == "null" || s == "~") return nullptr;
  return s;
}

// Whether dotted path `a` is `b` or inside it, or the other way round.
bool Overlap(const std::string& a, const std::string& b) {
  return a == b || absl::StartsWith(a, b + ".") || absl::StartsWith(b, a + ".");
}

// The fields a shared teacher cache's content depends on (Note [Cache key]
// of the teacher cache): sweeping one would make the cache wrong for some
// children.
constexpr const char* kCacheKeyFields[] = {"data",           "teacher",       "distill.top_k",
                                           "distill.logits", "student.model", "student.init"};

// An axis's field must name a field of JobSpec through singular messages.
absl::Status CheckAxisField(const std::string& field) {
  if (field.empty()) return Bad("an axis without a field");
  if (field == "sweep" || absl::StartsWith(field, "sweep.")) {
    return Bad(absl::StrCat(field, ": a sweep cannot sweep its own sweep block"));
  }
  const google::protobuf::Descriptor* desc = JobSpec::descriptor();
  std::vector<std::string> parts = absl::StrSplit(field, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    const google::protobuf::FieldDescriptor* f =
        desc == nullptr ? nullptr : desc->FindFieldByName(parts[i]);
    if (f == nullptr) return Bad(absl::StrCat(field, ": unknown field"));
    const bool last = i + 1 == parts.size();
    if (!last &&
        (f->is_repeated() || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE)) {
      return Bad(absl::StrCat(field, ": ", parts[i],
                              " is not a block of fields (sweep a whole value of it)"));
    }
    desc = last ? nullptr : f->message_type();
  }
  return absl::OkStatus();
}

struct Axis {
  std::string field;
  std::string short_name;          // for labels
  std::vector<std::string> texts;  // each value as given (JSON)
  std::vector<json> values;
};

absl::StatusOr<std::vector<Axis>> ParseAxes(const JobSpec& parent) {
  std::vector<Axis> axes;
  for (const distill::v1::SweepAxis& a : parent.sweep()) {
    RETURN_IF_ERROR(CheckAxisField(a.field()));
    for (const Axis& other : axes) {
      if (other.field == a.field()) return Bad(absl::StrCat(a.field(), ": listed twice"));
      if (Overlap(other.field, a.field())) {
        return Bad(absl::StrCat(a.field(), ": overlaps the axis ", other.field));
      }
    }
    if (a.values_size() == 0) return Bad(absl::StrCat(a.field(), ": empty list of values"));
    Axis axis{a.field(), std::string(a.field().substr(a.field().rfind('.') + 1)), {}, {}};
    for (int i = 0; i < a.values_size(); ++i) {
      json v = json::parse(a.values(i), nullptr, /*allow_exceptions=*/false);
      if (v.is_discarded()) {
        return Bad(absl::StrCat(a.field(), "[", i, "] = ", a.values(i), ": not a JSON value"));
      }
      axis.texts.push_back(v.dump());
      axis.values.push_back(std::move(v));
    }
    axes.push_back(std::move(axis));
  }
  // Labels use the last path component unless two axes share it.
  for (Axis& a : axes) {
    for (const Axis& b : axes) {
      if (&a != &b &&
          a.field.substr(a.field.rfind('.') + 1) == b.field.substr(b.field.rfind('.') + 1)) {
        a.short_name = a.field;
      }
    }
  }
  return axes;
}

absl::Status CheckCacheKey(const JobSpec& parent, const std::vector<Axis>& axes) {
  if (parent.teacher().cache().empty()) return absl::OkStatus();
  for (const Axis& a : axes) {
    for (const char* key : kCacheKeyFields) {
      if (Overlap(a.field, key)) {
        return Bad(absl::StrCat(a.field, ": the shared teacher cache (teacher.cache) depends on ",
                                key,
                                "; sweep it without teacher.cache, or submit one sweep per value"));
      }
    }
  }
  return absl::OkStatus();
}

// Sets dotted `path` in the JSON tree, creating the blocks on the way.
void SetPath(json& root, const std::string& path, const json& value) {
  json* node = &root;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (!node->is_object()) *node = json::object();
    node = &(*node)[std::string(part)];
  }
  *node = value;
}

// The node at dotted `path`, or null.
const json* At(const json& root, const std::string& path) {
  const json* node = &root;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    auto it = node->is_object() ? node->find(std::string(part)) : node->end();
    if (!node->is_object() || it == node->end()) return nullptr;
    node = &*it;
  }
  return node;
}

std::string ValueLabel(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// A directory name: letters, digits and . _ - = , kept, the rest '_'.
std::string Sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool keep = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                      c == '-' || c == '=' || c == ',';
    out.push_back(keep ? c : '_');
    if (out.size() >= 80) break;
  }
  return out;
}

// `name` cut to kMaxSpecNameBytes on a UTF-8 boundary, ending "...]" when cut.
std::string ClippedName(std::string name) {
  if (name.size() <= kMaxSpecNameBytes) return name;
  size_t n = kMaxSpecNameBytes - 4;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  name.resize(n);
  return name + "...]";
}

// An error of the child at `point`, naming the axis the message is about
// (its field path leads the message) or else every swept value.
absl::Status ChildError(const std::vector<Axis>& axes, const std::vector<size_t>& point, int child,
                        const absl::Status& st) {
  for (size_t a = 0; a < axes.size(); ++a) {
    if (absl::StartsWith(st.message(), axes[a].field)) {
      return Bad(absl::StrCat(axes[a].field, "[", point[a], "] = ", axes[a].texts[point[a]], ": ",
                              st.message()));
    }
  }
  std::vector<std::string> values;
  for (size_t a = 0; a < axes.size(); ++a) {
    values.push_back(absl::StrCat(axes[a].field, " = ", axes[a].texts[point[a]]));
  }
  return Bad(absl::StrCat("child ", child, " (", absl::StrJoin(values, ", "), "): ", st.message()));
}

absl::StatusOr<json> SpecJson(const JobSpec& spec) {
  std::string text;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(spec, &text, print);
  if (!st.ok()) return absl::InternalError(absl::StrCat("sweep: spec to JSON: ", st.ToString()));
  return json::parse(text);
}

// One training child: the base JSON with the point's values, parsed back
// through yaml_proto (enum names, lists and messages as in a spec), then
// validated and given defaults, its output and its name.
absl::StatusOr<SweepChild> MakeChild(const JobSpec& parent, const json& base,
                                     const std::vector<Axis>& axes,
                                     const std::vector<size_t>& point, int index, int width) {
  json tree = base;
  SweepChild child;
  std::vector<std::string> label;
  for (size_t a = 0; a < axes.size(); ++a) {
    const json& v = axes[a].values[point[a]];
    SetPath(tree, axes[a].field, v);
    child.values[axes[a].field] = axes[a].texts[point[a]];
    label.push_back(absl::StrCat(axes[a].short_name, "=", ValueLabel(v)));
  }
  child.label = absl::StrJoin(label, ",");
  absl::Status st = YamlToProto(tree.dump(), "", &child.spec);
  if (st.ok()) st = ValidateJobSpec(child.spec);
  if (!st.ok()) return ChildError(axes, point, index, st);
  char num[16];
  std::snprintf(num, sizeof(num), "%0*d", width, index);
  child.spec.set_output(absl::StrCat(parent.output(), "/", num, "-", Sanitize(child.label)));
  child.spec.set_name(ClippedName(
      absl::StrCat(parent.name().empty() ? "sweep" : parent.name(), "[", child.label, "]")));
  child.spec = WithDefaults(child.spec);
  return child;
}

// The shared teacher capture: the parent without the sweep, storing every
// temperature and teacher layer a child reads.
absl::StatusOr<SweepChild> MakeCapture(const JobSpec& parent,
                                       const std::vector<SweepChild>& children) {
  SweepChild cap;
  cap.capture = true;
  cap.label = "capture";
  JobSpec spec = parent;
  spec.clear_sweep();
  std::set<double> temperatures(parent.teacher().cache_temperatures().begin(),
                                parent.teacher().cache_temperatures().end());
  std::set<int32_t> layers(parent.teacher().cache_layers().begin(),
                           parent.teacher().cache_layers().end());
  bool uniform = false;
  for (const SweepChild& c : children) {
    temperatures.insert(c.spec.distill().temperature());
    for (const auto& f : c.spec.distill().features()) layers.insert(f.teacher_layer());
    uniform = uniform || c.spec.distill().layer_map() == "uniform";
  }
  auto* t = spec.mutable_teacher();
  t->clear_cache_temperatures();
  for (double v : temperatures) t->add_cache_temperatures(v);
  t->clear_cache_layers();
  for (int32_t v : layers) t->add_cache_layers(v);
  spec.mutable_distill()->clear_features();
  if (uniform) {
    spec.mutable_distill()->set_layer_map("uniform");
  } else {
    spec.mutable_distill()->clear_layer_map();
  }
  spec.set_output(absl::StrCat(parent.output(), "/capture"));
  spec.set_name(
      ClippedName(absl::StrCat(parent.name().empty() ? "sweep" : parent.name(), "[capture]")));
  absl::Status st = ValidateJobSpec(spec);
  if (!st.ok()) return Bad(absl::StrCat("the shared teacher capture: ", st.message()));
  cap.spec = WithDefaults(spec);
  return cap;
}

}  // namespace

absl::StatusOr<std::string> NormalizeSweepYaml(absl::string_view text) {
  if (!CheckUtf8(text, "").ok()) return std::string(text);  // the parser reports it
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception&) {
    return std::string(text);  // the parser reports it
  }
  if (!root.IsMap() || !root["sweep"] || !root["sweep"].IsMap()) return std::string(text);
  YAML::Node axes(YAML::NodeType::Sequence);
  for (const auto& kv : root["sweep"]) {
    ASSIGN_OR_RETURN(const std::string field, YamlKey(kv.first, "sweep"));
    if (!kv.second.IsSequence()) {
      return Bad(absl::StrCat(field, ": expected a list of values, e.g. [1, 2]"));
    }
    YAML::Node axis(YAML::NodeType::Map);
    axis["field"] = field;
    YAML::Node values(YAML::NodeType::Sequence);
    for (size_t i = 0; i < kv.second.size(); ++i) {
      const std::string where = absl::StrCat(field, "[", i, "]");
      ASSIGN_OR_RETURN(json value, YamlToJson(kv.second[i], where));
      try {
        values.push_back(value.dump());
      } catch (const json::exception& e) {  // a YAML escape that decodes to invalid UTF-8
        return Bad(absl::StrCat(where, ": ", e.what()));
      }
    }
    axis["values"] = values;
    axes.push_back(axis);
  }
  root["sweep"] = axes;
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str());
}

void ResolveSweepPaths(const std::string& base_dir, JobSpec* spec) {
  for (distill::v1::SweepAxis& axis : *spec->mutable_sweep()) {
    for (std::string& text : *axis.mutable_values()) {
      json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded()) continue;  // ExpandSweep reports it
      json tree = json::object();
      SetPath(tree, axis.field(), value);
      JobSpec one;
      if (!YamlToProto(tree.dump(), "sweep", &one).ok()) continue;  // likewise
      JobSpec resolved = one;
      ResolveSpecPaths(base_dir, &resolved);
      absl::StatusOr<json> before = SpecJson(one), after = SpecJson(resolved);
      if (!before.ok() || !after.ok()) continue;
      const json* was = At(*before, axis.field());
      const json* now = At(*after, axis.field());
      if (was != nullptr && now != nullptr && *was != *now) text = now->dump();  // a path
    }
  }
}

namespace {

// Note [Input bounds]: the grid's size before any value is parsed or child
// built. Returns the number of children.
absl::StatusOr<int64_t> CheckGridSize(const JobSpec& parent, const JobSpec& base_spec) {
  int64_t count = 1;
  for (const distill::v1::SweepAxis& a : parent.sweep()) {
    count *= std::max(a.values_size(), 1);  // an empty axis is ParseAxes' error
    if (count > kMaxSweepChildren) {
      return Bad(absl::StrCat("more than ", kMaxSweepChildren, " children; split the sweep"));
    }
  }
  const size_t bytes = static_cast<size_t>(count) * base_spec.ByteSizeLong();
  if (bytes > kMaxSweepBytes) {
    return Bad(absl::StrCat(count, " children of ", base_spec.ByteSizeLong(),
                            " bytes each exceed the sweep's limit of ", kMaxSweepBytes,
                            " bytes; split the sweep or shorten the spec"));
  }
  return count;
}

}  // namespace

absl::StatusOr<std::vector<SweepChild>> ExpandSweep(const JobSpec& parent) {
  RETURN_IF_ERROR(CheckSpecSize(parent));
  if (parent.sweep_size() == 0) return Bad("no axes (an empty sweep block)");
  if (parent.output().empty())
    return Bad("output: required: the directory the children write under");
  JobSpec base_spec = parent;
  base_spec.clear_sweep();
  ASSIGN_OR_RETURN(const int64_t count, CheckGridSize(parent, base_spec));
  ASSIGN_OR_RETURN(std::vector<Axis> axes, ParseAxes(parent));
  RETURN_IF_ERROR(CheckCacheKey(parent, axes));
  ASSIGN_OR_RETURN(json base, SpecJson(base_spec));
  const int width = static_cast<int>(absl::StrCat(count - 1).size());
  std::vector<SweepChild> children;
  std::vector<size_t> point(axes.size(), 0);
  for (int i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(SweepChild child, MakeChild(parent, base, axes, point, i, width));
    children.push_back(std::move(child));
    // Next point: the last axis fastest.
    for (size_t a = axes.size(); a-- > 0;) {
      if (++point[a] < axes[a].values.size()) break;
      point[a] = 0;
    }
  }
  if (parent.teacher().model().empty() || parent.teacher().cache().empty()) return children;
  ASSIGN_OR_RETURN(SweepChild capture, MakeCapture(parent, children));
  for (SweepChild& c : children) {
    c.spec.mutable_teacher()->clear_model();
    c.spec.mutable_teacher()->set_ranks(0);
  }
  children.insert(children.begin(), std::move(capture));
  return children;
}

}  // namespace distill::common
