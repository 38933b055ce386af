#include "common/tensor_io.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string TmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d != nullptr ? d : "/tmp";
}

bool FileExists(const std::string& path) {
  struct stat sb;
  return stat(path.c_str(), &sb) == 0;
}

void WriteRaw(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
  std::fclose(f);
}

std::vector<NamedArray> SampleArrays() {
  std::vector<NamedArray> arrays;
  arrays.push_back(
      MakeFloatArray("gen/conv1/w", {2, 3}, {1, -2, 3.5f, 0, 1e-8f, -7})
          .value());
  arrays.push_back(MakeInt64Array("step", {}, {1234567890123LL}).value());
  arrays.push_back(MakeUint8Array("rng", {4}, {0, 1, 254, 255}).value());
  arrays.push_back(MakeFloatArray("empty", {0, 5}, {}).value());
  return arrays;
}

TEST(TensorIoTest, RoundTrip) {
  const std::string path = TmpDir() + "/roundtrip.pgt";
  ASSERT_TRUE(WriteTensorFile(path, SampleArrays()).ok());
  EXPECT_FALSE(FileExists(path + ".tmp." + std::to_string(getpid())));
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 4u);
  const std::vector<NamedArray> expected = SampleArrays();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*read)[i].name, expected[i].name);
    EXPECT_EQ((*read)[i].dtype, expected[i].dtype);
    EXPECT_EQ((*read)[i].dims, expected[i].dims);
    EXPECT_EQ((*read)[i].bytes, expected[i].bytes);
  }
  EXPECT_EQ(ToFloatVector((*read)[0]).value(),
            (std::vector<float>{1, -2, 3.5f, 0, 1e-8f, -7}));
  EXPECT_EQ(ToInt64Vector((*read)[1]).value(),
            (std::vector<int64_t>{1234567890123LL}));
  EXPECT_EQ(ToUint8Vector((*read)[2]).value(),
            (std::vector<uint8_t>{0, 1, 254, 255}));
  EXPECT_TRUE(ToFloatVector((*read)[3]).value().empty());
  ASSERT_NE(FindArray(*read, "rng"), nullptr);
  EXPECT_EQ(FindArray(*read, "rng")->dims, Shape({4}));
  EXPECT_EQ(FindArray(*read, "nope"), nullptr);
}

TEST(TensorIoTest, ExactLayout) {
  std::vector<NamedArray> arrays = {MakeUint8Array("ab", {2}, {7, 9}).value()};
  const std::string data = SerializeTensors(arrays).value();
  std::string expected("PGTENS01", 8);
  expected += std::string("\x01\x00\x00\x00", 4);                  // count
  expected += std::string("\x02\x00\x00\x00", 4) + "ab";           // name
  expected += std::string("\x02\x00\x00\x00", 4);                  // uint8
  expected += std::string("\x01\x00\x00\x00", 4);                  // ndim
  expected += std::string("\x02\x00\x00\x00\x00\x00\x00\x00", 8);  // dims
  expected += std::string("\x07\x09", 2);
  ASSERT_EQ(data.size(), expected.size() + 4);
  EXPECT_EQ(data.substr(0, expected.size()), expected);
}

TEST(TensorIoTest, EmptyList) {
  const std::string path = TmpDir() + "/empty.pgt";
  ASSERT_TRUE(WriteTensorFile(path, {}).ok());
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->empty());
}

TEST(TensorIoTest, MakeAndReadChecks) {
  EXPECT_FALSE(MakeFloatArray("x", {2, 2}, {1, 2, 3}).ok());
  EXPECT_FALSE(MakeFloatArray("x", {-1}, {}).ok());
  NamedArray a = MakeFloatArray("x", {2}, {1, 2}).value();
  absl::StatusOr<std::vector<int64_t>> wrong = ToInt64Vector(a);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("float32"), std::string::npos);
  a.bytes.pop_back();
  EXPECT_FALSE(ToFloatVector(a).ok());
  // Invalid arrays are rejected before anything is written.
  const std::string path = TmpDir() + "/invalid.pgt";
  EXPECT_FALSE(WriteTensorFile(path, {a}).ok());
  EXPECT_FALSE(FileExists(path));
}

TEST(TensorIoTest, TruncatedFile) {
  const std::string path = TmpDir() + "/trunc.pgt";
  const std::string data = SerializeTensors(SampleArrays()).value();
  for (size_t len :
       {size_t{0}, size_t{5}, size_t{12}, data.size() / 2, data.size() - 1}) {
    WriteRaw(path, data.substr(0, len));
    absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
    ASSERT_FALSE(read.ok()) << "len " << len;
    EXPECT_NE(read.status().message().find(path), std::string::npos)
        << read.status();
  }
}

