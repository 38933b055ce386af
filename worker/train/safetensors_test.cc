#include "worker/train/safetensors.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/tensor_io.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

namespace fs = std::filesystem;

// Whether `text` contains `part` (gtest only; the system gmock is not linked).
::testing::AssertionResult Contains(const std::string& text,
                                    const std::string& part) {
  if (absl::StrContains(text, part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << text << "\" does not contain \"" << part << "\"";
}

// 8-byte little-endian length, then `header` as given (no padding), then
// `body`: for hand-made, possibly malformed files.
std::string RawFile(const std::string& header, const std::string& body,
                    uint64_t length_override = UINT64_MAX) {
  const uint64_t n =
      length_override == UINT64_MAX ? header.size() : length_override;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out + header + body;
}

std::string Floats(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

std::string DecodeError(const std::string& file) {
  auto r = DecodeSafetensors(file, "x.safetensors");
  EXPECT_FALSE(r.ok()) << "decoded a malformed file";
  if (r.ok()) return "";
  EXPECT_TRUE(Contains(std::string(r.status().message()),
                       "x.safetensors: not a valid safetensors file"));
  return std::string(r.status().message());
}

TEST(Safetensors, MatchesTheReferenceByteForByte) {
  // The reference implementation's own serialization test: one F32 tensor
  // "attn.0" of shape [1, 2, 3], no metadata: a 64-byte header, no padding.
  std::vector<float> v(6);
  for (int i = 0; i < 6; ++i) v[i] = static_cast<float>(i);
  auto t = MakeF32Tensor("attn.0", {1, 2, 3}, v);
  ASSERT_TRUE(t.ok()) << t.status();
  auto bytes = EncodeSafetensors({*t}, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const std::string header =
      "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,"
      "24]}}";
  ASSERT_EQ(header.size(), 64u);
  EXPECT_EQ(*bytes, RawFile(header, Floats(v)));
  // One byte more name: padded with 7 spaces to 72.
  t->name = "attn.00";
  bytes = EncodeSafetensors({*t}, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, RawFile("{\"attn.00\":{\"dtype\":\"F32\",\"shape\":[1,2,3],"
                            "\"data_offsets\":[0,24]}}       ",
                            Floats(v)));
}

TEST(Safetensors, EmptyFilesMatchTheReference) {
  // The reference's test_empty: "{}" padded to 8, and with metadata.
  EXPECT_EQ(*EncodeSafetensors({}, {}), RawFile("{}      ", ""));
  EXPECT_EQ(*EncodeSafetensors({}, {{"framework", "pt"}}),
            RawFile("{\"__metadata__\":{\"framework\":\"pt\"}}     ", ""));
}

TEST(Safetensors, RoundTripsTensorsAndMetadataInTheReferenceOrder) {
  std::vector<SafetensorsTensor> in;
  in.push_back(*MakeF32Tensor("b.weight", {2, 3}, {1, 2, 3, 4, 5, 6}));
  in.push_back(*MakeF32Tensor("a.gamma", {}, {0.5f}));  // a scalar
  in.push_back(*MakeI64Tensor("z.count", {}, {7}));
  in.push_back(*MakeF32Tensor("c.empty", {0, 4}, {}));
  in.push_back(*MakeI64Tensor("y.index", {3}, {-1, 0, 1LL << 40}));
  in.push_back({"d.half", "F16", {2}, std::string(4, '\1')});
  in.push_back({"x.int", "I32", {1}, std::string(4, '\2')});
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"model", "dc\"gan\\32\n"}, {"step", "12"}};
  auto bytes = EncodeSafetensors(in, meta);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // The header is padded with spaces to a multiple of 8.
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>((*bytes)[i]))
         << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes->substr(8, 16), "{\"__metadata__\":");
  auto out = DecodeSafetensors(*bytes, "mem");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->metadata, meta);
  // Data order: the reference's dtype order descending (I64, F32, I32, F16),
  // then by name.
  std::vector<std::string> names;
  for (const auto& t : out->tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"y.index", "z.count", "a.gamma",
                                             "b.weight", "c.empty", "x.int",
                                             "d.half"}));
  for (const SafetensorsTensor& t : in) {
    const SafetensorsTensor* r = out->Find(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    EXPECT_EQ(r->dtype, t.dtype) << t.name;
    EXPECT_EQ(r->shape, t.shape) << t.name;
    EXPECT_EQ(r->bytes, t.bytes) << t.name;
  }
  EXPECT_EQ(*I64Values(*out->Find("y.index")),
            (std::vector<int64_t>{-1, 0, 1LL << 40}));
  EXPECT_EQ(*F32Values(*out->Find("a.gamma")), std::vector<float>{0.5f});
  EXPECT_FALSE(F32Values(*out->Find("z.count")).ok());
}

TEST(Safetensors, ReadsHeadersTheWriterDoesNotProduce) {
  // Whitespace, escapes, keys in another order, tensors out of data order.
  const std::string header =
      "{\"b\": {\"shape\": [1], \"data_offsets\": [4, 8], \"dtype\": "
      "\"F32\"},\n \"a\\u00e9\": {\"dtype\":\"F32\",\"shape\":[1],"
      "\"data_offsets\":[0,4]}, \"__metadata__\": {\"k\\/\": \"\\ud83d\\ude00"
      "\"}}";
  auto f = DecodeSafetensors(RawFile(header, Floats({1, 2})), "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->tensors[0].name, "a\xc3\xa9");
  EXPECT_EQ(*F32Values(f->tensors[0]), std::vector<float>{1});
  EXPECT_EQ(*F32Values(f->tensors[1]), std::vector<float>{2});
  EXPECT_EQ(f->metadata.at("k/"), "\xf0\x9f\x98\x80");
  // An empty file of tensors.
  auto empty = DecodeSafetensors(RawFile("{}      ", ""), "mem");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->tensors.empty());
}

