#include "worker/model/activation_checkpoint.h"

#include <ATen/autocast_mode.h>

#include <mutex>
#include <utility>

namespace distill::worker {

// Note [Activation checkpointing]: a training step keeps every op's saved
// inputs until backward; in a decoder layer those are the normed inputs, q, k,
// v, the attention output and the MLP's [B, T, intermediate] tensors, many
// times the layer's input. CheckpointedCall is a custom autograd Function:
// - forward runs fn(x) under no-grad, so nothing inside is saved, and keeps
//   x, fn (with what it captures), the default CPU generator's state (and the
//   CUDA default generator's of x's device when x is on CUDA) and the autocast
//   state (enabled and dtype, CUDA and CPU). Memory: per layer only its input
//   is kept, plus, during backward, one layer's activations at a time.
// - backward restores that RNG and autocast state, recomputes fn on
//   x.detach().requires_grad_(x.requires_grad()) with grad mode on, and runs
//   torch::autograd::backward on the recomputed output with the incoming
//   gradient: the parameters accumulate into .grad and their hooks fire then
//   (GradReducer's bucket launches rely on it), the detached x receives its
//   gradient, which backward returns. The RNG is put back afterwards, so the
//   recompute draws nothing from the stream the rest of the step sees. Same
//   inputs, same ops, same random draws (LoRA dropout masks): the gradients
//   equal the plain call's bit for bit on a CPU.
// - The dummy input: a Function none of whose inputs requires grad is not
//   recorded, and with LoRA the embedding is frozen, so the first layer's
//   input does not require grad although the adapters inside do. Every call
//   passes an empty tensor that requires grad (the trick of Hugging Face's
//   enable_input_require_grads), so the node is always recorded; it gets no
//   gradient.
// The inner backward is reentrant (called from within the engine), as
// torch.utils.checkpoint(use_reentrant=True): it writes .grad, so
// torch::autograd::grad() and double backward are not supported.

namespace {

// The calling thread's autocast settings for the devices we train on.
struct AutocastState {
  bool cuda_enabled = false, cpu_enabled = false;
  at::ScalarType cuda_dtype = at::kHalf, cpu_dtype = at::kBFloat16;

  static AutocastState Current() {
    AutocastState s;
    s.cuda_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
    s.cpu_enabled = at::autocast::is_autocast_enabled(at::kCPU);
    s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    return s;
  }
  void Apply() const {
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda_enabled);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_enabled(at::kCPU, cpu_enabled);
  }
};

// Sets `s` for its lifetime, then puts back what was set before; the cast
// cache is cleared on leaving the outermost autocast region, as
// torch.autocast's __exit__ does.
class AutocastScope {
 public:
  explicit AutocastScope(const AutocastState& s) : prev_(AutocastState::Current()) {
    s.Apply();
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    prev_.Apply();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  AutocastState prev_;
};

// The default generators' states: the CPU one, and `device`'s when it is a
// CUDA device.
class RngState {
 public:
  static RngState Capture(const torch::Device& device) {
    RngState s;
    s.cpu_ = Get(at::detail::getDefaultCPUGenerator());
    if (device.is_cuda()) {
      s.device_ = device;
      s.accel_ = Get(at::globalContext().defaultGenerator(device));
    }
    return s;
  }
  void Restore() const {
    Set(at::detail::getDefaultCPUGenerator(), cpu_);
    if (accel_.defined()) Set(at::globalContext().defaultGenerator(device_), accel_);
  }

 private:
  // `gen` by value: a handle to the same generator (mutex() is non-const).
  static torch::Tensor Get(at::Generator gen) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }
  static void Set(at::Generator gen, const torch::Tensor& state) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }

  torch::Tensor cpu_, accel_;  // accel_ undefined unless a CUDA device
  torch::Device device_ = torch::kCPU;
};

// Puts the RNG state of construction back at the end of its scope, also when
// the recompute throws.
class RngRestorer {
 public:
  explicit RngRestorer(const torch::Device& device) : saved_(RngState::Capture(device)) {}
  ~RngRestorer() { saved_.Restore(); }
  RngRestorer(const RngRestorer&) = delete;
  RngRestorer& operator=(const RngRestorer&) = delete;

 private:
  RngState saved_;
};

// What backward needs besides x: kept in the context's saved_data as a capsule.
struct CheckpointState : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> fn;
  RngState rng;
  AutocastState autocast;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // `dummy` (requires grad) only gets the node recorded: Note [Activation
  // checkpointing].
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& dummy,
                               c10::intrusive_ptr<CheckpointState> state) {
    (void)dummy;
    state->rng = RngState::Capture(x.device());
    state->autocast = AutocastState::Current();
    torch::Tensor out;
    {
      torch::NoGradGuard no_grad;
      out = state->fn(x);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["state"] = c10::IValue::make_capsule(std::move(state));
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto state =
        c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    const torch::Tensor x = ctx->get_saved_variables()[0];
    torch::Tensor input = x.detach().requires_grad_(x.requires_grad());
    torch::Tensor out;
    {
      RngRestorer restore_rng(x.device());
      state->rng.Restore();
      AutocastScope autocast(state->autocast);
      torch::AutoGradMode grad_mode(true);
      out = state->fn(input);
    }
    // Nothing inside requires grad (a fully frozen block): nothing to do.
    if (out.requires_grad()) torch::autograd::backward({out}, {grads[0]});
    // One per forward argument: x, the dummy, the state.
    return {x.requires_grad() ? input.grad() : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor CheckpointedCall(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                               const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  const torch::Tensor dummy =
      torch::empty({0}, x.options().dtype(torch::kFloat).requires_grad(true));
  return CheckpointFunction::apply(x, dummy, std::move(state));
}

}  // namespace distill::worker
