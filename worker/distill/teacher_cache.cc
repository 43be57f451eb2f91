#include "worker/distill/teacher_cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/confine.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace fs = std::filesystem;
using json = nlohmann::json;

// Note [Cache shard]: a shard file holds consecutive rows of one split:
//   "DTCSHRD1" | u64 first_row | u64 rows | rows x (u64 offset, u64 size,
//   u64 input hash) | u32 CRC-32 of everything before it | the row frames
// (little-endian). Each row is one zstd frame (level 3, content checksum on)
// of its codec block (cache_codec.h: L positions, k entries, the scalars)
// followed by the cached layers' outputs (float32; bf16 for COMPACT). The
// frames follow each other without gaps, so the file's size is the end of
// the last one: a reader detects a damaged index (CRC), a truncated or
// extended file (size), a damaged frame (zstd checksum) and a cache of other
// rows (input hash). Shards are written to a temp file and renamed, so a
// killed capture leaves only whole shards.

namespace {

constexpr char kMagic[8] = {'D', 'T', 'C', 'S', 'H', 'R', 'D', '1'};
constexpr char kFormat[] = "distill-teacher-cache/1";
constexpr int kZstdLevel = 3;

uint32_t Crc32(const char* data, size_t n) {
  static const auto* table = [] {
    auto* t = new uint32_t[256];
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int j = 0; j < 8; ++j) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ static_cast<uint8_t>(data[i])) & 0xffu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

size_t HeaderBytes(uint64_t rows) { return 8 + 16 + rows * 24 + 4; }

std::string ShardName(const std::string& split, int64_t s) {
  return absl::StrFormat("%s-%05d.shard", split, s);
}

uint16_t ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(x >> 16);
}
float FromBf16(uint16_t h) {
  const uint32_t x = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// The frame of one row (Note [Cache shard]).
absl::StatusOr<std::string> EncodeRow(const CacheRow& row, const TeacherCacheKey& key) {
  std::string raw;
  RETURN_IF_ERROR(EncodeTopK(row.topk, key.encoding, key.vocab, &raw));
  for (const auto& f : row.features) {
    for (float v : f) {
      if (key.encoding == CacheEncoding::kCompact) {
        Put<uint16_t>(&raw, ToBf16(v));
      } else {
        Put<float>(&raw, v);
      }
    }
  }
  return CompressCacheFrame(raw);
}

}  // namespace

absl::StatusOr<std::string> CompressCacheFrame(std::string_view raw) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, kZstdLevel);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string frame(ZSTD_compressBound(raw.size()), '\0');
  const size_t n = ZSTD_compress2(cctx, frame.data(), frame.size(), raw.data(), raw.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(n)));
  frame.resize(n);
  return frame;
}

// A shard's checked index; a row's frame is read from the file on demand
// (Note [Cache reads]).
struct TeacherCache::Shard {
  std::string path;
  int64_t first_row = 0;
  std::vector<uint64_t> offsets, sizes, hashes;
};

namespace {

// Note [Cache reads]: a reader keeps every shard's index (24 bytes a row)
// and reads a row's frame alone with pread. Training draws rows in a random
// order, so loading whole shards (43 MB each with two feature layers of
// 320) read most of a shard for every row: a teacher wait of 1.07 s in a
// 1.6 s step of 16 rows (now 0.017 s of 0.49 s), found in the issue-18 sweeps.

// Parses and checks a shard's header and index against the file's size
// (Note [Cache shard]); `head` holds at least the header, or the whole file
// when it is shorter.
absl::Status ParseShard(const std::string& path, int64_t first_row, int64_t rows,
                        std::string_view head, uint64_t file_size, TeacherCache::Shard* out) {
  auto loss = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("teacher cache shard ", path, " (rows ", first_row,
                                            "..", first_row + rows - 1, "): ", what));
  };
  const size_t header = HeaderBytes(static_cast<uint64_t>(rows));
  if (head.size() < header) return loss(absl::StrCat("wrong size, ", file_size, " bytes"));
  if (std::memcmp(head.data(), kMagic, 8) != 0) return loss("not a shard (bad magic)");
  if (Crc32(head.data(), header - 4) != Get<uint32_t>(head.data() + header - 4)) {
    return loss("index CRC mismatch");
  }
  if (Get<uint64_t>(head.data() + 8) != static_cast<uint64_t>(first_row) ||
      Get<uint64_t>(head.data() + 16) != static_cast<uint64_t>(rows)) {
    return loss("holds other rows");
  }
  out->path = path;
  out->first_row = first_row;
  uint64_t end = header;
  for (int64_t r = 0; r < rows; ++r) {
    const char* e = head.data() + 24 + r * 24;
    out->offsets.push_back(Get<uint64_t>(e));
    out->sizes.push_back(Get<uint64_t>(e + 8));
    out->hashes.push_back(Get<uint64_t>(e + 16));
    if (out->offsets.back() != end)
      return loss(absl::StrCat("row ", first_row + r, ": bad offset"));
    end += out->sizes.back();
  }
  if (end != file_size) {
    return loss(absl::StrCat("wrong size, ", file_size, " bytes, the index says ", end));
  }
  return absl::OkStatus();
}

