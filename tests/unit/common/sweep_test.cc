#include "common/sweep.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/spec.h"

namespace distill::common {
namespace {

using distill::v1::JobSpec;

constexpr char kBase[] = R"(
type: distill
name: kd
student: {init: /m/student/config.json}
data: {train: /d/train.bin}
output: /out/kd
)";

constexpr char kTeacher[] = "teacher: {model: /m/teacher}\n";

// kBase, `extra` (its teacher block: kTeacher unless given) and the sweep.
absl::StatusOr<std::vector<SweepChild>> Expand(const std::string& sweep_yaml,
                                               const std::string& extra = kTeacher) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(std::string(kBase) + extra + sweep_yaml, "t.yaml");
  if (!spec.ok()) return spec.status();
  return ExpandSweep(*spec);
}

TEST(SweepTest, MapFormBecomesAxesWithJsonValues) {
  absl::StatusOr<JobSpec> spec =
      ParseJobSpec(std::string(kBase) + kTeacher +
                       "sweep: {distill.temperature: [1, 2.5], student.method: [lora, \"full\"]}\n",
                   "t.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->sweep_size(), 2);
  EXPECT_EQ(spec->sweep(0).field(), "distill.temperature");
  EXPECT_EQ(spec->sweep(0).values(0), "1");
  EXPECT_EQ(spec->sweep(0).values(1), "2.5");
  EXPECT_EQ(spec->sweep(1).field(), "student.method");
  EXPECT_EQ(spec->sweep(1).values(0), "\"lora\"");
  EXPECT_EQ(spec->teacher().model(), "/m/teacher");  // the rest of the spec is intact
}

// Found by tests/fuzz/spec_fuzz: each of these threw out of ParseJobSpec
// (nlohmann's dump on invalid UTF-8; yaml-cpp's as<string> on a list key).
TEST(SweepTest, MalformedSweepValuesAreInvalidArgument) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"sweep: {distill.temperature: [1, \x84]}\n", "t.yaml: invalid UTF-8"},
      {"sweep: {[a]: [1]}\n", "t.yaml: sweep: line "},
      {"sweep: {distill.features: [[{[x]: 1}]]}\n", "t.yaml: sweep: distill.features[0]: line "},
      {"sweep: {distill.features: [" + std::string(40, '[') + std::string(40, ']') + "]}\n",
       "t.yaml: sweep: distill.features[0]: nested deeper than 32 levels"},
  };
  for (const auto& [sweep, want] : cases) {
    absl::StatusOr<std::vector<SweepChild>> children = Expand(sweep);
    ASSERT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument) << sweep;
    EXPECT_TRUE(absl::StartsWith(children.status().message(), want)) << children.status();
  }
}

TEST(SweepTest, ListFormIsAccepted) {
  auto children = Expand("sweep: [{field: train.seed, values: ['3', '4']}]\n");
  ASSERT_TRUE(children.ok()) << children.status();
  ASSERT_EQ(children->size(), 2u);
  EXPECT_EQ((*children)[1].spec.train().seed(), 4u);
}

TEST(SweepTest, RelativePathValuesAreResolvedLikeTheSpecsOwn) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(
      std::string(kBase) + kTeacher +
          "sweep: {student.init: [a/config.json, /abs/config.json], data.train: [[x.bin, y.bin]], "
          "student.method: [lora]}\n",
      "t.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ResolveSweepPaths("/base", &*spec);
  EXPECT_EQ(spec->sweep(0).values(0), "\"/base/a/config.json\"");
  EXPECT_EQ(spec->sweep(0).values(1), "\"/abs/config.json\"");
  EXPECT_EQ(spec->sweep(1).values(0), "[\"/base/x.bin\",\"/base/y.bin\"]");
  EXPECT_EQ(spec->sweep(2).values(0), "\"lora\"");  // not a path: as given
}

