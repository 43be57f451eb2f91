#include "worker/distill/cache_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

// Note [Cache codec]: how a block of n positions (k entries, m scalars each)
// is laid out, and why it meets issue 17's budgets. The caller compresses the
// bytes of one data row (L = 128..4096 positions) with zstd level 3, so the
// layout's job is to put bytes of one kind next to each other: zstd's matches
// find repeats and its Huffman literals find skewed byte distributions, but
// only within a stretch of similar bytes. Every block is a sequence of
// sections, each field-major (all positions' values of one field together):
//
//   EXACT (lossless; entries kept in the order given)
//     scalars   n * m float32 as 4 byte planes (plane b holds byte b of every
//               scalar, scalar-major): the sign/exponent planes of log-sum-
//               exps that vary slowly along a row compress to almost nothing.
//     firsts    the first entry's value of each position as an order-
//               preserving key (key = bits ^ (sign ? 0xFFFFFFFF : 0x80000000),
//               so a < b as floats iff key(a) < key(b)), 4 byte planes.
//     deltas    for entries 1..k-1: key[i-1] - key[i] mod 2^32, 4 byte
//               planes. In the teacher's order (values descending) that is
//               the gap in ulps, ~2^17..2^22 for float32 logits: its top
//               plane is nearly all zeros and its third plane skewed, which
//               zstd squeezes; the low planes are the float's noise and stay.
//               Any order stays lossless (an ascending step just wraps).
//               Measured: planes beat LEB128 varints of the same deltas by
//               7% (V = 256) to 19% (V = 151669) after zstd, because varints
//               mix the noisy low bytes into the stretches of skewed ones.
//     ids       n * k ids as LEB128 varints (the frequent tokens of a BPE
//               vocabulary have small ids: 1-2 bytes, and they recur in many
//               positions, which zstd's literal coding exploits; measured
//               better than 3 fixed byte planes for V = 151669).
//   COMPACT (values quantized; ids exact; entries sorted by id)
//     scalars   as EXACT.
//     tops      z_max of each position as float32 planes (kept exactly).
//     ranges    r = z_max - z_min of each position, float32 rounded up, planes.
//     gaps      ids sorted ascending: the first id, then (id - previous id
//               - 1) as LEB128 varints: k sorted ids out of V have gaps of
//               ~V/k, and frequent tokens crowd the low ids, so most gaps
//               take 1-2 bytes.
//     codes     one byte per entry, in id order: q = round(255 sqrt((z_max -
//               z) / r)); decoded z = z_max - r (q / 255)^2. The square root
//               gives the finest steps near the top, where the probability
//               mass is: the error is at most r (sqrt(u) / 255 + 1/(4 255^2))
//               with u = (z_max - z) / r (CompactValueErrorBound()), so the
//               largest entry is exact and the smallest is within r / 255.
//
// Sizes (docs/benchmarks.md "Teacher cache" has the numbers): a float32
// top-k value carries ~17-23 bits no lossless coder removes (its mantissa
// bits below the gap to its neighbour), an id up to ~17. After zstd EXACT
// keeps close to that, ~2.3-2.9 B per delta and 0.2-2 B per id: 252 and 194
// B/token at k = 64 for the two teachers measured, under the 320 budget (331
// if every id were uniform random). COMPACT spends 1 byte per code, 1-2 per
// gap and 8 per position packed: 89 and 52 B/token after zstd (1.4 and 0.8 B
// per kept logit against a budget of 2.5; 3.1 with uniform random ids).
// Decoding checks every length, varint, id range and repeat, and that every
// value is finite, so damaged bytes give DataLoss, never garbage ids.

namespace distill::worker {

namespace {

constexpr int kCodeMax = 255;  // COMPACT: codes are one byte

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("EncodeTopK: ", what));
}

