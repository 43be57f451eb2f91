#include "tests/test_util/counting_allocator.h"

#include <mutex>
#include <unordered_map>
#include <utility>

namespace distill::testing {
namespace {

struct Block {
  c10::DataPtr inner;
  int64_t bytes = 0;
};

// Live blocks of every instance by data pointer. Never destroyed: tensors may
// be freed during static destruction.
struct Registry {
  std::mutex mu;
  std::unordered_map<void*, std::pair<std::atomic<int64_t>*, Block>> blocks;
};
Registry& Blocks() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

c10::DataPtr CountingCpuAllocator::allocate(size_t n) {
  c10::DataPtr inner = base_->allocate(n);
  void* data = inner.get();
  const int64_t bytes = static_cast<int64_t>(n);
  {
    Registry& r = Blocks();
    std::lock_guard<std::mutex> lock(r.mu);
    r.blocks[data] = {&live_, Block{std::move(inner), bytes}};
  }
  const int64_t live = live_.fetch_add(bytes) + bytes;
  int64_t peak = peak_.load();
  while (live > peak && !peak_.compare_exchange_weak(peak, live)) {
  }
  return c10::DataPtr(data, data, &Free, c10::Device(c10::DeviceType::CPU));
}

void CountingCpuAllocator::Free(void* data) {
  c10::DataPtr inner;  // released after the lock is dropped
  Registry& r = Blocks();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.blocks.find(data);
  if (it == r.blocks.end()) return;
  it->second.first->fetch_sub(it->second.second.bytes);
  inner = std::move(it->second.second.inner);
  r.blocks.erase(it);
}

}  // namespace distill::testing