TEST(Safetensors, RefusesMalformedFiles) {
  const std::string one =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  ASSERT_TRUE(DecodeSafetensors(RawFile(one, Floats({1, 2})), "x").ok());

  EXPECT_TRUE(Contains(DecodeError("abc"), "only 3 bytes"));
  EXPECT_TRUE(Contains(DecodeError(RawFile(one, Floats({1, 2}), 1000)),
                       "header length 1000 runs past the end"));
  EXPECT_TRUE(Contains(DecodeError(RawFile(one, "", 200'000'000)),
                       "exceeds the limit"));
  EXPECT_TRUE(Contains(DecodeError(RawFile("[1,2]   ", "")),
                       "does not start with '{'"));
  EXPECT_TRUE(Contains(DecodeError(RawFile("{\"a\":", "")), "header JSON"));
  EXPECT_TRUE(
      Contains(DecodeError(RawFile("{} x", "")), "unexpected text after"));
  EXPECT_TRUE(
      Contains(DecodeError(RawFile("{\"a\xff\":1}", "")), "not valid UTF-8"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}",
          Floats({1, 2}))),
      "unknown dtype \"F31\""));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
          Floats({1, 2}))),
      "needs 3 x 4 bytes but data_offsets [0, 8] hold 8"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
          Floats({1, 2}))),
      "shape holds -2, not a non-negative integer"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
          Floats({1, 2}))),
      "shape holds 2.5"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}",
          Floats({1, 2}))),
      "run past the 8 bytes of data"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
          Floats({1, 2}))),
      "end before they begin"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          Floats({1, 2, 3}))),
      "tensor 'b' (bytes 4-12) overlaps tensor 'a' (bytes 0-8)"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
          Floats({1, 2}))),
      "bytes 0-4 of the data belong to no tensor"));
  EXPECT_TRUE(Contains(DecodeError(RawFile(one, Floats({1, 2, 3}))),
                       "4 bytes after the last tensor"));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile(
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
          Floats({1, 2}))),
      "duplicate key \"a\""));
  EXPECT_TRUE(Contains(
      DecodeError(RawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "")),
      "tensor 'a' lacks data_offsets"));
  EXPECT_TRUE(
      Contains(DecodeError(RawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],"
                                   "\"data_offsets\":[0,0],\"x\":1}}",
                                   "")),
               "unknown field \"x\""));
  EXPECT_TRUE(
      Contains(DecodeError(RawFile("{\"__metadata__\":{\"step\":3}}", "")),
               "metadata \"step\" is a number, not a string"));
  EXPECT_TRUE(Contains(DecodeError(RawFile("{\"a\":[1]}", "")),
                       "tensor 'a' is an array, not an object"));
}

TEST(Safetensors, WriterRefusesInconsistentTensors) {
  SafetensorsTensor t{"a", "F32", {3}, Floats({1, 2})};
  auto r = EncodeSafetensors({t}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      Contains(std::string(r.status().message()), "8 bytes for F32 shape [3]"));
  EXPECT_FALSE(EncodeSafetensors({{"a", "F33", {2}, Floats({1, 2})}}, {}).ok());
  EXPECT_FALSE(
      EncodeSafetensors({{"a", "F32", {-2}, Floats({1, 2})}}, {}).ok());
  auto a = *MakeF32Tensor("a", {1}, {1});
  auto dup = EncodeSafetensors({a, a}, {});
  ASSERT_FALSE(dup.ok());
  EXPECT_TRUE(Contains(std::string(dup.status().message()), "duplicate"));
  a.name = "__metadata__";
  EXPECT_FALSE(EncodeSafetensors({a}, {}).ok());
  EXPECT_FALSE(MakeF32Tensor("a", {2, 2}, {1, 2, 3}).ok());
  EXPECT_FALSE(MakeI64Tensor("a", {2}, {1}).ok());
}

TEST(Safetensors, WritesAtomicallyAndOverwritesOnlyWhenAsked) {
  const std::string dir = ::testing::TempDir() + "/safetensors_write";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = dir + "/g.safetensors";
  auto t1 = *MakeF32Tensor("w", {2}, {1, 2});
  auto t2 = *MakeF32Tensor("w", {2}, {3, 4});
  ASSERT_TRUE(WriteSafetensorsFile(path, {t1}, {{"step", "1"}}, false).ok());
  absl::Status again = WriteSafetensorsFile(path, {t2}, {}, false);
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
  EXPECT_TRUE(Contains(std::string(again.message()), "--overwrite"));
  auto f = ReadSafetensorsFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*F32Values(f->tensors[0]), (std::vector<float>{1, 2}));
  EXPECT_EQ(f->metadata.at("step"), "1");
  ASSERT_TRUE(WriteSafetensorsFile(path, {t2}, {}, true).ok());
  f = ReadSafetensorsFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*F32Values(f->tensors[0]), (std::vector<float>{3, 4}));
  // Only the output is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "g.safetensors");
  }
  EXPECT_EQ(files, 1);
  // A missing directory is an error, and leaves nothing.
  EXPECT_FALSE(
      WriteSafetensorsFile(dir + "/no/such/g.safetensors", {t1}, {}, false)
          .ok());
  auto missing = ReadSafetensorsFile(dir + "/none.safetensors");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace paragan
