#include "server/tensor_wire.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/tensor_codec.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// `bytes` as a ByteBuffer cut into slices of `piece` bytes (the last
// shorter), as gRPC may hand a message over.
grpc::ByteBuffer Cut(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    slices.emplace_back(bytes.data() + i, std::min(piece, bytes.size() - i));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

v1::TensorChunk Header() {
  v1::TensorChunk h;
  h.set_table("G");
  h.set_tensor_name("gen.fc.weight");
  h.set_dtype(v1::FLOAT32);
  h.add_shape(3);
  h.add_shape(5);
  h.set_total_bytes(60);
  h.set_offset(8);
  h.set_base_version(41);
  h.set_worker_id("w7");
  h.set_last(true);
  h.set_kind(v1::VALUE);
  return h;
}

std::string Joined(const ChunkView& v) {
  std::string out;
  for (absl::string_view p : v.data) out.append(p.data(), p.size());
  return out;
}

TEST(TensorWireTest, EncodedChunkIsAnOrdinaryTensorChunk) {
  const std::string data = "0123456789abcdef";
  v1::TensorChunk expected = Header();
  expected.set_data(data);
  for (bool zero_copy : {false, true}) {
    auto owner = std::make_shared<std::string>(data);
    const grpc::Slice slice =
        DataSlice(owner->data(), owner->size(),
                  zero_copy ? SliceOwner(owner) : SliceOwner());
    const grpc::ByteBuffer message = EncodeChunk(Header(), slice);
    v1::TensorChunk parsed;
    ASSERT_TRUE(parsed.ParseFromString(Flatten(message)));
    EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString());
  }
}

TEST(TensorWireTest, ZeroCopySliceKeepsItsOwnerUntilReleased) {
  auto owner = std::make_shared<std::vector<float>>(100, 1.5f);
  std::weak_ptr<std::vector<float>> watch = owner;
  {
    grpc::ByteBuffer message =
        EncodeChunk(Header(), DataSlice(owner->data(), 400, SliceOwner(owner)));
    owner.reset();
    EXPECT_FALSE(watch.expired());  // the message still references it
    ChunkView view;
    ASSERT_TRUE(DecodeChunk(message, &view).ok());
    ASSERT_EQ(view.data_size, 400);
    float first;
    std::memcpy(&first, view.data[0].data(), 4);
    EXPECT_EQ(first, 1.5f);
  }
  EXPECT_TRUE(watch.expired());
}

TEST(TensorWireTest, DecodesProtobufBytesSplitAnywhere) {
  v1::TensorChunk chunk = Header();
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  chunk.set_data(data);
  const std::string bytes = chunk.SerializeAsString();
  for (size_t piece : {size_t{1}, size_t{3}, size_t{64}, bytes.size()}) {
    ChunkView view;
    ASSERT_TRUE(DecodeChunk(Cut(bytes, piece), &view).ok()) << piece;
    EXPECT_EQ(view.data_size, 1000);
    EXPECT_EQ(Joined(view), data) << piece;
    EXPECT_EQ(view.header.SerializeAsString(), Header().SerializeAsString());
  }
}

TEST(TensorWireTest, DataFieldAnywhereAndLastOccurrenceWins) {
  // data first, then the header fields, then data again.
  v1::TensorChunk first;
  first.set_data("old");
  v1::TensorChunk last;
  last.set_data("new!");
  const std::string bytes = first.SerializeAsString() +
                            Header().SerializeAsString() +
                            last.SerializeAsString();
  ChunkView view;
  ASSERT_TRUE(DecodeChunk(Cut(bytes, 5), &view).ok());
  EXPECT_EQ(Joined(view), "new!");
  EXPECT_EQ(view.data_size, 4);
  EXPECT_EQ(view.header.tensor_name(), "gen.fc.weight");
}

TEST(TensorWireTest, EmptyMessageAndEmptyData) {
  ChunkView view;
  ASSERT_TRUE(DecodeChunk(Cut("", 1), &view).ok());
  EXPECT_EQ(view.data_size, 0);
  const grpc::ByteBuffer message = EncodeChunk(Header(), grpc::Slice());
  ASSERT_TRUE(DecodeChunk(message, &view).ok());
  EXPECT_EQ(view.data_size, 0);
  EXPECT_TRUE(view.data.empty());
  EXPECT_EQ(view.header.worker_id(), "w7");
}