absl::Status Loss(const std::string& what) {
  return absl::DataLossError(absl::StrCat("DecodeTopK: ", what));
}

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Order-preserving key: float a < b (and -0.0 < +0.0) iff key(a) < key(b).
uint32_t OrderedKey(float f) {
  const uint32_t bits = FloatBits(f);
  return bits ^ ((bits & 0x80000000u) ? 0xFFFFFFFFu : 0x80000000u);
}

float FromOrderedKey(uint32_t key) {
  return BitsFloat(key ^ ((key & 0x80000000u) ? 0x80000000u : 0xFFFFFFFFu));
}

void PutVarint(uint32_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// 4 byte planes: byte b of every word, plane 0 (lowest byte) first.
void PutPlanes(const std::vector<uint32_t>& words, std::string* out) {
  const size_t start = out->size(), n = words.size();
  out->resize(start + 4 * n);
  for (int b = 0; b < 4; ++b) {
    char* plane = &(*out)[start + b * n];
    for (size_t i = 0; i < n; ++i) plane[i] = static_cast<char>((words[i] >> (8 * b)) & 0xFF);
  }
}

// Reads the sections back; every failure is sticky and described by error().
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool Planes(size_t n, const char* what, std::vector<uint32_t>* words) {
    if (bytes_.size() - pos_ < 4 * n) return Fail(absl::StrCat("truncated in the ", what));
    words->assign(n, 0);
    for (int b = 0; b < 4; ++b) {
      for (size_t i = 0; i < n; ++i) {
        (*words)[i] |= static_cast<uint32_t>(static_cast<unsigned char>(bytes_[pos_++])) << (8 * b);
      }
    }
    return true;
  }

  // A canonical LEB128 varint of at most 32 bits, as PutVarint writes it.
  bool Varint(const char* what, uint32_t* v) {
    uint64_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      if (pos_ == bytes_.size()) return Fail(absl::StrCat("truncated in the ", what));
      const auto byte = static_cast<unsigned char>(bytes_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) {
        if ((byte == 0 && shift > 0) || value > 0xFFFFFFFFu) {
          return Fail(absl::StrCat("malformed varint in the ", what));
        }
        *v = static_cast<uint32_t>(value);
        return true;
      }
    }
    return Fail(absl::StrCat("malformed varint in the ", what));
  }

  bool Bytes(size_t n, const char* what, std::string_view* out) {
    if (bytes_.size() - pos_ < n) return Fail(absl::StrCat("truncated in the ", what));
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  bool Fail(std::string what) {
    if (error_.empty()) error_ = std::move(what);
    return false;
  }

  // DataLoss for the first failure, or for bytes left over.
  absl::Status Finish() const {
    if (!error_.empty()) return Loss(error_);
    if (pos_ != bytes_.size()) {
      return Loss(absl::StrCat(bytes_.size() - pos_, " trailing bytes after ", pos_));
    }
    return absl::OkStatus();
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  std::string error_;
};

// An id that occurs twice among ids[0, k), or -1. `scratch` is reused
// between calls (sorting a copy: O(k log k), no memory of the vocabulary's size).
int32_t RepeatedId(const int32_t* ids, int32_t k, std::vector<int32_t>* scratch) {
  scratch->assign(ids, ids + k);
  std::sort(scratch->begin(), scratch->end());
  const auto it = std::adjacent_find(scratch->begin(), scratch->end());
  return it == scratch->end() ? -1 : *it;
}

absl::Status CheckShape(int64_t n, int32_t k, int32_t m, int64_t vocab) {
  if (n < 0 || k < 1 || m < 0 || vocab < 1 || vocab > int64_t{1} << 31 || k > vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("TopK codec: need positions >= 0, 1 <= k <= vocab < 2^31, scalars >= 0; got ",
                     n, " positions, k = ", k, ", ", m, " scalars, vocab ", vocab));
  }
  return absl::OkStatus();
}

