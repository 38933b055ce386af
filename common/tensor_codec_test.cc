#include "common/tensor_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace paragan {
namespace {

std::vector<float> Ramp(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  // Exact in bfloat16 (at most 8 significant bits).
  for (int64_t i = 0; i < n; ++i)
    v[i] = 0.5f * static_cast<float>(i % 200 - 100);
  return v;
}

std::vector<v1::TensorChunk> Chunks(const std::string& name, const Shape& shape,
                                    const std::vector<float>& values,
                                    v1::DType dtype, int64_t chunk_bytes) {
  v1::TensorChunk header;
  header.set_table("D");
  header.set_tensor_name(name);
  for (int64_t d : shape) header.add_shape(d);
  header.set_base_version(7);
  header.set_worker_id("w");
  std::vector<v1::TensorChunk> out;
  EXPECT_TRUE(EmitTensorChunks(header, values.data(),
                               static_cast<int64_t>(values.size()), dtype,
                               chunk_bytes, [&](const v1::TensorChunk& c) {
                                 out.push_back(c);
                                 return true;
                               }));
  return out;
}

TEST(BFloat16Test, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even.
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(
      FloatToBFloat16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(INFINITY)), INFINITY);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(-2.5f)), -2.5f);
}

TEST(ChunkTest, RoundTripFloat32AndBFloat16) {
  const std::vector<float> values = Ramp(1000);
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16}) {
    const auto chunks = Chunks("x", {10, 100}, values, dtype, 1000);
    const int64_t elem = WireDTypeSize(dtype);
    EXPECT_EQ(chunks.size(), static_cast<size_t>((1000 * elem + 999) / 1000));
    ChunkAssembler a({});
    for (const auto& c : chunks) ASSERT_TRUE(a.Add(c).ok());
    ASSERT_TRUE(a.Finish().ok());
    EXPECT_EQ(a.table(), "D");
    EXPECT_EQ(a.worker_id(), "w");
    EXPECT_EQ(a.base_version(), 7);
    EXPECT_EQ(a.payload_bytes(), 1000 * elem);
    const ReceivedTensor& t = a.tensors().at("x");
    EXPECT_EQ(t.shape, (Shape{10, 100}));
    EXPECT_EQ(t.values, values);  // the ramp is exact in bfloat16 too
  }
}

TEST(ChunkTest, EmptyTensorIsOneLastChunk) {
  const auto chunks = Chunks("e", {0, 3}, {}, v1::FLOAT32, 64);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_TRUE(chunks[0].last());
  ChunkAssembler a({});
  ASSERT_TRUE(a.Add(chunks[0]).ok());
  EXPECT_TRUE(a.Finish().ok());
}

TEST(ChunkTest, MalformedStreamsRejected) {
  const std::vector<float> values = Ramp(100);
  const auto chunks = Chunks("x", {100}, values, v1::FLOAT32, 128);
  ASSERT_EQ(chunks.size(), 4u);
  auto run = [&](std::vector<v1::TensorChunk> cs, int64_t max_bytes = 1 << 30) {
    ChunkAssembler::Options o;
    o.max_total_bytes = max_bytes;
    ChunkAssembler a(o);
    for (const auto& c : cs) {
      absl::Status st = a.Add(c);
      if (!st.ok()) return st;
    }
    return a.Finish();
  };
  EXPECT_TRUE(run(chunks).ok());
  // Truncated: the stream ends before the last chunk.
  EXPECT_EQ(run({chunks[0], chunks[1]}).code(),
            absl::StatusCode::kInvalidArgument);
  // Missing middle chunk.
  EXPECT_FALSE(run({chunks[0], chunks[2], chunks[3]}).ok());
  // Last chunk short of total_bytes.
  auto short_last = chunks;
  short_last[3].mutable_data()->resize(4);
  EXPECT_NE(run(short_last).message().find("truncated"), std::string::npos);
  // Data beyond total_bytes.
  auto overrun = chunks;
  overrun[3].mutable_data()->append(8, '\0');
  EXPECT_NE(run(overrun).message().find("overruns"), std::string::npos);
  // total_bytes disagreeing with the shape.
  auto bad_total = chunks;
  for (auto& c : bad_total) c.set_total_bytes(1 << 20);
  EXPECT_NE(run(bad_total).message().find("total_bytes"), std::string::npos);
  // Shape changes mid-tensor.
  auto reshaped = chunks;
  reshaped[1].clear_shape();
  reshaped[1].add_shape(10);
  reshaped[1].add_shape(10);
  EXPECT_FALSE(run(reshaped).ok());
  // A different base_version in the same stream.
  auto mixed = chunks;
  mixed[2].set_base_version(8);
  EXPECT_FALSE(run(mixed).ok());
  // The same tensor twice.
  auto twice = chunks;
  twice.insert(twice.end(), chunks.begin(), chunks.end());
  EXPECT_NE(run(twice).message().find("twice"), std::string::npos);
  // Over the byte limit: refused before any payload is kept.
  EXPECT_EQ(run(chunks, 100).code(), absl::StatusCode::kResourceExhausted);
  // Unknown dtype, negative dim, odd bfloat16 bytes.
  auto bad_dtype = chunks;
  bad_dtype[0].set_dtype(static_cast<v1::DType>(9));
  EXPECT_FALSE(run(bad_dtype).ok());
  auto negative = chunks;
  negative[0].set_shape(0, -100);
  EXPECT_FALSE(run(negative).ok());
  auto bf = Chunks("y", {3}, {1, 2, 3}, v1::BFLOAT16, 64);
  bf[0].mutable_data()->resize(5);
  EXPECT_FALSE(run(bf).ok());
  // No chunks at all.
  EXPECT_FALSE(run({}).ok());
}

TEST(ChunkTest, ValidatorSeesEachNewTensorOnce) {
  int calls = 0;
  ChunkAssembler::Options o;
  o.validate_new_tensor = [&](const v1::TensorChunk& c) {
    ++calls;
    return c.tensor_name() == "bad" ? absl::InvalidArgumentError("bad tensor")
                                    : absl::OkStatus();
  };
  ChunkAssembler a(o);
  for (const auto& c : Chunks("x", {100}, Ramp(100), v1::FLOAT32, 64)) {
    ASSERT_TRUE(a.Add(c).ok());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(a.Add(Chunks("bad", {1}, {1}, v1::FLOAT32, 64)[0]).ok());
}

}  // namespace
}  // namespace paragan
