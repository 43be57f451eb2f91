#include "worker/distill/kd_loss.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker {

namespace {

using torch::indexing::Slice;
namespace v1 = distill::v1;

// Note [Chunked loss]: the student's logits z_s = h_s W_s^T are [N, V]; for a
// realistic batch (N = 8k tokens, V = 150k) one fp32 copy is ~5 GB, and a
// plain autograd graph keeps several (logits, log-softmax, probabilities,
// their grads). As in Liger-Kernel's fused linear losses, the loss is one
// custom autograd node whose forward walks the tokens chunk_tokens rows at a
// time: it forms the chunk's logits, its loss, and right away the loss's
// gradient with respect to the chunk logits, dL/dz [n, V] (analytically, in
// closed form below: no autograd graph), and folds that into
//   grad_h[chunk] = dL/dz W_s          [n, d_s]
//   grad_W       += (dL/dz)^T h[chunk]  [V, d_s]
// before the chunk's buffers are dropped. Backward only scales the stored
// grad_h and grad_W by the incoming gradient (the loss is a scalar, so that
// is exact). Peak memory is therefore grad_W + grad_h + a few [n, V]
// buffers, independent of N * V; the price is that the gradients are
// computed in the forward even if backward never runs, which is why the eval
// path (no input requires grad) skips them. The node holds its gradients
// until the (single) backward takes them.
//
// Closed forms, per token, with a = z_s / T, q = softmax(a), and B buckets
// (B = V for DENSE/HIDDEN; the k ids plus the tail for TOPK): let
// r_b = dD/d(log q_b) for the bucket distributions p', q'. Then
//   dD/da_i = w_i r_b(i) - q_i sum_b r_b
// where w_i = 1 for an id that is its own bucket and q_i / q'_tail for the
// ids inside the tail bucket. r_b is -p_b (forward KL),
// q_b (log q_b - log p_b) (reverse KL) and (1 - beta) q_b (log q_b - log m_b)
// (JSD). Constant shifts of r (such as the "+1" of d(q log q)/dq) cancel
// because sum_i w_i q'_b(i) ... = sum_i q_i = 1, so they are left out.

// The teacher's TOPK tail probability is floored here (Note [Top-k tail]).
constexpr double kMinTailProb = 1e-12;

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("KdLoss: ", what));
}

std::string Shape(const torch::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : "undefined";
}