TEST(SweepTest, GridOrderFirstAxisSlowest) {
  auto children = Expand(
      "sweep: {distill.temperature: [1, 2], student.method: [lora, full], train.seed: [1, 2]}\n");
  ASSERT_TRUE(children.ok()) << children.status();
  ASSERT_EQ(children->size(), 8u);
  const SweepChild& c5 = (*children)[5];  // (1, 0, 1): T = 2, lora, seed 2
  EXPECT_DOUBLE_EQ(c5.spec.distill().temperature(), 2.0);
  EXPECT_EQ(c5.spec.student().method(), distill::v1::LORA);
  EXPECT_EQ(c5.spec.student().lora().rank(), 8);  // defaults filled for the child's method
  EXPECT_EQ(c5.spec.train().seed(), 2u);
  EXPECT_EQ(c5.label, "temperature=2,method=lora,seed=2");
  EXPECT_EQ(c5.spec.output(), "/out/kd/5-temperature=2,method=lora,seed=2");
  EXPECT_EQ(c5.spec.name(), "kd[temperature=2,method=lora,seed=2]");
  EXPECT_EQ(c5.values.at("student.method"), "\"lora\"");
  EXPECT_EQ(c5.spec.sweep_size(), 0);
  EXPECT_FALSE(c5.capture);
  EXPECT_EQ((*children)[0].spec.student().method(), distill::v1::LORA);
  EXPECT_EQ((*children)[7].spec.student().method(), distill::v1::FULL);
  EXPECT_TRUE(ValidateJobSpec((*children)[7].spec).ok());
}

TEST(SweepTest, StructuredValuesReplaceTheWholeField) {
  auto children = Expand(
      "sweep: {distill.features: [[], [{student_layer: 1, teacher_layer: 3, loss: cosine}]]}\n",
      std::string(kTeacher) + "distill: {features: [{student_layer: 0, teacher_layer: 0}]}\n");
  ASSERT_TRUE(children.ok()) << children.status();
  ASSERT_EQ(children->size(), 2u);
  EXPECT_EQ((*children)[0].spec.distill().features_size(), 0);
  ASSERT_EQ((*children)[1].spec.distill().features_size(), 1);
  EXPECT_EQ((*children)[1].spec.distill().features(0).teacher_layer(), 3);
  EXPECT_EQ((*children)[1].spec.distill().features(0).loss(), distill::v1::COSINE);
}

TEST(SweepTest, BadValueNamesAxisIndexAndValue) {
  auto children = Expand("sweep: {distill.temperature: [1, 2, -1]}\n");
  ASSERT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(children.status().message(),
            "sweep: distill.temperature[2] = -1: distill.temperature: must be > 0, got -1");
  children = Expand("sweep: {student.method: [lora, sideways]}\n");
  ASSERT_FALSE(children.ok());
  EXPECT_TRUE(
      absl::StartsWith(children.status().message(),
                       "sweep: student.method[1] = \"sideways\": student.method: unknown value"))
      << children.status();
}

TEST(SweepTest, AxisErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"sweep: {distill.temprature: [1]}\n", "sweep: distill.temprature: unknown field"},
      {"sweep: {distill.temperature: []}\n", "sweep: distill.temperature: empty list"},
      {"sweep: {sweep: [1]}\n", "sweep: sweep: a sweep cannot sweep"},
      {"sweep: {data.train.x: [1]}\n", "sweep: data.train.x: train is not a block"},
      {"sweep: {distill: [{}], distill.alpha: [0.1]}\n",
       "sweep: distill.alpha: overlaps the axis distill"},
      {"sweep: [{field: train.seed, values: ['1']}, {field: train.seed, values: ['2']}]\n",
       "sweep: train.seed: listed twice"},
      {"sweep: {train.seed: 1}\n", "t.yaml: sweep: train.seed: expected a list"},
      {"sweep: [{field: train.seed, values: ['{']}]\n",
       "sweep: train.seed[0] = {: not a JSON value"},
  };
  for (const auto& [yaml, want] : cases) {
    auto children = Expand(yaml);
    ASSERT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
    EXPECT_TRUE(absl::StartsWith(children.status().message(), want)) << children.status();
  }
}

TEST(SweepTest, TooManyChildrenIsAnError) {
  std::string values = "[0";
  for (int i = 1; i < 40; ++i) values += absl::StrCat(", ", i);
  values += "]";
  auto children =
      Expand(absl::StrCat("sweep: {train.seed: ", values, ", data.seq_len: ", values, "}\n"));
  ASSERT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(children.status().message(), "sweep: more than 1000 children; split the sweep");
}