TEST(TensorWireTest, MalformedMessagesAreRefusedWithAReason) {
  v1::TensorChunk chunk;
  chunk.set_data(std::string(100, 'x'));
  const std::string data_only = chunk.SerializeAsString();
  const std::string header = Header().SerializeAsString();
  struct Case {
    std::string bytes;
    std::string says;
  };
  const std::vector<Case> cases = {
      {data_only.substr(0, data_only.size() - 1), "longer than the message"},
      {header.substr(0, 2), "truncated field 1 "},
      {std::string("\x3a\xff\xff", 3), "bad length"},
      {std::string("\x00\x01", 2), "field number 0"},
      {std::string("\x0b", 1), "unsupported wire type 3"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
       "bad tag"},
      // Field 1 (table, a string) that is not UTF-8.
      {std::string("\x0a\x02\xff\xfe", 4), "do not parse"},
  };
  for (const Case& c : cases) {
    ChunkView view;
    const absl::Status st = DecodeChunk(Cut(c.bytes, 2), &view);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_NE(st.message().find(c.says), std::string::npos)
        << st.message() << " / expected: " << c.says;
  }
}

TEST(TensorWireTest, ChunkBuffersMatchProtobufChunks) {
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.37f * i - 100.0f;
  values[5] = std::numeric_limits<float>::quiet_NaN();
  values[6] = -std::numeric_limits<float>::infinity();
  v1::TensorChunk header;
  header.set_table("D");
  header.set_tensor_name("t");
  header.add_shape(1000);
  header.set_base_version(3);
  auto owner = std::make_shared<std::vector<float>>(values);
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16}) {
    for (int64_t chunk_bytes : {int64_t{64}, int64_t{1000}, int64_t{1} << 20}) {
      std::vector<std::string> expected, got;
      EmitTensorChunks(header, values.data(), 1000, dtype, chunk_bytes,
                       [&](const v1::TensorChunk& c) {
                         expected.push_back(c.SerializeAsString());
                         return true;
                       });
      int64_t total = 0;
      EmitTensorChunkBuffers(header, owner->data(), 1000, dtype, chunk_bytes,
                             owner,
                             [&](const grpc::ByteBuffer& m, int64_t bytes) {
                               got.push_back(Flatten(m));
                               total += bytes;
                               return true;
                             });
      ASSERT_EQ(got.size(), expected.size());
      EXPECT_EQ(total, 1000 * WireDTypeSize(dtype));
      for (size_t i = 0; i < got.size(); ++i) {
        v1::TensorChunk a, b;
        ASSERT_TRUE(a.ParseFromString(got[i]));
        ASSERT_TRUE(b.ParseFromString(expected[i]));
        EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString())
            << v1::DType_Name(dtype) << " chunk " << i;
      }
    }
  }
}

TEST(TensorWireTest, EmitStopsWhenTheReceiverDoes) {
  std::vector<float> values(100, 1.0f);
  int calls = 0;
  EXPECT_FALSE(EmitTensorChunkBuffers(
      v1::TensorChunk(), values.data(), 100, v1::FLOAT32, 40, nullptr,
      [&](const grpc::ByteBuffer&, int64_t) { return ++calls < 2; }));
  EXPECT_EQ(calls, 2);
}

TEST(TensorWireTest, AssemblerTakesPiecesSplitInsideElements) {
  // bfloat16 bytes split at odd offsets, and float32 bytes at offsets that
  // are not multiples of 4, reassemble to the same floats.
  std::vector<float> values(257);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 1.5f * i - 17.25f;
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16}) {
    v1::TensorChunk chunk;
    chunk.set_table("G");
    chunk.set_tensor_name("x");
    chunk.add_shape(257);
    std::string wire;
    EmitTensorChunks(chunk, values.data(), 257, dtype, 1 << 20,
                     [&](const v1::TensorChunk& c) {
                       chunk = c;
                       return true;
                     });
    wire = chunk.data();
    std::vector<absl::string_view> pieces;
    for (size_t i = 0; i < wire.size(); i += 7) {
      pieces.emplace_back(wire.data() + i,
                          std::min<size_t>(7, wire.size() - i));
    }
    ChunkAssembler assembler({});
    ASSERT_TRUE(
        assembler.Add(chunk, pieces, static_cast<int64_t>(wire.size())).ok());
    ASSERT_TRUE(assembler.Finish().ok());
    const std::vector<float>& got = assembler.tensors().at("x").values;
    for (size_t i = 0; i < values.size(); ++i) {
      const float want = dtype == v1::FLOAT32
                             ? values[i]
                             : BFloat16ToFloat(FloatToBFloat16(values[i]));
      ASSERT_EQ(got[i], want) << v1::DType_Name(dtype) << " " << i;
    }
  }
}

