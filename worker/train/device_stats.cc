#include "worker/train/device_stats.h"

#include <string>

#if DISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace distill::worker {

double TrainingFlopsPerToken(const ModelConfig& c, int64_t seq_len) {
  const double h = static_cast<double>(c.hidden_size);
  const double head_dim = static_cast<double>(c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads);
  const double q = static_cast<double>(c.num_attention_heads) * head_dim;
  const double kv = static_cast<double>(c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads) *
                    head_dim;
  const double layer = h * q + 2 * h * kv + q * h + 3 * h * static_cast<double>(c.intermediate_size);
  const double layers = static_cast<double>(c.num_hidden_layers);
  const double n = layers * layer + static_cast<double>(c.vocab_size) * h;
  return 6 * n + 12 * layers * q * static_cast<double>(seq_len);
}

double CudaPeakTflops(const std::string& name, bool bf16) {
  // Dense (no sparsity) tensor-core peaks from NVIDIA's data sheets, SXM
  // parts; bf16, then TF32.
  struct Peak {
    const char* name;
    double bf16, tf32;
  };
  static const Peak kPeaks[] = {
      {"B200", 2250, 1100}, {"H200", 989, 494}, {"H100 PCIe", 756, 378}, {"H100", 989, 494},
      {"GH200", 989, 494},  {"A100", 312, 156}, {"L40S", 362, 183},      {"A10G", 70, 35},
  };
  for (const Peak& p : kPeaks) {
    if (name.find(p.name) != std::string::npos) return bf16 ? p.bf16 : p.tf32;
  }
  return 0;
}

std::string CudaDeviceName(int device) {
#if DISTILL_WITH_CUDA
  if (!torch::cuda::is_available()) return "";
  return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device))->name;
#else
  (void)device;
  return "";
#endif
}

int64_t CudaPeakAllocatedBytes(int device) {
#if DISTILL_WITH_CUDA
  if (!torch::cuda::is_available()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
#else
  (void)device;
  return 0;
#endif
}

}  // namespace distill::worker
