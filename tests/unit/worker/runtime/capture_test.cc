#include "worker/runtime/capture.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "common/spec.h"
#include "tests/test_util/mpi_fixture.h"
#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::ReadFile;
using distill::testing::ReferenceDir;

// The reference teacher and student (tests/reference/make_distill_reference.py)
// over the 150 reference eval tokens in windows of 2: 74 rows, so with
// micro-batches of one row 2 shards of 64 rows per split, train and eval.
distill::v1::JobSpec Spec(const std::string& cache, const std::string& out) {
  distill::v1::JobSpec s;
  s.set_type(distill::v1::DISTILL);
  s.mutable_teacher()->set_model(ReferenceDir() + "/distill/teacher");
  s.mutable_teacher()->set_cache(cache);
  s.mutable_student()->set_model(ReferenceDir() + "/distill/student");
  auto* d = s.mutable_distill();
  d->set_logits(distill::v1::TOPK);
  d->set_top_k(5);
  auto* f = d->add_features();
  f->set_student_layer(0);
  f->set_teacher_layer(1);
  const std::string tokens = ReferenceDir() + "/distill/eval_tokens.bin";
  s.mutable_data()->add_train(tokens);
  s.mutable_data()->add_eval(tokens);
  s.mutable_data()->set_seq_len(2);
  s.mutable_train()->set_micro_batch(1);
  s.mutable_train()->set_threads(1);
  s.set_output(out);
  EXPECT_TRUE(common::ValidateJobSpec(s).ok()) << common::ValidateJobSpec(s);
  return common::WithDefaults(s);
}

// Every file of `a` has the same bytes in `b`, and the same files exist.
void ExpectSameFiles(const std::string& a, const std::string& b) {
  int files = 0;
  for (const auto& e : fs::directory_iterator(a)) {
    const std::string name = e.path().filename().string();
    ASSERT_TRUE(fs::exists(fs::path(b) / name)) << name;
    EXPECT_TRUE(ReadFile(e.path().string()) == ReadFile((fs::path(b) / name).string())) << name;
    ++files;
  }
  EXPECT_EQ(files, 6);  // manifest, teacher config, 2 + 2 shards
  EXPECT_EQ(std::distance(fs::directory_iterator(b), fs::directory_iterator()), files);
}

class CaptureTest : public distill::testing::MpiTest {};

TEST_F(CaptureTest, RanksShareTheShardsAndResumeToTheOneProcessBytes) {
  ASSERT_EQ(n_, 2);
  const std::string dir = distill::testing::SharedTempDir(*world_, "capture");
  const distill::v1::JobSpec shared = Spec(dir + "/shared", dir + "/out");
  std::ostringstream log;
  auto r = RunCapture(shared, world_.get(), log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shards_written, 2);  // one of each split
  EXPECT_EQ(r->tokens, 2 * 74 * 2);
  if (rank_ == 0) {
    auto one = RunCapture(Spec(dir + "/one", dir + "/out"), nullptr, log);
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ(one->shards_written, 4);
    ExpectSameFiles(dir + "/one", dir + "/shared");
    // A capture killed before these shards landed.
    fs::remove(dir + "/shared/train-00001.shard");
    fs::resize_file(dir + "/shared/eval-00000.shard", 100);
  }
  ASSERT_TRUE(world_->Barrier("shards damaged").ok());
  r = RunCapture(shared, world_.get(), log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shards_written, 1);
  EXPECT_EQ(r->shards_kept, 1);
  ASSERT_TRUE(world_->Barrier("resumed").ok());
  if (rank_ == 0) ExpectSameFiles(dir + "/one", dir + "/shared");
}

}  // namespace
}  // namespace distill::worker
