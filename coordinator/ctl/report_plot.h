// The plots of `distillctl report`: gnuplot data files and one script
// (plots.gp) written into the report directory, then gnuplot run on it there
// as a subprocess (pngcairo terminal), so a user can edit and rerun it.
// Single-threaded; the subprocess is waited for.
#ifndef DISTILL_COORDINATOR_CTL_REPORT_PLOT_H_
#define DISTILL_COORDINATOR_CTL_REPORT_PLOT_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/ctl/report.h"

namespace distill::coordinator::ctl {

// A category value longer than this (a structured value, e.g. a list of
// distill.features) is shown on the plots' axis as #k, the k-th value in the
// tables' order; report.md lists what each #k is.
inline constexpr size_t kMaxTickLabel = 24;

// The distinct values (JSON) of group field `fi` among `groups`, in order of
// first appearance, without "" (a group lacking the field): the categories of
// a plot against the field, #1.. in that order.
std::vector<std::string> FieldValues(const std::vector<RunGroup>& groups, size_t fi);

// Whether some value of `values` is too long for a tick label (kMaxTickLabel).
bool HasLongValue(const std::vector<std::string>& values);

// Writes `text` to `path` (replacing it); FailedPrecondition naming the path.
absl::Status WriteTextFile(const std::string& path, const std::string& text);

// Draws into options.out_dir: loss_curves.png (training loss against step,
// one line per run with a curve), and per group field F
// eval_loss_vs_F.png (F's dots as '_'), plus kl_vs_F.png when the runs
// distill: the groups' mean with its 95% interval as error bars against F's
// values (a categorical axis unless every value is a number), one line per
// combination of the other group fields. A plot without any point is not
// drawn. Returns the PNG file names, in drawing order. FailedPrecondition
// naming gnuplot when options.gnuplot cannot be found or fails (its output
// is in gnuplot.log).
absl::StatusOr<std::vector<std::string>> WritePlots(const std::vector<RunMetrics>& runs,
                                                    const std::vector<RunGroup>& groups,
                                                    const std::vector<std::string>& group_fields,
                                                    const ReportOptions& options);

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_REPORT_PLOT_H_