// `size` bytes of `path` from `offset` (pread; a short file is DataLoss).
absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset, uint64_t size) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  absl::StatusOr<int> opened = common::OpenConfined(path, O_RDONLY, common::Access::kRead);
  if (!opened.ok()) {
    if (opened.status().code() == absl::StatusCode::kPermissionDenied) return opened.status();
    return absl::DataLossError(absl::StrCat("teacher cache shard ", opened.status().message()));
  }
  const int fd = *opened;
  std::string out(size, '\0');
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  const int saved = errno;
  ::close(fd);
  if (done != size) {
    return absl::DataLossError(absl::StrCat("teacher cache shard ", path, ": read ", done, " of ",
                                            size, " bytes at ", offset, ": ",
                                            done < size && saved != 0 ? std::strerror(saved)
                                                                      : "the file is shorter"));
  }
  return out;
}

// Reads and checks shard `path`'s index (ParseShard).
absl::Status ReadShardIndex(const std::string& path, int64_t first_row, int64_t rows,
                            TeacherCache::Shard* out) {
  std::error_code ec;
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) {
    return absl::DataLossError(
        absl::StrCat("teacher cache shard ", path, ": cannot stat: ", ec.message()));
  }
  const uint64_t header = HeaderBytes(static_cast<uint64_t>(rows));
  ASSIGN_OR_RETURN(std::string head, ReadRange(path, 0, std::min(header, file_size)));
  return ParseShard(path, first_row, rows, head, file_size, out);
}

int64_t SplitShards(const TeacherCacheKey& key, const CacheGeometry& g, const std::string& split) {
  const int64_t rows = key.splits.at(split).rows;
  return (rows + g.shard_rows - 1) / g.shard_rows;
}

int64_t ShardRowCount(const TeacherCacheKey& key, const CacheGeometry& g, const std::string& split,
                      int64_t s) {
  return std::min(g.shard_rows, key.splits.at(split).rows - s * g.shard_rows);
}

json Manifest(const TeacherCacheKey& key, const CacheGeometry& g, bool complete, int64_t bytes,
              int64_t tokens) {
  json m = KeyToJson(key);
  m["format"] = kFormat;
  m["shard_rows"] = g.shard_rows;
  m["teacher_hidden"] = g.hidden;
  m["bytes"] = bytes;
  m["tokens"] = tokens;
  m["complete"] = complete;
  return m;
}

absl::StatusOr<json> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(path));
  json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != kFormat) {
    return absl::DataLossError(absl::StrCat(path, ": not a teacher cache manifest"));
  }
  return m;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TeacherCacheWriter>> TeacherCacheWriter::Open(
    const std::string& dir, const TeacherCacheKey& key, const CacheGeometry& geometry,
    const std::string& teacher_config_json) {
  std::unique_ptr<TeacherCacheWriter> w(new TeacherCacheWriter(dir, key, geometry));
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "manifest.json")) {
    ASSIGN_OR_RETURN(json m, ReadManifest(dir));
    ASSIGN_OR_RETURN(TeacherCacheKey held, KeyFromJson(m));
    RETURN_IF_ERROR(CheckCacheKey(dir, key, held, /*exact=*/true));
    w->geometry_.shard_rows = m.at("shard_rows").get<int64_t>();
    return w;
  }
  if (fs::exists(dir) && !fs::is_empty(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("teacher.cache ", dir,
                     ": exists and is not a teacher cache (no manifest.json); not overwriting it"));
  }
  RETURN_IF_ERROR(common::CheckConfined(dir, common::Access::kWrite));
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("teacher.cache ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(common::WriteFileAtomically((fs::path(dir) / "teacher_config.json").string(),
                                              teacher_config_json));
  RETURN_IF_ERROR(common::WriteFileAtomically((fs::path(dir) / "manifest.json").string(),
                                              Manifest(key, geometry, false, 0, 0).dump(1)));
  return w;
}

