// The teacher cache's content key (teacher_cache.h): its JSON form in the
// manifest, the file hashes, and the check of a job's key against a cache's
// that names the first field that differs.
#include "worker/distill/teacher_cache.h"

#include <openssl/evp.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/distill/teacher_cache.h"

namespace distill::worker {
using json = nlohmann::json;

namespace {

absl::Status KeyError(const std::string& dir, const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat("teacher.cache ", dir, ": ", what));
}

std::string Doubles(const std::vector<double>& v) { return absl::StrJoin(v, ", "); }

json SplitToJson(const CacheSplitKey& s) {
  json files = json::array();
  for (const auto& [path, sha] : s.files) files.push_back({{"path", path}, {"sha256", sha}});
  return {{"files", files},         {"format", s.format},   {"loss_on", s.loss_on},
          {"overflow", s.overflow}, {"packing", s.packing}, {"text_field", s.text_field},
          {"seq_len", s.seq_len},   {"rows", s.rows}};
}

CacheSplitKey SplitFromJson(const json& j) {
  CacheSplitKey s;
  for (const auto& f : j.at("files"))
    s.files.emplace_back(f.at("path").get<std::string>(), f.at("sha256").get<std::string>());
  s.format = j.at("format").get<std::string>();
  s.loss_on = j.at("loss_on").get<std::string>();
  s.overflow = j.at("overflow").get<std::string>();
  s.packing = j.at("packing").get<bool>();
  s.text_field = j.at("text_field").get<std::string>();
  s.seq_len = j.at("seq_len").get<int64_t>();
  s.rows = j.at("rows").get<int64_t>();
  return s;
}

// The first difference between two splits' keys, "" when none.
std::string SplitDifference(const std::string& name, const CacheSplitKey& job,
                            const CacheSplitKey& cache) {
  const std::string field = absl::StrCat("data.", name);
  if (job.files.size() != cache.files.size()) {
    return absl::StrCat(field, " has ", job.files.size(), " files but the cache's has ",
                        cache.files.size());
  }
  for (size_t i = 0; i < job.files.size(); ++i) {
    if (job.files[i].second != cache.files[i].second) {
      return absl::StrCat(field, " differs from the cache's (file ", job.files[i].first, " sha256 ",
                          job.files[i].second, ", the cache's ", cache.files[i].first, " sha256 ",
                          cache.files[i].second, ")");
    }
  }
  auto differ = [&](const char* what, const std::string& a, const std::string& b) {
    return absl::StrCat(field, " differs from the cache's (data.", what, " is ", a,
                        " but the cache's is ", b, ")");
  };
  if (job.format != cache.format) return differ("format", job.format, cache.format);
  if (job.seq_len != cache.seq_len)
    return differ("seq_len", absl::StrCat(job.seq_len), absl::StrCat(cache.seq_len));
  if (job.loss_on != cache.loss_on) return differ("loss_on", job.loss_on, cache.loss_on);
  if (job.overflow != cache.overflow) return differ("overflow", job.overflow, cache.overflow);
  if (job.packing != cache.packing)
    return differ("packing", job.packing ? "true" : "false", cache.packing ? "true" : "false");
  if (job.text_field != cache.text_field)
    return differ("text_field", job.text_field, cache.text_field);
  if (job.rows != cache.rows) {
    return absl::StrCat(field, " differs from the cache's (", job.rows, " rows, the cache holds ",
                        cache.rows, ")");
  }
  return "";
}

}  // namespace

std::string EncodingName(CacheEncoding e) {
  return e == CacheEncoding::kCompact ? "compact" : "exact";
}

json KeyToJson(const TeacherCacheKey& k) {
  json splits = json::object();
  for (const auto& [name, s] : k.splits) splits[name] = SplitToJson(s);
  return {{"teacher", {{"config_sha256", k.teacher_config}, {"weights_sha256", k.teacher_weights}}},
          {"tokenizer", k.tokenizer},
          {"data", splits},
          {"transport",
           {{"vocab", k.vocab},
            {"top_k", k.top_k},
            {"temperatures", k.temperatures},
            {"layers", k.layers},
            {"encoding", EncodingName(k.encoding)}}}};
}

