#include "worker/model/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

using json = nlohmann::json;

absl::Status Invalid(const std::string& path, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A non-negative integer from a JSON value, or nullopt.
std::optional<uint64_t> AsUnsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

// The JSON header (8-byte little-endian length, then the header); `*header_len`
// receives its length.
absl::StatusOr<json> ParseHeaderJson(const std::string& path, std::string_view file,
                                     uint64_t* header_len) {
  if (file.size() < 8) {
    return Invalid(path, absl::StrCat("file is ", file.size(),
                                      " bytes, shorter than the 8-byte header length"));
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[i];
  if (len == 0) return Invalid(path, "header length is 0");
  if (len > file.size() - 8) {
    return Invalid(path, absl::StrCat("header length ", len, " exceeds file size ", file.size()));
  }
  *header_len = len;
  json header;
  try {
    header = json::parse(file.data() + 8, file.data() + 8 + len);
  } catch (const json::exception& e) {
    return Invalid(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return Invalid(path, "header is not a JSON object");
  return header;
}

absl::Status ParseMetadata(const std::string& path, const json& value,
                           std::map<std::string, std::string>* metadata) {
  if (!value.is_object()) return Invalid(path, "__metadata__ is not an object");
  for (auto m = value.begin(); m != value.end(); ++m) {
    if (!m.value().is_string()) {
      return Invalid(path, absl::StrCat("__metadata__ value for '", m.key(), "' is not a string"));
    }
    (*metadata)[m.key()] = m.value().get<std::string>();
  }
  return absl::OkStatus();
}

// One tensor's header entry, checked: a known dtype, a shape of non-negative
// dimensions, and data_offsets inside the data section matching shape x dtype.

// The shape of `where`, and its size in bytes in `*nbytes` (which holds the
// dtype's size on entry).
absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& path, const std::string& where,
                                                const json& value, uint64_t* nbytes) {
  auto sh = value.find("shape");
  if (sh == value.end() || !sh->is_array()) {
    return Invalid(path, absl::StrCat(where, " has no 'shape' array"));
  }
  std::vector<int64_t> shape;
  for (const json& d : *sh) {
    std::optional<uint64_t> dim = AsUnsigned(d);
    if (!dim || *dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(path, absl::StrCat(where, " has invalid shape ", sh->dump(),
                                        " (dimensions must be non-negative integers)"));
    }
    if (__builtin_mul_overflow(*nbytes, *dim, nbytes)) {
      return Invalid(path, absl::StrCat(where, " shape ", sh->dump(), " is too large"));
    }
    shape.push_back(static_cast<int64_t>(*dim));
  }
  return shape;
}

absl::StatusOr<SafetensorsEntry> ParseTensorEntry(const std::string& path, const std::string& name,
                                                  const json& value, size_t data_size) {
  const std::string where = absl::StrCat("tensor '", name, "'");
  if (!value.is_object()) return Invalid(path, absl::StrCat(where, " is not an object"));
  auto dt = value.find("dtype");
  if (dt == value.end() || !dt->is_string()) {
    return Invalid(path, absl::StrCat(where, " has no string 'dtype'"));
  }
  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype = dt->get<std::string>();
  const std::optional<size_t> size = SafetensorsDtypeSize(entry.dtype);
  if (!size) {
    return Invalid(path, absl::StrCat("unknown dtype '", dt->get<std::string>(), "' for ", where));
  }
  uint64_t nbytes = *size;
  ASSIGN_OR_RETURN(entry.shape, ParseShape(path, where, value, &nbytes));
  auto off = value.find("data_offsets");
  std::optional<uint64_t> begin, end;
  if (off != value.end() && off->is_array() && off->size() == 2) {
    begin = AsUnsigned((*off)[0]);
    end = AsUnsigned((*off)[1]);
  }
  if (!begin || !end || *begin > *end) {
    return Invalid(path, absl::StrCat(where,
                                      " has invalid data_offsets (expected [begin, end] with "
                                      "0 <= begin <= end)"));
  }
  const std::string offsets = absl::StrCat("[", *begin, ", ", *end, "]");
  if (*end > data_size) {
    return Invalid(path, absl::StrCat(where, " data_offsets ", offsets,
                                      " lie outside the data section (", data_size, " bytes)"));
  }
  if (*end - *begin != nbytes) {
    return Invalid(
        path, absl::StrCat(where, " data_offsets ", offsets, " do not match shape ",
                           ShapeString(entry.shape), " x ", entry.dtype, " (", nbytes, " bytes)"));
  }
  entry.begin = *begin;
  entry.end = *end;
  return entry;
}

// The first pair of tensors whose bytes overlap (empty tensors overlap
// nothing), as an error; `tensors` in any order.
absl::Status CheckNoOverlap(const std::string& path, std::vector<SafetensorsEntry> tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  const SafetensorsEntry* last = nullptr;  // the non-empty tensor ending last so far
  for (const SafetensorsEntry& t : tensors) {
    if (t.begin == t.end) continue;
    if (last != nullptr && t.begin < last->end) {
      return Invalid(path, absl::StrCat("tensor '", t.name, "' data_offsets [", t.begin, ", ",
                                        t.end, "] overlap tensor '", last->name, "' [", last->begin,
                                        ", ", last->end, "]"));
    }
    if (last == nullptr || t.end > last->end) last = &t;
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<size_t> SafetensorsDtypeSize(const std::string& dtype) {
  static const auto* sizes = new std::map<std::string, size_t>{
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  auto it = sizes->find(dtype);
  if (it == sizes->end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file,
                                                         const std::string& path) {
  SafetensorsHeader out;
  uint64_t header_len = 0;
  ASSIGN_OR_RETURN(json header, ParseHeaderJson(path, file, &header_len));
  out.data_start = 8 + header_len;
  const size_t data_size = file.size() - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      RETURN_IF_ERROR(ParseMetadata(path, it.value(), &out.metadata));
      continue;
    }
    ASSIGN_OR_RETURN(SafetensorsEntry entry,
                     ParseTensorEntry(path, it.key(), it.value(), data_size));
    out.tensors.push_back(std::move(entry));
  }
  RETURN_IF_ERROR(CheckNoOverlap(path, out.tensors));
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

}  // namespace distill::worker
