// Fuzzes what a shard does with a Push stream's bytes: TensorChunk decoding
// (DecodeChunk, packed chunks) and chunk assembly (ChunkAssembler). An input
// is a stream of messages, each a little-endian uint32 length and that many
// bytes (the rest of the input is the last message); each message is
// handed over in two slices, as gRPC may deliver it. Whatever assembles is
// complete tensors of exactly prod(shape) values.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/tensor_codec.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/tensor_wire.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {
namespace {

// The same cap a shard's default --max_push_bytes gives, scaled down so the
// fuzzer's memory limit is never what stops it.
constexpr int64_t kMaxPushBytes = 64 << 20;

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  FuzzCheck(buffer.Dump(&slices).ok(), "dump a buffer");
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

void AppendMessage(const std::string& message, std::string* stream) {
  const uint32_t n = static_cast<uint32_t>(message.size());
  char len[4];
  std::memcpy(len, &n, 4);
  stream->append(len, 4);
  stream->append(message);
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  std::vector<std::string> seeds;
  const std::vector<float> big(40, 0.5f), small = {1, -2, 3};
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16}) {
    std::string stream;
    ChunkWriter writer(64, [&](const grpc::ByteBuffer& b) {
      AppendMessage(Flatten(b), &stream);
      return true;
    });
    v1::TensorChunk h;
    h.set_table("D");
    h.set_worker_id("w0");
    h.set_base_version(7);
    h.set_push_id(99);
    h.set_kind(v1::GRADIENT);
    h.set_tensor_name("conv.weight");
    h.add_shape(4);
    h.add_shape(10);
    writer.Add(h, big.data(), 40, dtype, nullptr);
    h.set_tensor_name("bias");
    h.clear_shape();
    h.add_shape(3);
    writer.Add(h, small.data(), 3, dtype, nullptr);
    h.set_tensor_name("bn.running_var");
    h.set_kind(v1::VALUE);
    writer.Add(h, small.data(), 3, dtype, nullptr);
    writer.Flush();
    seeds.push_back(stream);
  }
  return seeds;
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every invalid UTF-8 string it parses: noise here.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  using paragan::FuzzCheck;
  paragan::ChunkAssembler::Options options;
  options.max_total_bytes = paragan::kMaxPushBytes;
  paragan::ChunkAssembler assembler(options);
  paragan::ChunkView view;
  const char* p = reinterpret_cast<const char*>(data);
  size_t left = size;
  absl::Status status;
  while (left > 0 && status.ok()) {
    size_t n = left;
    if (left >= 4) {
      uint32_t len;
      std::memcpy(&len, p, 4);
      p += 4;
      left -= 4;
      n = std::min<size_t>(len, left);
    }
    const size_t cut = n / 2;
    grpc::Slice slices[2] = {grpc::Slice(p, cut),
                             grpc::Slice(p + cut, n - cut)};
    grpc::ByteBuffer message(slices, 2);
    status = paragan::AddMessage(message, &view, &assembler);
    p += n;
    left -= n;
  }
  if (status.ok() && assembler.Finish().ok()) {
    for (const auto& [name, t] : assembler.tensors()) {
      int64_t count = 1;
      for (int64_t d : t.shape) count *= d;
      FuzzCheck(t.complete, "an assembled tensor is complete");
      FuzzCheck(int64_t(t.values.size()) == count, "prod(shape) values");
    }
    FuzzCheck(assembler.payload_bytes() <= int64_t(size), "no invented bytes");
  }
  return 0;
}