int64_t TeacherCacheWriter::shards(const std::string& split) const {
  return SplitShards(key_, geometry_, split);
}

bool TeacherCacheWriter::ShardDone(const std::string& split, int64_t s) const {
  const std::string path = (fs::path(dir_) / ShardName(split, s)).string();
  if (!fs::exists(path)) return false;
  TeacherCache::Shard shard;
  return ReadShardIndex(path, s * geometry_.shard_rows, ShardRowCount(key_, geometry_, split, s),
                        &shard)
      .ok();
}

absl::Status TeacherCacheWriter::WriteShard(const std::string& split, int64_t s,
                                            const std::vector<CacheRow>& rows,
                                            const std::vector<uint64_t>& input_hashes) {
  const int64_t n = ShardRowCount(key_, geometry_, split, s);
  if (static_cast<int64_t>(rows.size()) != n || input_hashes.size() != rows.size()) {
    return absl::InternalError(
        absl::StrCat("WriteShard: ", rows.size(), " rows, shard ", s, " of ", split, " holds ", n));
  }
  std::vector<std::string> frames;
  for (const CacheRow& r : rows) {
    ASSIGN_OR_RETURN(std::string f, EncodeRow(r, key_));
    frames.push_back(std::move(f));
  }
  std::string out(kMagic, 8);
  Put<uint64_t>(&out, static_cast<uint64_t>(s * geometry_.shard_rows));
  Put<uint64_t>(&out, static_cast<uint64_t>(n));
  uint64_t offset = HeaderBytes(static_cast<uint64_t>(n));
  for (size_t i = 0; i < frames.size(); ++i) {
    Put<uint64_t>(&out, offset);
    Put<uint64_t>(&out, frames[i].size());
    Put<uint64_t>(&out, input_hashes[i]);
    offset += frames[i].size();
  }
  Put<uint32_t>(&out, Crc32(out.data(), out.size()));
  for (const std::string& f : frames) out += f;
  return common::WriteFileAtomically((fs::path(dir_) / ShardName(split, s)).string(), out);
}

int64_t TeacherCacheWriter::bytes_on_disk() const {
  int64_t total = 0;
  for (const auto& [split, unused] : key_.splits) {
    for (int64_t s = 0; s < shards(split); ++s) {
      std::error_code ec;
      const auto size = fs::file_size(fs::path(dir_) / ShardName(split, s), ec);
      if (!ec) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

absl::Status TeacherCacheWriter::Finish() {
  int64_t tokens = 0;
  for (const auto& [split, k] : key_.splits) {
    for (int64_t s = 0; s < shards(split); ++s) {
      if (!ShardDone(split, s)) {
        return absl::DataLossError(absl::StrCat("teacher.cache ", dir_, ": shard ",
                                                ShardName(split, s), " is missing or damaged"));
      }
    }
    tokens += k.rows * k.seq_len;
  }
  // The temp files of a killed capture (every writer has finished by now).
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
  return common::WriteFileAtomically(
      (fs::path(dir_) / "manifest.json").string(),
      Manifest(key_, geometry_, true, bytes_on_disk(), tokens).dump(1));
}

TeacherCache::TeacherCache(std::string dir) : dir_(std::move(dir)) {}
TeacherCache::~TeacherCache() = default;

absl::StatusOr<std::unique_ptr<TeacherCache>> TeacherCache::Open(const std::string& dir) {
  if (!fs::exists(fs::path(dir) / "manifest.json")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "teacher.cache ", dir, ": no teacher cache there (run distill-worker capture first)"));
  }
  ASSIGN_OR_RETURN(json m, ReadManifest(dir));
  if (!m.value("complete", false)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "teacher.cache ", dir, ": the capture is not complete (rerun distill-worker capture)"));
  }
  std::unique_ptr<TeacherCache> c(new TeacherCache(dir));
  ASSIGN_OR_RETURN(c->key_, KeyFromJson(m));
  c->geometry_.shard_rows = m.at("shard_rows").get<int64_t>();
  c->geometry_.hidden = m.at("teacher_hidden").get<int64_t>();
  c->tokens_ = m.value("tokens", int64_t{0});
  c->bytes_ = m.value("bytes", int64_t{0});
  return c;
}

