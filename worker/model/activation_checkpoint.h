// Activation checkpointing: run a block of the model without keeping its
// activations, and recompute them in the backward pass (reentrant, as
// torch.utils.checkpoint(use_reentrant=True)); Note [Activation checkpointing]
// in activation_checkpoint.cc. Gradients equal the plain call's, bit for bit
// on a CPU. Runs on the training thread; the RNG and autocast state it saves
// and restores are the calling thread's (autocast) and the process's default
// generators (RNG).
#ifndef DISTILL_WORKER_MODEL_ACTIVATION_CHECKPOINT_H_
#define DISTILL_WORKER_MODEL_ACTIVATION_CHECKPOINT_H_

#include <torch/torch.h>

#include <functional>

namespace distill::worker {

// fn(x), keeping only `x` (and fn itself) for the backward pass, which
// recomputes fn under the RNG and autocast state of this call and
// backpropagates through it: the parameters fn uses accumulate into .grad
// (their hooks fire once per backward) and x gets its gradient. The result
// requires grad even when x does not (a frozen embedding under LoRA), so the
// parameters inside fn still train. Plain fn(x) when grad mode is off.
//
// fn must be a pure function of x and of what it captures; a captured tensor
// must not require grad (it gets no gradient; cos/sin tables and masks are
// fine). Gradients reach only .grad: the result cannot be differentiated with
// torch::autograd::grad() or with create_graph (as with the reentrant
// torch.utils.checkpoint).
torch::Tensor CheckpointedCall(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                               const torch::Tensor& x);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_ACTIVATION_CHECKPOINT_H_
