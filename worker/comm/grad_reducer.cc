// GradReducer (grad_reducer.h): buckets, autograd hooks, ordered launches.
//
// Note [Hook thread]: autograd runs CPU hooks on the thread that called
// backward(), but CUDA gradients' hooks on the engine's device threads. MPI
// is initialised MPI_THREAD_FUNNELED (only the main thread may call it), so
// with the MPI backend a hook launches buckets only when it runs on the
// thread that called Arm(); otherwise it only fills its slot and Finish()
// launches (no overlap, still correct). Other backends launch from any hook
// thread: backward() blocks the training thread meanwhile, so calls into the
// communicator stay serialised.
#include "worker/comm/grad_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace distill::worker {

struct GradReducer::Impl {
  struct Bucket {
    std::vector<int64_t> params;  // parameter indices, in slot order
    int64_t numel = 0;            // of the slots
    int64_t padded = 0;           // numel rounded up to a multiple of the ranks (reduce_scatter)
    torch::Tensor flat;           // every slot, one after another (reduce_scatter: while in use)
    int64_t filled = 0;           // slots filled in this synchronised step
    std::unique_ptr<Work> work;   // the all-reduce or reduce-scatter, once launched
    torch::Tensor recv;           // reduce_scatter: this rank's chunk of the result
    torch::Tensor chunk;          // reduce_scatter: float32 sum of recv since ZeroChunks()
    bool folded = false;          // reduce_scatter: recv added into chunk in this backward
  };

  Impl(std::vector<torch::Tensor> p, Communicator& c, bool rs)
      : params(std::move(p)), comm(c), reduce_scatter(rs) {}

  std::vector<torch::Tensor> params;
  Communicator& comm;
  const bool reduce_scatter;
  std::vector<Bucket> buckets;
  std::vector<int64_t> bucket_of;   // by parameter
  std::vector<torch::Tensor> slot;  // by parameter: a view of its bucket's flat buffer
  std::vector<char> filled;         // by parameter
  std::vector<int64_t> drop_grad;   // reduce_scatter: filled parameters whose .grad is to go
  std::vector<unsigned> hooks;      // by parameter
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // read by the hooks

  bool armed = false;
  std::thread::id arm_thread;
  int64_t next_launch = 0;        // buckets [0, next_launch) are launched
  int64_t launched_by_hooks = 0;  // in this synchronised step
  int64_t live = 0, max_live = 0;  // reduce_scatter: bucket buffers alive now, and the step's most
  absl::Status error;             // the first error of this step
  // Set when a Finish failed with buckets possibly still in flight (MPI may
  // still write their buffers): the reducer refuses further use.
  absl::Status broken;

  // Puts .grad (accumulated micro-steps) + `grad` into parameter i's slot.
  void OnGrad(int64_t i, const torch::Tensor& grad);
  // reduce_scatter: gives bucket b its flat buffer and its parameters' slots.
  void Allocate(Bucket& b);
  // reduce_scatter: waits for bucket b's reduce-scatter, adds its chunk, frees the buffers.
  absl::Status Fold(Bucket& b);
  // reduce_scatter: folds the oldest buckets in flight beyond kMaxInFlight.
  void BoundInFlight();
  // After the buckets are done: .grad from the slots (or dropped).
  void WriteGrads();
  // Launches every complete bucket that is next in index order.
  void LaunchReady(bool from_hook);
  // Lets MPI progress the buckets in flight.
  void Poll();
  // Back to the unarmed state (buckets' works dropped).
  void Reset();
};

void GradReducer::Impl::OnGrad(int64_t i, const torch::Tensor& grad) {
  if (!armed || !error.ok()) return;
  torch::NoGradGuard no_grad;
  Bucket& b = buckets[bucket_of[i]];
  if (b.work != nullptr) {
    error = absl::FailedPreconditionError(
        absl::StrCat("gradient reducer: parameter ", i, " got a gradient after its bucket ",
                     bucket_of[i], " was launched (more than one backward after Arm()?)"));
    return;
  }
  if (reduce_scatter) {
    // The .grad that AccumulateGrad stored after the previous hooks.
    for (int64_t j : drop_grad) params[j].mutable_grad().reset();
    drop_grad.clear();
    if (!b.flat.defined()) Allocate(b);
  }
  const torch::Tensor& accumulated = params[i].grad();
  torch::Tensor g = grad.is_sparse() ? grad.to_dense() : grad;
  slot[i].copy_(g);
  if (accumulated.defined()) slot[i].add_(accumulated);
  if (!filled[i]) {
    filled[i] = 1;
    ++b.filled;
  }
  if (reduce_scatter) drop_grad.push_back(i);
  // Note [Hook thread].
  const bool may_launch = comm.backend() != "mpi" || std::this_thread::get_id() == arm_thread;
  if (may_launch) {
    LaunchReady(/*from_hook=*/true);
    Poll();
  }
}

