#include "coordinator/ctl/report.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"

namespace distill::coordinator::ctl {
namespace {
namespace v1 = distill::v1;
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

// t(0.975, dof) from a statistics table (scipy.stats.t.ppf(0.975, dof)).
constexpr double kT975Dof1 = 12.706204736174698;
constexpr double kT975Dof2 = 4.302652729749464;
constexpr double kT975Dof10 = 2.228138851964939;

// Serves hand-built jobs and their event logs. A job that is not terminal
// streams its events and then holds the stream open, as the coordinator does.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  void Add(const v1::Job& job, std::vector<v1::JobEvent> events) {
    jobs_[job.id()] = job;
    events_[job.id()] = std::move(events);
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    auto it = jobs_.find(request->id());
    if (it == jobs_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request->id() + " not found");
    }
    *job = it->second;
    return grpc::Status::OK;
  }
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    auto it = jobs_.find(request->id());
    if (it == jobs_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such job");
    {
      std::lock_guard<std::mutex> lock(mu_);
      watched_.push_back(request->id());
    }
    for (const v1::JobEvent& e : events_[request->id()]) writer->Write(e);
    const v1::JobState s = it->second.state();
    if (s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED) return grpc::Status::OK;
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
  }
  // The ids whose events were read, in order.
  std::vector<std::string> watched() {
    std::lock_guard<std::mutex> lock(mu_);
    return watched_;
  }

 private:
  std::map<std::string, v1::Job> jobs_;
  std::map<std::string, std::vector<v1::JobEvent>> events_;
  std::mutex mu_;
  std::vector<std::string> watched_;  // guarded by mu_
};

// The swept values of child (temperature index ti, method index mi, seed).
constexpr const char* kTemps[] = {"1", "2.5"};
constexpr const char* kMethods[] = {"\"lora\"", "\"full\""};

// The final eval loss and KL of a child, by formula.
double EvalLoss(int ti, int mi, int seed) {
  return 2.0 + 0.25 * ti - 0.5 * mi + 0.03 * seed * seed;
}
double Kl(int ti, int mi, int seed) { return 0.4 - 0.1 * ti + 0.02 * mi + 0.01 * seed; }
std::string ChildId(int ti, int mi, int seed) { return absl::StrCat("c", ti, mi, seed); }

v1::JobEvent Event(int64_t seq, const v1::Job& job, v1::JobEvent::Kind kind) {
  v1::JobEvent e;
  e.set_sequence(seq);
  e.set_kind(kind);
  *e.mutable_job() = job;
  *e.mutable_time() = job.update_time();
  return e;
}

// A child of a distill sweep: progress at steps 10, 20, 30 (then the final
// report repeats step 30 with the eval), unless `running`: steps 10, 20 only.
void AddChild(FakeCoordinator& server, int ti, int mi, int seed, bool running) {
  v1::Job job;
  job.set_id(ChildId(ti, mi, seed));
  job.set_kind(v1::TRAIN);
  job.set_parent_id("s-1");
  job.mutable_spec()->set_type(v1::DISTILL);
  (*job.mutable_sweep_values())["distill.temperature"] = kTemps[ti];
  (*job.mutable_sweep_values())["student.method"] = kMethods[mi];
  (*job.mutable_sweep_values())["train.seed"] = absl::StrCat(seed);
  job.set_state(v1::QUEUED);
  int64_t t = 1000 + ti * 100 + mi * 10 + seed;
  *job.mutable_update_time() = TimeUtil::SecondsToTimestamp(t);
  std::vector<v1::JobEvent> events{Event(1, job, v1::JobEvent::STATE_CHANGED)};
  job.set_state(v1::RUNNING);
  v1::Progress* p = job.mutable_progress();
  p->set_total_steps(30);
  p->set_trainable_params(4096);
  const int last = running ? 20 : 30;
  for (int step = 10; step <= last; step += 10) {
    p->set_step(step);
    p->set_loss(3.0 - 0.02 * step - 0.1 * mi);
    p->set_ce_loss(2.0 - 0.01 * step);
    p->set_kd_loss(1.0 - 0.01 * step);
    p->set_tokens(step * 512);
    p->set_tokens_per_second(step == 10 ? 100 : 1000 + step);  // the first one is warm-up
    p->set_memory_bytes(step == 20 ? 5000 : 4000);             // peak at step 20
    *job.mutable_update_time() = TimeUtil::SecondsToTimestamp(t += 10);
    events.push_back(Event(events.size() + 1, job, v1::JobEvent::PROGRESS));
  }
  if (!running) {
    p->set_eval_step(30);
    p->set_eval_loss(EvalLoss(ti, mi, seed));
    p->set_eval_kl(Kl(ti, mi, seed));
    p->set_eval_top1_agreement(0.75);
    p->set_eval_teacher_loss(1.25);
    *job.mutable_update_time() = TimeUtil::SecondsToTimestamp(t += 10);
    events.push_back(Event(events.size() + 1, job, v1::JobEvent::PROGRESS));
    job.set_state(v1::SUCCEEDED);
    *job.mutable_update_time() = TimeUtil::SecondsToTimestamp(t += 10);
    events.push_back(Event(events.size() + 1, job, v1::JobEvent::STATE_CHANGED));
  }
  server.Add(job, std::move(events));
}

