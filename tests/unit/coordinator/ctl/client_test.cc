#include "coordinator/ctl/client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"

namespace distill::coordinator::ctl {
namespace {
namespace v1 = distill::v1;

// The server side of the peer under test: canned answers, and a record of
// what the client asked.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    Record(context);
    if (request->id() != "j-1")
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
    job->set_id("j-1");
    return grpc::Status::OK;
  }

  // Three pages of two jobs; tokens "p2", "p3".
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    Record(context);
    const int page = request->page_token().empty() ? 1 : request->page_token()[1] - '0';
    for (int i = 0; i < 2; ++i) response->add_jobs()->set_id(absl::StrCat("j", page, i));
    if (page < 3) response->set_next_page_token(absl::StrCat("p", page + 1));
    return grpc::Status::OK;
  }

  // The first call sends events 1-2 and breaks (UNAVAILABLE, as a restarting
  // coordinator would); later calls send the events after after_sequence,
  // the last one terminal, replaying event 2 once to test de-duplication.
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    Record(context);
    {
      std::lock_guard<std::mutex> lock(mu_);
      watch_after_.push_back(request->after_sequence());
    }
    if (request->id() != "j-1") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such job");
    auto send = [&](int64_t seq, v1::JobState state) {
      v1::JobEvent e;
      e.set_sequence(seq);
      e.set_kind(v1::JobEvent::PROGRESS);
      e.mutable_job()->set_id("j-1");
      e.mutable_job()->set_state(state);
      e.mutable_job()->mutable_progress()->set_step(seq);
      writer->Write(e);
    };
    if (request->after_sequence() == 0) {
      send(1, v1::RUNNING);
      send(2, v1::RUNNING);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
    }
    send(2, v1::RUNNING);
    send(3, v1::RUNNING);
    send(4, v1::SUCCEEDED);
    return grpc::Status::OK;
  }

  // Deletes "j-1" once; then it is unknown.
  grpc::Status DeleteJob(grpc::ServerContext* context, const v1::DeleteJobRequest* request,
                         v1::Job* job) override {
    Record(context);
    std::lock_guard<std::mutex> lock(mu_);
    if (request->id() != "j-1" || deleted_)
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
    deleted_ = true;
    job->set_id("j-1");
    job->set_state(v1::SUCCEEDED);
    return grpc::Status::OK;
  }

  std::vector<std::string> authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorization_;
  }
  std::vector<int64_t> watch_after() {
    std::lock_guard<std::mutex> lock(mu_);
    return watch_after_;
  }

 private:
  void Record(grpc::ServerContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = context->client_metadata().find("authorization");
    authorization_.push_back(it == context->client_metadata().end()
                                 ? ""
                                 : std::string(it->second.data(), it->second.size()));
  }
  std::mutex mu_;
  std::vector<std::string> authorization_;
  std::vector<int64_t> watch_after_;
  bool deleted_ = false;
};

class CoordinatorClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    options_.address = absl::StrCat("127.0.0.1:", port_);
    options_.token = "tok";
  }
  void TearDown() override { server_->Shutdown(); }

  FakeCoordinator service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  ConnectionOptions options_;
};

TEST_F(CoordinatorClientTest, SendsTheBearerToken) {
  CoordinatorClient client(options_);
  ASSERT_TRUE(client.Get("j-1").ok());
  ASSERT_EQ(service_.authorization().size(), 1u);
  EXPECT_EQ(service_.authorization()[0], "Bearer tok");
}

TEST_F(CoordinatorClientTest, ServerErrorsKeepTheirCode) {
  CoordinatorClient client(options_);
  auto job = client.Get("nope");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(job.status().message(), "job nope not found");
}

TEST_F(CoordinatorClientTest, DeleteReturnsTheJobAndPassesErrorsThrough) {
  CoordinatorClient client(options_);
  auto job = client.Delete("j-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  EXPECT_EQ(client.Delete("j-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(service_.authorization().back(), "Bearer tok");
}

TEST_F(CoordinatorClientTest, ListAllFollowsPageTokens) {
  CoordinatorClient client(options_);
  auto jobs = client.ListAll(v1::JOB_STATE_UNSPECIFIED, 2);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  std::vector<std::string> ids;
  for (const auto& j : *jobs) ids.push_back(j.id());
  EXPECT_EQ(ids, (std::vector<std::string>{"j10", "j11", "j20", "j21", "j30", "j31"}));
}

TEST_F(CoordinatorClientTest, WatchResumesAfterABrokenStreamWithoutRepeats) {
  CoordinatorClient client(options_);
  std::vector<int64_t> seen;
  auto job = client.Watch("j-1", [&](const v1::JobEvent& e) { seen.push_back(e.sequence()); });
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(service_.watch_after(), (std::vector<int64_t>{0, 2}));
}

TEST_F(CoordinatorClientTest, WatchOfAnUnknownJobFailsAtOnce) {
  CoordinatorClient client(options_);
  auto job = client.Watch("zzz", [](const v1::JobEvent&) {});
  EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound);
}

TEST(CoordinatorClientUnreachableTest, FirstCallFailsFastWithUnavailable) {
  ConnectionOptions options;
  options.address = "127.0.0.1:1";
  CoordinatorClient client(options);
  EXPECT_EQ(client.Get("j").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.Watch("j", [](const v1::JobEvent&) {}).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace distill::coordinator::ctl