void GradReducer::Impl::LaunchReady(bool from_hook) {
  while (error.ok() && next_launch < static_cast<int64_t>(buckets.size())) {
    Bucket& b = buckets[next_launch];
    if (b.filled < static_cast<int64_t>(b.params.size())) break;
    const std::string what = absl::StrCat("gradient bucket ", next_launch);
    auto work = reduce_scatter ? comm.ReduceScatterAsync(b.flat, b.recv, ReduceOp::kAvg, what)
                               : comm.AllReduceAsync(b.flat, ReduceOp::kAvg, what);
    if (!work.ok()) {
      error = work.status();
      return;
    }
    b.work = std::move(work).value();
    ++next_launch;
    if (from_hook) ++launched_by_hooks;
  }
  if (reduce_scatter) BoundInFlight();
}

// Two buckets in flight keep the network busy while backward fills the next;
// more would only hold more full-size gradient buffers.
constexpr int64_t kMaxInFlight = 2;

void GradReducer::Impl::BoundInFlight() {
  int64_t in_flight = 0;
  for (int64_t k = next_launch - 1; k >= 0 && error.ok(); --k) {
    Bucket& b = buckets[k];
    if (b.folded) continue;
    if (++in_flight > kMaxInFlight || b.work->Test()) error = Fold(b);
  }
}

void GradReducer::Impl::Allocate(Bucket& b) {
  const torch::Tensor& head = params[b.params.front()];
  b.flat = torch::zeros({b.padded}, torch::TensorOptions().dtype(head.scalar_type()).device(head.device()));
  b.recv = torch::empty({b.padded / comm.size()}, b.flat.options());
  max_live = std::max(max_live, ++live);
  int64_t offset = 0;
  for (int64_t i : b.params) {
    slot[i] = b.flat.narrow(0, offset, params[i].numel()).view(params[i].sizes());
    offset += params[i].numel();
  }
}

absl::Status GradReducer::Impl::Fold(Bucket& b) {
  RETURN_IF_ERROR(b.work->Wait());
  b.chunk.add_(b.recv);
  b.folded = true;
  --live;
  b.flat = torch::Tensor();
  b.recv = torch::Tensor();
  for (int64_t i : b.params) slot[i] = torch::Tensor();
  return absl::OkStatus();
}

void GradReducer::Impl::Poll() {
  for (int64_t k = 0; k < next_launch; ++k) buckets[k].work->Test();
}

void GradReducer::Impl::Reset() {
  armed = false;
  next_launch = 0;
  launched_by_hooks = 0;
  max_live = live;
  error = absl::OkStatus();
  std::fill(filled.begin(), filled.end(), 0);
  for (Bucket& b : buckets) {
    b.filled = 0;
    b.folded = false;
    b.work.reset();  // a Work still in flight keeps its buffer (MpiWork)
  }
}

