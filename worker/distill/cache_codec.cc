// A placeholder of the teacher cache's codec (cache_codec.h), so the cache
// builds before the codec proper lands: EXACT stores each position's k
// values (float32) and ids (int32) raw, little-endian, then its scalars
// (float32); COMPACT sorts the entries by value descending (ties: lower id
// first) and stores the values as IEEE half, the ids raw.
//
// Note [Cache codec]: placeholder only; the codec helper's file replaces it.
#include "worker/distill/cache_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"

namespace distill::worker {
namespace {

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

uint16_t ToHalf(float f) {
  // Round to nearest even through the bf16-free path: IEEE binary16.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7bffu);  // clamp to the largest finite
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  if ((h & 0x7fffu) >= 0x7c00u) h = 0x7bffu;
  return static_cast<uint16_t>(sign | h);
}

float FromHalf(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits |= sign;
  std::memcpy(&v, &bits, 4);
  return v;
}

size_t EntryBytes(CacheEncoding e) { return e == CacheEncoding::kExact ? 8 : 6; }

}  // namespace

absl::Status EncodeTopK(const TopKBlock& b, CacheEncoding encoding, int64_t vocab,
                        std::string* out) {
  const size_t n = static_cast<size_t>(b.positions), k = static_cast<size_t>(b.k),
               m = static_cast<size_t>(b.scalars);
  if (b.values.size() != n * k || b.ids.size() != n * k || b.extra.size() != n * m) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeTopK: sizes do not match ", n,
                                                   " positions of k ", k, " and ", m, " scalars"));
  }
  for (size_t p = 0; p < n; ++p) {
    std::set<int32_t> seen;
    std::vector<size_t> order(k);
    std::iota(order.begin(), order.end(), 0);
    for (size_t j = 0; j < k; ++j) {
      const int32_t id = b.ids[p * k + j];
      if (id < 0 || id >= vocab || !seen.insert(id).second || !std::isfinite(b.values[p * k + j])) {
        return absl::InvalidArgumentError(
            absl::StrCat("EncodeTopK: position ", p, ": bad entry ", j));
      }
    }
    if (encoding == CacheEncoding::kCompact) {
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t c) {
        const float va = b.values[p * k + a], vc = b.values[p * k + c];
        return va != vc ? va > vc : b.ids[p * k + a] < b.ids[p * k + c];
      });
    }
    for (size_t j : order) {
      if (encoding == CacheEncoding::kExact) {
        Put<float>(out, b.values[p * k + j]);
      } else {
        Put<uint16_t>(out, ToHalf(b.values[p * k + j]));
      }
      Put<int32_t>(out, b.ids[p * k + j]);
    }
    for (size_t j = 0; j < m; ++j) Put<float>(out, b.extra[p * m + j]);
  }
  return absl::OkStatus();
}

absl::StatusOr<TopKBlock> DecodeTopK(std::string_view bytes, CacheEncoding encoding,
                                     int64_t positions, int32_t k, int32_t scalars, int64_t vocab) {
  const size_t n = static_cast<size_t>(positions), kk = static_cast<size_t>(k),
               m = static_cast<size_t>(scalars);
  const size_t want = n * (kk * EntryBytes(encoding) + m * 4);
  if (bytes.size() != want) {
    return absl::DataLossError(absl::StrCat("DecodeTopK: ", bytes.size(), " bytes, expected ", want,
                                            bytes.size() < want ? " (truncated)" : ""));
  }
  TopKBlock b;
  b.positions = positions;
  b.k = k;
  b.scalars = scalars;
  b.values.resize(n * kk);
  b.ids.resize(n * kk);
  b.extra.resize(n * m);
  const char* p = bytes.data();
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < kk; ++j) {
      if (encoding == CacheEncoding::kExact) {
        b.values[i * kk + j] = Get<float>(p);
        p += 4;
      } else {
        b.values[i * kk + j] = FromHalf(Get<uint16_t>(p));
        p += 2;
      }
      const int32_t id = Get<int32_t>(p);
      p += 4;
      if (id < 0 || id >= vocab) {
        return absl::DataLossError(
            absl::StrCat("DecodeTopK: position ", i, ": id ", id, " out of range"));
      }
      b.ids[i * kk + j] = id;
    }
    for (size_t j = 0; j < m; ++j, p += 4) b.extra[i * m + j] = Get<float>(p);
  }
  return b;
}

}  // namespace distill::worker