// The sweep s-1: a capture child and the 2 x 2 x 2 training children;
// c112 (temperature 2.5, full, seed 2) is still running, without an eval.
void AddSweep(FakeCoordinator& server) {
  v1::Job sweep;
  sweep.set_id("s-1");
  sweep.set_kind(v1::SWEEP);
  sweep.set_state(v1::RUNNING);
  sweep.mutable_spec()->set_type(v1::DISTILL);
  sweep.mutable_spec()->set_name("temps");
  sweep.mutable_spec()->mutable_teacher()->set_model("/models/teacher");
  for (const auto& [field, values] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"distill.temperature", {"1", "2.5"}},
           {"student.method", {"\"lora\"", "\"full\""}},
           {"train.seed", {"1", "2"}}}) {
    v1::SweepAxis* axis = sweep.mutable_spec()->add_sweep();
    axis->set_field(field);
    for (const std::string& v : values) axis->add_values(v);
  }
  v1::Job capture;
  capture.set_id("cap");
  capture.set_kind(v1::CAPTURE);
  capture.set_state(v1::SUCCEEDED);
  server.Add(capture, {});
  sweep.add_child_ids("cap");
  for (int ti = 0; ti < 2; ++ti) {
    for (int mi = 0; mi < 2; ++mi) {
      for (int seed = 1; seed <= 2; ++seed) {
        AddChild(server, ti, mi, seed, ti == 1 && mi == 1 && seed == 2);
        sweep.add_child_ids(ChildId(ti, mi, seed));
      }
    }
  }
  server.Add(sweep, {});
}

// A cross-entropy baseline beside s-1: sweep b-1 (named `name`) over
// train.seed of finetune children b1, b2, eval loss 3.0 + 0.1 * seed.
void AddBaseline(FakeCoordinator& server, const std::string& name) {
  v1::Job sweep;
  sweep.set_id("b-1");
  sweep.set_kind(v1::SWEEP);
  sweep.set_state(v1::SUCCEEDED);
  sweep.mutable_spec()->set_type(v1::FINETUNE);
  sweep.mutable_spec()->set_name(name);
  v1::SweepAxis* axis = sweep.mutable_spec()->add_sweep();
  axis->set_field("train.seed");
  for (int seed = 1; seed <= 2; ++seed) {
    axis->add_values(absl::StrCat(seed));
    v1::Job job;
    job.set_id(absl::StrCat("b", seed));
    job.set_kind(v1::TRAIN);
    job.set_parent_id("b-1");
    job.mutable_spec()->set_type(v1::FINETUNE);
    (*job.mutable_sweep_values())["train.seed"] = absl::StrCat(seed);
    job.set_state(v1::SUCCEEDED);
    v1::Progress* p = job.mutable_progress();
    p->set_total_steps(30);
    p->set_step(30);
    p->set_loss(2.5);
    p->set_eval_step(30);
    p->set_eval_loss(3.0 + 0.1 * seed);
    server.Add(job, {Event(1, job, v1::JobEvent::PROGRESS)});
    sweep.add_child_ids(job.id());
  }
  server.Add(sweep, {});
}

