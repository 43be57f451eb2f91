// Fuzzes DecodeTopK (worker/distill/cache_codec.cc), the decoder of the
// teacher's top-k rows as the teacher cache streams them back. The first 8
// bytes choose the parameters (encoding, positions, k, scalars, vocab); the
// rest are the bytes decoded. A decoded block must be one EncodeTopK accepts
// (DecodeTopK's contract: it rejects what EncodeTopK cannot have produced),
// whose encoding decodes again: to the same bits for EXACT (COMPACT
// re-quantizes the values).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "worker/distill/cache_codec.h"

namespace {

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using distill::worker::CacheEncoding;
  if (size < 8) return 0;
  const CacheEncoding encoding = (data[0] & 1) ? CacheEncoding::kCompact : CacheEncoding::kExact;
  const int64_t positions = data[1] % 17;
  const int32_t k = data[2] % 9;
  const int32_t scalars = data[3] % 4;
  uint32_t vocab = 0;
  std::memcpy(&vocab, data + 4, sizeof(vocab));
  const std::string_view bytes(reinterpret_cast<const char*>(data + 8), size - 8);
  auto block = distill::worker::DecodeTopK(bytes, encoding, positions, k, scalars, vocab);
  if (!block.ok()) return 0;
  std::string again;
  if (!distill::worker::EncodeTopK(*block, encoding, vocab, &again).ok()) std::abort();
  auto back = distill::worker::DecodeTopK(again, encoding, positions, k, scalars, vocab);
  if (!back.ok()) std::abort();
  if (encoding == CacheEncoding::kExact &&
      (back->ids != block->ids || !SameBits(back->values, block->values) ||
       !SameBits(back->extra, block->extra))) {
    std::abort();
  }
  return 0;
}
