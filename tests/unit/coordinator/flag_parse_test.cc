// ParseFlags / FlagsHelp over flags defined here (this file is their
// `defined_in`): dashed and underscored names, both value forms, bool
// switches, positionals, and errors naming the flag.
#include "coordinator/flag_parse.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"

ABSL_FLAG(std::string, fp_listen_addr, "127.0.0.1:1", "where to listen");
ABSL_FLAG(int, fp_count, 3, "how many");
ABSL_FLAG(bool, fp_verbose, false, "say more");
ABSL_FLAG(distill::coordinator::PositiveDuration, fp_wait,
          distill::coordinator::PositiveDuration{absl::Seconds(2)}, "how long");
ABSL_FLAG(distill::coordinator::ArgList, fp_arg, distill::coordinator::ArgList{},
          "an argument, repeatable");

namespace distill::coordinator {
namespace {

constexpr char kHere[] = "unit/coordinator/flag_parse_test.cc";

class FlagParseTest : public ::testing::Test {
 protected:
  absl::FlagSaver saver_;  // every test starts from the defaults
};

TEST_F(FlagParseTest, DashedAndUnderscoredNamesBothValueFormsAndPositionals) {
  absl::StatusOr<std::vector<std::string>> rest =
      ParseFlags({"first", "--fp-listen-addr", "0.0.0.0:9", "--fp_count=7", "second",
                  "--fp-verbose", "--fp-wait=1m30s"},
                 kHere);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_listen_addr), "0.0.0.0:9");
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_count), 7);
  EXPECT_TRUE(absl::GetFlag(FLAGS_fp_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_wait).value, absl::Seconds(90));
}

TEST_F(FlagParseTest, GivenHoldsTheFlagsSetByTheirDefinedNames) {
  std::set<std::string> given;
  ASSERT_TRUE(
      ParseFlags({"--fp-count=1", "x", "--fp_verbose", "--fp-count", "2"}, kHere, &given).ok());
  EXPECT_EQ(given, (std::set<std::string>{"fp_count", "fp_verbose"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_count), 2);  // the last value wins
}

TEST_F(FlagParseTest, EmptyValueAndPlainSecondsDuration) {
  ASSERT_TRUE(ParseFlags({"--fp-listen-addr", "", "--fp-wait", "0.5"}, kHere).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_listen_addr), "");
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_wait).value, absl::Milliseconds(500));
}

TEST_F(FlagParseTest, AnArgListAppendsEveryValueWhole) {
  ASSERT_TRUE(ParseFlags({"--fp-arg", "--mca", "--fp-arg=btl", "--fp-count=1", "--fp_arg",
                          "self,vader,tcp", "--fp-arg", "ssh -i key -o A=b"},
                         kHere)
                  .ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_arg).values,
            (std::vector<std::string>{"--mca", "btl", "self,vader,tcp", "ssh -i key -o A=b"}));
  // A new command line starts a new list.
  ASSERT_TRUE(ParseFlags({"--fp-arg=x"}, kHere).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_arg).values, (std::vector<std::string>{"x"}));
}

TEST_F(FlagParseTest, ErrorsNameTheFlag) {
  auto unknown = ParseFlags({"--fp-nope=1"}, kHere);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(), "unknown option --fp-nope");
  EXPECT_EQ(ParseFlags({"--fp-count"}, kHere).status().message(), "--fp-count needs a value");
  auto bad_int = ParseFlags({"--fp-count", "many"}, kHere);
  EXPECT_EQ(bad_int.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_int.status().message().rfind("--fp-count: ", 0), 0u) << bad_int.status();
  auto bad_wait = ParseFlags({"--fp-wait=soon"}, kHere);
  EXPECT_NE(bad_wait.status().message().find("expected a duration like 30s"), std::string::npos)
      << bad_wait.status();
  EXPECT_NE(ParseFlags({"--fp-wait=0s"}, kHere).status().message().find("must be > 0"),
            std::string::npos);
  EXPECT_EQ(absl::GetFlag(FLAGS_fp_count), 3);  // a refused value changes nothing
}

TEST_F(FlagParseTest, OnlyFlagsOfTheNamedFileAreAccepted) {
  auto other = ParseFlags({"--fp-count=1"}, "some/other/main.cc");
  EXPECT_EQ(other.status().message(), "unknown option --fp-count");
}

TEST_F(FlagParseTest, HelpListsEveryFlagWithDashesHelpAndDefault) {
  const std::string help = FlagsHelp("usage: prog [options]", kHere);
  EXPECT_EQ(help.rfind("usage: prog [options]\n", 0), 0u);
  EXPECT_NE(help.find("  --fp-listen-addr\n      where to listen (default: 127.0.0.1:1)\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("  --fp-count\n      how many (default: 3)\n"), std::string::npos);
  EXPECT_NE(help.find("  --fp-verbose\n      say more (default: false)\n"), std::string::npos);
  EXPECT_NE(help.find("  --fp-wait\n      how long (default: 2s)\n"), std::string::npos);
  EXPECT_LT(help.find("--fp-count"), help.find("--fp-listen-addr"));  // sorted
}

}  // namespace
}  // namespace distill::coordinator