TEST(TensorIoTest, FlippedByteFailsCrc) {
  const std::string path = TmpDir() + "/flip.pgt";
  const std::string data = SerializeTensors(SampleArrays()).value();
  for (size_t pos = 8; pos < data.size(); pos += 7) {
    std::string bad = data;
    bad[pos] ^= 0x10;
    WriteRaw(path, bad);
    absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
    ASSERT_FALSE(read.ok()) << "pos " << pos;
    EXPECT_NE(read.status().message().find(path), std::string::npos);
    if (pos < data.size() - 4) {
      EXPECT_NE(read.status().message().find("checksum"), std::string::npos)
          << read.status();
    }
  }
}

// Appends a valid crc32 trailer so corrupt sizes reach the bounds checks.
std::string Seal(std::string body) {
  const uint32_t crc = static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()),
            static_cast<uInt>(body.size())));
  body.append(reinterpret_cast<const char*>(&crc), 4);
  return body;
}

TEST(TensorIoTest, CorruptSizesWithValidCrcFailCleanly) {
  std::string body = SerializeTensors(SampleArrays()).value();
  body.resize(body.size() - 4);
  ASSERT_TRUE(ParseTensors(Seal(body), "mem").ok());
  // Offsets: count at 8, first name_len at 12, name at 16 ("gen/conv1/w", 11
  // bytes), dtype at 27, ndim at 31, dims at 35.
  struct Case {
    size_t offset;
    std::string bytes;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {8, std::string("\xff\xff\xff\x7f", 4), "count"},
      {12, std::string("\xff\xff\xff\xff", 4), "name"},
      {27, std::string("\x09\x00\x00\x00", 4), "dtype"},
      {31, std::string("\xff\x00\x00\x00", 4), "dims"},
      {35, std::string("\xff\xff\xff\xff\xff\xff\xff\x3f", 8), "exceed"},
      {35, std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8), "dims"},
  };
  for (const Case& c : cases) {
    std::string bad = body;
    bad.replace(c.offset, c.bytes.size(), c.bytes);
    absl::StatusOr<std::vector<NamedArray>> read =
        ParseTensors(Seal(bad), "corrupt.pgt");
    ASSERT_FALSE(read.ok()) << "offset " << c.offset;
    EXPECT_NE(read.status().message().find("corrupt.pgt"), std::string::npos);
    EXPECT_NE(read.status().message().find(c.expect), std::string::npos)
        << read.status();
  }
  // Trailing garbage before the crc.
  absl::StatusOr<std::vector<NamedArray>> read =
      ParseTensors(Seal(body + "xx"), "mem");
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("unexpected bytes"),
            std::string::npos);
}

TEST(TensorIoTest, WrongMagic) {
  const std::string path = TmpDir() + "/magic.pgt";
  std::string data = SerializeTensors(SampleArrays()).value();
  data[7] = '2';
  WriteRaw(path, data);
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find(path), std::string::npos);
  EXPECT_NE(read.status().message().find("magic"), std::string::npos);
}

TEST(TensorIoTest, MissingFile) {
  const std::string path = TmpDir() + "/does_not_exist.pgt";
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_TRUE(absl::IsNotFound(read.status()));
  EXPECT_NE(read.status().message().find(path), std::string::npos);
}

TEST(TensorIoTest, FailedWriteLeavesNothing) {
  const std::string dir = TmpDir() + "/no_such_dir";
  const std::string path = dir + "/x.pgt";
  absl::Status st = WriteTensorFile(path, SampleArrays());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path), std::string::npos) << st;
  EXPECT_FALSE(FileExists(dir));
  EXPECT_FALSE(FileExists(path));
}

TEST(TensorIoTest, OverwriteReplacesAtomically) {
  const std::string path = TmpDir() + "/overwrite.pgt";
  ASSERT_TRUE(WriteTensorFile(path, SampleArrays()).ok());
  std::vector<NamedArray> second = {
      MakeFloatArray("only", {1}, {42.0f}).value()};
  ASSERT_TRUE(WriteTensorFile(path, second).ok());
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ(ToFloatVector((*read)[0]).value(), std::vector<float>{42.0f});
}

}  // namespace
}  // namespace paragan
