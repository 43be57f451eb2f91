// Fills a protobuf message from a YAML document through reflection.
//
// Keys are proto field names; enums match their value names case-insensitively,
// with or without the enum's common prefix; a scalar is accepted where a
// repeated scalar field is expected. Errors are InvalidArgument naming the
// dotted field path. Thread-safe.
#ifndef DISTILL_COMMON_YAML_PROTO_H_
#define DISTILL_COMMON_YAML_PROTO_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace distill::common {

// Parses `text` as YAML and merges it into `message`. `source` names the text
// in syntax errors.
absl::Status YamlToProto(absl::string_view text, absl::string_view source,
                         google::protobuf::Message* message);

}  // namespace distill::common

#endif  // DISTILL_COMMON_YAML_PROTO_H_