absl::StatusOr<std::unique_ptr<GradReducer>> GradReducer::Create(
    std::vector<torch::Tensor> params, Communicator& comm, const GradReducerOptions& options) {
  if (options.bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient reducer: bucket_bytes must be > 0, got ", options.bucket_bytes));
  }
  std::unordered_set<const void*> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (!p.defined() || !p.requires_grad() || !p.is_leaf()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gradient reducer: parameter ", i, " must be a defined leaf tensor that requires grad"));
    }
    if (!seen.insert(p.unsafeGetTensorImpl()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradient reducer: parameter ", i, " is listed twice"));
    }
  }
  auto impl = std::make_unique<Impl>(std::move(params), comm, options.reduce_scatter);
  const int64_t n = static_cast<int64_t>(impl->params.size());
  impl->bucket_of.assign(n, -1);
  impl->slot.resize(n);
  impl->filled.assign(n, 0);
  const int64_t ranks = comm.size();
  for (std::vector<int64_t>& members : Plan(impl->params, options.bucket_bytes)) {
    Impl::Bucket& b = impl->buckets.emplace_back();
    b.params = std::move(members);
    for (int64_t i : b.params) {
      impl->bucket_of[i] = static_cast<int64_t>(impl->buckets.size()) - 1;
      b.numel += impl->params[i].numel();
    }
    b.padded = (b.numel + ranks - 1) / ranks * ranks;
    const torch::Tensor& head = impl->params[b.params.front()];
    if (options.reduce_scatter) {
      b.chunk = torch::zeros({b.padded / ranks}, torch::TensorOptions().dtype(torch::kFloat).device(head.device()));
      continue;
    }
    b.flat = torch::zeros({b.numel}, torch::TensorOptions().dtype(head.scalar_type()).device(head.device()));
    int64_t offset = 0;
    for (int64_t i : b.params) {
      const torch::Tensor& p = impl->params[i];
      impl->slot[i] = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
    }
  }

  Impl* raw = impl.get();
  std::shared_ptr<bool> alive = impl->alive;
  for (int64_t i = 0; i < n; ++i) {
    impl->hooks.push_back(impl->params[i].register_hook([raw, alive, i](torch::Tensor grad) {
      if (*alive) raw->OnGrad(i, grad);
    }));
  }
  std::unique_ptr<GradReducer> reducer(new GradReducer(std::move(impl)));
  reducer->stats_.buckets = static_cast<int64_t>(reducer->impl_->buckets.size());
  for (const Impl::Bucket& b : reducer->impl_->buckets) {
    reducer->stats_.bytes += b.numel * static_cast<int64_t>(reducer->impl_->params[b.params.front()].element_size());
  }
  return reducer;
}

std::vector<std::vector<int64_t>> GradReducer::Plan(const std::vector<torch::Tensor>& params,
                                                    int64_t bucket_bytes) {
  // Reverse order; a bucket takes parameters while it stays within
  // bucket_bytes (a larger parameter gets a bucket of its own) and while dtype
  // and device stay the same.
  std::vector<std::vector<int64_t>> buckets;
  int64_t bytes_in = 0;
  for (int64_t i = static_cast<int64_t>(params.size()) - 1; i >= 0; --i) {
    const torch::Tensor& p = params[i];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    bool cut = buckets.empty();
    if (!cut) {
      const torch::Tensor& head = params[buckets.back().front()];
      cut = bytes_in + bytes > bucket_bytes || head.scalar_type() != p.scalar_type() ||
            head.device() != p.device();
    }
    if (cut) {
      buckets.emplace_back();
      bytes_in = 0;
    }
    buckets.back().push_back(i);
    bytes_in += bytes;
  }
  return buckets;
}

const torch::Tensor& GradReducer::chunk(int64_t k) const { return impl_->buckets[k].chunk; }

void GradReducer::ZeroChunks() {
  for (Impl::Bucket& b : impl_->buckets) b.chunk.zero_();
}

GradReducer::GradReducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GradReducer::~GradReducer() {
  *impl_->alive = false;  // in case a hook outlives remove_hook
  for (size_t i = 0; i < impl_->hooks.size(); ++i) impl_->params[i].remove_hook(impl_->hooks[i]);
}

void GradReducer::Arm() {
  if (impl_->armed || !impl_->broken.ok()) return;
  impl_->Reset();
  impl_->armed = true;
  impl_->arm_thread = std::this_thread::get_id();
}