std::string TeacherCache::teacher_config_path() const {
  return (fs::path(dir_) / "teacher_config.json").string();
}

absl::StatusOr<const TeacherCache::Shard*> TeacherCache::LoadShard(const std::string& split,
                                                                   int64_t s, int64_t row) {
  auto it = shards_.find({split, s});
  if (it != shards_.end()) return it->second.get();
  const std::string path = (fs::path(dir_) / ShardName(split, s)).string();
  if (!fs::exists(path)) {
    return absl::DataLossError(
        absl::StrCat("teacher cache shard ", path, " is missing (row ", row, " of ", split, ")"));
  }
  auto shard = std::make_unique<Shard>();
  const absl::Status parsed = ReadShardIndex(
      path, s * geometry_.shard_rows, ShardRowCount(key_, geometry_, split, s), shard.get());
  if (!parsed.ok()) {
    return absl::DataLossError(
        absl::StrCat(parsed.message(), " (reading row ", row, " of ", split, ")"));
  }
  return (shards_[{split, s}] = std::move(shard)).get();  // every index stays (small)
}

absl::StatusOr<CacheRow> TeacherCache::ReadRow(const std::string& split, int64_t row,
                                               uint64_t input_hash, int64_t* bytes) {
  auto sk = key_.splits.find(split);
  if (sk == key_.splits.end() || row < 0 || row >= sk->second.rows) {
    return absl::OutOfRangeError(
        absl::StrCat("teacher.cache ", dir_, ": no row ", row, " of ", split));
  }
  const int64_t s = row / geometry_.shard_rows;
  ASSIGN_OR_RETURN(const Shard* shard, LoadShard(split, s, row));
  const size_t i = static_cast<size_t>(row - shard->first_row);
  auto loss = [&](const std::string& what) {
    return absl::DataLossError(
        absl::StrCat("teacher cache shard ", shard->path, ": row ", row, ": ", what));
  };
  if (shard->hashes[i] != input_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat("teacher.cache ", dir_, ": row ", row, " of data.", split,
                     " holds other input ids than the job's (the data is not the cache's)"));
  }
  ASSIGN_OR_RETURN(const std::string frame_bytes,
                   ReadRange(shard->path, shard->offsets[i], shard->sizes[i]));
  const std::string_view frame(frame_bytes);
  const unsigned long long raw_size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (raw_size == ZSTD_CONTENTSIZE_ERROR || raw_size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return loss("not a zstd frame");
  }
  std::string raw(raw_size, '\0');
  const size_t n = ZSTD_decompress(raw.data(), raw.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != raw_size) {
    return loss(absl::StrCat("zstd: ", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame"));
  }
  const int64_t L = sk->second.seq_len, d = geometry_.hidden;
  const size_t per = key_.encoding == CacheEncoding::kCompact ? 2 : 4;
  const size_t feature_bytes = key_.layers.size() * static_cast<size_t>(L * d) * per;
  if (raw.size() < feature_bytes) return loss("too short for its features");
  const std::string_view codec(raw.data(), raw.size() - feature_bytes);
  CacheRow out;
  auto block = DecodeTopK(codec, key_.encoding, L, static_cast<int32_t>(key_.top_k),
                          ScalarsPerPosition(key_, split), key_.vocab);
  if (!block.ok()) return loss(std::string(block.status().message()));
  out.topk = std::move(*block);
  const char* p = raw.data() + codec.size();
  for (size_t l = 0; l < key_.layers.size(); ++l) {
    std::vector<float> f(static_cast<size_t>(L * d));
    for (float& v : f) {
      v = per == 2 ? FromBf16(Get<uint16_t>(p)) : Get<float>(p);
      p += per;
    }
    out.features.push_back(std::move(f));
  }
  if (bytes) *bytes = static_cast<int64_t>(frame.size());
  return out;
}

}  // namespace distill::worker