// A CSV file as rows of cells (no quoted commas in these files).
std::vector<std::vector<std::string>> ReadCsv(const fs::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    rows.push_back(absl::StrSplit(line, ','));
  }
  return rows;
}

// Column `name` of `row` under `header`.
std::string Cell(const std::vector<std::string>& header, const std::vector<std::string>& row,
                 const std::string& name) {
  auto it = std::find(header.begin(), header.end(), name);
  EXPECT_NE(it, header.end()) << name;
  if (it == header.end()) return "";
  return row.at(it - header.begin());
}

double Number(const std::string& text) {
  double v = NAN;
  EXPECT_TRUE(absl::SimpleAtod(text, &v)) << "'" << text << "'";
  return v;
}

// A real PNG: the signature, then an IHDR chunk with width and height > 0.
void ExpectPng(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 24u) << path;
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
  EXPECT_EQ(bytes.substr(12, 4), "IHDR") << path;
  auto be32 = [&](size_t at) {
    return (uint32_t{static_cast<uint8_t>(bytes[at])} << 24) |
           (uint32_t{static_cast<uint8_t>(bytes[at + 1])} << 16) |
           (uint32_t{static_cast<uint8_t>(bytes[at + 2])} << 8) |
           uint32_t{static_cast<uint8_t>(bytes[at + 3])};
  };
  EXPECT_GT(be32(16), 0u) << path;
  EXPECT_GT(be32(20), 0u) << path;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddSweep(service_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    options_.address = absl::StrCat("127.0.0.1:", port_);
    dir_ = fs::path(::testing::TempDir()) / ("ctl_report_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    fs::remove_all(dir_);
  }
  absl::Status Report(const std::string& id, const std::string& gnuplot = "gnuplot") {
    return ReportMany({id}, gnuplot);
  }
  absl::Status ReportMany(const std::vector<std::string>& ids, const std::string& gnuplot = "gnuplot") {
    CoordinatorClient client(options_);
    ReportOptions options;
    options.out_dir = dir_.string();
    options.gnuplot = gnuplot;
    return WriteReport(ids, options, client, out_);
  }

  FakeCoordinator service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  ConnectionOptions options_;
  fs::path dir_;
  std::ostringstream out_;
};

TEST(StudentTQuantileTest, MatchesTheTable) {
  EXPECT_NEAR(StudentTQuantile(0.975, 1), kT975Dof1, 1e-9);
  EXPECT_NEAR(StudentTQuantile(0.975, 2), kT975Dof2, 1e-9);
  EXPECT_NEAR(StudentTQuantile(0.975, 10), kT975Dof10, 1e-9);
}

TEST(MeanIntervalTest, FollowsTheFormula) {
  const std::vector<double> xs = {2.0, 2.5, 4.0};
  const double mean = 8.5 / 3;
  const double sd = std::sqrt(
      ((2.0 - mean) * (2.0 - mean) + (2.5 - mean) * (2.5 - mean) + (4.0 - mean) * (4.0 - mean)) /
      2);
  const Interval iv = MeanInterval(xs);
  EXPECT_EQ(iv.n, 3);
  EXPECT_NEAR(iv.mean, mean, 1e-12);
  ASSERT_TRUE(iv.low.has_value() && iv.high.has_value());
  EXPECT_NEAR(*iv.low, mean - kT975Dof2 * sd / std::sqrt(3.0), 1e-9);
  EXPECT_NEAR(*iv.high, mean + kT975Dof2 * sd / std::sqrt(3.0), 1e-9);
  const Interval one = MeanInterval({1.5});
  EXPECT_EQ(one.n, 1);
  EXPECT_DOUBLE_EQ(one.mean, 1.5);
  EXPECT_FALSE(one.low.has_value());
}

