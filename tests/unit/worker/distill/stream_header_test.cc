#include "worker/distill/stream_header.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace distill::worker::teacher_stream {
namespace {

HeaderLimits Limits() {
  HeaderLimits l;
  l.students = 2;
  l.max_tokens = 8 * 257;  // micro_batch 8, seq_len 256
  l.transport = 2;
  l.top_k = 32;
  l.temperature_bits = 4611686018427387904;  // 2.0
  l.capture_hash = 77;
  return l;
}

Header Request(int64_t kind, int64_t student, int64_t b, int64_t l) {
  const HeaderLimits w = Limits();
  return Header{kind,           student, 3, b, l, w.transport, w.top_k, w.temperature_bits,
                w.capture_hash, 0};
}

TEST(StreamHeaderTest, AcceptsTheSpecsRequests) {
  EXPECT_TRUE(CheckRequestHeader(Request(kTrain, 1, 8, 257), 1, Limits()).ok());
  EXPECT_TRUE(CheckRequestHeader(Request(kEval, 0, 3, 100), 0, Limits()).ok());
  EXPECT_TRUE(CheckRequestHeader(Request(kTrain, 1, 8, 257), -1, Limits()).ok());  // stage j > 0
  EXPECT_TRUE(CheckRequestHeader(Request(kStop, 0, 0, 0), 0, Limits()).ok());
  Header packed = Request(kTrain, 0, 2, 16);
  packed[kPacked] = 1;
  EXPECT_TRUE(CheckRequestHeader(packed, 0, Limits()).ok());
}

// Note [Stream header bounds]: nothing is sized from a header past the
// micro-batch, however large its fields (and their product) are.
TEST(StreamHeaderTest, RefusesSizesPastTheMicroBatch) {
  const int64_t big = std::numeric_limits<int64_t>::max();
  for (const auto& [b, l] : {std::pair<int64_t, int64_t>{8, 258},
                             {9, 257},
                             {1, 8 * 257 + 1},
                             {big, big},
                             {int64_t{1} << 32, int64_t{1} << 32},
                             {big, 1}}) {
    absl::Status s = CheckRequestHeader(Request(kTrain, 0, b, l), 0, Limits());
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << b << " x " << l;
    EXPECT_NE(s.message().find("exceed the micro-batch's 2056"), std::string::npos) << s;
  }
  for (const auto& [b, l] : {std::pair<int64_t, int64_t>{0, 16}, {4, 0}, {-1, -1}}) {
    absl::Status s = CheckRequestHeader(Request(kEval, 0, b, l), 0, Limits());
    EXPECT_NE(s.message().find("at least 1"), std::string::npos) << s;
  }
}

TEST(StreamHeaderTest, RefusesWhatNoStudentSends) {
  Header h = Request(kTrain, 0, 2, 16);
  h[kKind] = 9;
  EXPECT_NE(CheckRequestHeader(h, 0, Limits()).message().find("unknown kind 9"), std::string::npos);
  // Another student's header, or one the spec does not have.
  absl::Status s = CheckRequestHeader(Request(kTrain, 1, 2, 16), 0, Limits());
  EXPECT_NE(s.message().find("student 1 is not the sender 0"), std::string::npos) << s;
  s = CheckRequestHeader(Request(kStop, 2, 0, 0), -1, Limits());
  EXPECT_NE(s.message().find("student 2 is not one of 2"), std::string::npos) << s;
  h = Request(kTrain, 0, 2, 16);
  h[kPacked] = 2;
  EXPECT_NE(CheckRequestHeader(h, 0, Limits()).message().find("packed must be 0 or 1, not 2"),
            std::string::npos);
  h = Request(kEval, 0, 2, 16);
  h[kRequest] = -4;
  EXPECT_NE(CheckRequestHeader(h, 0, Limits()).message().find("negative request number"),
            std::string::npos);
}

TEST(StreamHeaderTest, ATrainRequestMustAskForTheSpecsTransport) {
  for (int f : {kTransport, kTopK, kTemperatureBits, kCaptureHash}) {
    Header h = Request(kTrain, 0, 2, 16);
    h[f] += 1;
    absl::Status s = CheckRequestHeader(h, 0, Limits());
    EXPECT_NE(s.message().find("asks for another teacher output"), std::string::npos) << f << s;
    h[kKind] = kEval;  // evaluation takes dense logits whatever the transport
    EXPECT_TRUE(CheckRequestHeader(h, 0, Limits()).ok()) << f;
  }
}

TEST(StreamHeaderTest, AReplyEchoesItsRequest) {
  const Header sent = Request(kTrain, 1, 2, 16);
  EXPECT_TRUE(CheckReplyHeader(sent, sent).ok());
  for (int f : {kKind, kStudent, kRequest, kBatch, kLength, kPacked}) {
    Header reply = sent;
    reply[f] += 1;
    absl::Status s = CheckReplyHeader(reply, sent);
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << f;
    EXPECT_NE(s.message().find("while train request 3 of student 1 [2 x 16] was due"),
              std::string::npos)
        << s;
  }
  EXPECT_EQ(DescribeHeader(Header{7, 0, 1, 2, 3, 0, 0, 0, 0, 1}),
            "bad request 1 of student 0 [2 x 3, packed]");
}

}  // namespace
}  // namespace distill::worker::teacher_stream
