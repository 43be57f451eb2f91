// RAII bf16 autocast on CUDA, across the LibTorch 1.13 and 2.x APIs. A no-op
// when disabled or on a CPU-only build. Per-thread state: use on the training
// thread.
#ifndef DISTILL_WORKER_TRAIN_AUTOCAST_H_
#define DISTILL_WORKER_TRAIN_AUTOCAST_H_

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace distill::worker {

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    prev_ = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    prev_ = at::autocast::is_enabled();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastGuard() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, prev_);
#else
    at::autocast::set_enabled(prev_);
#endif
    if (!prev_) at::autocast::clear_cache();
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool prev_ = false;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_AUTOCAST_H_