TEST(MetricsFromEventsTest, ThroughputSkipsTheFirstReportAndRepeatsOfAStep) {
  FakeCoordinator server;
  AddChild(server, 0, 0, 1, /*running=*/false);
  // Rebuild the child's events the way the server holds them.
  v1::Job job;
  v1::GetJobRequest request;
  request.set_id("c001");
  ASSERT_TRUE(server.GetJob(nullptr, &request, &job).ok());
  // Steps 10 (warm-up, 100 tok/s), 20 (1020), 30 (1030), 30 again (final).
  std::vector<v1::JobEvent> events;
  v1::Job at = job;
  for (int step : {10, 20, 30, 30}) {
    at.mutable_progress()->set_step(step);
    at.mutable_progress()->set_tokens_per_second(step == 10 ? 100 : 1000 + step);
    at.mutable_progress()->set_memory_bytes(step == 20 ? 5000 : 4000);
    events.push_back(Event(events.size() + 1, at, v1::JobEvent::PROGRESS));
  }
  const RunMetrics m = MetricsFromEvents(job, events);
  EXPECT_DOUBLE_EQ(m.tokens_per_s_mean, (1020.0 + 1030.0) / 2);
  EXPECT_DOUBLE_EQ(m.tokens_per_s_final, 1030.0);
  EXPECT_EQ(m.peak_memory_bytes, 5000);
  ASSERT_EQ(m.curve.size(), 3u);
  EXPECT_EQ(m.curve[2].step, 30);
  ASSERT_TRUE(m.eval_loss.has_value());
  EXPECT_DOUBLE_EQ(*m.eval_loss, EvalLoss(0, 0, 1));
  EXPECT_DOUBLE_EQ(*m.ppl, std::exp(EvalLoss(0, 0, 1)));
  EXPECT_DOUBLE_EQ(*m.kl, Kl(0, 0, 1));
  EXPECT_EQ(m.trainable_params, 4096);
}

TEST_F(ReportTest, ChildrenCsvHasARowPerTrainingChild) {
  ASSERT_TRUE(Report("s-1").ok());
  const auto rows = ReadCsv(dir_ / "children.csv");
  ASSERT_EQ(rows.size(), 9u);  // header + 8 children; the capture job is not a row
  const auto& h = rows[0];
  EXPECT_EQ(std::vector<std::string>(h.begin(), h.begin() + 5),
            (std::vector<std::string>{"id", "state", "distill.temperature", "student.method",
                                      "train.seed"}));
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& row = rows[i];
    ASSERT_EQ(row.size(), h.size());
    const std::string id = Cell(h, row, "id");
    const int ti = id[1] - '0', mi = id[2] - '0', seed = id[3] - '0';
    EXPECT_EQ(Cell(h, row, "distill.temperature"), kTemps[ti]);
    EXPECT_EQ(Cell(h, row, "student.method"), mi == 0 ? "lora" : "full");
    EXPECT_EQ(Cell(h, row, "train.seed"), absl::StrCat(seed));
    EXPECT_EQ(Cell(h, row, "peak_memory_bytes"), "5000");
    EXPECT_EQ(Cell(h, row, "trainable_params"), "4096");
    if (id == "c112") {  // running: its metrics so far, no eval yet
      EXPECT_EQ(Cell(h, row, "state"), "RUNNING");
      EXPECT_EQ(Cell(h, row, "step"), "20");
      EXPECT_EQ(Cell(h, row, "eval_loss"), "");
      EXPECT_EQ(Cell(h, row, "tokens_per_s_mean"), "1020");
      continue;
    }
    EXPECT_EQ(Cell(h, row, "state"), "SUCCEEDED");
    EXPECT_NEAR(Number(Cell(h, row, "eval_loss")), EvalLoss(ti, mi, seed), 1e-5);
    EXPECT_NEAR(Number(Cell(h, row, "ppl")), std::exp(EvalLoss(ti, mi, seed)), 1e-4);
    EXPECT_NEAR(Number(Cell(h, row, "kl")), Kl(ti, mi, seed), 1e-6);
    EXPECT_EQ(Cell(h, row, "top1_agreement"), "0.75");
    EXPECT_EQ(Cell(h, row, "teacher_loss"), "1.25");
    EXPECT_EQ(Cell(h, row, "tokens_per_s_mean"), "1025");  // (1020 + 1030) / 2
    EXPECT_EQ(Cell(h, row, "tokens_per_s_final"), "1030");
    EXPECT_EQ(Cell(h, row, "tokens"), "15360");
  }
  // The capture child was never read; every training child's log was.
  const std::vector<std::string> watched = service_.watched();
  EXPECT_EQ(std::count(watched.begin(), watched.end(), "cap"), 0);
  EXPECT_EQ(watched.size(), 8u);
}

