#include "server/data_plane.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/tensor_codec.h"

namespace paragan {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status IoError(const char* what, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return absl::DeadlineExceededError(
        absl::StrCat("data plane ", what, " timed out"));
  }
  return absl::UnavailableError(
      absl::StrCat("data plane ", what, " failed: ", ErrnoText(err)));
}

timeval TimeoutTimeval(absl::Duration d) {
  if (d == absl::InfiniteDuration() || d <= absl::ZeroDuration()) return {};
  return absl::ToTimeval(d);
}

}  // namespace

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.release();
  }
  return *this;
}

void Socket::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void ConfigureStream(int fd, absl::Duration timeout) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const timeval tv = TimeoutTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

absl::StatusOr<Socket> ConnectTcp(const std::string& host, int port,
                                  absl::Duration timeout) {
  const std::string where = absl::StrCat(host, ":", port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int gai =
      getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (gai != 0) {
    return absl::UnavailableError(absl::StrCat("data plane: cannot resolve ",
                                               host, ": ", gai_strerror(gai)));
  }
  std::string last_error = "no address";
  const int timeout_ms = timeout == absl::InfiniteDuration()
                             ? -1
                             : static_cast<int>(std::max<int64_t>(
                                   1, absl::ToInt64Milliseconds(timeout)));
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Socket s(
        socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s.valid()) {
      last_error = ErrnoText(errno);
      continue;
    }
    // Non-blocking connect, so that an unreachable port fails within timeout.
    const int flags = fcntl(s.fd(), F_GETFL, 0);
    fcntl(s.fd(), F_SETFL, flags | O_NONBLOCK);
    int rc = connect(s.fd(), a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{s.fd(), POLLOUT, 0};
      rc = poll(&p, 1, timeout_ms);
      if (rc == 0) {
        last_error = "connect timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (rc < 0) err = errno;
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    fcntl(s.fd(), F_SETFL, flags);
    ConfigureStream(s.fd(), timeout);
    freeaddrinfo(found);
    return s;
  }
  freeaddrinfo(found);
  return absl::UnavailableError(
      absl::StrCat("data plane: cannot connect to ", where, ": ", last_error));
}

absl::StatusOr<Socket> ListenTcp(const std::string& bind_address, int port,
                                 int* bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* found = nullptr;
  const int gai =
      getaddrinfo(bind_address.empty() ? nullptr : bind_address.c_str(),
                  std::to_string(port).c_str(), &hints, &found);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data plane: bad bind address '", bind_address,
                     "': ", gai_strerror(gai)));
  }
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Socket s(
        socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s.valid()) {
      last_error = ErrnoText(errno);
      continue;
    }
    const int one = 1;
    setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s.fd(), a->ai_addr, a->ai_addrlen) != 0 ||
        listen(s.fd(), 64) != 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
    *bound_port = ntohs(addr.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    freeaddrinfo(found);
    return s;
  }
  freeaddrinfo(found);
  return absl::UnavailableError(absl::StrCat("data plane: cannot listen on ",
                                             bind_address, ":", port, ": ",
                                             last_error));
}

