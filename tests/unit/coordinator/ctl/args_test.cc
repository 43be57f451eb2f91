#include "coordinator/ctl/args.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace distill::coordinator::ctl {
namespace {

TEST(ParseArgsTest, CommandPositionalAndFlagsInBothForms) {
  auto a = ParseArgs({"submit", "job.yaml", "--watch", "--priority", "5", "--request-id=r1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "submit");
  ASSERT_EQ(a->positional.size(), 1u);
  EXPECT_EQ(a->positional[0], "job.yaml");
  EXPECT_TRUE(a->Has("watch"));
  EXPECT_EQ(*a->Int("priority", 0), 5);
  EXPECT_EQ(a->Get("request-id"), "r1");
  EXPECT_FALSE(a->Has("max-retries"));
}

TEST(ParseArgsTest, GlobalOptionsBeforeOrAfterTheCommand) {
  auto a = ParseArgs({"--coordinator", "h:1", "get", "j1", "--token=t", "--tls-ca", "ca.pem"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->coordinator, "h:1");
  EXPECT_EQ(a->token, "t");
  EXPECT_EQ(a->tls_ca, "ca.pem");
  EXPECT_EQ(a->command, "get");
  EXPECT_EQ(a->positional, std::vector<std::string>{"j1"});
}

TEST(ParseArgsTest, LogsDashFIsFollow) {
  auto a = ParseArgs({"logs", "j1", "-f", "--rank", "1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->Has("follow"));
  EXPECT_EQ(*a->Int("rank", -1), 1);
}

TEST(ParseArgsTest, ReportTakesOut) {
  auto a = ParseArgs({"report", "s1", "--out", "dir"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "report");
  EXPECT_EQ(a->positional, std::vector<std::string>{"s1"});
  EXPECT_EQ(a->Get("out"), "dir");
  auto several = ParseArgs({"report", "s1", "s2", "s3", "--out", "dir"});
  ASSERT_TRUE(several.ok()) << several.status();
  EXPECT_EQ(several->positional, (std::vector<std::string>{"s1", "s2", "s3"}));
  EXPECT_EQ(ParseArgs({"report", "--out", "dir"}).status().message(), "report: missing ID");
  EXPECT_EQ(ParseArgs({"get", "s1", "s2"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseArgs({"get", "s1", "--out", "dir"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseArgsTest, HelpNeedsNoCommand) {
  for (auto argv : {std::vector<std::string>{"--help"},
                    {"help"},
                    {"-h", "submit"},
                    {"help", "--force=yes", "--frob"}}) {
    auto a = ParseArgs(argv);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->help);
  }
}

TEST(ParseArgsTest, UsageErrorsAreInvalidArgumentNamingTheProblem) {
  const std::map<std::string, std::vector<std::string>> cases = {
      {"no command given", {}},
      {"unknown command 'frob'", {"frob"}},
      {"get: missing ID", {"get"}},
      {"get: expected one ID, got 2", {"get", "a", "b"}},
      {"list: unexpected argument 'x'", {"list", "x"}},
      {"cancel: unknown option '--hard'", {"cancel", "j", "--hard"}},
      {"--priority needs a value", {"submit", "s.yaml", "--priority"}},
      {"--force takes no value", {"cancel", "j", "--force=yes"}},
      {"unknown option '-x'", {"get", "j", "-x"}},
      {"watch: unknown option '--watch'", {"watch", "j", "--watch"}},
      {"delete: missing ID", {"delete"}},
      {"delete: unknown option '--force'", {"delete", "j", "--force"}},
  };
  for (const auto& [want, argv] : cases) {
    auto a = ParseArgs(argv);
    ASSERT_FALSE(a.ok()) << want;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_NE(a.status().message().find(want), std::string::npos) << a.status().message();
  }
}

TEST(ParseArgsTest, OptionsBeforeTheCommandAndUnderscoredNames) {
  auto a =
      ParseArgs({"--priority", "4", "--max_retries=0", "submit", "s.yaml", "--request_id", "r"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->flags, (std::map<std::string, std::string>{
                          {"priority", "4"}, {"max-retries", "0"}, {"request-id", "r"}}));
  EXPECT_EQ(a->positional, std::vector<std::string>{"s.yaml"});
}

TEST(ParseArgsTest, OnlyTheOptionsOfThisCommandLineCount) {
  ASSERT_TRUE(ParseArgs({"--token", "t", "logs", "j", "--rank", "2", "--follow"}).ok());
  auto a = ParseArgs({"logs", "j"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->flags.empty());
  EXPECT_EQ(a->token, "");
}

TEST(ParseArgsTest, OptionErrorsNameTheOption) {
  const std::map<std::string, std::vector<std::string>> cases = {
      {"get: unknown option '--force'", {"get", "j", "--force"}},  // another command's
      {"get: unknown option '--follow'", {"get", "j", "-f"}},
      {"list: unknown option '--rank'", {"list", "--rank", "1"}},
      {"cancel: unknown option '--hard'", {"--hard", "cancel", "j"}},
      {"--json takes no value", {"get", "j", "--json=true"}},
      {"--page-size: ", {"list", "--page-size", "ten"}},
      {"--rank: ", {"logs", "j", "--rank=x"}},
      {"--priority: ", {"submit", "s.yaml", "--priority", "high"}},
      {"--max-retries: ", {"submit", "s.yaml", "--max-retries", "1.5"}},
      {"--attempt: ", {"logs", "j", "--attempt", ""}},
      {"--token needs a value", {"list", "--token"}},
  };
  for (const auto& [want, argv] : cases) {
    auto a = ParseArgs(argv);
    ASSERT_FALSE(a.ok()) << want;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_EQ(a.status().message().rfind(want, 0), 0u) << a.status().message();
  }
}

TEST(UsageTextTest, NamesTheCommandsAndEveryOptionWithItsHelp) {
  const std::string usage = UsageText();
  EXPECT_EQ(usage.rfind("usage: distillctl", 0), 0u);
  for (const char* command :
       {"submit SPEC", "get ID", "list", "watch ID", "cancel ID", "delete ID", "logs ID",
        "report ID"})
    EXPECT_NE(usage.find(command), std::string::npos) << command;
  for (const char* option :
       {"coordinator", "token", "token-file", "tls-ca", "watch", "priority", "request-id",
        "max-retries", "json", "state", "page-size", "force", "follow", "rank", "attempt", "out"}) {
    const size_t at = usage.find(absl::StrCat("\n  --", option, "\n      "));
    ASSERT_NE(at, std::string::npos) << option << "\n" << usage;
    const size_t end = usage.find('\n', usage.find("\n      ", at + 1) + 1);
    EXPECT_NE(usage.find(" (default: ", at), std::string::npos);
    EXPECT_GT(end - at, 30u) << option << ": no help text";
  }
  EXPECT_NE(usage.find("--coordinator\n      host:port"), std::string::npos);
  EXPECT_NE(usage.find("--page-size\n      list: "), std::string::npos);
}

TEST(CtlArgsTest, IntRejectsNonNumbers) {
  CtlArgs a;  // as built by hand (ParseArgs already refuses a bad value)
  a.flags["page-size"] = "ten";
  auto n = a.Int("page-size", 0);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("--page-size"), std::string::npos);
  EXPECT_EQ(*a.Int("rank", -1), -1);
}

std::function<std::string(const char*)> Env(std::map<std::string, std::string> vars) {
  return [vars](const char* name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
}

TEST(ResolveConnectionTest, DefaultsWithoutFlagsOrEnvironment) {
  auto c = ResolveConnection(CtlArgs{}, Env({}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->address, "127.0.0.1:50051");
  EXPECT_EQ(c->token, "");
  EXPECT_EQ(c->tls_ca_pem, "");
}

TEST(ResolveConnectionTest, FlagsWinOverEnvironment) {
  CtlArgs args;
  auto env = Env({{"DISTILL_COORDINATOR", "env:1"}, {"DISTILL_TOKEN", "envtok"}});
  auto c = ResolveConnection(args, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->address, "env:1");
  EXPECT_EQ(c->token, "envtok");
  args.coordinator = "flag:2";
  args.token = "flagtok";
  c = ResolveConnection(args, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->address, "flag:2");
  EXPECT_EQ(c->token, "flagtok");
}

TEST(ResolveConnectionTest, TokenFileIsReadAndTrimmed) {
  const std::string path = ::testing::TempDir() + "/ctl_token";
  std::ofstream(path) << "  abc123\n";
  CtlArgs args;
  args.token_file = path;
  auto c = ResolveConnection(args, Env({{"DISTILL_TOKEN", "envtok"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "abc123");
  std::remove(path.c_str());
}

TEST(ResolveConnectionTest, MissingFilesAndConflictingTokensAreErrors) {
  CtlArgs args;
  args.token_file = "/nonexistent/token";
  EXPECT_EQ(ResolveConnection(args, Env({})).status().code(), absl::StatusCode::kNotFound);
  args.token = "t";
  EXPECT_EQ(ResolveConnection(args, Env({})).status().code(), absl::StatusCode::kInvalidArgument);
  CtlArgs tls;
  tls.tls_ca = "/nonexistent/ca.pem";
  auto c = ResolveConnection(tls, Env({}));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/ca.pem"), std::string::npos);
}

}  // namespace
}  // namespace distill::coordinator::ctl
