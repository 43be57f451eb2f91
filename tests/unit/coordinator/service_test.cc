// The Coordinator service end to end in-process: a real gRPC server on a
// loopback port, a real client stub, a real SQLite file and real mpirun
// launching a small shell script as the worker (its behaviour is picked by
// the job's spec name).
#include "coordinator/service.h"

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "coordinator/server.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::coordinator {
namespace {

using distill::v1::Job;
using distill::v1::JobEvent;
using distill::v1::JobState;

// The worker: "ok*" prints and exits 0, "env*" prints DISTILL_COORDINATOR_CA
// and exits 0, "fail_once*" exits 17 on attempt 1,
// anything else runs until SIGTERM (then notes it and exits 130).
constexpr char kWorkerScript[] = R"sh(#!/bin/bash
SPEC=$3
MODE=$(sed -n 's/.*"name": "\([^"]*\)".*/\1/p' "$SPEC")
R=$OMPI_COMM_WORLD_RANK
case "$MODE" in
  ok*) echo "hello from rank $R attempt $DISTILL_ATTEMPT"; exit 0 ;;
  env*) echo "ca=${DISTILL_COORDINATOR_CA:-<unset>}"; exit 0 ;;
  fail_once*) if [ "$DISTILL_ATTEMPT" = 1 ]; then echo "failing"; exit 17; fi; exit 0 ;;
  *) trap 'echo "term $R" >> "$(dirname "$SPEC")/terminated"; exit 130' TERM
     echo up > "$(dirname "$SPEC")/up.$R"
     while true; do sleep 0.05; done ;;
