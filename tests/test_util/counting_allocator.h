// A LibTorch CPU allocator that counts the bytes allocated while it is
// installed (the live total and its peak), for tests that bound a
// computation's peak memory; install it with c10::SetCPUAllocator(a, 255)
// (above the default allocator's priority) and put the previous one back the
// same way. Allocations made before installation are freed through their own
// deleters and never counted. Counting is thread-safe.
//
// Each DataPtr's context is its data pointer, as c10::Allocator::raw_allocate
// (oneDNN's scratch buffers, used by bf16 matmuls on the CPU) requires; the
// blocks are found again by address in one registry shared by all instances.
#ifndef DISTILL_TESTS_TEST_UTIL_COUNTING_ALLOCATOR_H_
#define DISTILL_TESTS_TEST_UTIL_COUNTING_ALLOCATOR_H_

#include <c10/core/Allocator.h>

#include <atomic>
#include <cstdint>

namespace distill::testing {

class CountingCpuAllocator final : public c10::Allocator {
 public:
  explicit CountingCpuAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) override;
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Restarts the peak from the bytes live now, and returns them.
  int64_t Reset() {
    peak_ = live_.load();
    return peak_;
  }
  int64_t peak() const { return peak_.load(); }

 private:
  static void Free(void* data);

  c10::Allocator* base_;
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> peak_{0};
};

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_COUNTING_ALLOCATOR_H_
