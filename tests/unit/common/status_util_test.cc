#include "common/status_util.h"

#include <gtest/gtest.h>

namespace distill::common {
namespace {

TEST(StatusUtilTest, WithPrefixKeepsTheCodeAndLeavesOkAlone) {
  const absl::Status st = WithPrefix(absl::NotFoundError("no such file"), "spec.yaml");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "spec.yaml: no such file");
  EXPECT_TRUE(WithPrefix(absl::OkStatus(), "spec.yaml").ok());
}

}  // namespace
}  // namespace distill::common
