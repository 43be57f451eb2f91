// What the MFU and memory metrics (docs/metrics.md) need to know of the
// model and the device: the student's training FLOPs per token, the device's
// peak FLOP/s, and LibTorch's CUDA allocator peak.
#ifndef DISTILL_WORKER_TRAIN_DEVICE_STATS_H_
#define DISTILL_WORKER_TRAIN_DEVICE_STATS_H_

#include <torch/torch.h>

#include <cstdint>

#include "worker/model/config.h"

namespace distill::worker {

// Note [Model FLOPs]: training FLOPs per token of a decoder, as PaLM's MFU
// counts them (Chowdhery et al. 2022, appendix B): 6 N for the forward and
// backward matmuls of the N weights every token passes (attention and MLP
// projections of every layer, and the lm_head; not the embedding lookup),
// plus 12 L H S for attention over a window of S tokens (H = heads x
// head_dim). The same count for LoRA and full fine-tuning: MFU measures the
// model's arithmetic, not what the method skips.
double TrainingFlopsPerToken(const ModelConfig& config, int64_t seq_len);

// The peak dense FLOP/s (TFLOP/s) of a CUDA device by its name, at bf16
// (`bf16`) or TF32; 0 for a device not in the table.
double CudaPeakTflops(const std::string& device_name, bool bf16);

// The name of CUDA device `device` ("" without CUDA).
std::string CudaDeviceName(int device);

// Peak bytes LibTorch's CUDA caching allocator has allocated on `device`
// (0 without CUDA).
int64_t CudaPeakAllocatedBytes(int device);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_DEVICE_STATS_H_