TEST_F(ReportTest, SummaryAggregatesOverSeedsWithStudentTIntervals) {
  ASSERT_TRUE(Report("s-1").ok());
  const auto rows = ReadCsv(dir_ / "summary.csv");
  ASSERT_EQ(rows.size(), 5u);  // header + 2 temperatures x 2 methods
  const auto& h = rows[0];
  EXPECT_EQ(std::vector<std::string>(h.begin(), h.begin() + 3),
            (std::vector<std::string>{"distill.temperature", "student.method", "runs"}));
  EXPECT_EQ(std::find(h.begin(), h.end(), "train.seed"), h.end());
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const int ti = Cell(h, row, "distill.temperature") == "1" ? 0 : 1;
    const int mi = Cell(h, row, "student.method") == "lora" ? 0 : 1;
    EXPECT_EQ(Cell(h, row, "runs"), "2");
    if (ti == 1 && mi == 1) {  // seed 2 has no eval yet: one value, no interval
      EXPECT_EQ(Cell(h, row, "eval_loss_n"), "1");
      EXPECT_NEAR(Number(Cell(h, row, "eval_loss_mean")), EvalLoss(1, 1, 1), 1e-5);
      EXPECT_EQ(Cell(h, row, "eval_loss_ci_low"), "");
      EXPECT_EQ(Cell(h, row, "eval_loss_ci_high"), "");
      continue;
    }
    for (const auto& [metric, f] : std::vector<std::pair<std::string, double (*)(int, int, int)>>{
             {"eval_loss", EvalLoss}, {"kl", Kl}}) {
      const double a = f(ti, mi, 1), b = f(ti, mi, 2);
      const double mean = (a + b) / 2;
      const double sd = std::sqrt((a - mean) * (a - mean) + (b - mean) * (b - mean));  // n - 1 = 1
      const double half = kT975Dof1 * sd / std::sqrt(2.0);
      EXPECT_EQ(Cell(h, row, metric + "_n"), "2");
      EXPECT_NEAR(Number(Cell(h, row, metric + "_mean")), mean, 1e-5) << metric;
      EXPECT_NEAR(Number(Cell(h, row, metric + "_ci_low")), mean - half, 1e-5) << metric;
      EXPECT_NEAR(Number(Cell(h, row, metric + "_ci_high")), mean + half, 1e-5) << metric;
    }
  }
}

TEST_F(ReportTest, MarkdownHasBothTablesThePlotsAndTheUnfinishedRun) {
  ASSERT_TRUE(Report("s-1").ok());
  absl::StatusOr<std::string> md = common::ReadFileToString((dir_ / "report.md").string());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_NE(md->find("# Report: s-1"), std::string::npos);
  EXPECT_NE(md->find("- teacher: `/models/teacher`"), std::string::npos);
  EXPECT_NE(md->find("- sweep `student.method`: lora, full"), std::string::npos);
  EXPECT_NE(md->find("| id | state | distill.temperature | student.method | train.seed |"),
            std::string::npos);
  EXPECT_NE(md->find("| distill.temperature | student.method | runs | eval loss |"),
            std::string::npos);
  EXPECT_NE(md->find("Not finished: c112 (RUNNING, step 20/30)"), std::string::npos);
  EXPECT_NE(out_.str().find("note: c112 is RUNNING (step 20/30): its metrics are those so far"),
            std::string::npos)
      << out_.str();
  EXPECT_NE(md->find("(n=1)"), std::string::npos);
  for (const char* png :
       {"loss_curves.png", "eval_loss_vs_distill_temperature.png", "kl_vs_distill_temperature.png",
        "eval_loss_vs_student_method.png", "kl_vs_student_method.png"}) {
    EXPECT_NE(md->find(absl::StrCat("](", png, ")")), std::string::npos) << png;
    ExpectPng(dir_ / png);
    EXPECT_NE(out_.str().find((dir_ / png).string()), std::string::npos) << png;
  }
  EXPECT_FALSE(fs::exists(dir_ / "eval_loss_vs_train_seed.png"));
  EXPECT_TRUE(fs::exists(dir_ / "plots.gp"));
}