absl::Status Validate(const TopKBlock& b, int64_t vocab) {
  const auto n = static_cast<size_t>(b.positions), k = static_cast<size_t>(b.k);
  if (b.values.size() != n * k || b.ids.size() != n * k ||
      b.extra.size() != n * static_cast<size_t>(b.scalars)) {
    return Invalid(absl::StrCat("sizes do not match ", n, " positions of k = ", k, ", ", b.scalars,
                                " scalars: ", b.values.size(), " values, ", b.ids.size(), " ids, ",
                                b.extra.size(), " scalars"));
  }
  std::vector<int32_t> scratch;
  for (size_t p = 0; p < n; ++p) {
    for (size_t i = p * k; i < (p + 1) * k; ++i) {
      if (b.ids[i] < 0 || b.ids[i] >= vocab) {
        return Invalid(
            absl::StrCat("position ", p, ": id ", b.ids[i], " outside [0, ", vocab, ")"));
      }
      if (!std::isfinite(b.values[i])) {
        return Invalid(absl::StrCat("position ", p, ": value ", b.values[i], " is not finite"));
      }
    }
    if (const int32_t id = RepeatedId(&b.ids[p * k], b.k, &scratch); id >= 0) {
      return Invalid(absl::StrCat("position ", p, ": id ", id, " repeated"));
    }
  }
  return absl::OkStatus();
}

// Scalars scalar-major (all positions' scalar 0, then scalar 1...).
void PutScalars(const TopKBlock& b, std::string* out) {
  std::vector<uint32_t> words(b.extra.size());
  for (int64_t p = 0; p < b.positions; ++p) {
    for (int32_t j = 0; j < b.scalars; ++j) {
      words[j * b.positions + p] = FloatBits(b.extra[p * b.scalars + j]);
    }
  }
  PutPlanes(words, out);
}

bool ReadScalars(Reader* r, TopKBlock* b) {
  std::vector<uint32_t> words;
  if (!r->Planes(static_cast<size_t>(b->positions * b->scalars), "scalars", &words)) return false;
  b->extra.resize(words.size());
  for (int64_t p = 0; p < b->positions; ++p) {
    for (int32_t j = 0; j < b->scalars; ++j) {
      b->extra[p * b->scalars + j] = BitsFloat(words[j * b->positions + p]);
    }
  }
  return true;
}

void EncodeExact(const TopKBlock& b, std::string* out) {
  const int64_t n = b.positions, k = b.k;
  PutScalars(b, out);
  std::vector<uint32_t> firsts(n);
  for (int64_t p = 0; p < n; ++p) firsts[p] = OrderedKey(b.values[p * k]);
  PutPlanes(firsts, out);
  std::vector<uint32_t> deltas;
  deltas.reserve(n * (k - 1));
  for (int64_t p = 0; p < n; ++p) {
    for (int64_t i = p * k + 1; i < (p + 1) * k; ++i) {
      deltas.push_back(OrderedKey(b.values[i - 1]) - OrderedKey(b.values[i]));
    }
  }
  PutPlanes(deltas, out);
  for (int32_t id : b.ids) PutVarint(static_cast<uint32_t>(id), out);
}

absl::Status DecodeExact(Reader* r, int64_t vocab, TopKBlock* b) {
  const int64_t n = b->positions, k = b->k;
  std::vector<uint32_t> keys, deltas;
  if (!ReadScalars(r, b) || !r->Planes(static_cast<size_t>(n), "first values", &keys) ||
      !r->Planes(static_cast<size_t>(n * (k - 1)), "value deltas", &deltas)) {
    return r->Finish();
  }
  b->values.resize(n * k);
  for (int64_t p = 0; p < n; ++p) {
    uint32_t key = keys[p];
    b->values[p * k] = FromOrderedKey(key);
    for (int64_t i = 1; i < k; ++i) {
      key -= deltas[p * (k - 1) + i - 1];
      b->values[p * k + i] = FromOrderedKey(key);
    }
  }
  b->ids.resize(n * k);
  for (int64_t i = 0; i < n * k; ++i) {
    uint32_t id;
    if (!r->Varint("ids", &id)) return r->Finish();
    if (id >= vocab) return Loss(absl::StrCat("position ", i / k, ": id ", id, " outside vocab"));
    b->ids[i] = static_cast<int32_t>(id);
  }
  return r->Finish();
}

