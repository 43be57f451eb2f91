// Sweeps through the coordinator end to end in-process: a real gRPC server on
// loopback, a real SQLite file and real mpirun launching a shell script as
// the worker (its behaviour is picked by the child's spec name, which is
// the sweep's name with the child's label). Parent and child records, the
// capture child running first, DEPENDENCY_FAILED, the parent's state,
// cancel of a whole sweep and of one child, and a restart rebuilding it.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "common/fs_util.h"
#include "coordinator/server.h"
#include "coordinator/service.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::coordinator {
namespace {

using distill::v1::Job;
using distill::v1::JobState;

// "ok*" notes its command and exits 0; "capfail*[capture]" exits 3; anything
// else runs until SIGTERM.
constexpr char kWorkerScript[] = R"sh(#!/bin/bash
SPEC=$3
MODE=$(sed -n 's/.*"name": "\([^"]*\)".*/\1/p' "$SPEC")
case "$MODE" in
  ok*) echo "$1" > "$(dirname "$SPEC")/command"; exit 0 ;;
  capfail*\[capture\]) exit 3 ;;
  *) trap 'exit 130' TERM
     echo up > "$(dirname "$SPEC")/up"
     while true; do sleep 0.05; done ;;
esac
)sh";

class CoordinatorSweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_sweep_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    worker_ = dir_ + "/worker.sh";
    std::ofstream(worker_) << kWorkerScript;
    chmod(worker_.c_str(), 0755);
  }
  void TearDown() override {
    if (server_) {
      for (const Job& j : List()) {
        if (!IsTerminal(j.state())) Cancel(j.id(), true).IgnoreError();
      }
      for (const Job& j : List()) WaitFor(j.id(), {}, 20);
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(int slots = 1) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.state_dir = dir_ + "/var";
    o.slots = slots;
    o.mpirun.worker_bin = worker_;
    o.coordinator.max_retries = 0;
    o.coordinator.tick = absl::Milliseconds(50);
    o.coordinator.health.grace_period = absl::Seconds(10);
    auto s = Server::Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  Coordinator& coord() { return server_->coordinator(); }

  // A finetune sweep over train.seed (and, with `cache`, a distill sweep
  // over distill.temperature sharing one teacher cache).
  distill::v1::SubmitJobRequest Sweep(const std::string& name, int n, bool cache = false) {
    distill::v1::SubmitJobRequest r;
    auto* s = r.mutable_spec();
    s->set_name(name);
    s->mutable_data()->add_train(dir_ + "/data/train.bin");
    s->set_output(dir_ + "/out/" + name);
    auto* axis = s->add_sweep();
    if (cache) {
      s->set_type(distill::v1::DISTILL);
      s->mutable_teacher()->set_model(dir_ + "/teacher");
      s->mutable_teacher()->set_cache(dir_ + "/cache");
      s->mutable_student()->set_init(dir_ + "/student.json");
      axis->set_field("distill.temperature");
    } else {
      s->set_type(distill::v1::FINETUNE);
      s->set_init(dir_ + "/config.json");
      axis->set_field("train.seed");
    }
    for (int i = 1; i <= n; ++i) axis->add_values(std::to_string(i));
    return r;
  }
  std::vector<Job> List() {
    auto jobs = coord().List(distill::v1::JOB_STATE_UNSPECIFIED, 0, 1000, nullptr);
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    return jobs.ok() ? *jobs : std::vector<Job>{};
  }
  absl::Status Cancel(const std::string& id, bool force) {
    return coord().Cancel(id, force).status();
  }
  Job Get(const std::string& id) {
    auto job = coord().Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job{};
  }
  // Polls until the job is in one of `states` (empty: any terminal state).
  Job WaitFor(const std::string& id, std::vector<JobState> states, int seconds = 60) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    Job job;
    while (std::chrono::steady_clock::now() < end) {
      absl::StatusOr<Job> j = coord().Get(id);
      if (j.ok()) {
        job = *j;
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

  std::string dir_, worker_;
  std::unique_ptr<Server> server_;
};

TEST_F(CoordinatorSweepTest, ASweepIsAParentWithChildrenThatSucceedsWithThem) {
  StartServer();
  auto req = Sweep("ok", 3);
  req.set_request_id("sweep-1");
  absl::StatusOr<Job> parent = coord().Submit(req);
  ASSERT_TRUE(parent.ok()) << parent.status();
  EXPECT_EQ(parent->kind(), distill::v1::SWEEP);
  EXPECT_EQ(parent->queue_position(), 0);
  ASSERT_EQ(parent->child_ids_size(), 3);
  Job child = Get(parent->child_ids(1));
  EXPECT_EQ(child.kind(), distill::v1::TRAIN);
  EXPECT_EQ(child.parent_id(), parent->id());
  EXPECT_EQ(child.sweep_values().at("train.seed"), "2");
  EXPECT_EQ(child.spec().train().seed(), 2u);
  EXPECT_EQ(child.spec().sweep_size(), 0);
  EXPECT_EQ(child.output_dir(), dir_ + "/out/ok/1-seed=2");
  EXPECT_EQ(child.spec().name(), "ok[seed=2]");
  EXPECT_TRUE(child.request_id().empty());

  Job done = WaitFor(parent->id(), {});
  EXPECT_EQ(done.state(), distill::v1::SUCCEEDED) << done.failure_message();
  for (const std::string& id : done.child_ids()) {
    EXPECT_EQ(Get(id).state(), distill::v1::SUCCEEDED) << id;
    auto cmd = common::ReadFileToString(coord().WorkDir(id, 1) + "/command");
    ASSERT_TRUE(cmd.ok()) << cmd.status();
    EXPECT_EQ(*cmd, "train\n");
  }
  // The same request again: the same sweep, nothing new.
  absl::StatusOr<Job> again = coord().Submit(req);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), parent->id());
  EXPECT_EQ(List().size(), 4u);
}

// DeleteJob of a sweep: refused while a child runs and for a child alone;
// once it ended, the sweep and its children go together.
TEST_F(CoordinatorSweepTest, ASweepIsDeletedWithItsChildrenOnceAllEnded) {
  StartServer();
  absl::StatusOr<Job> parent = coord().Submit(Sweep("hold", 2));
  ASSERT_TRUE(parent.ok()) << parent.status();
  WaitFor(parent->child_ids(0), {distill::v1::STARTING, distill::v1::RUNNING});
  EXPECT_EQ(coord().Delete(parent->id()).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Cancel(parent->id(), true).ok());
  WaitFor(parent->id(), {});
  EXPECT_EQ(coord().Delete(parent->child_ids(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<Job> deleted = coord().Delete(parent->id());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->child_ids_size(), 2);
  for (const std::string& id : {parent->id(), parent->child_ids(0), parent->child_ids(1)}) {
    EXPECT_EQ(coord().Get(id).status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/var/jobs/" + id)) << id;
  }
  EXPECT_TRUE(List().empty());
}

TEST_F(CoordinatorSweepTest, TheCaptureChildRunsFirstAndStudentsReadTheCache) {
  StartServer();
  absl::StatusOr<Job> parent = coord().Submit(Sweep("ok", 2, /*cache=*/true));
  ASSERT_TRUE(parent.ok()) << parent.status();
  ASSERT_EQ(parent->child_ids_size(), 3);
  EXPECT_EQ(WaitFor(parent->id(), {}).state(), distill::v1::SUCCEEDED);
  Job capture = Get(parent->child_ids(0));
  EXPECT_EQ(capture.kind(), distill::v1::CAPTURE);
  EXPECT_EQ(capture.ranks(), 1);
  auto cmd = common::ReadFileToString(coord().WorkDir(capture.id(), 1) + "/command");
  ASSERT_TRUE(cmd.ok());
  EXPECT_EQ(*cmd, "capture\n");
  for (int i = 1; i < 3; ++i) {
    Job student = Get(parent->child_ids(i));
    EXPECT_TRUE(student.spec().teacher().model().empty());
    EXPECT_EQ(student.spec().teacher().cache(), dir_ + "/cache");
    EXPECT_GE(student.start_time().seconds() * 1000000000LL + student.start_time().nanos(),
              capture.end_time().seconds() * 1000000000LL + capture.end_time().nanos());
  }
}

TEST_F(CoordinatorSweepTest, AFailedCaptureFailsItsSiblingsAndTheSweep) {
  StartServer();
  absl::StatusOr<Job> parent = coord().Submit(Sweep("capfail", 2, /*cache=*/true));
  ASSERT_TRUE(parent.ok()) << parent.status();
  Job done = WaitFor(parent->id(), {});
  EXPECT_EQ(done.state(), distill::v1::FAILED);
  EXPECT_EQ(done.failure_message(), "children: 0 succeeded, 3 failed, 0 cancelled");
  EXPECT_EQ(Get(done.child_ids(0)).failure_reason(), distill::v1::RANK_FAILED);
  for (int i = 1; i < 3; ++i) {
    Job student = Get(done.child_ids(i));
    EXPECT_EQ(student.state(), distill::v1::FAILED);
    EXPECT_EQ(student.failure_reason(), distill::v1::DEPENDENCY_FAILED);
    EXPECT_EQ(student.attempt(), 0);  // never launched
  }
}

TEST_F(CoordinatorSweepTest, CancelOfAChildIsThatChildAndOfTheSweepIsAll) {
  StartServer();
  absl::StatusOr<Job> parent = coord().Submit(Sweep("hold", 3));
  ASSERT_TRUE(parent.ok()) << parent.status();
  WaitFor(parent->child_ids(0), {distill::v1::STARTING, distill::v1::RUNNING});
  EXPECT_EQ(WaitFor(parent->id(), {distill::v1::RUNNING}).state(), distill::v1::RUNNING);
  ASSERT_TRUE(Cancel(parent->child_ids(2), false).ok());
  EXPECT_EQ(Get(parent->child_ids(2)).state(), distill::v1::CANCELLED);
  EXPECT_EQ(Get(parent->child_ids(1)).state(), distill::v1::QUEUED);
  EXPECT_EQ(Get(parent->id()).state(), distill::v1::RUNNING);

  ASSERT_TRUE(Cancel(parent->id(), false).ok());
  Job done = WaitFor(parent->id(), {});
  EXPECT_EQ(done.state(), distill::v1::CANCELLED);
  for (const std::string& id : done.child_ids()) EXPECT_EQ(Get(id).state(), distill::v1::CANCELLED);
  EXPECT_EQ(Cancel(parent->id(), false).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorSweepTest, ARestartRebuildsTheSweepFromTheStore) {
  StartServer();
  absl::StatusOr<Job> parent = coord().Submit(Sweep("hold", 2));
  ASSERT_TRUE(parent.ok()) << parent.status();
  const std::string first = parent->child_ids(0);
  WaitFor(first, {distill::v1::STARTING, distill::v1::RUNNING});
  WaitFor(parent->id(), {distill::v1::RUNNING});
  server_->Shutdown();
  server_.reset();
  StartServer();
  EXPECT_EQ(Get(parent->id()).state(), distill::v1::RUNNING);
  EXPECT_EQ(Get(first).attempt(), 1);  // adopted, not relaunched
  EXPECT_EQ(Get(parent->child_ids(1)).state(), distill::v1::QUEUED);
  ASSERT_TRUE(Cancel(parent->id(), false).ok());
  Job done = WaitFor(parent->id(), {});
  EXPECT_EQ(done.state(), distill::v1::CANCELLED);
  for (const std::string& id : done.child_ids()) EXPECT_EQ(Get(id).state(), distill::v1::CANCELLED);
}

TEST_F(CoordinatorSweepTest, StudentsWaitForTheCaptureWithoutHoldingBackOtherJobs) {
  StartServer(/*slots=*/2);
  absl::StatusOr<Job> parent = coord().Submit(Sweep("hold", 2, /*cache=*/true));
  ASSERT_TRUE(parent.ok()) << parent.status();
  WaitFor(parent->child_ids(0), {distill::v1::STARTING, distill::v1::RUNNING});
  // A later job takes the free slot: the waiting students are not runnable.
  distill::v1::SubmitJobRequest other = Sweep("ok", 1);
  other.mutable_spec()->clear_sweep();
  absl::StatusOr<Job> job = coord().Submit(other);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(WaitFor(job->id(), {}).state(), distill::v1::SUCCEEDED);
  for (int i = 1; i < 3; ++i) EXPECT_EQ(Get(parent->child_ids(i)).state(), distill::v1::QUEUED);
  // Still waiting after a restart (rebuilt from the store).
  server_->Shutdown();
  server_.reset();
  StartServer(/*slots=*/2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several ticks
  for (int i = 1; i < 3; ++i) EXPECT_EQ(Get(parent->child_ids(i)).state(), distill::v1::QUEUED);
  EXPECT_EQ(Get(parent->child_ids(0)).attempt(), 1);
  ASSERT_TRUE(Cancel(parent->id(), false).ok());
  EXPECT_EQ(WaitFor(parent->id(), {}).state(), distill::v1::CANCELLED);
  for (int i = 1; i < 3; ++i) EXPECT_EQ(Get(parent->child_ids(i)).state(), distill::v1::CANCELLED);
}

TEST_F(CoordinatorSweepTest, BadSweepsAndCaptureJobsAreRefusedBeforeAnyWrite) {
  StartServer();
  auto req = Sweep("ok", 2);
  req.mutable_spec()->mutable_sweep(0)->set_field("train.sed");
  absl::StatusOr<Job> job = coord().Submit(req);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(job.status().message(), "sweep: train.sed: unknown field");
  ServiceOptions options;
  EXPECT_EQ(CheckSubmittedSpec(Sweep("ok", 2).spec(), options).code(), absl::StatusCode::kOk);
  options.output_root = dir_ + "/elsewhere";
  absl::Status st = CheckSubmittedSpec(Sweep("ok", 2).spec(), options);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StartsWith(st.message(), "sweep child 0 (seed=1): output: ")) << st;
  distill::v1::JobSpec single = Sweep("ok", 1).spec();
  single.clear_sweep();
  st = CheckSubmittedSpec(single, ServiceOptions{}, distill::v1::CAPTURE);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(List().empty());
}

TEST_F(CoordinatorSweepTest, ASingleCaptureJobRunsTheCaptureCommand) {
  StartServer();
  distill::v1::SubmitJobRequest req = Sweep("ok", 1, /*cache=*/true);
  req.mutable_spec()->clear_sweep();
  req.set_kind(distill::v1::CAPTURE);
  absl::StatusOr<Job> job = coord().Submit(req);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->kind(), distill::v1::CAPTURE);
  EXPECT_EQ(WaitFor(job->id(), {}).state(), distill::v1::SUCCEEDED);
  auto cmd = common::ReadFileToString(coord().WorkDir(job->id(), 1) + "/command");
  ASSERT_TRUE(cmd.ok());
  EXPECT_EQ(*cmd, "capture\n");
}

}  // namespace
}  // namespace distill::coordinator
