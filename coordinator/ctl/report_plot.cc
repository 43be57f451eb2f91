#include "coordinator/ctl/report_plot.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::coordinator::ctl {
namespace fs = std::filesystem;

namespace {

constexpr char kScript[] = "plots.gp";
constexpr char kLog[] = "gnuplot.log";

// A gnuplot single-quoted string ('' is a quote).
std::string Quoted(const std::string& s) {
  return "'" + absl::StrReplaceAll(s, {{"'", "''"}}) + "'";
}

std::string Header(const std::string& png, const std::string& title, const std::string& xlabel,
                   const std::string& ylabel) {
  return absl::StrCat("\nset output ", Quoted(png), "\nset title ", Quoted(title), "\nset xlabel ",
                      Quoted(xlabel), "\nset ylabel ", Quoted(ylabel), "\n");
}

// "id (field=value, ...)" for a run's line.
std::string RunLabel(const RunMetrics& run) {
  std::vector<std::string> parts;
  for (const auto& [field, value] : run.values) {
    parts.push_back(absl::StrCat(field, "=", DisplayValue(value)));
  }
  return parts.empty() ? run.id : absl::StrCat(run.id, " (", absl::StrJoin(parts, ", "), ")");
}

// The loss curves: data blocks (index i) in loss_curves.dat and the plot.
std::string LossCurves(const std::vector<RunMetrics>& runs, std::string* data) {
  std::vector<std::string> plots;
  for (const RunMetrics& run : runs) {
    if (run.curve.empty()) continue;
    absl::StrAppend(data, "# ", run.id, "\n");
    for (const CurvePoint& p : run.curve) {
      absl::StrAppend(data, p.step, " ", absl::StrFormat("%.9g", p.loss), "\n");
    }
    *data += "\n\n";
    plots.push_back(absl::StrCat(plots.empty() ? "'loss_curves.dat'" : "''", " index ",
                                 plots.size(), " using 1:2 with lines title ",
                                 Quoted(RunLabel(run))));
  }
  if (plots.empty()) return "";
  return Header("loss_curves.png", "training loss", "step", "loss") + "set key below\n" +
         "unset logscale x\nset xtics\nplot " + absl::StrJoin(plots, ", \\\n  ") + "\n";
}

// One point of a metric-against-field plot.
struct Point {
  double x;
  double mean, low, high;
  std::string label;
};

// Named lines of points: one per combination of the other group fields.
using Series = std::vector<std::pair<std::string, std::vector<Point>>>;

// The series name of group `g` in a plot against field `fi`: its values of
// the other group fields it has, else `metric`.
std::string SeriesName(const RunGroup& g, const std::vector<std::string>& group_fields, size_t fi,
                       const std::string& metric) {
  std::vector<std::string> others;
  for (size_t i = 0; i < group_fields.size(); ++i) {
    if (i != fi && !g.key[i].empty()) others.push_back(absl::StrCat(group_fields[i], "=", DisplayValue(g.key[i])));
  }
  return others.empty() ? metric : absl::StrJoin(others, ", ");
}

// Groups without field `fi` (e.g. a baseline reported beside a sweep) as
// flat lines across [lo, hi], the x range of the others.
void AddReferenceLines(const std::vector<RunGroup>& groups,
                       const std::vector<std::string>& group_fields, size_t fi,
                       const std::string& metric, double lo, double hi, Series* series) {
  for (const RunGroup& g : groups) {
    const Interval iv = GroupInterval(g, metric);
    if (!g.key[fi].empty() || iv.n == 0 || lo > hi) continue;
    std::vector<Point> line;
    for (double x : {lo, hi}) {
      line.push_back(
          Point{x, iv.mean, iv.low.value_or(iv.mean), iv.high.value_or(iv.mean), ""});
    }
    series->push_back(
        {absl::StrCat(SeriesName(g, group_fields, fi, metric), " (no ", group_fields[fi], ")"),
         line});
  }
}

// The groups' `metric` against group field `fi`: at the value when every
// value is a number (`*numeric`), else at the category's index. Groups
// without the field are flat reference lines (AddReferenceLines).
Series CollectSeries(const std::vector<RunGroup>& groups,
                     const std::vector<std::string>& group_fields, size_t fi,
                     const std::string& metric, bool* numeric) {
  const std::vector<std::string> categories = FieldValues(groups, fi);
  *numeric = true;
  for (const std::string& c : categories) {
    double unused;
    if (!absl::SimpleAtod(c, &unused)) *numeric = false;
  }
  // Values too long for a tick label (structured ones, e.g. distill.features)
  // are shown as #k, the k-th value in order of appearance (the tables' order).
  const bool long_labels = HasLongValue(categories);
  Series series;
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (const RunGroup& g : groups) {
    const Interval iv = GroupInterval(g, metric);
    if (iv.n == 0 || g.key[fi].empty()) continue;
    const std::string name = SeriesName(g, group_fields, fi, metric);
    auto it =
        std::find_if(series.begin(), series.end(), [&](const auto& s) { return s.first == name; });
    if (it == series.end()) it = series.insert(series.end(), {name, {}});
    Point p;
    if (!*numeric || !absl::SimpleAtod(g.key[fi], &p.x)) {
      p.x = static_cast<double>(std::find(categories.begin(), categories.end(), g.key[fi]) -
                                categories.begin());
    }
    p.mean = iv.mean;
    p.low = iv.low.value_or(iv.mean);
    p.high = iv.high.value_or(iv.mean);
    const size_t index = static_cast<size_t>(
        std::find(categories.begin(), categories.end(), g.key[fi]) - categories.begin());
    p.label = long_labels && !*numeric ? absl::StrCat("#", index + 1) : DisplayValue(g.key[fi]);
    lo = std::min(lo, p.x);
    hi = std::max(hi, p.x);
    it->second.push_back(p);
  }
  AddReferenceLines(groups, group_fields, fi, metric, lo, hi, &series);
  return series;
}

}  // namespace

