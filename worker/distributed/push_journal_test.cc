#include "worker/distributed/push_journal.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// "key=value" of a journal line.
std::string Field(const std::string& line, const std::string& key) {
  const std::string k = " " + key + "=";
  const size_t at = line.find(k);
  if (at == std::string::npos) return "";
  const size_t from = at + k.size();
  return line.substr(from, line.find(' ', from) - from);
}

TEST(PushJournalTest, OneLinePerEventAppendedAcrossReopens) {
  const std::string path = absl::StrCat(getenv("TEST_TMPDIR"), "/j.txt");
  std::remove(path.c_str());
  {
    auto j = PushJournal::Open(path, "w3");
    ASSERT_TRUE(j.ok()) << j.status();
    (*j)->Sent("D", 1, 77, 12);
    v1::PushResponse r;
    r.set_accepted(true);
    r.set_applied(true);
    r.set_new_version(15);
    (*j)->Answered("D", 1, 77, r);
  }
  {
    auto j = PushJournal::Open(path, "w3");  // a restarted worker appends
    ASSERT_TRUE(j.ok());
    (*j)->Sent("G", 0, 78, 4);
    (*j)->GaveUp("G", 0, 78, absl::FailedPreconditionError("ahead"));
    EXPECT_TRUE((*j)->status().ok());
  }
  const std::vector<std::string> l = Lines(path);
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0].substr(0, 7), "send t=");
  EXPECT_EQ(Field(l[0], "worker"), "w3");
  EXPECT_EQ(Field(l[0], "table"), "D");
  EXPECT_EQ(Field(l[0], "shard"), "1");
  EXPECT_EQ(Field(l[0], "id"), "77");
  EXPECT_EQ(Field(l[0], "base"), "12");
  EXPECT_EQ(l[1].substr(0, 5), "done ");
  EXPECT_EQ(Field(l[1], "accepted"), "1");
  EXPECT_EQ(Field(l[1], "applied"), "1");
  EXPECT_EQ(Field(l[1], "duplicate"), "0");
  EXPECT_EQ(Field(l[1], "version"), "15");
  EXPECT_EQ(l[3].substr(0, 5), "fail ");
  EXPECT_EQ(Field(l[3], "code"), "FAILED_PRECONDITION");
  // Times are unix nanoseconds, in order.
  EXPECT_LE(std::stoll(Field(l[0], "t")), std::stoll(Field(l[3], "t")));
  EXPECT_GT(std::stoll(Field(l[0], "t")), 1600000000LL * 1000000000LL);
}

TEST(PushJournalTest, AnUnopenableFileIsAClearError) {
  auto j = PushJournal::Open("/nonexistent-dir/j.txt", "w0");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("/nonexistent-dir/j.txt"),
            std::string::npos);
}

TEST(PushJournalTest, AFailedWriteIsKeptAsTheStatus) {
  auto j = PushJournal::Open("/dev/full", "w0");
  ASSERT_TRUE(j.ok()) << j.status();
  (*j)->Sent("D", 0, 1, 0);
  EXPECT_EQ((*j)->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE((*j)->status().message().find("No space"), std::string::npos)
      << (*j)->status();
}

}  // namespace
}  // namespace paragan
