#include "worker/distill/stream_header.h"

#include "absl/strings/str_cat.h"

namespace distill::worker::teacher_stream {

// Note [Stream header bounds]: a teacher stage sizes its receive buffers from
// the header it gets (ids [b, L] int64, hidden [b, L, d] float32), so a header
// is checked against the spec before anything is allocated from it: b and L
// each at least 1 and b * L at most the spec's micro-batch tokens
// (train.micro_batch * data.seq_len; evaluation batches are micro-batches
// too). Each factor is compared with the bound before the product is formed,
// so no value overflows. The peers are the job's own ranks, so a failing check
// is a bug or a corrupt message: Internal, naming the header, the field and the
// bound, rather than an allocation of whatever the bytes say.

namespace {

absl::Status Malformed(const Header& h, int64_t from, const std::string& why) {
  return absl::InternalError(
      absl::StrCat("malformed teacher request header (", DescribeHeader(h), ")",
                   from >= 0 ? absl::StrCat(" from student ", from) : "", ": ", why));
}

absl::Status CheckShape(const Header& h, int64_t from, int64_t max_tokens) {
  const int64_t b = h[kBatch], l = h[kLength];
  if (b < 1 || l < 1) return Malformed(h, from, "rows and length must be at least 1");
  if (b > max_tokens || l > max_tokens || b > max_tokens / l) {
    return Malformed(h, from,
                     absl::StrCat(b, " x ", l, " tokens exceed the micro-batch's ", max_tokens));
  }
  if (h[kPacked] != 0 && h[kPacked] != 1) {
    return Malformed(h, from, absl::StrCat("packed must be 0 or 1, not ", h[kPacked]));
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(const Header& h, const HeaderLimits& limits) {
  const std::pair<int, int64_t> want[] = {{kTransport, limits.transport},
                                          {kTopK, limits.top_k},
                                          {kTemperatureBits, limits.temperature_bits},
                                          {kCaptureHash, limits.capture_hash}};
  for (const auto& [field, value] : want) {
    if (h[field] != value) {
      return absl::InternalError(absl::StrCat(
          "student ", h[kStudent], " asks for another teacher output than the spec gives the ",
          "stages (transport, top_k, temperature or feature layers differ; field ", field, ": ",
          h[field], " vs ", value, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequestHeader(const Header& h, int64_t from, const HeaderLimits& limits) {
  const int64_t kind = h[kKind];
  if (kind != kTrain && kind != kEval && kind != kStop) {
    return Malformed(h, from, absl::StrCat("unknown kind ", kind));
  }
  const int64_t student = h[kStudent];
  if (student < 0 || student >= limits.students || (from >= 0 && student != from)) {
    return Malformed(h, from,
                     absl::StrCat("student ", student, " is not ",
                                  from >= 0 ? absl::StrCat("the sender ", from)
                                            : absl::StrCat("one of ", limits.students)));
  }
  if (kind == kStop) return absl::OkStatus();
  if (h[kRequest] < 0) return Malformed(h, from, "negative request number");
  if (absl::Status s = CheckShape(h, from, limits.max_tokens); !s.ok()) return s;
  return kind == kTrain ? CheckTransport(h, limits) : absl::OkStatus();
}

absl::Status CheckReplyHeader(const Header& reply, const Header& sent) {
  for (int f : {kKind, kStudent, kRequest, kBatch, kLength, kPacked}) {
    if (reply[f] != sent[f]) {
      return absl::InternalError(absl::StrCat("the teacher replied to ", DescribeHeader(reply),
                                              " while ", DescribeHeader(sent), " was due"));
    }
  }
  return absl::OkStatus();
}

std::string DescribeHeader(const Header& h) {
  const char* kind = h[kKind] == kTrain  ? "train"
                     : h[kKind] == kEval ? "eval"
                     : h[kKind] == kStop ? "stop"
                                         : "bad";
  return absl::StrCat(kind, " request ", h[kRequest], " of student ", h[kStudent], " [", h[kBatch],
                      " x ", h[kLength], h[kPacked] == 1 ? ", packed" : "", "]");
}

}  // namespace distill::worker::teacher_stream
