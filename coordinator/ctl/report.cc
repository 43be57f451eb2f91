#include "coordinator/ctl/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#ifdef DISTILL_HAVE_BOOST_MATH
#include <boost/math/distributions/students_t.hpp>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "coordinator/ctl/format.h"
#include "coordinator/ctl/report_plot.h"

namespace distill::coordinator::ctl {
namespace v1 = distill::v1;
namespace fs = std::filesystem;

RunMetrics MetricsFromEvents(const v1::Job& job, const std::vector<v1::JobEvent>& events) {
  RunMetrics m;
  m.id = job.id();
  m.state = job.state();
  m.distill = job.spec().type() == v1::DISTILL;
  m.values.insert(job.sweep_values().begin(), job.sweep_values().end());
  std::map<int64_t, CurvePoint> curve;
  std::map<int64_t, double> rates;  // tokens/s by step, in report order below
  std::vector<int64_t> rate_steps;
  // The job itself is the latest state; the events carry the history.
  std::vector<const v1::Progress*> progress;
  for (const v1::JobEvent& e : events) {
    if (e.kind() == v1::JobEvent::PROGRESS) progress.push_back(&e.job().progress());
  }
  progress.push_back(&job.progress());
  for (const v1::Progress* p : progress) {
    m.peak_memory_bytes = std::max(m.peak_memory_bytes, p->memory_bytes());
    if (p->step() <= 0) continue;
    curve[p->step()] = CurvePoint{p->step(), p->loss(), p->ce_loss(), p->kd_loss()};
    if (rates.count(p->step()) == 0) rate_steps.push_back(p->step());
    rates[p->step()] = p->tokens_per_second();
  }
  for (const auto& [step, point] : curve) m.curve.push_back(point);
  // Throughput: one value per reported step (a repeated report of a step,
  // e.g. the final one, is not a new measurement).
  const size_t first = rate_steps.size() > 1 ? 1 : 0;
  double sum = 0;
  for (size_t i = first; i < rate_steps.size(); ++i) sum += rates[rate_steps[i]];
  if (rate_steps.size() > first) {
    m.tokens_per_s_mean = sum / static_cast<double>(rate_steps.size() - first);
    m.tokens_per_s_final = rates[rate_steps.back()];
  }
  const v1::Progress& last = job.progress();
  m.step = last.step();
  m.total_steps = last.total_steps();
  m.trainable_params = last.trainable_params();
  m.tokens = last.tokens();
  if (last.eval_step() > 0 || last.eval_loss() != 0) {
    m.eval_step = last.eval_step();
    m.eval_loss = last.eval_loss();
    m.ppl = std::exp(last.eval_loss());
    if (m.distill) {
      m.kl = last.eval_kl();
      m.top1_agreement = last.eval_top1_agreement();
      m.teacher_loss = last.eval_teacher_loss();
    }
  }
  return m;
}

double StudentTQuantile(double p, int dof) {
#ifdef DISTILL_HAVE_BOOST_MATH
  boost::math::students_t dist(static_cast<double>(dof));
  return boost::math::quantile(dist, p);
#else
  return std::nan("");  // built without Boost.Math (coordinator/ctl/CMakeLists.txt)
#endif
}

Interval MeanInterval(const std::vector<double>& xs) {
  Interval r;
  r.n = static_cast<int>(xs.size());
  if (xs.empty()) return r;
  double sum = 0;
  for (double x : xs) sum += x;
  r.mean = sum / r.n;
  if (r.n < 2) return r;
  double ss = 0;
  for (double x : xs) ss += (x - r.mean) * (x - r.mean);
  const double sd = std::sqrt(ss / (r.n - 1));
  const double half = StudentTQuantile(0.975, r.n - 1) * sd / std::sqrt(static_cast<double>(r.n));
  if (std::isnan(half)) return r;
  r.low = r.mean - half;
  r.high = r.mean + half;
  return r;
}

namespace {

constexpr char kSeedField[] = "train.seed";
// The field that tells the jobs of a report of several apart (not a spec field).
constexpr char kJobField[] = "job";

// A metric column: its CSV name, its Markdown title, how to read it.
struct Metric {
  const char* name;
  const char* title;
  std::function<std::optional<double>(const RunMetrics&)> get;
  bool integer = false;
};

// A value the run's progress reports give; absent before the first report
// (a queued run), so it does not count as 0 in a mean.
std::optional<double> Reported(const RunMetrics& m, double value) {
  if (m.curve.empty()) return std::nullopt;
  return value;
}

const std::vector<Metric>& Metrics() {
  static const auto* metrics = new std::vector<Metric>{
      {"eval_loss", "eval loss", [](const RunMetrics& m) { return m.eval_loss; }},
      {"ppl", "ppl", [](const RunMetrics& m) { return m.ppl; }},
      {"kl", "KL", [](const RunMetrics& m) { return m.kl; }},
      {"top1_agreement", "top-1", [](const RunMetrics& m) { return m.top1_agreement; }},
      {"teacher_loss", "teacher loss", [](const RunMetrics& m) { return m.teacher_loss; }},
      {"tokens_per_s_mean", "tok/s",
       [](const RunMetrics& m) { return Reported(m, m.tokens_per_s_mean); }},
      {"tokens_per_s_final", "tok/s (last)",
       [](const RunMetrics& m) { return Reported(m, m.tokens_per_s_final); }},
      {"peak_memory_bytes", "peak memory",
       [](const RunMetrics& m) { return Reported(m, static_cast<double>(m.peak_memory_bytes)); },
       true},
      {"trainable_params", "trainable",
       [](const RunMetrics& m) { return Reported(m, static_cast<double>(m.trainable_params)); },
       true},
  };
  return *metrics;
}

std::string Num(std::optional<double> v, bool integer = false) {
  if (!v.has_value()) return "";
  if (integer) return absl::StrFormat("%.0f", *v);
  return absl::StrFormat("%.6g", *v);
}

// A CSV field, quoted when it holds a comma, a quote or a line break.
std::string Csv(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string CsvRow(const std::vector<std::string>& cells) {
  std::vector<std::string> quoted;
  for (const std::string& c : cells) quoted.push_back(Csv(c));
  return absl::StrJoin(quoted, ",") + "\n";
}

std::string MdRow(const std::vector<std::string>& cells) {
  std::vector<std::string> escaped;
  for (const std::string& c : cells) escaped.push_back(absl::StrReplaceAll(c, {{"|", "\\|"}}));
  return "| " + absl::StrJoin(escaped, " | ") + " |\n";
}

std::string MdTable(const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows) {
  std::string md = MdRow(header);
  md += MdRow(std::vector<std::string>(header.size(), "---"));
  for (const auto& row : rows) md += MdRow(row);
  return md;
}

// Everything the report shows, gathered from the coordinator.
struct Gathered {
  std::vector<v1::Job> jobs;        // the jobs asked for (a sweep: the parent)
  std::vector<RunMetrics> runs;     // their training children (or themselves)
  std::vector<std::string> fields;  // the swept fields, in the sweeps' order
  int captures_skipped = 0;
};

absl::StatusOr<RunMetrics> FetchRun(const v1::Job& job, CoordinatorClient& client) {
  ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events, client.EventsSoFar(job));
  return MetricsFromEvents(job, events);
}

void AddField(const std::string& field, std::vector<std::string>* fields) {
  if (std::find(fields->begin(), fields->end(), field) == fields->end()) fields->push_back(field);
}

// Appends the runs of job `id` to `g`; with `job_value` non-empty, each run
// gets it as its value of kJobField.
absl::Status GatherJob(const std::string& id, const std::string& job_value,
                       CoordinatorClient& client, Gathered* g) {
  ASSIGN_OR_RETURN(v1::Job job, client.Get(id));
  for (const v1::SweepAxis& axis : job.spec().sweep()) AddField(axis.field(), &g->fields);
  std::vector<RunMetrics> runs;
  if (job.kind() != v1::SWEEP) {
    ASSIGN_OR_RETURN(RunMetrics run, FetchRun(job, client));
    runs.push_back(std::move(run));
  }
  for (const std::string& child_id : job.child_ids()) {
    ASSIGN_OR_RETURN(v1::Job child, client.Get(child_id));
    if (child.kind() == v1::CAPTURE) {
      ++g->captures_skipped;
      continue;
    }
    ASSIGN_OR_RETURN(RunMetrics run, FetchRun(child, client));
    for (const auto& [field, value] : run.values) AddField(field, &g->fields);
    runs.push_back(std::move(run));
  }
  for (RunMetrics& run : runs) {
    if (!job_value.empty()) run.values[kJobField] = job_value;
    g->runs.push_back(std::move(run));
  }
  g->jobs.push_back(std::move(job));
  return absl::OkStatus();
}

// The jobs `ids` and their runs. With more than one, kJobField comes first
// among the fields: each job's name (its id where the name is empty or
// another of the jobs has it too), as a JSON string.
absl::StatusOr<Gathered> Gather(const std::vector<std::string>& ids, CoordinatorClient& client) {
  if (ids.empty()) return absl::InvalidArgumentError("report: no job id given");
  Gathered g;
  if (ids.size() > 1) g.fields.push_back(kJobField);
  for (const std::string& id : ids) {
    RETURN_IF_ERROR(GatherJob(id, ids.size() > 1 ? nlohmann::json(id).dump() : "", client, &g));
  }
  if (ids.size() == 1) return g;
  std::map<std::string, int> names;
  for (const v1::Job& job : g.jobs) ++names[job.spec().name()];
  std::map<std::string, std::string> value_of;  // JSON id -> JSON label
  for (const v1::Job& job : g.jobs) {
    const std::string& name = job.spec().name();
    value_of[nlohmann::json(job.id()).dump()] =
        nlohmann::json(name.empty() || names[name] > 1 ? job.id() : name).dump();
  }
  for (RunMetrics& run : g.runs) run.values[kJobField] = value_of[run.values[kJobField]];
  return g;
}

}  // namespace

std::string DisplayValue(const std::string& json) {
  nlohmann::json v = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (v.is_string()) return v.get<std::string>();
  return json;
}

std::vector<std::string> GroupFields(const std::vector<std::string>& fields) {
  std::vector<std::string> out;
  for (const std::string& f : fields) {
    if (f != kSeedField) out.push_back(f);
  }
  return out;
}

std::vector<RunGroup> GroupRuns(const std::vector<RunMetrics>& runs,
                                const std::vector<std::string>& group_fields) {
  std::vector<RunGroup> groups;
  for (const RunMetrics& run : runs) {
    std::vector<std::string> key;
    for (const std::string& f : group_fields) {
      auto it = run.values.find(f);
      key.push_back(it == run.values.end() ? "" : it->second);
    }
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const RunGroup& g) { return g.key == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), RunGroup{key, {}});
    it->runs.push_back(&run);
  }
  return groups;
}

