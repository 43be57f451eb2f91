#include "worker/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8},   {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},     {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* FindDtype(torch::Dtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (dtype == d.dtype) return &d;
  }
  return nullptr;
}

// An OS error on `path` as a Status with the matching code.
absl::Status ErrnoError(int err, const std::string& path, const std::string& what) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

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

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status WriteAll(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, path, "write failed");
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// The file mapped read-only: the whole file, unmapped when the last user is gone.
struct Mapping {
  std::shared_ptr<void> addr;
  size_t size = 0;
};

absl::StatusOr<Mapping> MapReadOnly(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path, "cannot open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, path, "cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Invalid(path,
                   absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) return ErrnoError(map_err, path, "mmap failed");
  Mapping m;
  m.addr = std::shared_ptr<void>(addr, [size](void* p) { ::munmap(p, size); });
  m.size = size;
  return m;
}

// The JSON header of a mapped file (8-byte little-endian length, then the
// header); `*header_len` receives its length.
absl::StatusOr<json> ParseHeader(const std::string& path, const Mapping& m, uint64_t* header_len) {
  const auto* bytes = static_cast<const unsigned char*>(m.addr.get());
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[i];
  if (len == 0) return Invalid(path, "header length is 0");
  if (len > m.size - 8) {
    return Invalid(path, absl::StrCat("header length ", len, " exceeds file size ", m.size));
  }
  *header_len = len;
  json header;
  try {
    const char* begin = reinterpret_cast<const char*>(bytes + 8);
    header = json::parse(begin, begin + len);
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
struct TensorEntry {
  const DtypeInfo* info = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

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

absl::StatusOr<TensorEntry> ParseTensorEntry(const std::string& path, const std::string& name,
                                             const json& value, size_t data_size) {
  const std::string where = absl::StrCat("tensor '", name, "'");
  if (!value.is_object()) return Invalid(path, absl::StrCat(where, " is not an object"));
  auto dt = value.find("dtype");
  if (dt == value.end() || !dt->is_string()) {
    return Invalid(path, absl::StrCat(where, " has no string 'dtype'"));
  }
  TensorEntry entry;
  entry.info = FindDtype(dt->get<std::string>());
  if (entry.info == nullptr) {
    return Invalid(path, absl::StrCat("unknown dtype '", dt->get<std::string>(), "' for ", where));
  }
  uint64_t nbytes = entry.info->size;
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
    return Invalid(path, absl::StrCat(where, " data_offsets ", offsets, " do not match shape ",
                                      ShapeString(entry.shape), " x ", entry.info->name, " (",
                                      nbytes, " bytes)"));
  }
  entry.begin = *begin;
  entry.end = *end;
  return entry;
}

}  // namespace

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(Mapping mapping, MapReadOnly(path));
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = mapping.size;
  file->mapping_ = mapping.addr;
  uint64_t header_len = 0;
  ASSIGN_OR_RETURN(json header, ParseHeader(path, mapping, &header_len));
  file->data_start_ = 8 + static_cast<size_t>(header_len);
  const size_t data_size = mapping.size - file->data_start_;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      RETURN_IF_ERROR(ParseMetadata(path, it.value(), &file->metadata_));
      continue;
    }
    ASSIGN_OR_RETURN(TensorEntry parsed, ParseTensorEntry(path, name, it.value(), data_size));
    Entry entry;
    entry.dtype = parsed.info->dtype;
    entry.shape = std::move(parsed.shape);
    entry.begin = static_cast<size_t>(parsed.begin);
    entry.end = static_cast<size_t>(parsed.end);
    file->names_.push_back(name);
    file->entries_.emplace(name, std::move(entry));
  }
  std::sort(file->names_.begin(), file->names_.end());
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<torch::Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  }
  const Entry& e = it->second;
  auto* ptr = static_cast<char*>(mapping_.get()) + data_start_ + e.begin;
  const auto options = torch::TensorOptions().dtype(e.dtype).device(torch::kCPU);
  std::shared_ptr<void> keep = mapping_;
  torch::Tensor t = torch::from_blob(
      ptr, e.shape, [keep](void*) {}, options);
  // Files from other writers may place a tensor at an offset that is not a
  // multiple of its element size; hand out an aligned copy then.
  if (reinterpret_cast<uintptr_t>(ptr) % t.element_size() != 0) return t.clone();
  return t;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  struct Item {
    std::string name;
    torch::Tensor data;  // contiguous CPU
    const DtypeInfo* info;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__") {
      return Invalid(path, absl::StrCat("invalid tensor name '", name, "'"));
    }
    if (!seen.insert(name).second)
      return Invalid(path, absl::StrCat("duplicate tensor '", name, "'"));
    if (!tensor.defined()) return Invalid(path, absl::StrCat("tensor '", name, "' is undefined"));
    const DtypeInfo* info = FindDtype(tensor.scalar_type());
    if (info == nullptr) {
      return Invalid(path, absl::StrCat("tensor '", name, "' has unsupported dtype ",
                                        c10::toString(tensor.scalar_type())));
    }
    try {
      items.push_back({name, tensor.detach().to(torch::kCPU).contiguous(), info});
    } catch (const c10::Error& e) {
      return Invalid(path, absl::StrCat("tensor '", name, "': ", e.what_without_backtrace()));
    }
  }
  // Note [Data alignment]: data is laid out by element size (largest first),
  // then by name, as the Hugging Face writer does. With the header padded to
  // 8 bytes, every tensor then starts at a multiple of its element size.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.info->size != b.info->size) return a.info->size > b.info->size;
    return a.name < b.name;
  });

  json header = json::object();
  size_t offset = 0;
  for (const Item& item : items) {
    const size_t n = static_cast<size_t>(item.data.numel()) * item.info->size;
    header[item.name] = {{"dtype", item.info->name},
                         {"shape", item.data.sizes().vec()},
                         {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {
    return Invalid(path, absl::StrCat("cannot encode header: ", e.what()));
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  char len_bytes[8];
  uint64_t len = header_text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);

  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, tmp, "cannot create");
  absl::Status status = WriteAll(fd, len_bytes, 8, tmp);
  if (status.ok()) status = WriteAll(fd, header_text.data(), header_text.size(), tmp);
  for (const Item& item : items) {
    if (!status.ok()) break;
    const size_t n = static_cast<size_t>(item.data.numel()) * item.info->size;
    if (n > 0) status = WriteAll(fd, static_cast<const char*>(item.data.data_ptr()), n, tmp);
  }
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(errno, tmp, "fsync failed");
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(errno, tmp, "close failed");
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, path, absl::StrCat("cannot rename ", tmp));
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadSafetensorsDir(const std::string& dir) {
  std::map<std::string, torch::Tensor> out;
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (!PathExists(index_path)) {
    if (!PathExists(single_path)) {
      return absl::NotFoundError(
          absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const std::string& name : file->names()) {
      ASSIGN_OR_RETURN(out[name], file->Get(name));
    }
    return out;
  }

  std::ifstream in(index_path, std::ios::binary);
  if (!in) return ErrnoError(errno, index_path, "cannot open");
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::string, std::vector<std::string>> names_by_shard;
  try {
    json index = json::parse(text.str());
    auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (wm == index.end() || !wm->is_object()) return Invalid(index_path, "no 'weight_map' object");
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return Invalid(index_path,
                       absl::StrCat("weight_map entry for '", it.key(), "' is not a string"));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos) {
        return Invalid(index_path, absl::StrCat("invalid shard file name '", shard, "'"));
      }
      names_by_shard[shard].push_back(it.key());
    }
  } catch (const json::exception& e) {
    return Invalid(index_path, absl::StrCat("not valid JSON: ", e.what()));
  }

  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = dir + "/" + shard;
    absl::StatusOr<std::shared_ptr<SafetensorsFile>> file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(index_path, ": shard '", shard,
                                       "' listed in weight_map: ", file.status().message()));
    }
    for (const std::string& name : names) {
      if (!(*file)->Contains(name)) {
        return Invalid(index_path,
                       absl::StrCat("tensor '", name, "' is not in shard ", shard_path));
      }
      ASSIGN_OR_RETURN(out[name], (*file)->Get(name));
    }
  }
  return out;
}

}  // namespace distill::worker
