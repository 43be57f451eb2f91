#include "worker/data/sampler.h"

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"

namespace distill::worker {
namespace {

// Note [Portable shuffle]: the permutation is built from our own splitmix64
// generator and Fisher-Yates, never std::shuffle or std::*_distribution,
// whose output differs between standard libraries. The order of every epoch
// is then the same on every machine, which resume and data parallelism need.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t Next() { return Mix64(state_ += kGolden); }
  // Uniform in [0, bound), bound >= 1, without modulo bias (rejection).
  uint64_t Below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      const uint64_t r = Next();
      if (r >= threshold) return r % bound;
    }
  }

 private:
  uint64_t state_;
};

absl::Status CheckLayout(const SamplerOptions& options) {
  if (options.world < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world must be >= 1, got ", options.world));
  }
  if (options.rank < 0 || options.rank >= options.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is outside [0, ", options.world, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WindowSampler> WindowSampler::Create(int64_t num_tokens,
                                                    const SamplerOptions& options) {
  if (options.seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len must be >= 1, got ", options.seq_len));
  }
  if (absl::Status s = CheckLayout(options); !s.ok()) return s;
  if (num_tokens < options.seq_len + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("token stream has ", num_tokens,
                     " tokens, fewer than seq_len + 1 = ", options.seq_len + 1));
  }
  return WindowSampler((num_tokens - 1) / options.seq_len, options);
}

absl::StatusOr<WindowSampler> WindowSampler::ForRows(int64_t num_rows, const SamplerOptions& options) {
  if (absl::Status s = CheckLayout(options); !s.ok()) return s;
  if (num_rows < 1) return absl::InvalidArgumentError(absl::StrCat("no rows to sample (", num_rows, ")"));
  return WindowSampler(num_rows, options);
}

WindowSampler::WindowSampler(int64_t num_windows, const SamplerOptions& options)
    : num_windows_(num_windows), options_(options) {}

std::vector<int64_t> WindowSampler::Next(int64_t b) {
  std::vector<int64_t> offsets = NextRows(b);
  for (int64_t& o : offsets) o *= options_.seq_len;
  return offsets;
}

std::vector<int64_t> WindowSampler::NextRows(int64_t b) {
  std::vector<int64_t> rows;
  if (b < 1) return rows;
  rows.reserve(static_cast<size_t>(b));
  const int64_t first = position_ + static_cast<int64_t>(options_.rank) * b;
  for (int64_t i = 0; i < b; ++i) rows.push_back(WindowAt(first + i));
  position_ += b * options_.world;
  return rows;
}

int64_t WindowSampler::WindowAt(int64_t global_position) {
  const int64_t epoch = global_position / num_windows_;
  if (epoch != cached_epoch_) {
    perm_.resize(static_cast<size_t>(num_windows_));
    std::iota(perm_.begin(), perm_.end(), int64_t{0});
    SplitMix64 rng(Mix64(options_.seed) ^ Mix64(static_cast<uint64_t>(epoch) + kGolden));
    for (int64_t i = num_windows_ - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
      std::swap(perm_[static_cast<size_t>(i)], perm_[static_cast<size_t>(j)]);
    }
    cached_epoch_ = epoch;
  }
  return perm_[static_cast<size_t>(global_position % num_windows_)];
}

}  // namespace distill::worker