absl::Status GradReducer::Finish() {
  Impl& m = *impl_;
  if (!m.broken.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("gradient reducer unusable after an earlier failure: ", m.broken.message()));
  }
  if (!m.error.ok()) {
    absl::Status error = m.error;
    m.Reset();
    m.broken = error;
    return error;
  }
  torch::NoGradGuard no_grad;
  // Parameters that got no gradient in this backward contribute what they
  // accumulated, or zeros.
  for (size_t i = 0; i < m.params.size(); ++i) {
    if (m.filled[i]) continue;
    Impl::Bucket& b = m.buckets[m.bucket_of[i]];
    if (m.reduce_scatter && !b.flat.defined()) m.Allocate(b);
    const torch::Tensor& g = m.params[i].grad();
    if (g.defined()) {
      m.slot[i].copy_(g);
    } else {
      m.slot[i].zero_();
    }
    m.filled[i] = 1;
    ++b.filled;
  }
  m.LaunchReady(/*from_hook=*/false);
  stats_.launched_in_backward = m.launched_by_hooks;
  stats_.max_live_buckets = m.max_live;
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = m.error;
  for (size_t k = 0; status.ok() && k < m.buckets.size(); ++k) {
    Impl::Bucket& b = m.buckets[k];
    if (!m.reduce_scatter) {
      status = b.work->Wait();
    } else if (!b.folded) {
      status = m.Fold(b);
    }
  }
  stats_.finish_wait_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (status.ok()) m.WriteGrads();
  m.Reset();
  if (!status.ok()) m.broken = status;
  return status;
}

// The averaged gradients into .grad; with reduce_scatter there are none (the
// chunks hold this rank's part).
void GradReducer::Impl::WriteGrads() {
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor& g = params[i].mutable_grad();
    if (reduce_scatter) {
      g.reset();
    } else if (g.defined()) {
      g.copy_(slot[i]);
    } else {
      g = slot[i].clone();
    }
  }
  drop_grad.clear();
}

std::vector<std::vector<int64_t>> GradReducer::BucketLayout() const {
  std::vector<std::vector<int64_t>> out;
  for (const Impl::Bucket& b : impl_->buckets) out.push_back(b.params);
  return out;
}

namespace {

// An exact, order-independent fingerprint of the parameters' bits: the sum,
// modulo 2^64, of each element's bit pattern times an odd weight (odd weights
// are invertible modulo 2^64, so any change to a single element changes the
// sum). Float sums would depend on the reduction order (thread count); this
// does not.
uint64_t Fingerprint(const std::vector<torch::Tensor>& params) {
  uint64_t sum = 0;
  uint64_t index = 0;
  for (const torch::Tensor& p : params) {
    torch::Tensor c = p.detach().to(torch::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    const size_t size = c.element_size();
    for (int64_t j = 0; j < c.numel(); ++j, ++index) {
      uint64_t bits = 0;
      std::memcpy(&bits, bytes + j * size, std::min<size_t>(size, sizeof(bits)));
      // The weight mixes the index (splitmix64's multiplier), then is made odd.
      sum += bits * ((index * 0x9E3779B97F4A7C15ull) | 1u);
    }
  }
  return sum;
}

}  // namespace

absl::Status GradReducer::CheckInSync(const std::vector<torch::Tensor>& params, Communicator& comm,
                                      int64_t step) {
  // Every rank's (fingerprint, float64 sum) by an all-reduce (sum) of rows
  // that are zero except the rank's own: an all-gather.
  double total = 0;
  {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : params)
      total += p.detach().to(torch::kFloat64).sum().item<double>();
  }
  const int n = comm.size();
  torch::Tensor all = torch::zeros({n, 2}, torch::kInt64);
  const uint64_t fp = Fingerprint(params);
  int64_t fp_bits = 0, total_bits = 0;
  std::memcpy(&fp_bits, &fp, sizeof(fp));
  std::memcpy(&total_bits, &total, sizeof(total));
  all[comm.rank()][0] = fp_bits;
  all[comm.rank()][1] = total_bits;
  RETURN_IF_ERROR(
      comm.AllReduce(all, ReduceOp::kSum, absl::StrCat("weight checksums (step ", step, ")")));

  auto row = [&](int r, uint64_t* f, double* t) {
    const int64_t a = all[r][0].item<int64_t>(), b = all[r][1].item<int64_t>();
    std::memcpy(f, &a, sizeof(a));
    std::memcpy(t, &b, sizeof(b));
  };
  uint64_t fp0;
  double total0;
  row(0, &fp0, &total0);
  std::vector<std::string> differ;
  for (int r = 1; r < n; ++r) {
    uint64_t f;
    double t;
    row(r, &f, &t);
    if (f != fp0) {
      differ.push_back(
          absl::StrFormat("rank %d checksum %.17g [bits %016x] vs rank 0 %.17g [bits %016x]", r, t,
                          f, total0, fp0));
    }
  }
  if (differ.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("step ", step, ": student weights differ across ranks (",
                                          absl::StrJoin(differ, "; "), ")"));
}

}  // namespace distill::worker
