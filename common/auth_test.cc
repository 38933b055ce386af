#include "common/auth.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>

namespace paragan {
namespace {

std::string WriteFile(const std::string& name, const std::string& contents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
  return path;
}

TEST(AuthTokenTest, ReadsTheFileWithoutItsTrailingNewline) {
  auto t = ReadAuthToken(WriteFile("good", "0123456789abcdef0123\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "0123456789abcdef0123");
}

TEST(AuthTokenTest, RefusesShortSpacedMissingTokensNamingTheFile) {
  const std::string short_path = WriteFile("short", "abc\n");
  auto s = ReadAuthToken(short_path);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
  EXPECT_NE(s.status().message().find(short_path), std::string::npos);
  EXPECT_NE(s.status().message().find("at least 16"), std::string::npos);
  auto e = ReadAuthToken(WriteFile("empty", ""));
  EXPECT_TRUE(absl::IsInvalidArgument(e.status()));
  auto w = ReadAuthToken(WriteFile("spaced", "0123456789 abcdef0123"));
  EXPECT_TRUE(absl::IsInvalidArgument(w.status()));
  EXPECT_NE(w.status().message().find("whitespace"), std::string::npos);
  auto m = ReadAuthToken("/nonexistent/token");
  EXPECT_TRUE(absl::IsNotFound(m.status())) << m.status();
  EXPECT_NE(m.status().message().find("/nonexistent/token"), std::string::npos);
}

TEST(AuthTokenTest, GeneratedTokensAre64HexDigitsAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) {
    auto t = GenerateAuthToken();
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->size(), 64u);
    EXPECT_EQ(t->find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(*t);
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(AuthTokenTest, ConstantTimeEqualsIsEquality) {
  EXPECT_TRUE(ConstantTimeEquals("secret-token-0123", "secret-token-0123"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token-0124", "secret-token-0123"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token-012", "secret-token-0123"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token-01234", "secret-token-0123"));
  EXPECT_FALSE(ConstantTimeEquals("", "secret-token-0123"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(CallAuthenticatorTest, ChecksTokensAndCountsRefusals) {
  CallAuthenticator off("", "test");
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.CheckToken("anything", "peer", "call").ok());
  CallAuthenticator on("0123456789abcdef", "test service");
  EXPECT_TRUE(on.enabled());
  EXPECT_TRUE(on.CheckToken("0123456789abcdef", "peer", "call").ok());
  absl::Status st = on.CheckToken("0123456789abcdeX", "peer", "call");
  EXPECT_TRUE(absl::IsUnauthenticated(st));
  EXPECT_NE(st.message().find("test service requires a bearer token"),
            std::string::npos);
  EXPECT_TRUE(absl::IsUnauthenticated(on.CheckToken("", "peer", "call")));
  EXPECT_EQ(on.refused(), 2);
}

}  // namespace
}  // namespace paragan
