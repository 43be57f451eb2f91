#include "coordinator/ctl/args.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

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

TEST(ParseArgsTest, HelpNeedsNoCommand) {
  for (auto argv : {std::vector<std::string>{"--help"}, {"help"}, {"-h", "submit"}}) {
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
  };
  for (const auto& [want, argv] : cases) {
    auto a = ParseArgs(argv);
    ASSERT_FALSE(a.ok()) << want;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_NE(a.status().message().find(want), std::string::npos) << a.status().message();
  }
}

TEST(CtlArgsTest, IntRejectsNonNumbers) {
  auto a = ParseArgs({"list", "--page-size", "ten"});
  ASSERT_TRUE(a.ok()) << a.status();
  auto n = a->Int("page-size", 0);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("--page-size"), std::string::npos);
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
