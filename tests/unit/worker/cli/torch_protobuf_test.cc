// Note [Torch and protobuf]: pip's libtorch_cpu.so exports google::protobuf
// symbols, and the worker links Debian's libprotobuf (gRPC's). This test does,
// in one process, what distill-worker does: parse and serialize a JobSpec
// (text, binary, JSON through the descriptor pool), run a model forward and
// backward, and report progress over a real gRPC stream on loopback.
// Note [Torch and libstdc++]: the wheel's libraries also export a
// std::filesystem of their own; ours must bind to libstdc++'s.
#include <dlfcn.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "common/spec.h"
#include "distill/v1/coordinator.grpc.pb.h"
#include "worker/model/config.h"
#include "worker/model/llama.h"
#include "worker/report/report_grpc.h"

namespace distill::worker {
namespace {

// The shared object that defines `symbol`'s address.
std::string LibraryOf(const void* symbol) {
  Dl_info info{};
  if (dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "<unknown>";
  return info.dli_fname;
}

TEST(TorchProtobufTest, ProtobufCallsResolveToDebiansLibraryNotTorchs) {
  // The headers we compiled against are Debian's 3.21, not the wheel's 3.13
  // (torch/include/google is kept off the include path), and they match the
  // library that is loaded (VerifyVersion aborts otherwise).
  EXPECT_EQ(GOOGLE_PROTOBUF_VERSION / 1000, 3021);
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  const std::string lib = LibraryOf(reinterpret_cast<const void*>(
      &google::protobuf::util::MessageDifferencer::Equals));
  EXPECT_NE(lib.find("libprotobuf.so"), std::string::npos) << lib;
  const std::string torch_lib = LibraryOf(reinterpret_cast<const void*>(&at::globalContext));
  EXPECT_NE(torch_lib.find("libtorch_cpu.so"), std::string::npos) << torch_lib;
}

TEST(TorchProtobufTest, StdFilesystemResolvesToLibstdcxxNotTorchs) {
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&);
  const RemoveAll remove_all = &std::filesystem::remove_all;
  const std::string lib = LibraryOf(reinterpret_cast<const void*>(remove_all));
  EXPECT_NE(lib.find("libstdc++.so"), std::string::npos) << lib;
  // And it works: a nested tree goes (libtorch's copy crashed here).
  const std::filesystem::path root = std::filesystem::temp_directory_path() / "distill_remove_all_test";
  std::filesystem::create_directories(root / "a" / "b");
  std::FILE* f = std::fopen((root / "a" / "b" / "x").c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  EXPECT_EQ(remove_all(root), 4u);
  EXPECT_FALSE(std::filesystem::exists(root));
}

// Receives ReportProgress streams and remembers the last report.
class ProgressSink final : public distill::v1::Coordinator::Service {
 public:
  grpc::Status ReportProgress(grpc::ServerContext*, grpc::ServerReader<distill::v1::ProgressReport>* reader,
                              distill::v1::ReportProgressResponse*) override {
    distill::v1::ProgressReport report;
    while (reader->Read(&report)) {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = report;
      cv_.notify_all();
    }
    return grpc::Status::OK;
  }
  // The first report with a final flag, or nullopt after 10 s.
  std::optional<distill::v1::ProgressReport> WaitFinal() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return last_.final(); })) return std::nullopt;
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  distill::v1::ProgressReport last_;
};

TEST(TorchProtobufTest, SpecModelAndGrpcReportInOneProcess) {
  // 1. A JobSpec: YAML -> message -> binary -> message, and JSON.
  auto spec = common::ParseJobSpec(
      "name: coexist\ntype: finetune\nmodel: /models/tiny\nmethod: full\n"
      "data: {train: /data/train.bin, seq_len: 16}\n"
      "train: {steps: 3, lr: 0.001}\noutput: /out\n",
      "inline");
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::string bytes;
  ASSERT_TRUE(spec->SerializeToString(&bytes));
  distill::v1::JobSpec back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*spec, back));
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(back, &json).ok());
  EXPECT_NE(json.find("\"coexist\""), std::string::npos) << json;

  // 2. A model forward and backward through LibTorch.
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  torch::manual_seed(0);
  LlamaForCausalLM model(c);
  torch::Tensor ids = torch::randint(0, c.vocab_size, {2, 8}, torch::kLong);
  torch::Tensor logits = model->forward(ids);
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      logits.narrow(1, 0, 7).reshape({-1, c.vocab_size}), ids.narrow(1, 1, 7).reshape({-1}));
  loss.backward();
  double grad_sq = 0;
  for (const auto& p : model->parameters()) grad_sq += p.grad().pow(2).sum().item<double>();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_GT(grad_sq, 0.0);

  // 3. Progress over gRPC to a server in this process.
  ProgressSink service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  CoordinatorSinkOptions o;
  o.target = "127.0.0.1:" + std::to_string(port);
  o.job_id = spec->name();
  auto sink = CoordinatorSink::Create(o);
  ASSERT_TRUE(sink.ok()) << sink.status();
  StepRecord r;
  r.step = 3;
  r.total_steps = 3;
  r.loss = loss.item<double>();
  (*sink)->OnStep(r);
  EXPECT_TRUE((*sink)->Finish(/*training_finished=*/true));
  std::optional<distill::v1::ProgressReport> last = service.WaitFinal();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->job_id(), "coexist");
  EXPECT_EQ(last->progress().step(), 3);
  EXPECT_FLOAT_EQ(last->progress().loss(), static_cast<float>(loss.item<double>()));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace distill::worker
