// RAII bf16 autocast on CUDA (the LibTorch >= 2.4 device-type API). A no-op
// when disabled or on a CPU-only build. Per-thread state: use on the training
// thread.
#ifndef DISTILL_WORKER_TRAIN_AUTOCAST_H_
#define DISTILL_WORKER_TRAIN_AUTOCAST_H_

#include <ATen/autocast_mode.h>

namespace distill::worker {

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    prev_ = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, prev_);
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