absl::StatusOr<TeacherCacheKey> KeyFromJson(const json& j) {
  try {
    TeacherCacheKey k;
    k.teacher_config = j.at("teacher").at("config_sha256").get<std::string>();
    k.teacher_weights =
        j.at("teacher").at("weights_sha256").get<std::map<std::string, std::string>>();
    k.tokenizer = j.at("tokenizer").get<std::string>();
    for (const auto& [name, s] : j.at("data").items()) k.splits[name] = SplitFromJson(s);
    const json& t = j.at("transport");
    k.vocab = t.at("vocab").get<int64_t>();
    k.top_k = t.at("top_k").get<int64_t>();
    k.temperatures = t.at("temperatures").get<std::vector<double>>();
    k.layers = t.at("layers").get<std::vector<int64_t>>();
    k.encoding = t.at("encoding") == "compact" ? CacheEncoding::kCompact : CacheEncoding::kExact;
    return k;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("manifest.json: ", e.what()));
  }
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) absl::StrAppendFormat(&hex, "%02x", digest[i]);
  return hex;
}

uint64_t RowInputHash(const int64_t* inputs, int64_t length) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(inputs);
  for (size_t i = 0; i < static_cast<size_t>(length) * sizeof(int64_t); ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

int32_t ScalarsPerPosition(const TeacherCacheKey& key, const std::string& split) {
  return static_cast<int32_t>(key.temperatures.size()) + (split == "eval" ? 1 : 0);
}

absl::Status CheckCacheKey(const std::string& dir, const TeacherCacheKey& job,
                           const TeacherCacheKey& cache, bool exact) {
  if (exact || !job.teacher_config.empty()) {
    if (job.teacher_config != cache.teacher_config ||
        job.teacher_weights != cache.teacher_weights) {
      return KeyError(dir,
                      "teacher.model differs from the cache's teacher (sha256 of config.json "
                      "or of the weight files)");
    }
  }
  if (job.tokenizer != cache.tokenizer) {
    return KeyError(dir, absl::StrCat("data.tokenizer differs from the cache's (", job.tokenizer,
                                      ", the cache's ", cache.tokenizer, ")"));
  }
  if (job.vocab != cache.vocab) {
    return KeyError(dir, absl::StrCat("the student's vocabulary V is ", job.vocab,
                                      " but the cache holds top-k over V = ", cache.vocab));
  }
  if (job.top_k != cache.top_k) {
    return KeyError(dir, absl::StrCat("distill.top_k is ", job.top_k, " but the cache holds top-",
                                      cache.top_k));
  }
  if (job.encoding != cache.encoding) {
    return KeyError(dir, absl::StrCat("teacher.cache_encoding is ", EncodingName(job.encoding),
                                      " but the cache holds ", EncodingName(cache.encoding)));
  }
  for (const auto& [name, split] : job.splits) {
    auto it = cache.splits.find(name);
    if (it == cache.splits.end())
      return KeyError(dir, absl::StrCat("data.", name, " is not cached"));
    const std::string diff = SplitDifference(name, split, it->second);
    if (!diff.empty()) return KeyError(dir, diff);
  }
  if (exact && (job.splits.size() != cache.splits.size() ||
                job.temperatures != cache.temperatures || job.layers != cache.layers)) {
    return KeyError(
        dir, absl::StrCat("holds a cache of ", cache.splits.size(), " splits, temperatures [",
                          Doubles(cache.temperatures), "] and teacher layers [",
                          absl::StrJoin(cache.layers, ", "), "], the spec's are ",
                          job.splits.size(), ", [", Doubles(job.temperatures), "] and [",
                          absl::StrJoin(job.layers, ", "), "]; capture into another directory"));
  }
  for (double t : job.temperatures) {
    if (std::find(cache.temperatures.begin(), cache.temperatures.end(), t) ==
        cache.temperatures.end()) {
      return KeyError(dir,
                      absl::StrCat("temperature ", t, " is not cached (the cache holds ",
                                   Doubles(cache.temperatures),
                                   "; add it to teacher.cache_temperatures and capture again)"));
    }
  }
  for (int64_t l : job.layers) {
    if (std::find(cache.layers.begin(), cache.layers.end(), l) == cache.layers.end()) {
      return KeyError(dir, absl::StrCat("teacher layer ", l, " is not cached (the cache holds [",
                                        absl::StrJoin(cache.layers, ", "),
                                        "]; add it to teacher.cache_layers and capture again)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace distill::worker