std::vector<std::string> FieldValues(const std::vector<RunGroup>& groups, size_t fi) {
  std::vector<std::string> values;
  for (const RunGroup& g : groups) {
    if (!g.key[fi].empty() && std::find(values.begin(), values.end(), g.key[fi]) == values.end()) {
      values.push_back(g.key[fi]);
    }
  }
  return values;
}

bool HasLongValue(const std::vector<std::string>& values) {
  return std::any_of(values.begin(), values.end(),
                     [](const std::string& v) { return DisplayValue(v).size() > kMaxTickLabel; });
}

namespace {

// The metric of the groups against field `fi` (CollectSeries). Writes
// `stem`.dat into `data`; returns the script part, empty when there is no
// point.
std::string AgainstField(const std::vector<RunGroup>& groups,
                         const std::vector<std::string>& group_fields, size_t fi,
                         const std::string& metric, const std::string& title,
                         const std::string& stem, std::string* data) {
  bool numeric = true;
  Series series = CollectSeries(groups, group_fields, fi, metric, &numeric);
  if (series.empty()) return "";
  const std::string file = stem + ".dat";
  std::vector<std::string> plots;
  bool positive = numeric;
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (auto& [name, points] : series) {
    std::sort(points.begin(), points.end(),
              [](const Point& a, const Point& b) { return a.x < b.x; });
    absl::StrAppend(data, "# ", name, "\n");
    for (const Point& p : points) {
      absl::StrAppend(data, absl::StrFormat("%.9g %.9g %.9g %.9g \"%s\"\n", p.x, p.mean, p.low,
                                            p.high, absl::StrReplaceAll(p.label, {{"\"", "'"}})));
      positive = positive && p.x > 0;
      lo = std::min(lo, p.x);
      hi = std::max(hi, p.x);
    }
    *data += "\n\n";
    plots.push_back(absl::StrCat(plots.empty() ? Quoted(file) : "''", " index ", plots.size(),
                                 " using 1:2:3:4",
                                 numeric || points.front().label.empty() ? "" : ":xtic(5)",
                                 " with yerrorlines title ", Quoted(name)));
  }
  const std::string field = group_fields[fi];
  std::string script =
      Header(stem + ".png", absl::StrCat(title, " against ", field, " (mean, 95% interval)"), field,
             title);
  script += "set key outside right\nunset logscale x\nset xtics\n";
  if (numeric && positive && hi >= 100 * lo) script += "set logscale x\n";
  script += "plot " + absl::StrJoin(plots, ", \\\n  ") + "\n";
  return script;
}

// The absolute path of `program` ('/' in it: as given; else on PATH), or "".
std::string FindProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    return access(program.c_str(), X_OK) == 0 ? program : "";
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs `gnuplot plots.gp` in `dir`, its output into gnuplot.log.
absl::Status RunGnuplot(const std::string& program, const std::string& dir) {
  const std::string exe = FindProgram(program);
  if (exe.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("gnuplot not found ('", program,
                     "'): install gnuplot (Debian: gnuplot-nox) to draw the report's plots"));
  }
  const std::string log = (fs::path(dir) / kLog).string();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (chdir(dir.c_str()) != 0 || fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(exe.c_str(), exe.c_str(), kScript, static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  absl::StatusOr<std::string> output = common::ReadFileToString(log);
  std::string text = output.ok() ? *output : "";
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return absl::FailedPreconditionError(absl::StrCat(
      "gnuplot (", exe, ") failed on ", (fs::path(dir) / kScript).string(), " (",
      WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status)) : "killed by a signal",
      "): ", text));
}

}  // namespace

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> WritePlots(const std::vector<RunMetrics>& runs,
                                                    const std::vector<RunGroup>& groups,
                                                    const std::vector<std::string>& group_fields,
                                                    const ReportOptions& options) {
  const fs::path dir(options.out_dir);
  std::vector<std::string> pngs;
  std::string script =
      "# distillctl report: run `gnuplot plots.gp` in this directory.\n"
      "set terminal pngcairo noenhanced size 960,600\nset grid\n"
      // room beside the outer points for their error bars
      "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n";
  std::string curves;
  if (std::string part = LossCurves(runs, &curves); !part.empty()) {
    RETURN_IF_ERROR(WriteTextFile((dir / "loss_curves.dat").string(), curves));
    script += part;
    pngs.push_back("loss_curves.png");
  }
  const bool distill =
      std::any_of(runs.begin(), runs.end(), [](const RunMetrics& r) { return r.distill; });
  for (size_t fi = 0; fi < group_fields.size(); ++fi) {
    const std::string name = absl::StrReplaceAll(group_fields[fi], {{".", "_"}, {"/", "_"}});
    std::vector<std::pair<std::string, std::string>> metrics = {{"eval_loss", "eval loss"}};
    if (distill) metrics.push_back({"kl", "KL to the teacher"});
    for (const auto& [metric, title] : metrics) {
      const std::string stem = absl::StrCat(metric, "_vs_", name);
      std::string data;
      std::string part = AgainstField(groups, group_fields, fi, metric, title, stem, &data);
      if (part.empty()) continue;
      RETURN_IF_ERROR(WriteTextFile((dir / (stem + ".dat")).string(), data));
      script += part;
      pngs.push_back(stem + ".png");
    }
  }
  if (pngs.empty()) return pngs;
  RETURN_IF_ERROR(WriteTextFile((dir / kScript).string(), script));
  RETURN_IF_ERROR(RunGnuplot(options.gnuplot, options.out_dir));
  return pngs;
}

}  // namespace distill::coordinator::ctl