// Disables CUDA autocast inside the loss:
// the softmax math and the gradients must stay in the inputs' precision.
class NoAutocast {
 public:
  NoAutocast() {
    prev_ = at::autocast::is_autocast_enabled(at::kCUDA);
    if (prev_) at::autocast::set_autocast_enabled(at::kCUDA, false);
  }
  ~NoAutocast() {
    if (!prev_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  NoAutocast(const NoAutocast&) = delete;
  NoAutocast& operator=(const NoAutocast&) = delete;

 private:
  bool prev_ = false;
};

// The validated problem; tensors are on the student's device.
struct Problem {
  torch::Tensor h;        // [N, d_s] student hidden (detached)
  torch::Tensor w;        // [V, d_s] student lm_head (detached)
  torch::Tensor targets;  // [N] int64
  // Set from the KdLossConfig and the teacher's output (Validate).
  v1::DistillLoss loss = v1::DISTILL_LOSS_UNSPECIFIED;
  v1::LogitTransport transport = v1::LOGIT_TRANSPORT_UNSPECIFIED;
  double temperature = 0, alpha = 0, beta = 0;
  bool t2_scale = false;
  int64_t chunk = 0;
  int64_t n = 0, v = 0;
  // DENSE: [N, V'] logits; TOPK: [N, k] logits, [N, k] ids, [N] lse;
  // HIDDEN: [N, d_t] hidden and [V, d_t] lm_head (first V rows).
  torch::Tensor t_logits, t_ids, t_lse, t_hidden, t_head;
};

// Sums over tokens, float64 scalars on the student's device (no host sync
// per chunk).
struct Sums {
  torch::Tensor ce;
  torch::Tensor kd;  // T^2 included
};

bool IsFloat(const torch::Tensor& t) { return t.defined() && at::isFloatingType(t.scalar_type()); }

absl::Status ValidateConfig(const KdLossConfig& c) {
  if (!(c.temperature > 0) || !std::isfinite(c.temperature)) {
    return Invalid(absl::StrCat("temperature must be > 0 and finite, got ", c.temperature));
  }
  if (!(c.alpha >= 0 && c.alpha <= 1))
    return Invalid(absl::StrCat("alpha must be in [0, 1], got ", c.alpha));
  if (c.loss == v1::JSD && !(c.beta > 0 && c.beta < 1)) {
    return Invalid(absl::StrCat("beta must be in (0, 1) for JSD, got ", c.beta));
  }
  if (c.loss != v1::DISTILL_LOSS_UNSPECIFIED && c.loss != v1::FORWARD_KL &&
      c.loss != v1::REVERSE_KL && c.loss != v1::JSD) {
    return Invalid(absl::StrCat("unknown loss ", static_cast<int>(c.loss)));
  }
  if (c.chunk_tokens < 1)
    return Invalid(absl::StrCat("chunk_tokens must be >= 1, got ", c.chunk_tokens));
  return absl::OkStatus();
}

// Ids in [0, V) and no id twice in a row (a repeated id would count its
// probability twice and leave the tail bucket negative).
absl::Status ValidateIds(const torch::Tensor& ids, int64_t v, const std::string& name) {
  if (ids.numel() == 0) return absl::OkStatus();
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= v) {
    return Invalid(
        absl::StrCat(name, " out of range: ids in [", lo, ", ", hi, "], vocabulary ", v));
  }
  if (ids.size(1) > 1) {
    torch::Tensor sorted = std::get<0>(ids.sort(1));
    torch::Tensor dup = (sorted.slice(1, 1) == sorted.slice(1, 0, -1)).any(1);
    if (dup.any().item<bool>()) {
      const int64_t row = dup.nonzero().min().item<int64_t>();
      return Invalid(absl::StrCat(name, " row ", row, " repeats an id"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTeacher(const TeacherOutput& t, Problem* p) {
  const int64_t n = p->n, v = p->v;
  const torch::Device dev = p->h.device();
  switch (t.transport) {
    case v1::LOGIT_TRANSPORT_UNSPECIFIED:
    case v1::DENSE:
      if (!IsFloat(t.logits) || t.logits.dim() != 2 || t.logits.size(0) != n) {
        return Invalid(absl::StrCat("DENSE teacher logits must be floating [N=", n, ", V'>=", v,
                                    "], got ", Shape(t.logits)));
      }
      if (t.logits.size(1) < v) {
        return Invalid(absl::StrCat("teacher logits have ", t.logits.size(1),
                                    " columns, fewer than the vocabulary ", v));
      }
      p->transport = v1::DENSE;
      p->t_logits = t.logits.detach();
      return absl::OkStatus();
    case v1::TOPK: {
      if (!IsFloat(t.topk_logits) || t.topk_logits.dim() != 2 || t.topk_logits.size(0) != n) {
        return Invalid(absl::StrCat("TOPK topk_logits must be floating [N=", n, ", k], got ",
                                    Shape(t.topk_logits)));
      }
      const int64_t k = t.topk_logits.size(1);
      if (k < 1 || k > v)
        return Invalid(absl::StrCat("top-k k must be in [1, V=", v, "], got ", k));
      if (!t.topk_ids.defined() || t.topk_ids.scalar_type() != torch::kLong ||
          t.topk_ids.sizes() != t.topk_logits.sizes()) {
        return Invalid(absl::StrCat("TOPK topk_ids must be int64 ", Shape(t.topk_logits), ", got ",
                                    Shape(t.topk_ids)));
      }
      if (!IsFloat(t.topk_lse) || t.topk_lse.dim() != 1 || t.topk_lse.size(0) != n) {
        return Invalid(
            absl::StrCat("TOPK topk_lse must be floating [N=", n, "], got ", Shape(t.topk_lse)));
      }
      p->transport = v1::TOPK;
      p->t_logits = t.topk_logits.detach().to(dev, torch::kFloat);
      p->t_ids = t.topk_ids.detach().to(dev);
      p->t_lse = t.topk_lse.detach().to(dev, torch::kFloat);
      return ValidateIds(p->t_ids, v, "topk_ids");
    }
    case v1::HIDDEN:
      if (!IsFloat(t.hidden) || t.hidden.dim() != 2 || t.hidden.size(0) != n) {
        return Invalid(absl::StrCat("HIDDEN teacher hidden must be floating [N=", n, ", d_t], got ",
                                    Shape(t.hidden)));
      }
      if (!IsFloat(t.lm_head) || t.lm_head.dim() != 2 || t.lm_head.size(1) != t.hidden.size(1) ||
          t.lm_head.size(0) < v) {
        return Invalid(absl::StrCat("HIDDEN teacher lm_head must be floating [V'>=", v,
                                    ", d_t=", t.hidden.size(1), "], got ", Shape(t.lm_head)));
      }
      p->transport = v1::HIDDEN;
      p->t_hidden = t.hidden.detach();
      // The teacher's logits are formed in the student's precision.
      p->t_head = t.lm_head.detach().narrow(0, 0, v).to(dev, p->w.scalar_type());
      return absl::OkStatus();
    default:
      return Invalid(absl::StrCat("unknown logit transport ", static_cast<int>(t.transport)));
  }
}

absl::StatusOr<Problem> Validate(const torch::Tensor& h, const torch::Tensor& w,
                                 const torch::Tensor& targets, const TeacherOutput& teacher,
                                 const KdLossConfig& config) {
  RETURN_IF_ERROR(ValidateConfig(config));
  if (!IsFloat(h) || h.dim() != 2)
    return Invalid(absl::StrCat("student_hidden must be floating [N, d_s], got ", Shape(h)));
  if (!IsFloat(w) || w.dim() != 2 || w.size(1) != h.size(1)) {
    return Invalid(
        absl::StrCat("student_lm_head must be floating [V, d_s=", h.size(1), "], got ", Shape(w)));
  }
  if (w.scalar_type() != h.scalar_type() || w.device() != h.device()) {
    return Invalid("student_hidden and student_lm_head must share dtype and device");
  }
  if (h.size(0) < 1) return Invalid("no tokens (N = 0)");
  if (w.size(0) < 1) return Invalid("empty vocabulary (V = 0)");
  Problem p;
  p.n = h.size(0);
  p.v = w.size(0);
  p.h = h.detach();
  p.w = w.detach();
  if (!targets.defined() || targets.scalar_type() != torch::kLong || targets.dim() != 1 ||
      targets.size(0) != p.n) {
    return Invalid(absl::StrCat("targets must be int64 [N=", p.n, "], got ", Shape(targets)));
  }
  p.targets = targets.to(h.device());
  const int64_t lo = p.targets.min().item<int64_t>(), hi = p.targets.max().item<int64_t>();
  if (lo < 0 || hi >= p.v) {
    return Invalid(
        absl::StrCat("targets out of range: ids in [", lo, ", ", hi, "], vocabulary ", p.v));
  }
  p.loss = config.loss == v1::DISTILL_LOSS_UNSPECIFIED ? v1::FORWARD_KL : config.loss;
  p.temperature = config.temperature;
  p.alpha = config.alpha;
  p.beta = config.beta;
  p.t2_scale = config.t2_scale;
  p.chunk = config.chunk_tokens;
  RETURN_IF_ERROR(ValidateTeacher(teacher, &p));
  return p;
}

// log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler's log1mexp).
torch::Tensor Log1mExp(const torch::Tensor& x) {
  return torch::where(x > -std::log(2.0), torch::log(-torch::expm1(x)),
                      torch::log1p(-torch::exp(x)));
}

// Zeroes t where the probability `prob` is 0: the 0 * log 0 = 0 convention
// (t would be 0 * inf = nan there, or 0 * finite = 0 anyway).
void ZeroWhereNoMass(torch::Tensor& t, const torch::Tensor& prob) {
  t.masked_fill_(prob == 0, 0.0);
}

// The divergence over B buckets of each row: rows [n] (the loss per token,
// before T^2) and, when `grad`, r [n, B] = dD/d(log q') and its row sum.
struct Divergence {
  torch::Tensor rows, r, r_sum;
};

Divergence Diverge(const Problem& p, const torch::Tensor& log_p, const torch::Tensor& log_q,
                   bool grad) {
  Divergence d;
  switch (p.loss) {
    case v1::REVERSE_KL: {
      torch::Tensor q = log_q.exp();
      torch::Tensor term = (log_q - log_p).mul_(q);
      ZeroWhereNoMass(term, q);
      d.rows = term.sum(1);
      if (grad) {
        d.r_sum = d.rows.unsqueeze(1);
        d.r = std::move(term);
      }
      break;
    }
    case v1::JSD: {
      // log m = logaddexp(log beta + log p, log(1 - beta) + log q).
      torch::Tensor log_m = torch::logaddexp(log_p + std::log(p.beta), log_q + std::log1p(-p.beta));
      torch::Tensor kl_p;
      {
        torch::Tensor prob_p = log_p.exp();
        torch::Tensor tp = (log_p - log_m).mul_(prob_p);
        ZeroWhereNoMass(tp, prob_p);
        kl_p = tp.sum(1);
      }
      torch::Tensor q = log_q.exp();
      torch::Tensor tq = (log_q - log_m).mul_(q);
      log_m.reset();
      ZeroWhereNoMass(tq, q);
      torch::Tensor kl_q = tq.sum(1);
      d.rows = kl_p.mul_(p.beta).add_(kl_q, 1.0 - p.beta);
      if (grad) {
        d.r = tq.mul_(1.0 - p.beta);
        d.r_sum = kl_q.mul_(1.0 - p.beta).unsqueeze(1);
      }
      break;
    }
    default: {  // FORWARD_KL
      torch::Tensor prob_p = log_p.exp();
      torch::Tensor term = (log_p - log_q).mul_(prob_p);
      ZeroWhereNoMass(term, prob_p);
      d.rows = term.sum(1);
      if (grad) {
        d.r_sum = prob_p.sum(1, /*keepdim=*/true).neg_();
        d.r = prob_p.neg_();
      }
      break;
    }
  }
  return d;
}

// One chunk: rows [begin, begin + n). Adds its sums; returns dL/dz [n, V]
// (float32, for the mean loss over all N tokens) when `grad`.
torch::Tensor ChunkLoss(const Problem& p, int64_t begin, int64_t n, bool grad, Sums* sums) {
  const double t = p.temperature;
  const torch::Tensor h = p.h.narrow(0, begin, n);
  const torch::Tensor y = p.targets.narrow(0, begin, n).unsqueeze(1);

  torch::Tensor z = torch::mm(h, p.w.t()).to(torch::kFloat);  // [n, V] student logits
  torch::Tensor lse1 = torch::logsumexp(z, 1, /*keepdim=*/true);
  sums->ce.add_((lse1 - z.gather(1, y)).sum());
  torch::Tensor log_q = t == 1.0 ? z - lse1 : z / t;  // log softmax(z / T)
  if (t != 1.0) log_q.sub_(torch::logsumexp(log_q, 1, /*keepdim=*/true));

  // The teacher's side, collapsed to the student's buckets for TOPK.
  torch::Tensor log_p, log_q_b, tail;  // tail: [n, V] log q masked to the tail ids
  torch::Tensor ids;
  bool has_tail = false;
  if (p.transport == v1::TOPK) {
    // Note [Top-k tail]: the student's tail mass comes straight from its own
    // logits (a masked logsumexp), which is exact. The teacher's is
    // 1 - sum of its k probabilities, computed in log space as
    // log1mexp(logsumexp(log p_k)); the sum can exceed 1 by rounding (its
    // log-sum-exp arrives in float32), so the tail is clamped to
    // [kMinTailProb, 1]: a zero tail would make the reverse KL infinite. With
    // k = V there is no tail bucket at all and the result equals DENSE.
    ids = p.t_ids.narrow(0, begin, n);
    const int64_t k = ids.size(1);
    log_p = p.t_logits.narrow(0, begin, n) / t - p.t_lse.narrow(0, begin, n).unsqueeze(1);
    log_q_b = log_q.gather(1, ids);
    has_tail = k < p.v;
    if (has_tail) {
      torch::Tensor log_mass = torch::logsumexp(log_p, 1, /*keepdim=*/true).clamp_max_(0.0);
      torch::Tensor log_p_tail = Log1mExp(log_mass).clamp_min_(std::log(kMinTailProb));
      tail = log_q.scatter(1, ids, -std::numeric_limits<float>::infinity());
      torch::Tensor log_q_tail = torch::logsumexp(tail, 1, /*keepdim=*/true);
      if (grad) tail.sub_(log_q_tail);  // log(q_i / q'_tail) for the tail ids, -inf elsewhere
      log_p = torch::cat({log_p, log_p_tail}, 1);
      log_q_b = torch::cat({log_q_b, log_q_tail}, 1);
    }
  } else {
    torch::Tensor zt =
        p.transport == v1::HIDDEN
            ? torch::mm(p.t_hidden.narrow(0, begin, n).to(h.device(), h.scalar_type()),
                        p.t_head.t())
            : p.t_logits.narrow(0, begin, n).narrow(1, 0, p.v).to(h.device());
    log_p = zt.to(torch::kFloat) / t;
    zt.reset();
    log_p.sub_(torch::logsumexp(log_p, 1, /*keepdim=*/true));
    log_q_b = log_q;
  }

  const double t2 = p.t2_scale ? t * t : 1.0;
  const bool kd_grad = grad && p.alpha > 0;
  Divergence d = Diverge(p, log_p, log_q_b, kd_grad);
  log_p.reset();
  log_q_b.reset();
  sums->kd.add_(d.rows.sum(), t2);
  if (!grad) return torch::Tensor();

  // dL/dz = kd_scale * dD/da + ce_scale * (softmax(z) - onehot(y)), with
  // dD/da_i = w_i r_b(i) - q_i sum_b r_b (Note [Chunked loss]).
  const double kd_scale = p.alpha * t2 / t / static_cast<double>(p.n);
  const double ce_scale = (1.0 - p.alpha) / static_cast<double>(p.n);
  torch::Tensor g;
  if (kd_grad) {
    if (p.transport == v1::TOPK) {
      const int64_t k = ids.size(1);
      g = has_tail ? tail.exp_().mul_(d.r.narrow(1, k, 1)) : torch::zeros_like(log_q);
      g.scatter_(1, ids, d.r.narrow(1, 0, k));
    } else {
      g = std::move(d.r);
    }
    g.sub_(log_q.exp_().mul_(d.r_sum)).mul_(kd_scale);
    log_q.reset();
    tail.reset();
    if (p.alpha < 1) g.add_(z.sub_(lse1).exp_(), ce_scale);
  } else {
    g = z.sub_(lse1).exp_().mul_(ce_scale);
  }
  if (p.alpha < 1) g.scatter_add_(1, y, torch::full({n, 1}, -ce_scale, g.options()));
  return g;
}

// Runs all chunks. Fills grad_h / grad_w where they are non-null.
Sums RunChunks(const Problem& p, torch::Tensor* grad_h, torch::Tensor* grad_w) {
  Sums sums{torch::zeros({}, p.h.options().dtype(torch::kDouble)),
            torch::zeros({}, p.h.options().dtype(torch::kDouble))};
  const bool grad = grad_h != nullptr || grad_w != nullptr;
  torch::Tensor grad_w_acc;  // float32 accumulator
  if (grad_w != nullptr) grad_w_acc = torch::zeros(p.w.sizes(), p.w.options().dtype(torch::kFloat));
  if (grad_h != nullptr) *grad_h = torch::empty_like(p.h, torch::MemoryFormat::Contiguous);
  for (int64_t begin = 0; begin < p.n; begin += p.chunk) {
    const int64_t n = std::min(p.chunk, p.n - begin);
    torch::Tensor g = ChunkLoss(p, begin, n, grad, &sums);
    if (!grad) continue;
    const torch::Tensor gs = g.to(p.w.scalar_type());
    if (grad_h != nullptr) {
      torch::Tensor rows = grad_h->narrow(0, begin, n);
      torch::mm_out(rows, gs, p.w);
    }
    if (grad_w != nullptr) grad_w_acc.addmm_(g.t(), p.h.narrow(0, begin, n).to(torch::kFloat));
  }
  if (grad_w != nullptr) *grad_w = grad_w_acc.to(p.w.scalar_type());
  return sums;
}

torch::Tensor Total(const Problem& p, const Sums& s) {
  // Zero-weighted terms are left out rather than multiplied by 0 (an
  // infinite reverse KL times alpha = 0 would be nan).
  torch::Tensor total = torch::zeros({}, s.ce.options());
  if (p.alpha > 0) total.add_(s.kd, p.alpha);
  if (p.alpha < 1) total.add_(s.ce, 1.0 - p.alpha);
  return total.div_(static_cast<double>(p.n)).to(torch::kFloat);
}

// The custom autograd node of Note [Chunked loss].
class ChunkedKdFunction : public torch::autograd::Function<ChunkedKdFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor h,
                               torch::Tensor w, const Problem* problem, Sums* sums) {
    torch::Tensor grad_h, grad_w;
    *sums = RunChunks(*problem, h.requires_grad() ? &grad_h : nullptr,
                      w.requires_grad() ? &grad_w : nullptr);
    ctx->saved_data["grad_h"] = grad_h;
    ctx->saved_data["grad_w"] = grad_w;
    return Total(*problem, *sums);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    // The gradients are moved out, not copied: the first backward owns them
    // (so AccumulateGrad can adopt them without a copy), a second one fails.
    auto take = [&](const char* key) {
      auto it = ctx->saved_data.find(key);
      TORCH_CHECK(it != ctx->saved_data.end(), "KdLoss: backward through the loss ran twice");
      torch::Tensor g = it->second.isTensor() ? it->second.toTensor() : torch::Tensor();
      ctx->saved_data.erase(it);
      if (g.defined()) g.mul_(grad_outputs[0].to(g.dtype()));
      return g;
    };
    torch::Tensor grad_h = take("grad_h");
    torch::Tensor grad_w = take("grad_w");
    return {grad_h, grad_w, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

absl::StatusOr<TeacherOutput> MakeTopK(const torch::Tensor& teacher_logits, int64_t vocab,
                                       int64_t k, double temperature) {
  if (!IsFloat(teacher_logits) || teacher_logits.dim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MakeTopK: teacher logits must be floating [N, V'], got ", Shape(teacher_logits)));
  }
  if (vocab < 1 || teacher_logits.size(1) < vocab) {
    return absl::InvalidArgumentError(absl::StrCat("MakeTopK: vocabulary ", vocab,
                                                   " must be in [1, ", teacher_logits.size(1),
                                                   "] (the logits' columns)"));
  }
  if (k < 1 || k > vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("MakeTopK: k must be in [1, V=", vocab, "], got ", k));
  }
  if (!(temperature > 0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MakeTopK: temperature must be > 0, got ", temperature));
  }
  try {
    torch::NoGradGuard no_grad;
    NoAutocast no_autocast;
    const torch::Tensor z = teacher_logits.detach().narrow(1, 0, vocab).to(torch::kFloat);
    TeacherOutput out;
    out.transport = v1::TOPK;
    auto [values, ids] = z.topk(k, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
    out.topk_logits = values;
    out.topk_ids = ids;
    out.topk_lse = torch::logsumexp(z / temperature, 1);
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("MakeTopK: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<KdLossResult> KdLoss(const torch::Tensor& student_hidden,
                                    const torch::Tensor& student_lm_head,
                                    const torch::Tensor& targets, const TeacherOutput& teacher,
                                    const KdLossConfig& config) {
  try {
    NoAutocast no_autocast;
    ASSIGN_OR_RETURN(Problem problem,
                     Validate(student_hidden, student_lm_head, targets, teacher, config));
    const bool grad = torch::GradMode::is_enabled() &&
                      (student_hidden.requires_grad() || student_lm_head.requires_grad());
    KdLossResult result;
    Sums sums;
    if (grad) {
      result.total = ChunkedKdFunction::apply(student_hidden, student_lm_head, &problem, &sums);
    } else {
      torch::NoGradGuard no_grad;
      sums = RunChunks(problem, nullptr, nullptr);
      result.total = Total(problem, sums);
    }
    result.ce = sums.ce.item<double>() / static_cast<double>(problem.n);
    result.kd = sums.kd.item<double>() / static_cast<double>(problem.n);
    return result;
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat("KdLoss: ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("KdLoss: ", e.what_without_backtrace()));
  }
}

}  // namespace distill::worker