// COMPACT's code of z in a position with top z_max and range r (r >= 0).
int Quantize(float z, float z_max, float range) {
  if (range <= 0) return 0;
  const double u = (static_cast<double>(z_max) - z) / range;
  const long q = std::lround(kCodeMax * std::sqrt(std::clamp(u, 0.0, 1.0)));
  return static_cast<int>(std::clamp<long>(q, 0, kCodeMax));
}

float Dequantize(int q, float z_max, float range) {
  const double s = static_cast<double>(q) / kCodeMax;
  return static_cast<float>(z_max - static_cast<double>(range) * s * s);
}

// r = z_max - z_min as a float32 no smaller than the exact difference, so
// that every u = (z_max - z) / r is within [0, 1].
float RangeUp(float z_max, float z_min) {
  const double exact = static_cast<double>(z_max) - z_min;
  float r = static_cast<float>(exact);
  if (static_cast<double>(r) < exact) r = std::nextafter(r, INFINITY);
  return r;
}

absl::Status EncodeCompact(const TopKBlock& b, std::string* out) {
  const int64_t n = b.positions, k = b.k;
  std::vector<uint32_t> tops(n), ranges(n);
  std::vector<int64_t> order(k);
  std::string gaps, codes;
  codes.reserve(n * k);
  for (int64_t p = 0; p < n; ++p) {
    const float* z = &b.values[p * k];
    const int32_t* id = &b.ids[p * k];
    const auto [lo, hi] = std::minmax_element(z, z + k);
    const float range = RangeUp(*hi, *lo);
    if (!std::isfinite(range)) {
      return Invalid(absl::StrCat("position ", p, ": values span more than float32 holds"));
    }
    tops[p] = FloatBits(*hi);
    ranges[p] = FloatBits(range);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return id[a] < id[c]; });
    uint32_t next = 0;  // the smallest id the next entry may have
    for (int64_t i : order) {
      PutVarint(static_cast<uint32_t>(id[i]) - next, &gaps);
      next = static_cast<uint32_t>(id[i]) + 1;
      codes.push_back(static_cast<char>(Quantize(z[i], *hi, range)));
    }
  }
  PutScalars(b, out);
  PutPlanes(tops, out);
  PutPlanes(ranges, out);
  out->append(gaps);
  out->append(codes);
  return absl::OkStatus();
}

absl::Status DecodeCompact(Reader* r, int64_t vocab, TopKBlock* b) {
  const int64_t n = b->positions, k = b->k;
  std::vector<uint32_t> tops, ranges;
  if (!ReadScalars(r, b) || !r->Planes(static_cast<size_t>(n), "tops", &tops) ||
      !r->Planes(static_cast<size_t>(n), "ranges", &ranges)) {
    return r->Finish();
  }
  b->ids.resize(n * k);
  for (int64_t p = 0; p < n; ++p) {
    uint64_t next = 0;
    for (int64_t i = p * k; i < (p + 1) * k; ++i) {
      uint32_t gap;
      if (!r->Varint("id gaps", &gap)) return r->Finish();
      const uint64_t id = next + gap;
      if (id >= static_cast<uint64_t>(vocab)) {
        return Loss(absl::StrCat("position ", p, ": id ", id, " outside vocab ", vocab));
      }
      b->ids[i] = static_cast<int32_t>(id);
      next = id + 1;
    }
  }
  std::string_view codes;
  if (!r->Bytes(static_cast<size_t>(n * k), "codes", &codes)) return r->Finish();
  b->values.resize(n * k);
  std::vector<std::pair<float, int32_t>> entries(k);
  for (int64_t p = 0; p < n; ++p) {
    const float top = BitsFloat(tops[p]), range = BitsFloat(ranges[p]);
    if (!std::isfinite(top) || !std::isfinite(range) || !(range >= 0)) {
      return Loss(absl::StrCat("position ", p, ": bad top ", top, " or range ", range));
    }
    for (int64_t i = 0; i < k; ++i) {
      const auto q = static_cast<unsigned char>(codes[p * k + i]);
      entries[i] = {Dequantize(q, top, range), b->ids[p * k + i]};
    }
    // Value descending, ties: lower id first (ids are ascending already).
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& a, const auto& c) { return a.first > c.first; });
    for (int64_t i = 0; i < k; ++i) {
      b->values[p * k + i] = entries[i].first;
      b->ids[p * k + i] = entries[i].second;
    }
  }
  return r->Finish();
}

}  // namespace

