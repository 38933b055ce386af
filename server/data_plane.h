#ifndef PARAGAN_SERVER_DATA_PLANE_H_
#define PARAGAN_SERVER_DATA_PLANE_H_

// The tensor data plane: Pull and Push of a parameter-server shard over plain
// TCP connections beside its gRPC service. gRPC stays the control plane
// (registration, state, errors, and the fallback for every call); the data
// plane carries the tensor bytes with one kernel copy per side, straight
// between the table's buffers and the worker's. On loopback gRPC's HTTP/2
// transport moved a BigGAN table at a third of plain TCP's rate
// (BENCHMARKS.md); bandwidth is what asynchronous workers wait on.
//
// A connection carries one call at a time: the client sends a request frame,
// the server answers with a reply frame. Every frame is
//   FrameHeader (24 bytes, little-endian) | metadata | payload
// where the metadata is a serialized protobuf (PullRequest, DataPlanePush or
// DataPlaneReply in proto/paragan.proto) and the payload the tensors' raw
// bytes back to back, in the order the metadata lists them.

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "proto/paragan.pb.h"

namespace paragan {

inline constexpr uint32_t kDataPlaneMagic = 0x50444750;  // "PGDP"
inline constexpr uint32_t kDataPlaneMaxMetaBytes = 16u << 20;

// kAuth: the first frame of every connection to a shard that requires a
// bearer token (common/auth.h); its metadata is the token itself (at most
// kDataPlaneMaxAuthBytes), answered by a reply frame.
enum class FrameKind : uint16_t { kPull = 1, kPush = 2, kReply = 3, kAuth = 4 };
inline constexpr uint32_t kDataPlaneMaxAuthBytes = 4096;
// A server over its connection limits answers a new connection with one
// RESOURCE_EXHAUSTED reply whose message starts so, before reading anything,
// and closes it: the client's call was not served and goes over gRPC.
inline constexpr char kDataPlaneRefusedPrefix[] =
    "data plane connection refused: ";

struct FrameHeader {
  uint32_t magic = kDataPlaneMagic;
  uint16_t kind = 0;
  uint16_t flags = 0;  // none defined; must be 0
  uint32_t meta_bytes = 0;
  uint32_t reserved = 0;  // must be 0
  uint64_t payload_bytes = 0;
};
static_assert(sizeof(FrameHeader) == 24, "FrameHeader is 24 bytes on the wire");

// A TCP socket, closed on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(other.release()) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { Close(); }

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Close();

 private:
  int fd_ = -1;
};

// Connects to host:port (a name or a numeric address, IPv4 or IPv6) with
// TCP_NODELAY and `timeout` on connect, sends and receives. UNAVAILABLE
// names the address and the reason.
absl::StatusOr<Socket> ConnectTcp(const std::string& host, int port,
                                  absl::Duration timeout);

// Listens on bind_address:port (port 0: the kernel picks one); sets
// *bound_port.
absl::StatusOr<Socket> ListenTcp(const std::string& bind_address, int port,
                                 int* bound_port);

// Sets TCP_NODELAY and the send/receive timeouts (InfiniteDuration: none).
void ConfigureStream(int fd, absl::Duration timeout);

// Writes every byte of `pieces`, in order (partial writes, EINTR and more
// than IOV_MAX pieces handled). UNAVAILABLE when the peer is gone,
// DEADLINE_EXCEEDED on the socket's send timeout.
absl::Status SendAll(int fd, std::vector<iovec> pieces);

// Reads exactly `size` bytes into `dst`. UNAVAILABLE on end of stream or a
// reset, DEADLINE_EXCEEDED on the socket's receive timeout.
absl::Status RecvAll(int fd, void* dst, size_t size);

// Reads and discards `size` bytes.
absl::Status Discard(int fd, uint64_t size);

// Sends header + `meta` + `payload` in one gathered write.
absl::Status SendFrame(int fd, FrameKind kind,
                       const google::protobuf::MessageLite& meta,
                       const std::vector<iovec>& payload);

// The same with raw metadata bytes (the auth frame's token).
absl::Status SendRawFrame(int fd, FrameKind kind, absl::string_view meta,
                          const std::vector<iovec>& payload);

// Reads a frame's header and metadata (not its payload). INVALID_ARGUMENT
// names what is wrong with a header that is not ours (magic, kind, flags,
// metadata size).
// `max_meta_bytes` bounds what is read into memory (the auth frame's is
// kDataPlaneMaxAuthBytes).
absl::Status RecvFrameStart(int fd, FrameHeader* header, std::string* meta,
                            uint32_t max_meta_bytes = kDataPlaneMaxMetaBytes);

// The payload of a frame: tensors' values back to back, float32 ones
// referenced where they are (they must outlive the send), bfloat16 ones
// converted into memory this object owns.
class TensorPayload {
 public:
  explicit TensorPayload(v1::DType dtype) : dtype_(dtype) {}
  void Add(const float* values, int64_t count);
  const std::vector<iovec>& pieces() const { return pieces_; }
  int64_t bytes() const { return bytes_; }

 private:
  const v1::DType dtype_;
  std::vector<iovec> pieces_;
  std::vector<std::unique_ptr<char[]>> converted_;
  int64_t bytes_ = 0;
};

// Reads `count` values of `dtype` (float32 or bfloat16) into *values,
// resized to `count`: float32 straight into it, bfloat16 through `staging`.
absl::Status RecvTensorValues(int fd, v1::DType dtype, size_t count,
                              std::vector<float>* values,
                              std::vector<char>* staging);

// The client side of the auth frame: sends `token` and reads the reply.
// UNAUTHENTICATED (the server's message) when the server refused it.
absl::Status AuthenticateDataPlane(int fd, const std::string& token);

// "host:port", "[v6]:port", "dns:///host:port", "ipv4:host:port" -> host;
// "" when `target` names no host (e.g. "unix:/path").
std::string HostOfTarget(const std::string& target);

}  // namespace paragan

#endif  // PARAGAN_SERVER_DATA_PLANE_H_