TEST_F(ReportTest, SeveralJobsShareTheTablesGroupedByJobName) {
  AddBaseline(service_, "ce-only");
  ASSERT_TRUE(ReportMany({"s-1", "b-1"}).ok());
  const auto rows = ReadCsv(dir_ / "summary.csv");
  ASSERT_EQ(rows.size(), 6u);  // header + the sweep's 4 groups + the baseline
  const auto& h = rows[0];
  EXPECT_EQ(std::vector<std::string>(h.begin(), h.begin() + 4),
            (std::vector<std::string>{"job", "distill.temperature", "student.method", "runs"}));
  EXPECT_EQ(Cell(h, rows[1], "job"), "temps");
  const auto& base = rows[5];
  EXPECT_EQ(Cell(h, base, "job"), "ce-only");
  EXPECT_EQ(Cell(h, base, "distill.temperature"), "");
  EXPECT_EQ(Cell(h, base, "runs"), "2");
  EXPECT_NEAR(Number(Cell(h, base, "eval_loss_mean")), 3.15, 1e-6);
  const double half = kT975Dof1 * std::sqrt(2 * 0.05 * 0.05) / std::sqrt(2.0);
  EXPECT_NEAR(Number(Cell(h, base, "eval_loss_ci_low")), 3.15 - half, 1e-5);
  EXPECT_EQ(ReadCsv(dir_ / "children.csv").size(), 11u);  // header + 8 + 2
  absl::StatusOr<std::string> md = common::ReadFileToString((dir_ / "report.md").string());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_NE(md->find("# Report: s-1, b-1"), std::string::npos);
  EXPECT_NE(md->find("Sweep `ce-only` (b-1), SUCCEEDED"), std::string::npos) << *md;
  EXPECT_NE(md->find("- sweep `train.seed`: 1, 2"), std::string::npos);
  // Against the temperature the baseline is a flat reference line.
  absl::StatusOr<std::string> dat =
      common::ReadFileToString((dir_ / "eval_loss_vs_distill_temperature.dat").string());
  ASSERT_TRUE(dat.ok()) << dat.status();
  EXPECT_NE(dat->find("# job=ce-only (no distill.temperature)\n1 3.15 "),
            std::string::npos)
      << *dat;
  EXPECT_NE(dat->find("\n2.5 3.15 "), std::string::npos) << *dat;
  ExpectPng(dir_ / "eval_loss_vs_distill_temperature.png");
  ExpectPng(dir_ / "eval_loss_vs_job.png");
}

TEST_F(ReportTest, JobsOfTheSameNameAreToldApartByTheirIds) {
  AddBaseline(service_, "temps");
  ASSERT_TRUE(ReportMany({"s-1", "b-1"}).ok());
  const auto rows = ReadCsv(dir_ / "summary.csv");
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(Cell(rows[0], rows[1], "job"), "s-1");
  EXPECT_EQ(Cell(rows[0], rows[5], "job"), "b-1");
}

TEST_F(ReportTest, AnUnknownIdAmongSeveralIsNotFound) {
  const absl::Status s = ReportMany({"s-1", "nope"});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("nope"), std::string::npos) << s;
}

// Structured values too long for a tick label are #k on the axis, and
// report.md says which value each #k is.
TEST_F(ReportTest, LongValuesAreNumberedOnTheAxisAndListed) {
  const std::vector<std::string> maps = {
      "[]", R"([{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}])"};
  v1::Job sweep;
  sweep.set_id("f-1");
  sweep.set_kind(v1::SWEEP);
  sweep.set_state(v1::SUCCEEDED);
  sweep.mutable_spec()->set_type(v1::DISTILL);
  for (size_t i = 0; i < maps.size(); ++i) {
    v1::Job job;
    job.set_id(absl::StrCat("f", i));
    job.set_kind(v1::TRAIN);
    job.mutable_spec()->set_type(v1::DISTILL);
    (*job.mutable_sweep_values())["distill.features"] = maps[i];
    job.set_state(v1::SUCCEEDED);
    job.mutable_progress()->set_eval_step(1);
    job.mutable_progress()->set_eval_loss(2.0 + static_cast<double>(i));
    service_.Add(job, {Event(1, job, v1::JobEvent::PROGRESS)});
    sweep.add_child_ids(job.id());
  }
  service_.Add(sweep, {});
  ASSERT_TRUE(Report("f-1").ok());
  absl::StatusOr<std::string> md = common::ReadFileToString((dir_ / "report.md").string());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_NE(md->find("`distill.features` in the plots:\n\n- #1: `[]`\n- #2: `" + maps[1] + "`"),
            std::string::npos)
      << *md;
  absl::StatusOr<std::string> dat =
      common::ReadFileToString((dir_ / "eval_loss_vs_distill_features.dat").string());
  ASSERT_TRUE(dat.ok()) << dat.status();
  EXPECT_NE(dat->find("0 2 2 2 \"#1\"\n1 3 3 3 \"#2\""), std::string::npos) << *dat;
  ExpectPng(dir_ / "eval_loss_vs_distill_features.png");
}