// Note [Input bounds]: the parent's own bounds, and the children's specs
// together, are checked before anything is expanded.
TEST(SweepTest, TheParentAndTheExpansionAreBounded) {
  absl::StatusOr<JobSpec> spec =
      ParseJobSpec(std::string(kBase) + kTeacher + "sweep: {train.seed: [1, 2]}\n", "t.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  JobSpec long_name = *spec;
  long_name.set_name(std::string(kMaxSpecNameBytes + 1, 'n'));
  EXPECT_EQ(ExpandSweep(long_name).status().message(), "name: at most 256 bytes, got 257");
  // 40 children of ~1 MiB would be ~40 MiB; each spec alone is within its bound.
  JobSpec wide = *spec;
  wide.mutable_sweep(0)->clear_values();
  for (int i = 1; i <= 40; ++i) wide.mutable_sweep(0)->add_values(std::to_string(i));
  while (wide.ByteSizeLong() < kMaxSpecBytes - 2000)
    wide.mutable_data()->add_train("/d/" + std::string(1000, 'x'));
  absl::StatusOr<std::vector<SweepChild>> children = ExpandSweep(wide);
  EXPECT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(children.status().message(), "exceed the sweep's limit of 33554432 bytes"))
      << children.status().message();
}

TEST(SweepTest, AChildsNameIsClippedToTheNameBound) {
  absl::StatusOr<JobSpec> spec =
      ParseJobSpec(std::string(kBase) + kTeacher + "sweep: {train.seed: [1, 2]}\n", "t.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->set_name(std::string(kMaxSpecNameBytes - 2, 'n'));
  auto children = ExpandSweep(*spec);
  ASSERT_TRUE(children.ok()) << children.status();
  for (const SweepChild& c : *children) {
    EXPECT_LE(c.spec.name().size(), kMaxSpecNameBytes) << c.label;
    EXPECT_TRUE(absl::EndsWith(c.spec.name(), "...]")) << c.spec.name();
  }
}

TEST(SweepTest, WorkerValidationRefusesASweep) {
  absl::StatusOr<JobSpec> spec =
      ParseJobSpec(std::string(kBase) + kTeacher + "sweep: {train.seed: [1]}\n", "t");
  ASSERT_TRUE(spec.ok());
  absl::Status st = ValidateJobSpec(*spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "sweep: submit a sweep with distillctl submit; the coordinator expands it");
}

TEST(SweepTest, SharedCacheAddsACaptureChildAndStudentsReadIt) {
  auto children = Expand(
      "sweep: {distill.temperature: [1, 4], distill.features: [[], [{student_layer: 1, "
      "teacher_layer: 3}]]}\n",
      "teacher: {model: /m/teacher, cache: /c/kd, cache_temperatures: [8]}\n");
  ASSERT_TRUE(children.ok()) << children.status();
  ASSERT_EQ(children->size(), 5u);
  const SweepChild& cap = (*children)[0];
  EXPECT_TRUE(cap.capture);
  EXPECT_EQ(cap.spec.teacher().model(), "/m/teacher");
  EXPECT_EQ(cap.spec.teacher().cache(), "/c/kd");
  ASSERT_EQ(cap.spec.teacher().cache_temperatures_size(), 3);
  EXPECT_DOUBLE_EQ(cap.spec.teacher().cache_temperatures(0), 1.0);
  EXPECT_DOUBLE_EQ(cap.spec.teacher().cache_temperatures(1), 4.0);
  EXPECT_DOUBLE_EQ(cap.spec.teacher().cache_temperatures(2), 8.0);
  ASSERT_EQ(cap.spec.teacher().cache_layers_size(), 1);
  EXPECT_EQ(cap.spec.teacher().cache_layers(0), 3);
  EXPECT_EQ(cap.spec.distill().features_size(), 0);
  EXPECT_EQ(cap.spec.output(), "/out/kd/capture");
  EXPECT_EQ(cap.spec.name(), "kd[capture]");
  EXPECT_TRUE(cap.values.empty());
  for (size_t i = 1; i < children->size(); ++i) {
    const SweepChild& c = (*children)[i];
    EXPECT_FALSE(c.capture);
    EXPECT_TRUE(c.spec.teacher().model().empty()) << i;
    EXPECT_EQ(c.spec.teacher().ranks(), 0);
    EXPECT_EQ(c.spec.teacher().cache(), "/c/kd");
  }
}

TEST(SweepTest, UniformLayerMapIsKeptForTheCapture) {
  auto children =
      Expand("sweep: {train.seed: [1, 2]}\n",
             "teacher: {model: /m/teacher, cache: /c/kd}\ndistill: {layer_map: uniform}\n");
  ASSERT_TRUE(children.ok()) << children.status();
  EXPECT_EQ((*children)[0].spec.distill().layer_map(), "uniform");
}

TEST(SweepTest, NoCaptureWithoutASharedCache) {
  auto children = Expand("sweep: {train.seed: [1, 2]}\n");
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), 2u);
  for (const SweepChild& c : *children) {
    EXPECT_FALSE(c.capture);
    EXPECT_EQ(c.spec.teacher().model(), "/m/teacher");
  }
}

