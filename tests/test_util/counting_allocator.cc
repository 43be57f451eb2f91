#include "tests/test_util/counting_allocator.h"

namespace distill::testing {

c10::DataPtr CountingCpuAllocator::Allocate(size_t n) const {
  auto* block = new Block{base_->allocate(n), static_cast<int64_t>(n), this};
  const int64_t live = live_.fetch_add(block->bytes) + block->bytes;
  int64_t peak = peak_.load();
  while (live > peak && !peak_.compare_exchange_weak(peak, live)) {
  }
  void* data = block->inner.get();
  return c10::DataPtr(data, block, &Free, c10::Device(c10::DeviceType::CPU));
}

void CountingCpuAllocator::Free(void* ctx) {
  auto* block = static_cast<Block*>(ctx);
  block->owner->live_.fetch_sub(block->bytes);
  delete block;
}

}  // namespace distill::testing
