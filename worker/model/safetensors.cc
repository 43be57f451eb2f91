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
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/confine.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/model/safetensors_header.h"

namespace distill::worker {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  size_t size;
};

// Note [Safetensors dtypes]: the dtypes safetensors_header.cc accepts
// (SafetensorsDtypeSize), with their torch dtype; the two lists name the
// same dtypes with the same sizes (safetensors_test checks each round trip).
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
  RETURN_IF_ERROR(common::CheckInputFile(path));
  ASSIGN_OR_RETURN(const int fd, common::OpenConfined(path, O_RDONLY, common::Access::kRead));
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

}  // namespace

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(Mapping mapping, MapReadOnly(path));
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = mapping.size;
  file->mapping_ = mapping.addr;
  ASSIGN_OR_RETURN(
      SafetensorsHeader header,
      ParseSafetensorsHeader(
          std::string_view(static_cast<const char*>(mapping.addr.get()), mapping.size), path));
  file->data_start_ = static_cast<size_t>(header.data_start);
  file->metadata_ = std::move(header.metadata);
  for (SafetensorsEntry& parsed : header.tensors) {
    Entry entry;
    entry.dtype = FindDtype(parsed.dtype)->dtype;  // Note [Safetensors dtypes]
    entry.shape = std::move(parsed.shape);
    entry.begin = static_cast<size_t>(parsed.begin);
    entry.end = static_cast<size_t>(parsed.end);
    file->names_.push_back(parsed.name);
    file->entries_.emplace(parsed.name, std::move(entry));
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
  ASSIGN_OR_RETURN(const int fd, common::OpenConfined(tmp, O_WRONLY | O_CREAT | O_TRUNC,
                                                      common::Access::kWrite, 0644));
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

  RETURN_IF_ERROR(common::CheckInputFile(index_path));
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