TEST(SweepTest, SweepingWhatTheCacheDependsOnIsAnError) {
  const std::string cache = "teacher: {model: /m/teacher, cache: /c/kd}\n";
  for (const char* field : {"data.seq_len", "teacher.ranks", "distill.top_k", "student.init"}) {
    auto children = Expand(absl::StrCat("sweep: {", field, ": [64, 128]}\n"), cache);
    ASSERT_EQ(children.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_TRUE(absl::StartsWith(children.status().message(),
                                 absl::StrCat("sweep: ", field, ": the shared teacher cache")))
        << children.status();
  }
  // Without a cache the same axis is fine.
  EXPECT_TRUE(Expand("sweep: {data.seq_len: [64, 128]}\n").ok());
}


// Every spec shipped in examples/ and scripts/experiments/ passes the checks
// `distillctl submit` makes (a sweep: every child expands and validates), and
// the experiment sweeps have the grids docs/experiments.md reports.
class ShippedSpecTest : public ::testing::Test {
 protected:
  absl::StatusOr<JobSpec> Load(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<JobSpec> spec = ParseJobSpec(text.str(), path.string());
    if (!spec.ok()) return spec.status();
    const std::string dir = path.parent_path().lexically_normal().string();
    ResolveSpecPaths(dir, &*spec);
    ResolveSweepPaths(dir, &*spec);
    absl::Status valid =
        spec->sweep_size() > 0 ? ExpandSweep(*spec).status() : ValidateJobSpec(*spec);
    if (!valid.ok()) return valid;
    return spec;
  }
  std::filesystem::path Source() {
    const char* source = std::getenv("DISTILL_SOURCE_DIR");
    return source == nullptr ? std::filesystem::path() : std::filesystem::path(source);
  }
};

TEST_F(ShippedSpecTest, EverySpecIsValid) {
  ASSERT_FALSE(Source().empty()) << "DISTILL_SOURCE_DIR must be set (tests/with_test_env.sh)";
  int checked = 0;
  for (const char* dir : {"examples", "scripts/experiments"}) {
    for (const auto& entry : std::filesystem::directory_iterator(Source() / dir)) {
      if (entry.path().extension() != ".yaml") continue;
      SCOPED_TRACE(entry.path().string());
      EXPECT_TRUE(Load(entry.path()).ok()) << Load(entry.path()).status();
      ++checked;
    }
  }
  EXPECT_GE(checked, 14);  // a directory moved would leave nothing to check
}

TEST_F(ShippedSpecTest, ExperimentSweepsHaveTheirGrids) {
  ASSERT_FALSE(Source().empty()) << "DISTILL_SOURCE_DIR must be set (tests/with_test_env.sh)";
  const std::filesystem::path dir = Source() / "scripts/experiments";
  for (const auto& [file, children] : std::vector<std::pair<std::string, size_t>>{
           {"a_temperature.yaml", 4 * 3 * 3}, {"a_baseline.yaml", 3},
           {"b_features.yaml", 7 * 3}, {"c_lora.yaml", 2 * 3}, {"c_full.yaml", 3}}) {
    SCOPED_TRACE(file);
    absl::StatusOr<JobSpec> spec = Load(dir / file);
    ASSERT_TRUE(spec.ok()) << spec.status();
    absl::StatusOr<std::vector<SweepChild>> kids = ExpandSweep(*spec);
    ASSERT_TRUE(kids.ok()) << kids.status();
    EXPECT_EQ(kids->size(), children);
    for (const SweepChild& kid : *kids) {
      EXPECT_FALSE(kid.capture);  // they read the cache capture.yaml fills
      // Seeds are the only swept thing the baseline and the KD runs share.
      EXPECT_EQ(kid.spec.train().steps(), spec->train().steps());
    }
  }
}
}  // namespace
}  // namespace distill::common
