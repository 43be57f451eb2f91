// Fills a protobuf message from a YAML document through reflection.
//
// Keys are proto field names; enums match their value names case-insensitively,
// with or without the enum's common prefix; a scalar is accepted where a
// repeated scalar field is expected. Errors are InvalidArgument naming the
// dotted field path. Thread-safe.
#ifndef DISTILL_COMMON_YAML_PROTO_H_
#define DISTILL_COMMON_YAML_PROTO_H_

#include <string>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace YAML {
class Node;
}  // namespace YAML

namespace distill::common {

// Parses `text` as YAML and merges it into `message`. Every error starts with
// `source` (the file; a field error starts with its path when `source` is
// empty) and names the field path. A key given twice in one mapping,
// or a key that is not a plain scalar, is InvalidArgument naming the field
// path and the key's line.
absl::Status YamlToProto(absl::string_view text, absl::string_view source,
                         google::protobuf::Message* message);

// OK when `text` is valid UTF-8 (what YAML and proto strings require) with
// no control character but tab, LF and CR; else InvalidArgument
// "SOURCE: invalid UTF-8 at line L, column C" (or "control character N at").
absl::Status CheckUtf8(absl::string_view text, absl::string_view source);

// The text of mapping key `key` found under `path` (a dotted field path,
// empty at the top); InvalidArgument naming the path and line when the key
// is a list or mapping (YAML allows them, a spec does not).
absl::StatusOr<std::string> YamlKey(const YAML::Node& key, const std::string& path);

}  // namespace distill::common

#endif  // DISTILL_COMMON_YAML_PROTO_H_