absl::Status SendAll(int fd, std::vector<iovec> pieces) {
  size_t first = 0;
  while (first < pieces.size()) {
    if (pieces[first].iov_len == 0) {
      ++first;
      continue;
    }
    const int count =
        static_cast<int>(std::min<size_t>(pieces.size() - first, IOV_MAX));
    msghdr msg{};
    msg.msg_iov = &pieces[first];
    msg.msg_iovlen = static_cast<size_t>(count);
    const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("send", errno);
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0 && first < pieces.size()) {
      iovec& v = pieces[first];
      const size_t take = std::min(left, v.iov_len);
      v.iov_base = static_cast<char*>(v.iov_base) + take;
      v.iov_len -= take;
      left -= take;
      if (v.iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* dst, size_t size) {
  char* p = static_cast<char*>(dst);
  while (size > 0) {
    const ssize_t n = recv(fd, p, size, MSG_WAITALL);
    if (n == 0) {
      return absl::UnavailableError("data plane connection closed by the peer");
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("receive", errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status Discard(int fd, uint64_t size) {
  std::vector<char> scratch(std::min<uint64_t>(size, 1 << 20));
  while (size > 0) {
    const size_t n = std::min<uint64_t>(size, scratch.size());
    absl::Status st = RecvAll(fd, scratch.data(), n);
    if (!st.ok()) return st;
    size -= n;
  }
  return absl::OkStatus();
}

absl::Status SendFrame(int fd, FrameKind kind,
                       const google::protobuf::MessageLite& meta,
                       const std::vector<iovec>& payload) {
  std::string meta_bytes;
  meta.SerializeToString(&meta_bytes);
  return SendRawFrame(fd, kind, meta_bytes, payload);
}

absl::Status SendRawFrame(int fd, FrameKind kind, absl::string_view meta,
                          const std::vector<iovec>& payload) {
  FrameHeader h;
  h.kind = static_cast<uint16_t>(kind);
  h.meta_bytes = static_cast<uint32_t>(meta.size());
  for (const iovec& v : payload) h.payload_bytes += v.iov_len;
  std::vector<iovec> pieces;
  pieces.reserve(payload.size() + 2);
  pieces.push_back({&h, sizeof(h)});
  pieces.push_back({const_cast<char*>(meta.data()), meta.size()});
  pieces.insert(pieces.end(), payload.begin(), payload.end());
  return SendAll(fd, std::move(pieces));
}

absl::Status AuthenticateDataPlane(int fd, const std::string& token) {
  absl::Status st = SendRawFrame(fd, FrameKind::kAuth, token, {});
  if (!st.ok()) return st;
  FrameHeader header;
  std::string meta;
  st = RecvFrameStart(fd, &header, &meta);
  if (!st.ok()) return st;
  v1::DataPlaneReply reply;
  if (header.kind != static_cast<uint16_t>(FrameKind::kReply) ||
      header.payload_bytes != 0 || !reply.ParseFromString(meta)) {
    return absl::DataLossError(
        "data plane: a malformed reply to the auth frame");
  }
  return absl::Status(static_cast<absl::StatusCode>(reply.code()),
                      reply.message());
}

absl::Status RecvFrameStart(int fd, FrameHeader* header, std::string* meta,
                            uint32_t max_meta_bytes) {
  absl::Status st = RecvAll(fd, header, sizeof(*header));
  if (!st.ok()) return st;
  if (header->magic != kDataPlaneMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("data plane: not a ParaGAN data-plane frame (magic 0x",
                     absl::Hex(header->magic), ", expected 0x",
                     absl::Hex(kDataPlaneMagic), ")"));
  }
  if (header->kind < static_cast<uint16_t>(FrameKind::kPull) ||
      header->kind > static_cast<uint16_t>(FrameKind::kAuth) ||
      header->flags != 0 || header->reserved != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data plane: unknown frame kind ", header->kind,
                     " or flags ", header->flags, "/", header->reserved));
  }
  if (header->meta_bytes > max_meta_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("data plane: frame metadata of ", header->meta_bytes,
                     " bytes (at most ", max_meta_bytes, ")"));
  }
  meta->resize(header->meta_bytes);
  return RecvAll(fd, meta->data(), meta->size());
}

void TensorPayload::Add(const float* values, int64_t count) {
  const size_t size = static_cast<size_t>(count * WireDTypeSize(dtype_));
  if (dtype_ == v1::FLOAT32) {
    pieces_.push_back({const_cast<float*>(values), size});
  } else {
    converted_.emplace_back(new char[size]);
    FloatsToBFloat16(values, count, converted_.back().get());
    pieces_.push_back({converted_.back().get(), size});
  }
  bytes_ += static_cast<int64_t>(size);
}

absl::Status RecvTensorValues(int fd, v1::DType dtype, size_t count,
                              std::vector<float>* values,
                              std::vector<char>* staging) {
  values->resize(count);
  if (dtype == v1::FLOAT32) return RecvAll(fd, values->data(), 4 * count);
  staging->resize(2 * count);
  absl::Status st = RecvAll(fd, staging->data(), staging->size());
  if (!st.ok()) return st;
  const absl::string_view piece(staging->data(), staging->size());
  CopyWireToFloats(dtype, {&piece, 1}, values->data());
  return absl::OkStatus();
}

std::string HostOfTarget(const std::string& target) {
  absl::string_view t = target;
  if (absl::ConsumePrefix(&t, "dns:")) {
    absl::ConsumePrefix(&t, "///");
  } else if (absl::ConsumePrefix(&t, "ipv4:") ||
             absl::ConsumePrefix(&t, "ipv6:")) {
  } else if (absl::StartsWith(t, "unix:") ||
             absl::StartsWith(t, "unix-abstract:")) {
    return "";
  }
  if (absl::ConsumePrefix(&t, "[")) {
    const size_t close = t.find(']');
    return close == absl::string_view::npos ? ""
                                            : std::string(t.substr(0, close));
  }
  const size_t colon = t.rfind(':');
  return std::string(colon == absl::string_view::npos ? t : t.substr(0, colon));
}

}  // namespace paragan