esac
)sh";

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_service_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    worker_ = dir_ + "/worker.sh";
    std::ofstream(worker_) << kWorkerScript;
    chmod(worker_.c_str(), 0755);
    std::filesystem::create_directories(dir_ + "/data");
    std::filesystem::create_directories(dir_ + "/out");
  }
  void TearDown() override {
    if (server_) {
      // Stop what is still running so that no script outlives the test.
      for (const Job& j : List(distill::v1::JOB_STATE_UNSPECIFIED)) {
        if (!IsTerminal(j.state())) Cancel(j.id(), true);
      }
      for (const Job& j : List(distill::v1::JOB_STATE_UNSPECIFIED)) WaitFor(j.id(), {}, 20);
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  ServerOptions Options() {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.state_dir = dir_ + "/var";
    o.slots = 1;
    o.mpirun.worker_bin = worker_;
    o.coordinator.health.retry_backoff = absl::Milliseconds(100);
    o.coordinator.tick = absl::Milliseconds(50);
    o.coordinator.health.grace_period = absl::Seconds(10);
    return o;
  }

  // The API token file, private (Note [Private state]).
  void WriteToken(const std::string& text) {
    ASSERT_TRUE(common::WriteFileAtomically(dir_ + "/token", text).ok());
    ASSERT_EQ(chmod((dir_ + "/token").c_str(), 0600), 0);
  }

  // `root_pem` non-empty: the client connects with TLS trusting it.
  void StartServer(ServerOptions o, const std::string& root_pem = "") {
    auto s = Server::Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = root_pem;
    channel_ = grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()),
        root_pem.empty() ? grpc::InsecureChannelCredentials() : grpc::SslCredentials(ssl));
    stub_ = distill::v1::Coordinator::NewStub(channel_);
  }

  void Context(grpc::ClientContext* ctx) {
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  distill::v1::SubmitJobRequest Request(const std::string& name, int ranks = 1) {
    distill::v1::SubmitJobRequest r;
    auto* s = r.mutable_spec();
    s->set_type(distill::v1::FINETUNE);
    s->set_name(name);
    s->set_init(dir_ + "/data/config.json");
    s->mutable_data()->add_train(dir_ + "/data/train.bin");
    s->set_output(dir_ + "/out/" + name);
    s->set_ranks(ranks);
    return r;
  }

  grpc::Status Submit(const distill::v1::SubmitJobRequest& r, Job* job) {
    grpc::ClientContext ctx;
    Context(&ctx);
    return stub_->SubmitJob(&ctx, r, job);
  }
  Job SubmitOk(const distill::v1::SubmitJobRequest& r) {
    Job job;
    grpc::Status st = Submit(r, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return job;
  }
  grpc::Status Get(const std::string& id, Job* job) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::GetJobRequest r;
    r.set_id(id);
    return stub_->GetJob(&ctx, r, job);
  }
  grpc::Status Cancel(const std::string& id, bool force, Job* job = nullptr) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::CancelJobRequest r;
    r.set_id(id);
    r.set_force(force);
    Job j;
    return stub_->CancelJob(&ctx, r, job ? job : &j);
  }
  std::vector<Job> List(JobState state) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ListJobsRequest r;
    r.set_state(state);
    r.set_page_size(1000);
    distill::v1::ListJobsResponse resp;
    grpc::Status st = stub_->ListJobs(&ctx, r, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return {resp.jobs().begin(), resp.jobs().end()};
  }
  // Polls until the job is in one of `states` (empty: any terminal state).
  Job WaitFor(const std::string& id, std::vector<JobState> states, int seconds = 60) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    Job job;
    while (std::chrono::steady_clock::now() < end) {
      if (Get(id, &job).ok()) {
        bool hit = states.empty()
                       ? IsTerminal(job.state())
                       : std::find(states.begin(), states.end(), job.state()) != states.end();
        if (hit) return job;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "job " << id << " stuck in " << distill::v1::JobState_Name(job.state());
    return job;
  }
  static bool WaitForFile(const std::string& path) {
    for (int i = 0; i < 600; ++i) {
      if (std::filesystem::exists(path)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::vector<JobEvent> Watch(const std::string& id, int64_t after, grpc::Status* status) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::WatchJobRequest r;
    r.set_id(id);
    r.set_after_sequence(after);
    auto reader = stub_->WatchJob(&ctx, r);
    std::vector<JobEvent> events;
    JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    *status = reader->Finish();
    return events;
  }

  std::string dir_, worker_, token_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<distill::v1::Coordinator::Stub> stub_;
};

TEST_F(ServiceTest, SubmitGetListAndIdempotentRequestId) {
  StartServer(Options());
  auto req = Request("ok");
  req.set_request_id("req-1");
  req.set_priority(3);
  Job job = SubmitOk(req);
  EXPECT_FALSE(job.id().empty());
  EXPECT_EQ(job.ranks(), 1);
  EXPECT_EQ(job.priority(), 3);
  EXPECT_EQ(job.max_retries(), 2);
  EXPECT_EQ(job.output_dir(), dir_ + "/out/ok");
  EXPECT_EQ(job.checkpoint_dir(), dir_ + "/out/ok/checkpoints");
  EXPECT_TRUE(job.has_create_time());
  Job again = SubmitOk(req);
  EXPECT_EQ(again.id(), job.id());

  Job done = WaitFor(job.id(), {distill::v1::SUCCEEDED});
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(done.exit_code(), 0);
  EXPECT_TRUE(done.has_start_time());
  EXPECT_TRUE(done.has_end_time());
  EXPECT_EQ(done.hosts_size(), 1);
  std::vector<Job> all = List(distill::v1::JOB_STATE_UNSPECIFIED);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id(), job.id());
  EXPECT_TRUE(List(distill::v1::QUEUED).empty());
}

TEST_F(ServiceTest, UnknownIdsAreNotFound) {
  StartServer(Options());
  Job job;
  EXPECT_EQ(Get("nope", &job).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Cancel("nope", false).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status st;
  Watch("nope", 0, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx;
  Context(&ctx);
  distill::v1::StreamLogsRequest lr;
  lr.set_id("nope");
  auto logs = stub_->StreamLogs(&ctx, lr);
  distill::v1::LogChunk chunk;
  while (logs->Read(&chunk)) {
  }
  EXPECT_EQ(logs->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, InvalidSpecIsInvalidArgumentNamingTheFieldAndNothingIsStored) {
  StartServer(Options());
  Job job;
  auto bad_lr = Request("x");
  bad_lr.mutable_spec()->mutable_train()->set_lr(-1);
  grpc::Status st = Submit(bad_lr, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("train.lr:", 0), 0u) << st.error_message();

  auto relative = Request("x");
  relative.mutable_spec()->mutable_data()->set_train(0, "data/train.bin");
  st = Submit(relative, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("data.train[0]:", 0), 0u) << st.error_message();

  auto no_output = Request("x");
  no_output.mutable_spec()->clear_output();
  st = Submit(no_output, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("output:", 0), 0u) << st.error_message();

  // More ranks than slots: refused up front, or the queue would block on it
  // forever (UNIMPLEMENTED from spec validation while this build runs one
  // process per job, FAILED_PRECONDITION from the inventory check after).
  auto too_big = Request("x", 2);  // 1 slot
  st = Submit(too_big, &job);
  EXPECT_TRUE(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
              st.error_code() == grpc::StatusCode::UNIMPLEMENTED)
      << st.error_code();
  EXPECT_EQ(st.error_message().rfind("ranks:", 0), 0u) << st.error_message();

  auto negative = Request("x");
  negative.set_max_retries(-1);
  st = Submit(negative, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(List(distill::v1::JOB_STATE_UNSPECIFIED).empty());
}

// Note [Input bounds]: refused before anything is stored, naming the field
// and the limit.
TEST_F(ServiceTest, OversizedInputIsInvalidArgumentNamingFieldAndLimit) {
  StartServer(Options());
  auto long_name = Request(std::string(257, 'n'));
  auto long_request_id = Request("ok");
  long_request_id.set_request_id(std::string(257, 'r'));
  auto big_spec = Request("ok");
  while (big_spec.spec().ByteSizeLong() <= (size_t{1} << 20))
    big_spec.mutable_spec()->mutable_data()->add_train(dir_ + "/data/" + std::string(1000, 's'));
  const std::vector<std::pair<distill::v1::SubmitJobRequest, std::string>> cases = {
      {long_name, "name: at most 256 bytes, got 257"},
      {long_request_id, "request_id: at most 256 bytes, got 257"},
      {big_spec, "spec: at most 1048576 bytes serialized, got "},
  };
  for (const auto& [request, want] : cases) {
    Job job;
    grpc::Status st = Submit(request, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << want;
    EXPECT_EQ(st.error_message().rfind(want, 0), 0u) << st.error_message();
  }
  EXPECT_TRUE(List(distill::v1::JOB_STATE_UNSPECIFIED).empty());
}

// Note [ListJobs budget]: jobs near the spec bound list fully, over pages
// that each stay within the budget (and so under gRPC's 4 MiB).
TEST_F(ServiceTest, ListJobsPagesByBytesAndEveryPageStaysWithinTheBudget) {
  StartServer(Options());
  std::vector<std::string> ids = {SubmitOk(Request("hold")).id()};  // the rest stay queued
  for (int i = 0; i < 9; ++i) {
    auto r = Request("big" + std::to_string(i));
    while (r.spec().ByteSizeLong() < 900 * 1024)
      r.mutable_spec()->mutable_data()->add_train(dir_ + "/data/" + std::string(1000, 'a' + i));
    ids.push_back(SubmitOk(r).id());
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ListJobsRequest r;
    r.set_page_size(1000);
    r.set_page_token(token);
    distill::v1::ListJobsResponse resp;
    grpc::Status st = stub_->ListJobs(&ctx, r, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.ByteSizeLong(), kListJobsMaxBytes);
    EXPECT_GE(resp.jobs_size(), 1);
    for (const Job& j : resp.jobs()) seen.push_back(j.id());
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 20);
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  EXPECT_EQ(pages, 3);  // three ~0.9 MiB jobs per 3 MiB page, the small one on the last
}

TEST_F(ServiceTest, DeleteJobDeletesFinishedJobsOnly) {
  StartServer(Options());
  Job running = SubmitOk(Request("hold"));
  Job queued = SubmitOk(Request("q"));
  WaitFor(running.id(), {distill::v1::STARTING, distill::v1::RUNNING});
  auto del = [&](const std::string& id, Job* job) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::DeleteJobRequest r;
    r.set_id(id);
    return stub_->DeleteJob(&ctx, r, job);
  };
  Job job;
  EXPECT_EQ(del(running.id(), &job).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(del(queued.id(), &job).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(del("j-unknown", &job).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Cancel(queued.id(), false).ok());
  grpc::Status st = del(queued.id(), &job);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(job.id(), queued.id());
  EXPECT_EQ(job.state(), distill::v1::CANCELLED);
  EXPECT_EQ(Get(queued.id(), &job).error_code(), grpc::StatusCode::NOT_FOUND);
  std::vector<Job> left = List(distill::v1::JOB_STATE_UNSPECIFIED);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id(), running.id());
}

TEST_F(ServiceTest, PathsOutsideTheRootsArePermissionDenied) {
  ServerOptions o = Options();
  o.service.data_root = dir_ + "/data";
  o.service.output_root = dir_ + "/out";
  StartServer(o);
  Job job;
  auto outside_data = Request("x");
  outside_data.mutable_spec()->mutable_data()->add_eval(dir_ + "/data/../secret/eval.bin");
  grpc::Status st = Submit(outside_data, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message().rfind("data.eval[0]:", 0), 0u) << st.error_message();

  auto outside_out = Request("x");
  outside_out.mutable_spec()->set_output(dir_ + "/data/out");
  st = Submit(outside_out, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message().rfind("output:", 0), 0u) << st.error_message();

  auto prefix_trick = Request("x");
  prefix_trick.mutable_spec()->set_init(
      dir_ + "/database/config.json");  // "data" is a prefix, not a parent
  st = Submit(prefix_trick, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message().rfind("init:", 0), 0u) << st.error_message();
  EXPECT_TRUE(List(distill::v1::JOB_STATE_UNSPECIFIED).empty());

  EXPECT_TRUE(Submit(Request("ok"), &job).ok());
}

TEST_F(ServiceTest, BearerTokenIsRequiredWhenConfigured) {
  WriteToken("s3cret\n");
  ServerOptions o = Options();
  o.auth_token_file = dir_ + "/token";
  StartServer(o);
  Job job;
  EXPECT_EQ(Get("x", &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);  // missing
  token_ = "wrong";
  EXPECT_EQ(Get("x", &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit(Request("ok"), &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  token_ = "s3cret";
  EXPECT_EQ(Get("x", &job).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Submit(Request("ok"), &job).ok());
  EXPECT_TRUE(List(distill::v1::JOB_STATE_UNSPECIFIED).size() == 1);
}

// Note [Private state]: a token file others may read is refused, naming its
// mode; the state dir and the store are private to the user.
TEST_F(ServiceTest, StateIsPrivateAndATokenOthersCanReadIsRefused) {
  ASSERT_TRUE(common::WriteFileAtomically(dir_ + "/token", "s3cret\n").ok());
  ASSERT_EQ(chmod((dir_ + "/token").c_str(), 0644), 0);
  ServerOptions o = Options();
  o.auth_token_file = dir_ + "/token";
  absl::StatusOr<std::unique_ptr<Server>> refused = Server::Start(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "--auth-token-file " + dir_ +
                                            "/token: readable or writable by others (mode 0644): "
                                            "chmod 600 it");
  WriteToken("s3cret\n");
  std::filesystem::create_directories(dir_ + "/var");
  ASSERT_EQ(chmod((dir_ + "/var").c_str(), 0755), 0);  // an older coordinator's
  StartServer(o);
  token_ = "s3cret";
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/var").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((dir_ + "/var/coordinator.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Note [One auth check]: every method of distill.v1.Coordinator, taken from
// the service's descriptor so that an RPC added later is covered too, called
// without a token and with a wrong one (an empty request message, through the
// generic stub, whatever the method's streaming kind): all UNAUTHENTICATED,
// and nothing was stored.
TEST_F(ServiceTest, EveryMethodWithoutTheTokenIsUnauthenticated) {
  WriteToken("s3cret\n");
  ServerOptions o = Options();
  o.auth_token_file = dir_ + "/token";
  StartServer(o);
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          distill::v1::Coordinator::service_full_name());
  ASSERT_NE(service, nullptr);
  ASSERT_GE(service->method_count(), 7);
  grpc::GenericStub generic(channel_);
  auto tag = [](intptr_t i) { return reinterpret_cast<void*>(i); };
  for (const std::string token : {"", "wrong"}) {
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string method = "/" + service->full_name() + "/" + service->method(i)->name();
      grpc::ClientContext ctx;
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      grpc::CompletionQueue cq;
      std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
          generic.PrepareCall(&ctx, method, &cq);
      void* got = nullptr;
      bool ok = false;
      call->StartCall(tag(1));
      ASSERT_TRUE(cq.Next(&got, &ok));
      grpc::Slice nothing{std::string()};
      call->Write(grpc::ByteBuffer(&nothing, 1), tag(2));  // the empty message
      ASSERT_TRUE(cq.Next(&got, &ok));
      call->WritesDone(tag(3));
      ASSERT_TRUE(cq.Next(&got, &ok));
      grpc::Status status;
      call->Finish(&status, tag(4));
      ASSERT_TRUE(cq.Next(&got, &ok));
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << method << " with token '" << token << "': " << status.error_message();
      cq.Shutdown();
      while (cq.Next(&got, &ok)) {
      }
    }
  }
  token_ = "s3cret";
  EXPECT_TRUE(List(distill::v1::JOB_STATE_UNSPECIFIED).empty());
}

TEST_F(ServiceTest, ListPaginatesNewestFirstAndRejectsForeignTokens) {
  StartServer(Options());
  // A running job holds the only slot; the rest stay queued behind it.
  Job blocker = SubmitOk(Request("hold"));
  std::vector<std::string> ids = {blocker.id()};
  for (int i = 0; i < 4; ++i) ids.push_back(SubmitOk(Request("q" + std::to_string(i))).id());
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ListJobsRequest r;
    r.set_page_size(2);
    r.set_page_token(token);
    distill::v1::ListJobsResponse resp;
    ASSERT_TRUE(stub_->ListJobs(&ctx, r, &resp).ok());
    for (const Job& j : resp.jobs()) seen.push_back(j.id());
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));

  std::vector<Job> queued = List(distill::v1::QUEUED);
  ASSERT_EQ(queued.size(), 4u);
  EXPECT_EQ(queued[0].queue_position(), 4);  // newest first, last in line
  EXPECT_EQ(queued[3].queue_position(), 1);

  for (const std::string& bad : {std::string("garbage"), std::string("5.0.00000000")}) {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ListJobsRequest r;
    r.set_page_token(bad);
    distill::v1::ListJobsResponse resp;
    grpc::Status st = stub_->ListJobs(&ctx, r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(st.error_message().rfind("page_token:", 0), 0u) << st.error_message();
  }
}

// Note [ListJobs bytes]: the bytes ListJobs sends parse as the response that
// holds each stored job with its current queue position (the stored one is
// stale), also when lengths and positions need multi-byte varints.
TEST(SerializeListJobsResponseTest, ParsesAsTheResponseWithCurrentPositions) {
  Job a;
  a.set_id("ja");
  a.set_state(distill::v1::QUEUED);
  a.set_priority(-4);
  a.set_queue_position(9);
  a.mutable_spec()->set_name(std::string(300, 'n'));
  a.add_hosts("h:1");
  Job b;
  b.set_id("jb");
  b.set_state(distill::v1::RUNNING);
  std::vector<Coordinator::ListedJob> jobs(2);
  jobs[0].stored = {7, distill::v1::QUEUED, a.SerializeAsString()};
  jobs[0].queue_position = 1000;
  jobs[1].stored = {3, distill::v1::RUNNING, b.SerializeAsString()};

  distill::v1::ListJobsResponse want;
  *want.add_jobs() = a;
  want.mutable_jobs(0)->set_queue_position(1000);
  *want.add_jobs() = b;
  want.set_next_page_token("7.0.abc");
  distill::v1::ListJobsResponse got;
  ASSERT_TRUE(got.ParseFromString(SerializeListJobsResponse(jobs, "7.0.abc")));
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << got.DebugString();

  want.clear_next_page_token();
  ASSERT_TRUE(got.ParseFromString(SerializeListJobsResponse(jobs, "")));
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << got.DebugString();
  EXPECT_EQ(SerializeListJobsResponse({}, ""), "");
}

TEST_F(ServiceTest, CancelQueuedRunningAndFinishedJobs) {
  StartServer(Options());
  Job running = SubmitOk(Request("hold"));
  Job queued = SubmitOk(Request("waiting"));
  WaitFor(running.id(), {distill::v1::STARTING, distill::v1::RUNNING});
  Job j;
  ASSERT_TRUE(Cancel(queued.id(), false, &j).ok());
  EXPECT_EQ(j.state(), distill::v1::CANCELLED);
  EXPECT_EQ(j.failure_reason(), distill::v1::CANCEL_REQUESTED);

  // Graceful: the ranks get SIGTERM and exit on their own.
  ASSERT_TRUE(WaitForFile(server_->coordinator().WorkDir(running.id(), 1) + "/up.0"));
  ASSERT_TRUE(Cancel(running.id(), false, &j).ok());
  Job done = WaitFor(running.id(), {distill::v1::CANCELLED});
  EXPECT_EQ(done.failure_reason(), distill::v1::CANCEL_REQUESTED);
  EXPECT_EQ(done.exit_code(), 130);
  auto noted =
      common::ReadFileToString(server_->coordinator().WorkDir(running.id(), 1) + "/terminated");
  ASSERT_TRUE(noted.ok()) << noted.status();
  EXPECT_NE(noted->find("term 0"), std::string::npos);

  grpc::Status st = Cancel(running.id(), false);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  st = Cancel(queued.id(), true);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServiceTest, WatchStreamsToTheTerminalStateAndResumes) {
  StartServer(Options());
  Job job = SubmitOk(Request("ok"));
  grpc::Status st;
  std::vector<JobEvent> events = Watch(job.id(), 0, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_GE(events.size(), 3u);
  std::vector<JobState> states;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
    if (events[i].kind() == JobEvent::STATE_CHANGED) states.push_back(events[i].job().state());
  }
  EXPECT_EQ(states.front(), distill::v1::QUEUED);
  EXPECT_EQ(states[1], distill::v1::STARTING);
  EXPECT_EQ(states.back(), distill::v1::SUCCEEDED);

  std::vector<JobEvent> rest = Watch(job.id(), 1, &st);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(rest.size(), events.size() - 1);
  EXPECT_EQ(rest[0].sequence(), 2);
  EXPECT_TRUE(Watch(job.id(), events.back().sequence(), &st).empty());
  EXPECT_TRUE(st.ok());
}

TEST_F(ServiceTest, ReportProgressMakesTheJobRunningAndUpdatesMetrics) {
  ServerOptions options = Options();
  options.slots = 2;
  StartServer(options);
  Job job = SubmitOk(Request("hold", 2));
  WaitFor(job.id(), {distill::v1::STARTING});
  {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ReportProgressResponse resp;
    auto writer = stub_->ReportProgress(&ctx, &resp);
    distill::v1::ProgressReport r;
    r.set_job_id(job.id());
    r.set_rank(0);
    r.set_attempt(1);
    auto* p = r.mutable_progress();
    p->set_step(7);
    p->set_total_steps(100);
    p->set_loss(2.5);
    p->set_ce_loss(2.5);
    p->set_tokens_per_second(1234.5);
    p->set_step_seconds(0.25);
    p->mutable_rank_totals()->set_steps(7);
    p->mutable_rank_totals()->set_tokens(700);
    ASSERT_TRUE(writer->Write(r));
    // Rank 1 reports its own totals: they are its series, not the job's progress.
    r.set_rank(1);
    p->mutable_rank_totals()->set_tokens(650);
    p->set_step(6);
    ASSERT_TRUE(writer->Write(r));
    ASSERT_TRUE(writer->WritesDone());
    ASSERT_TRUE(writer->Finish().ok());
  }
  Job running;
  ASSERT_TRUE(Get(job.id(), &running).ok());
  EXPECT_EQ(running.state(), distill::v1::RUNNING);
  EXPECT_EQ(running.progress().step(), 7);
  EXPECT_DOUBLE_EQ(running.progress().tokens_per_second(), 1234.5);
  const std::string text = server_->metrics().Text();
  const std::string id = job.id();
  EXPECT_NE(text.find("distill_tokens_total{job_id=\"" + id + "\",rank=\"0\"} 700"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_tokens_total{job_id=\"" + id + "\",rank=\"1\"} 650"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_steps_total{job_id=\"" + id + "\",rank=\"0\"} 7"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_loss{component=\"ce\",job_id=\"" + id + "\"} 2.5"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_job_progress_ratio{job_id=\"" + id + "\"} 0.07"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_rank_last_report_timestamp_seconds{job_id=\"" + id + "\",rank=\"1\"}"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("distill_job_info{job_id=\"" + id + "\",method=\"full\",name=\"hold\",type=\"finetune\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("distill_rpc_duration_seconds_count{method=\"SubmitJob\"} 1"), std::string::npos) << text;
  EXPECT_EQ(text.find("job=\""), std::string::npos) << "a 'job' label: " << text;
  EXPECT_NE(text.find("distill_jobs{state=\"running\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("distill_job_submissions_total 1"), std::string::npos) << text;

  // A report for another attempt is refused (a stale rank).
  grpc::ClientContext ctx;
  Context(&ctx);
  distill::v1::ReportProgressResponse resp;
  auto writer = stub_->ReportProgress(&ctx, &resp);
  distill::v1::ProgressReport stale;
  stale.set_job_id(job.id());
  stale.set_attempt(5);
  writer->Write(stale);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // A rank the job does not have is refused, and gets no series.
  grpc::ClientContext ctx2;
  Context(&ctx2);
  auto forged = stub_->ReportProgress(&ctx2, &resp);
  distill::v1::ProgressReport r9;
  r9.set_job_id(job.id());
  r9.set_attempt(1);
  r9.set_rank(9);
  r9.mutable_progress()->set_step(1);
  forged->Write(r9);
  forged->WritesDone();
  EXPECT_EQ(forged->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_->metrics().Text().find("rank=\"9\""), std::string::npos);
}

// The job and its progress events keep the whole Progress rank 0 reports
// (what `distillctl report` reads: eval against the teacher, tokens,
// trainable parameters...), not a chosen few of its fields.
TEST_F(ServiceTest, TheJobAndItsProgressEventsKeepTheWholeProgress) {
  using google::protobuf::util::MessageDifferencer;
  StartServer(Options());
  Job job = SubmitOk(Request("hold"));
  WaitFor(job.id(), {distill::v1::STARTING});
  distill::v1::Progress p;
  p.set_step(9);
  p.set_total_steps(10);
  p.set_loss(2.5);
  p.set_ce_loss(1.5);
  p.set_kd_loss(1.0);
  (*p.mutable_feature_losses())["s1_t2"] = 0.25;
  p.set_tokens_per_second(1234.5);
  p.set_memory_bytes(int64_t{3} << 30);
  p.set_eval_loss(2.75);
  p.set_eval_kl(0.0625);
  p.set_eval_top1_agreement(0.875);
  p.set_eval_teacher_loss(1.125);
  p.set_eval_step(8);
  p.set_trainable_params(4096);
  p.set_tokens(92160);
  {
    grpc::ClientContext ctx;
    Context(&ctx);
    distill::v1::ReportProgressResponse resp;
    auto writer = stub_->ReportProgress(&ctx, &resp);
    distill::v1::ProgressReport r;
    r.set_job_id(job.id());
    r.set_attempt(1);
    *r.mutable_progress() = p;
    ASSERT_TRUE(writer->Write(r));  // STARTING -> RUNNING
    ASSERT_TRUE(writer->Write(r));  // a progress event
    ASSERT_TRUE(writer->WritesDone());
    ASSERT_TRUE(writer->Finish().ok());
  }
  Job running;
  ASSERT_TRUE(Get(job.id(), &running).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(running.progress(), p))
      << running.progress().DebugString();
  ASSERT_TRUE(Cancel(job.id(), true).ok());
  WaitFor(job.id(), {});
  grpc::Status st;
  int progress_events = 0;
  for (const JobEvent& e : Watch(job.id(), 0, &st)) {
    if (e.kind() != JobEvent::PROGRESS) continue;
    ++progress_events;
    EXPECT_TRUE(MessageDifferencer::Equals(e.job().progress(), p))
        << e.job().progress().DebugString();
  }
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(progress_events, 1);
  // Note [Small events]: no event carries the spec, a state change its name.
  for (const JobEvent& e : Watch(job.id(), 0, &st)) {
    EXPECT_EQ(e.job().spec().data().train_size(), 0) << e.DebugString();
    EXPECT_EQ(e.job().spec().name(), e.kind() == JobEvent::PROGRESS ? "" : "hold");
  }
}

TEST_F(ServiceTest, SilentRunningJobFailsWithHeartbeatTimeout) {
  ServerOptions o = Options();
  o.coordinator.health.heartbeat_timeout = absl::Seconds(1);
  StartServer(o);
  auto req = Request("hold");
  req.set_max_retries(0);
  Job job = SubmitOk(req);
  WaitFor(job.id(), {distill::v1::STARTING});
  grpc::ClientContext ctx;
  Context(&ctx);
  distill::v1::ReportProgressResponse resp;
  auto writer = stub_->ReportProgress(&ctx, &resp);
  distill::v1::ProgressReport r;
  r.set_job_id(job.id());
  r.set_attempt(1);
  ASSERT_TRUE(writer->Write(r));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  Job failed = WaitFor(job.id(), {distill::v1::FAILED}, 30);
  EXPECT_EQ(failed.failure_reason(), distill::v1::HEARTBEAT_TIMEOUT);
  EXPECT_NE(failed.failure_message().find("heartbeat"), std::string::npos)
      << failed.failure_message();
  EXPECT_NE(
      server_->metrics().Text().find("distill_job_failures_total{reason=\"heartbeat_timeout\"} 1"),
      std::string::npos);
}

TEST_F(ServiceTest, FailedAttemptIsRetriedThenSucceeds) {
  StartServer(Options());
  Job job = SubmitOk(Request("fail_once"));
  Job done = WaitFor(job.id(), {distill::v1::SUCCEEDED, distill::v1::FAILED});
  EXPECT_EQ(done.state(), distill::v1::SUCCEEDED);
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_NE(server_->metrics().Text().find("distill_job_retries_total{reason=\"rank_failed\"} 1"),
            std::string::npos);
  auto log = common::ReadFileToString(server_->coordinator().RankLogPath(job.id(), 1, 0));
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("failing"), std::string::npos);
}

TEST_F(ServiceTest, StreamLogsReturnsEachRanksOutput) {
  StartServer(Options());
  Job job = SubmitOk(Request("ok"));
  WaitFor(job.id(), {distill::v1::SUCCEEDED});
  grpc::ClientContext ctx;
  Context(&ctx);
  distill::v1::StreamLogsRequest r;
  r.set_id(job.id());
  r.set_follow(true);  // ends because the job has ended
  auto reader = stub_->StreamLogs(&ctx, r);
  std::map<int, std::string> by_rank;
  distill::v1::LogChunk chunk;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.attempt(), 1);
    by_rank[chunk.rank()] += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(by_rank.size(), 1u);
  EXPECT_EQ(by_rank[0], "hello from rank 0 attempt 1\n");
}

TEST_F(ServiceTest, RestartKeepsQueuedJobsAndAdoptsRunningOnes) {
  StartServer(Options());
  Job running = SubmitOk(Request("hold"));
  Job queued = SubmitOk(Request("ok"));
  WaitFor(running.id(), {distill::v1::STARTING});
  server_->Shutdown();
  server_.reset();
  StartServer(Options());
  Job j;
  ASSERT_TRUE(Get(queued.id(), &j).ok());
  EXPECT_EQ(j.state(), distill::v1::QUEUED);
  ASSERT_TRUE(Get(running.id(), &j).ok());
  EXPECT_EQ(j.state(), distill::v1::STARTING);  // adopted, still the same attempt
  EXPECT_EQ(j.attempt(), 1);
  ASSERT_TRUE(WaitForFile(server_->coordinator().WorkDir(running.id(), 1) + "/up.0"));
  ASSERT_TRUE(Cancel(running.id(), false).ok());
  EXPECT_EQ(WaitFor(running.id(), {}).state(), distill::v1::CANCELLED);
  EXPECT_EQ(WaitFor(queued.id(), {}).state(), distill::v1::SUCCEEDED);
}

TEST_F(ServiceTest, HealthServiceIsServing) {
  WriteToken("t\n");
  ServerOptions o = Options();
  o.auth_token_file = dir_ + "/token";
  StartServer(o);
  token_ = "t";  // for TearDown; the health check below sends none
  // grpc.health.v1.Health/Check with an empty request, without a token.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::Status st;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      st = s;
                      done = true;
                      cv.notify_all();
                    });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; });
  ASSERT_TRUE(done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

// The first line of rank 0's log of attempt 1 of `job`.
std::string FirstLogLine(Server& server, const Job& job) {
  absl::StatusOr<std::string> log =
      common::ReadFileToString(server.coordinator().RankLogPath(job.id(), 1, 0));
  if (!log.ok()) return "<" + std::string(log.status().message()) + ">";
  return log->substr(0, log->find('\n'));
}

TEST_F(ServiceTest, TlsServerPassesItsCertificateToTheRanks) {
  // A self-signed certificate for the loopback address, made by the openssl CLI.
  const std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  absl::StatusOr<std::string> pem = common::ReadFileToString(cert);
  ASSERT_TRUE(pem.ok()) << pem.status();
  ServerOptions o = Options();
  o.tls_cert = cert;
  o.tls_key = key;
  StartServer(o, *pem);
  Job job = WaitFor(SubmitOk(Request("env")).id(), {distill::v1::SUCCEEDED});
  ASSERT_EQ(job.state(), distill::v1::SUCCEEDED);
  // The launcher exported the certificate's absolute path to the rank.
  EXPECT_EQ(FirstLogLine(*server_, job), "ca=" + cert);
}

TEST_F(ServiceTest, PlaintextServerExportsNoCertificate) {
  StartServer(Options());
  Job job = WaitFor(SubmitOk(Request("env")).id(), {distill::v1::SUCCEEDED});
  ASSERT_EQ(job.state(), distill::v1::SUCCEEDED);
  EXPECT_EQ(FirstLogLine(*server_, job), "ca=<unset>");
}

}  // namespace
}  // namespace distill::coordinator
