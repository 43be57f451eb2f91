// Training and eval data as the spec's `data` block describes them: plain
// text (token shards, or text tokenized once and cached: text_source.h) cut
// into windows, or instruction data (chat or prompt/completion JSONL:
// instruction_data.h) packed into rows. Thread-compatible.
#ifndef DISTILL_WORKER_DATA_OPEN_DATA_H_
#define DISTILL_WORKER_DATA_OPEN_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/instruction_data.h"
#include "worker/data/sequence_data.h"

namespace distill::worker {

// The spec's data fields (proto/distill/v1/job.proto DataSpec), as plain
// values: the instruction data's options (format may also be "text"), and the
// JSONL field of plain text.
struct DataOptions : InstructionOptions {
  DataOptions() { format = "text"; tokenizer = "bytes"; }
  std::string text_field = "text";
};

// The tokenizer.json of a data.tokenizer value: `tokenizer` itself, or
// tokenizer/tokenizer.json when it is a directory ("bytes" stays "bytes").
std::string TokenizerJsonPath(const std::string& tokenizer);

// The rows of `paths` read as one dataset. Errors name the file (and for
// JSONL the line).
absl::StatusOr<std::unique_ptr<SequenceData>> OpenSequenceData(const std::vector<std::string>& paths,
                                                               const DataOptions& options);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_OPEN_DATA_H_