TEST(TensorWireTest, VectorizedBFloat16MatchesScalar) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               1.00390625f,  // ties to even
                               1.01171875f,
                               3.4e38f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               std::numeric_limits<float>::signaling_NaN(),
                               1e-40f};
  for (int i = 0; i < 1000; ++i) values.push_back(std::sin(i) * 1e3f);
  std::vector<char> out(2 * values.size());
  FloatsToBFloat16(values.data(), static_cast<int64_t>(values.size()),
                   out.data());
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, out.data() + 2 * i, 2);
    EXPECT_EQ(h, FloatToBFloat16(values[i])) << i;
  }
}

TEST(TensorWireTest, ChunkWriterPacksSmallTensorsAndKeepsLargeOnesWhole) {
  // 50 small tensors (40 bytes each), one of 1000 floats (4000 bytes, split
  // into 1024-byte chunks), then 3 more small ones; chunk_bytes 1024 packs
  // small tensors (at most 128 bytes) up to 1024 bytes a message.
  struct T {
    std::string name;
    std::vector<float> values;
  };
  std::vector<T> tensors;
  for (int i = 0; i < 53; ++i) {
    const size_t n = i == 50 ? 1000 : 10;
    T t{"t" + std::to_string(i), std::vector<float>(n)};
    for (size_t k = 0; k < n; ++k) t.values[k] = 0.5f * i + k;
    tensors.push_back(std::move(t));
  }
  std::swap(tensors[50], tensors[52]);
  std::vector<grpc::ByteBuffer> messages;
  ChunkWriter out(1024, [&](const grpc::ByteBuffer& m) {
    messages.push_back(m);
    return true;
  });
  for (const T& t : tensors) {
    v1::TensorChunk h;
    h.set_table("D");
    h.set_tensor_name(t.name);
    h.add_shape(static_cast<int64_t>(t.values.size()));
    h.set_base_version(9);
    h.set_worker_id("w");
    auto owner = std::make_shared<std::vector<float>>(t.values);
    ASSERT_TRUE(out.Add(h, owner->data(), static_cast<int64_t>(owner->size()),
                        v1::FLOAT32, owner));
  }
  ASSERT_TRUE(out.Flush());
  EXPECT_EQ(out.data_bytes(), 52 * 40 + 4000);
  EXPECT_EQ(out.messages(), static_cast<int64_t>(messages.size()));
  // 52 small tensors in messages of at most 25, plus 4 chunks of the large.
  EXPECT_LE(messages.size(), 8u);
  EXPECT_GE(messages.size(), 7u);
  ChunkAssembler assembler({});
  ChunkView view;
  for (const grpc::ByteBuffer& m : messages) {
    ASSERT_TRUE(AddMessage(m, &view, &assembler).ok());
    // Every message is an ordinary TensorChunk to protobuf.
    v1::TensorChunk parsed;
    EXPECT_TRUE(parsed.ParseFromString(Flatten(m)));
  }
  ASSERT_TRUE(assembler.Finish().ok());
  ASSERT_EQ(assembler.tensors().size(), tensors.size());
  for (const T& t : tensors) {
    EXPECT_EQ(assembler.tensors().at(t.name).values, t.values) << t.name;
  }
}

TEST(TensorWireTest, ChunkWriterStopsAfterAFailedWrite) {
  int writes = 0;
  ChunkWriter out(64, [&](const grpc::ByteBuffer&) { return ++writes < 2; });
  std::vector<float> big(100, 1.0f);
  v1::TensorChunk h;
  h.set_tensor_name("x");
  h.add_shape(100);
  EXPECT_FALSE(out.Add(h, big.data(), 100, v1::FLOAT32, nullptr));
  EXPECT_EQ(writes, 2);
  EXPECT_FALSE(out.Add(h, big.data(), 100, v1::FLOAT32, nullptr));
  EXPECT_FALSE(out.Flush());
  EXPECT_EQ(writes, 2);
}

TEST(TensorWireTest, NestedPackedChunksAreRefused) {
  v1::TensorChunk outer = Header();
  *outer.add_packed() = Header();
  *outer.mutable_packed(0)->add_packed() = Header();
  ChunkView view;
  const absl::Status st =
      DecodeChunk(Cut(outer.SerializeAsString(), 16), &view);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("packed chunks of its own"), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace paragan