TEST_F(ReportTest, ASingleJobIsOneRowWithoutAnInterval) {
  ASSERT_TRUE(Report("c001").ok());
  const auto children = ReadCsv(dir_ / "children.csv");
  ASSERT_EQ(children.size(), 2u);
  EXPECT_EQ(Cell(children[0], children[1], "id"), "c001");
  const auto summary = ReadCsv(dir_ / "summary.csv");
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(Cell(summary[0], summary[1], "runs"), "1");
  EXPECT_EQ(Cell(summary[0], summary[1], "eval_loss_ci_low"), "");
  ExpectPng(dir_ / "loss_curves.png");
}

TEST_F(ReportTest, AQueuedJobHasItsStateAndNoMetricsYet) {
  v1::Job queued;
  queued.set_id("q-1");
  queued.set_kind(v1::TRAIN);
  queued.set_state(v1::QUEUED);
  service_.Add(queued, {Event(1, queued, v1::JobEvent::STATE_CHANGED)});
  ASSERT_TRUE(Report("q-1").ok());
  const auto children = ReadCsv(dir_ / "children.csv");
  ASSERT_EQ(children.size(), 2u);
  EXPECT_EQ(Cell(children[0], children[1], "state"), "QUEUED");
  for (const char* metric : {"eval_loss", "tokens_per_s_mean", "peak_memory_bytes"}) {
    EXPECT_EQ(Cell(children[0], children[1], metric), "") << metric;  // not 0
  }
  const auto summary = ReadCsv(dir_ / "summary.csv");
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(Cell(summary[0], summary[1], "tokens_per_s_mean_n"), "0");
  EXPECT_FALSE(fs::exists(dir_ / "loss_curves.png"));  // nothing to draw
}

// A running job whose latest write added no event (its update_time is past
// every event's): the read ends after the idle pause with the events so far.
TEST_F(ReportTest, EventsSoFarOfARunningJobEndsAfterAQuietPause) {
  v1::Job job;
  job.set_id("r-1");
  job.set_state(v1::RUNNING);
  *job.mutable_update_time() = TimeUtil::SecondsToTimestamp(100);
  std::vector<v1::JobEvent> events;
  for (int64_t seq = 1; seq <= 3; ++seq) {
    v1::Job at = job;
    *at.mutable_update_time() = TimeUtil::SecondsToTimestamp(seq);
    events.push_back(Event(seq, at, v1::JobEvent::PROGRESS));
  }
  service_.Add(job, events);
  CoordinatorClient client(options_);
  const auto start = std::chrono::steady_clock::now();
  auto got = client.EventsSoFar(job, std::chrono::milliseconds(200));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ(got->back().sequence(), 3);
  EXPECT_GE(took, std::chrono::milliseconds(200));
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(ReportTest, UnknownIdIsNotFound) {
  const absl::Status s = Report("nope");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("nope"), std::string::npos);
}

TEST_F(ReportTest, UnwritableDirectoryIsNamed) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  CoordinatorClient client(options_);
  ReportOptions options;
  options.out_dir = (dir_ / "file" / "report").string();
  const absl::Status s = WriteReport({"s-1"}, options, client, out_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(options.out_dir), std::string::npos) << s;
}

TEST_F(ReportTest, MissingGnuplotIsNamed) {
  const absl::Status s = Report("s-1", "/nonexistent/gnuplot");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("gnuplot"), std::string::npos) << s;
}

}  // namespace
}  // namespace distill::coordinator::ctl