float CompactValueErrorBound(float z, float z_max, float z_min) {
  const double range = static_cast<double>(z_max) - z_min;
  if (range <= 0) return 0.0f;
  const double u = std::clamp((static_cast<double>(z_max) - z) / range, 0.0, 1.0);
  const double quantization = range * (std::sqrt(u) / kCodeMax + 0.25 / (kCodeMax * kCodeMax));
  // float32 rounding of r and of the decoded value.
  const double rounding = 1.2e-7 * (std::fabs(z) + std::fabs(z_max) + 2 * range);
  return static_cast<float>(quantization + rounding);
}

absl::Status EncodeTopK(const TopKBlock& block, CacheEncoding encoding, int64_t vocab,
                        std::string* out) {
  if (absl::Status s = CheckShape(block.positions, block.k, block.scalars, vocab); !s.ok()) {
    return s;
  }
  if (absl::Status s = Validate(block, vocab); !s.ok()) return s;
  if (encoding == CacheEncoding::kExact) {
    EncodeExact(block, out);
    return absl::OkStatus();
  }
  return EncodeCompact(block, out);
}

absl::StatusOr<TopKBlock> DecodeTopK(std::string_view bytes, CacheEncoding encoding,
                                     int64_t positions, int32_t k, int32_t scalars, int64_t vocab) {
  if (absl::Status s = CheckShape(positions, k, scalars, vocab); !s.ok()) return s;
  // Every position takes at least 4 bytes (its first value or top) and every
  // entry at least one (its id or code): nothing is allocated for more.
  if (positions > static_cast<int64_t>(bytes.size() / 4) ||
      positions * k > static_cast<int64_t>(bytes.size())) {
    return Loss(absl::StrCat("truncated: ", bytes.size(), " bytes cannot hold ", positions,
                             " positions of k = ", k));
  }
  TopKBlock b;
  b.positions = positions;
  b.k = k;
  b.scalars = scalars;
  Reader r(bytes);
  absl::Status s =
      encoding == CacheEncoding::kExact ? DecodeExact(&r, vocab, &b) : DecodeCompact(&r, vocab, &b);
  if (!s.ok()) return s;
  // What EncodeTopK rejects: non-finite values (COMPACT too: a finite top
  // and range can still dequantize to -inf) and, EXACT, repeated ids.
  std::vector<int32_t> scratch;
  for (int64_t p = 0; p < positions; ++p) {
    if (encoding == CacheEncoding::kExact) {
      if (const int32_t id = RepeatedId(&b.ids[p * k], k, &scratch); id >= 0) {
        return Loss(absl::StrCat("position ", p, ": id ", id, " repeated"));
      }
    }
    for (int64_t i = p * k; i < (p + 1) * k; ++i) {
      if (!std::isfinite(b.values[i])) {
        return Loss(absl::StrCat("position ", p, ": value is not finite"));
      }
    }
  }
  return b;
}

}  // namespace distill::worker
