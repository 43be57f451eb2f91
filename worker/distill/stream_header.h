// The header of the teacher -> student MPI stream (teacher_stream.h): its
// fields, and the checks a rank runs on a header it receives before it sizes
// any buffer from it. Torch-free, so that the checks build into a fuzz target
// (tests/fuzz/stream_header_fuzz.cc). Note [Stream header bounds]. Plain
// functions and value types; thread-safe.
#ifndef DISTILL_WORKER_DISTILL_STREAM_HEADER_H_
#define DISTILL_WORKER_DISTILL_STREAM_HEADER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace distill::worker::teacher_stream {

enum Kind : int64_t { kTrain = 1, kEval = 2, kStop = 3 };

// The header: int64 [kHeaderLen]. The transport fields let stage 0 check
// that the student asks for what the spec gives the stages (a bug guard).
enum Field : int {
  kKind = 0,
  kStudent = 1,    // the student's index s (world rank s)
  kRequest = 2,    // per-student sequence number, from 0
  kBatch = 3,      // b
  kLength = 4,     // L
  kTransport = 5,  // LogitTransport (never UNSPECIFIED)
  kTopK = 6,
  kTemperatureBits = 7,  // the double's bits
  kCaptureHash = 8,      // CaptureHash(capture layers)
  // 1 for packed rows (Note [Packed rows] in sequence_data.h): the student's
  // ids message is [2, b, L], the ids then their positions, and each stage
  // passes the positions on after the hidden state.
  kPacked = 9,
  kHeaderLen = 10,
};

using Header = std::array<int64_t, kHeaderLen>;

// What a teacher stage accepts: the spec's students and micro-batch size,
// and the transport fields of MakeHeader for the spec's run.
struct HeaderLimits {
  int64_t students = 0;
  int64_t max_tokens = 0;  // b * L at most: train.micro_batch * data.seq_len
  int64_t transport = 0;
  int64_t top_k = 0;
  int64_t temperature_bits = 0;
  int64_t capture_hash = 0;
};

// A header a teacher stage received, from student `from` (stage 0), or from
// the stage before (from < 0: the header names its student). OK when the
// kind is known, the student is one of the spec's, the request number is not
// negative and, unless STOP, 1 <= b, 1 <= L, b * L <= max_tokens, packed is 0
// or 1 and a TRAIN request asks for the spec's transport. Internal otherwise
// (a bug or a corrupt message, never user input), naming the header and the
// field.
absl::Status CheckRequestHeader(const Header& h, int64_t from, const HeaderLimits& limits);

// A reply a student received: OK when it echoes `sent` (kind, student,
// request, b, L, packed); Internal naming both otherwise.
absl::Status CheckReplyHeader(const Header& reply, const Header& sent);

// "train request 3 of student 1 [2 x 16]"; any values ("bad request ...").
std::string DescribeHeader(const Header& h);

}  // namespace distill::worker::teacher_stream

#endif  // DISTILL_WORKER_DISTILL_STREAM_HEADER_H_
