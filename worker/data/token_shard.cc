#include "worker/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/confine.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

// Shards hold little-endian ids and are used in place through mmap.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token shards are read in place: a little-endian host is required");

namespace distill::worker {
namespace {

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

absl::Status ErrnoError(int error, const std::string& path, const char* what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

}  // namespace

absl::StatusOr<std::shared_ptr<TokenShard>> TokenShard::Open(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  ASSIGN_OR_RETURN(const int fd, common::OpenConfined(path, O_RDONLY, common::Access::kRead));
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, path, "cannot stat");
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes % sizeof(uint32_t) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": size ", bytes,
        " bytes is not a multiple of 4 (raw little-endian uint32 token ids expected)"));
  }
  if (bytes == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": empty shard"));

  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return ErrnoError(errno, path, "cannot mmap");

  std::shared_ptr<TokenShard> shard(new TokenShard());
  shard->path_ = path;
  shard->map_ = map;
  shard->map_bytes_ = bytes;
  shard->data_ = static_cast<const uint32_t*>(map);
  shard->size_ = static_cast<int64_t>(bytes / sizeof(uint32_t));
  return shard;
}

TokenShard::~TokenShard() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

absl::StatusOr<TokenDataset> TokenDataset::Open(const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no token shard paths given");
  TokenDataset dataset;
  for (const std::string& path : paths) {
    absl::StatusOr<std::shared_ptr<TokenShard>> shard = TokenShard::Open(path);
    if (!shard.ok()) return shard.status();
    dataset.starts_.push_back(dataset.total_);
    dataset.total_ += (*shard)->size();
    dataset.shards_.push_back(*std::move(shard));
  }
  return dataset;
}

void TokenDataset::Read(int64_t begin, int64_t n, int64_t* out) const {
  if (n <= 0) return;
  // The shard holding `begin`: the last one starting at or before it.
  size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) -
                                 starts_.begin()) -
             1;
  while (n > 0) {
    const TokenShard& shard = *shards_[s];
    const int64_t local = begin - starts_[s];
    const int64_t take = std::min(n, shard.size() - local);
    const uint32_t* src = shard.data() + local;
    std::copy(src, src + take, out);
    out += take;
    begin += take;
    n -= take;
    ++s;
  }
}

absl::Status TokenDataset::CheckVocab(int64_t vocab_size) const {
  for (const std::shared_ptr<TokenShard>& shard : shards_) {
    const uint32_t* data = shard->data();
    for (int64_t i = 0; i < shard->size(); ++i) {
      if (static_cast<int64_t>(data[i]) >= vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat(shard->path(), ": token id ", data[i], " at token index ", i,
                         " (byte offset ", i * static_cast<int64_t>(sizeof(uint32_t)),
                         ") is outside the model's vocabulary (vocab_size ", vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status WriteTokenShard(const std::string& path, const std::vector<uint32_t>& ids) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  ASSIGN_OR_RETURN(const int fd, common::OpenConfined(tmp, O_WRONLY | O_CREAT | O_TRUNC,
                                                      common::Access::kWrite, 0644));

  absl::Status status;
  const char* p = reinterpret_cast<const char*>(ids.data());
  size_t left = ids.size() * sizeof(uint32_t);
  while (left > 0 && status.ok()) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoError(errno, tmp, "write failed");
    } else {
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(errno, tmp, "fsync failed");
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(errno, tmp, "close failed");
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, path, "cannot rename temp file into place");
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

}  // namespace distill::worker
