// How distillctl shows jobs: state names, the progress line and bar, the
// `get` summary, the `list` table, JSON, and the watch display. Pure functions
// of their arguments (the current time is passed in) so that they are
// unit-tested; WatchPrinter is single-threaded.
#ifndef DISTILL_COORDINATOR_CTL_FORMAT_H_
#define DISTILL_COORDINATOR_CTL_FORMAT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator::ctl {

// "QUEUED", "RUNNING", ... (the enum value name).
std::string JobStateName(distill::v1::JobState state);
// Case-insensitive enum name ("running", "RUNNING"); InvalidArgument listing
// the states otherwise.
absl::StatusOr<distill::v1::JobState> ParseJobState(absl::string_view text);
bool IsTerminal(distill::v1::JobState state);

// "1h02m", "3m05s", "12s"; "?" for a negative or non-finite value.
std::string FormatDuration(double seconds);
// "950", "12.3k", "1.25M".
std::string FormatRate(double per_second);
// "2.3456", with "(ce 2.1000 kd 0.2456)" for distill jobs or a non-zero kd part.
std::string FormatLoss(const distill::v1::Job& job);

// "step 40/200 | loss 2.3456 | 12.3k tok/s | eta 1m05s" (no step yet: the state).
std::string FormatProgressLine(const distill::v1::Job& job);
// The TTY bar: "[#######.............]  40/200  20% | loss ... | ... tok/s | eta 1m05s",
// the bar shrinking so the whole line fits in `width` columns.
std::string FormatProgressBar(const distill::v1::Job& job, int width);

// "RANK_FAILED: rank 0 exited with code 1 (exit code 1)"; empty if not failed.
std::string FormatFailure(const distill::v1::Job& job);

// The multi-line `get` summary.
std::string FormatJobSummary(const distill::v1::Job& job, absl::Time now);
// The `list` table: a header and one row per job, a sweep's children (those
// in `jobs`) right under it with their ids indented, in the sweep's order.
std::string FormatJobTable(const std::vector<distill::v1::Job>& jobs, absl::Time now);
// A sweep's children: one line each, "ID  STATE  field=value, ..." (and the
// failure), as `submit` and `get` print them.
std::string FormatSweepChildren(const std::vector<distill::v1::Job>& children);
// The message as JSON (proto field names, indented).
std::string ToJson(const google::protobuf::Message& message);

// Shows a WatchJob event stream. On a TTY: state changes as lines and the
// progress as one bar redrawn in place; otherwise plain lines, one per state
// change and per new step (heartbeats that repeat a step print nothing).
class WatchPrinter {
 public:
  WatchPrinter(std::ostream& out, bool tty, int width) : out_(out), tty_(tty), width_(width) {}
  void OnEvent(const distill::v1::JobEvent& event);
  // Ends the display with the job's final line: "job ID SUCCEEDED in 3m05s ..."
  // or the failure reason.
  void Finish(const distill::v1::Job& job);

 private:
  void ClearBar();
  std::ostream& out_;
  const bool tty_;
  const int width_;
  bool bar_shown_ = false;
  int64_t last_step_printed_ = -1;
};

// distillctl's exit code for a watched job: 0 only for SUCCEEDED.
int ExitCodeForJob(const distill::v1::Job& job);

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_FORMAT_H_