Interval GroupInterval(const RunGroup& group, const std::string& metric) {
  std::vector<double> xs;
  for (const Metric& m : Metrics()) {
    if (m.name != metric) continue;
    for (const RunMetrics* run : group.runs) {
      if (std::optional<double> v = m.get(*run); v.has_value()) xs.push_back(*v);
    }
  }
  return MeanInterval(xs);
}

namespace {

std::vector<std::string> ChildrenHeader(const std::vector<std::string>& fields) {
  std::vector<std::string> h = {"id", "state"};
  h.insert(h.end(), fields.begin(), fields.end());
  for (const char* c : {"step", "total_steps", "eval_step"}) h.push_back(c);
  for (const Metric& m : Metrics()) h.push_back(m.name);
  h.push_back("tokens");
  return h;
}

std::vector<std::string> ChildrenRow(const RunMetrics& r, const std::vector<std::string>& fields) {
  std::vector<std::string> row = {r.id, JobStateName(r.state)};
  for (const std::string& f : fields) {
    auto it = r.values.find(f);
    row.push_back(it == r.values.end() ? "" : DisplayValue(it->second));
  }
  row.push_back(absl::StrCat(r.step));
  row.push_back(absl::StrCat(r.total_steps));
  row.push_back(r.eval_step > 0 ? absl::StrCat(r.eval_step) : "");
  for (const Metric& m : Metrics()) row.push_back(Num(m.get(r), m.integer));
  row.push_back(absl::StrCat(r.tokens));
  return row;
}

std::vector<std::string> KeyCells(const RunGroup& g) {
  std::vector<std::string> cells;
  for (const std::string& v : g.key) cells.push_back(DisplayValue(v));
  return cells;
}

// summary.csv: per group, its runs and per metric n (the runs that have
// it, e.g. an eval), mean, ci_low, ci_high.
std::string SummaryCsv(const std::vector<RunGroup>& groups,
                       const std::vector<std::string>& group_fields) {
  std::vector<std::string> header = group_fields;
  header.push_back("runs");
  for (const Metric& m : Metrics()) {
    for (const char* suffix : {"_n", "_mean", "_ci_low", "_ci_high"}) {
      header.push_back(absl::StrCat(m.name, suffix));
    }
  }
  std::string csv = CsvRow(header);
  for (const RunGroup& g : groups) {
    std::vector<std::string> row = KeyCells(g);
    row.push_back(absl::StrCat(g.runs.size()));
    for (const Metric& m : Metrics()) {
      const Interval iv = GroupInterval(g, m.name);
      row.push_back(absl::StrCat(iv.n));
      row.push_back(iv.n > 0 ? Num(iv.mean) : "");
      row.push_back(Num(iv.low));
      row.push_back(Num(iv.high));
    }
    csv += CsvRow(row);
  }
  return csv;
}

// "2.3456 [2.3012, 2.3900]"; no interval for n = 1; "(n=2)" when fewer
// runs than the group's have the metric.
std::string MdInterval(const Interval& iv, size_t runs) {
  if (iv.n == 0) return "";
  std::string cell = Num(iv.mean);
  if (iv.low.has_value()) absl::StrAppend(&cell, " [", Num(iv.low), ", ", Num(iv.high), "]");
  if (static_cast<size_t>(iv.n) != runs) absl::StrAppend(&cell, " (n=", iv.n, ")");
  return cell;
}

std::string SpecSummary(const v1::Job& job) {
  const v1::JobSpec& s = job.spec();
  std::string model = !s.student().model().empty() ? s.student().model() : s.model();
  if (model.empty()) model = !s.student().init().empty() ? s.student().init() : s.init();
  std::string md = absl::StrCat("- type: ", v1::JobType_Name(s.type()), "\n");
  if (!model.empty()) absl::StrAppend(&md, "- model: `", model, "`\n");
  if (s.type() == v1::DISTILL) {
    md += absl::StrCat("- teacher: `",
                       s.teacher().model().empty() ? s.teacher().cache() : s.teacher().model(), "`",
                       s.teacher().model().empty() ? " (cache)" : "", "\n");
  }
  if (s.train().has_steps()) md += absl::StrCat("- train.steps: ", s.train().steps(), "\n");
  for (const v1::SweepAxis& axis : s.sweep()) {
    std::vector<std::string> values;
    for (const std::string& v : axis.values()) values.push_back(DisplayValue(v));
    md += absl::StrCat("- sweep `", axis.field(), "`: ", absl::StrJoin(values, ", "), "\n");
  }
  return md;
}

// For each group field with a value too long for a tick label: the #k the
// plots show instead (report_plot.cc), as a list.
std::string TickLegend(const std::vector<RunGroup>& groups,
                       const std::vector<std::string>& group_fields) {
  std::string md;
  for (size_t fi = 0; fi < group_fields.size(); ++fi) {
    const std::vector<std::string> values = FieldValues(groups, fi);
    if (!HasLongValue(values)) continue;
    md += absl::StrCat("`", group_fields[fi], "` in the plots:\n\n");
    for (size_t k = 0; k < values.size(); ++k) {
      md += absl::StrCat("- #", k + 1, ": `", DisplayValue(values[k]), "`\n");
    }
    md += "\n";
  }
  return md;
}

std::string Markdown(const Gathered& g, const std::vector<RunGroup>& groups,
                     const std::vector<std::string>& group_fields,
                     const std::vector<std::string>& plots) {
  std::vector<std::string> ids;
  for (const v1::Job& job : g.jobs) ids.push_back(job.id());
  std::string md = absl::StrCat("# Report: ", absl::StrJoin(ids, ", "), "\n\n");
  for (const v1::Job& job : g.jobs) {
    md += absl::StrCat(job.kind() == v1::SWEEP ? "Sweep" : "Job", " `", job.spec().name(), "` (",
                       job.id(), "), ", JobStateName(job.state()), ":\n\n", SpecSummary(job), "\n");
  }
  md += absl::StrCat(g.runs.size(), " training run(s)");
  if (g.captures_skipped > 0)
    md += absl::StrCat(", ", g.captures_skipped, " capture job(s) not shown");
  md += ".\n\n";
  std::vector<std::string> unfinished;
  for (const RunMetrics& r : g.runs) {
    if (r.state != v1::SUCCEEDED) {
      unfinished.push_back(absl::StrCat(r.id, " (", JobStateName(r.state), ", step ", r.step, "/",
                                        r.total_steps, ")"));
    }
  }
  if (!unfinished.empty()) {
    md += absl::StrCat("Not finished: ", absl::StrJoin(unfinished, ", "),
                       ": their metrics are those so far.\n\n");
  }
  std::vector<std::vector<std::string>> rows;
  for (const RunMetrics& r : g.runs) rows.push_back(ChildrenRow(r, g.fields));
  md += "## Runs\n\n" + MdTable(ChildrenHeader(g.fields), rows) + "\n";
  std::vector<std::string> header = group_fields;
  header.push_back("runs");
  for (const Metric& m : Metrics()) header.push_back(m.title);
  rows.clear();
  for (const RunGroup& grp : groups) {
    std::vector<std::string> row = KeyCells(grp);
    row.push_back(absl::StrCat(grp.runs.size()));
    for (const Metric& m : Metrics())
      row.push_back(MdInterval(GroupInterval(grp, m.name), grp.runs.size()));
    rows.push_back(std::move(row));
  }
  md +=
      "## Summary\n\nMean and 95% interval (Student t, n - 1 degrees of freedom) over "
      "the runs of each group";
  md += GroupFields(g.fields).size() < g.fields.size() ? " (seeds).\n\n" : ".\n\n";
  md += MdTable(header, rows) + "\n## Plots\n\n" + TickLegend(groups, group_fields);
  for (const std::string& png : plots) md += absl::StrCat("![", png, "](", png, ")\n\n");
  return md;
}

// Creates `dir` and checks that a file can be written in it.
absl::Status PrepareDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--out: cannot create ", dir, ": ", ec.message()));
  }
  const fs::path probe = fs::path(dir) / ".distillctl-write-test";
  std::ofstream f(probe);
  if (!f) return absl::FailedPreconditionError(absl::StrCat("--out: cannot write into ", dir));
  f.close();
  fs::remove(probe, ec);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteReport(const std::vector<std::string>& ids, const ReportOptions& options,
                         CoordinatorClient& client, std::ostream& out) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out: no directory given");
  ASSIGN_OR_RETURN(Gathered g, Gather(ids, client));
  RETURN_IF_ERROR(PrepareDir(options.out_dir));
  const std::vector<std::string> group_fields = GroupFields(g.fields);
  const std::vector<RunGroup> groups = GroupRuns(g.runs, group_fields);
  std::string children = CsvRow(ChildrenHeader(g.fields));
  for (const RunMetrics& r : g.runs) children += CsvRow(ChildrenRow(r, g.fields));
  const fs::path dir(options.out_dir);
  RETURN_IF_ERROR(WriteTextFile((dir / "children.csv").string(), children));
  RETURN_IF_ERROR(WriteTextFile((dir / "summary.csv").string(), SummaryCsv(groups, group_fields)));
  ASSIGN_OR_RETURN(std::vector<std::string> plots,
                   WritePlots(g.runs, groups, group_fields, options));
  RETURN_IF_ERROR(
      WriteTextFile((dir / "report.md").string(), Markdown(g, groups, group_fields, plots)));
  for (const std::string& name :
       {std::string("children.csv"), std::string("summary.csv"), std::string("report.md")}) {
    out << (dir / name).string() << "\n";
  }
  for (const std::string& png : plots) out << (dir / png).string() << "\n";
  for (const RunMetrics& r : g.runs) {
    if (r.state == v1::SUCCEEDED) continue;
    out << "note: " << r.id << " is " << JobStateName(r.state) << " (step " << r.step << "/"
        << r.total_steps << "): its metrics are those so far\n";
  }
  return absl::OkStatus();
}

}  // namespace distill::coordinator::ctl
