#include "server/data_plane_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iostream>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log_limit.h"
#include "common/tensor_codec.h"

namespace paragan {
namespace {

// An error reply after a payload larger than this closes the connection
// instead of reading the payload first.
constexpr uint64_t kMaxDiscardBytes = uint64_t{4} << 30;

v1::DataPlaneReply ErrorReply(const absl::Status& status) {
  v1::DataPlaneReply reply;
  reply.set_code(static_cast<int>(status.code()));
  reply.set_message(std::string(status.message()));
  return reply;
}

// True once the client closed its side or the connection broke.
bool PeerGone(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

// Waits up to `timeout` for a byte (or the end) to arrive; false when none
// did (an idle connection, dropped as SO_RCVTIMEO would).
bool WaitReadable(int fd, absl::Duration timeout) {
  const int ms = static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(timeout), 1 << 30));
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataPlaneServer>> DataPlaneServer::Start(
    const Options& options, ShardHandler* handler) {
  if (options.max_connections < 1 || options.max_connections_per_peer < 1 ||
      options.frame_timeout <= absl::ZeroDuration() ||
      !(options.min_bytes_per_s > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data plane limits: need max_connections (", options.max_connections,
        ") and max_connections_per_peer (", options.max_connections_per_peer,
        ") >= 1, frame_timeout > 0 and min_bytes_per_s > 0"));
  }
  auto server =
      std::unique_ptr<DataPlaneServer>(new DataPlaneServer(options, handler));
  absl::StatusOr<Socket> listener =
      ListenTcp(options.bind_address, options.port, &server->port_);
  if (!listener.ok()) return listener.status();
  server->listener_ = *std::move(listener);
  handler->set_data_plane_port(server->port_);
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  server->watchdog_thread_ =
      std::thread([s = server.get()] { s->WatchdogLoop(); });
  return server;
}

DataPlaneServer::~DataPlaneServer() { Shutdown(); }

void DataPlaneServer::Shutdown() {
  if (stopping_.exchange(true)) return;
  handler_->set_data_plane_port(0);
  // Wakes accept() and every blocked recv()/send().
  shutdown(listener_.fd(), SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    watchdog_wake_.notify_all();
  }
  if (watchdog_thread_.joinable()) watchdog_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Refused& r : refused_) close(r.fd);
    refused_.clear();
  }
  std::map<int, Connection> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, c] : connections_) shutdown(c.fd, SHUT_RDWR);
    connections.swap(connections_);
  }
  for (auto& [id, c] : connections) c.thread.join();
  listener_.Close();
}

void DataPlaneServer::AcceptLoop() {
  while (!stopping_.load()) {
    const int fd = accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::cerr << "paragan_server: data plane accept failed: "
                << std::strerror(errno) << std::endl;
      absl::SleepFor(absl::Milliseconds(100));
      continue;
    }
    ConfigureStream(fd, options_.io_timeout);
    const std::string host = PeerHost(fd);
    std::unique_lock<std::mutex> lock(mu_);
    // Joins the threads of connections that ended.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->second.done) {
        it->second.thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    if (stopping_.load()) {
      close(fd);
      return;
    }
    if (const char* limit = OverLimitLocked(host); limit != nullptr) {
      const int64_t n = ++limit_hits_[limit];
      const std::string why =
          limit == kLimitConnections
              ? absl::StrCat(options_.max_connections,
                             " connections open (the limit)")
              : absl::StrCat(options_.max_connections_per_peer,
                             " connections open from this address (the "
                             "limit per client)");
      // The refusal, then the connection closes from the watchdog once the
      // client's request has been taken in (closing on unread bytes would
      // reset the connection and could lose the reply); the client's call
      // goes over gRPC.
      ConfigureStream(fd, absl::Milliseconds(100));
      (void)SendFrame(fd, FrameKind::kReply,
                      ErrorReply(absl::ResourceExhaustedError(
                          absl::StrCat(kDataPlaneRefusedPrefix, why))),
                      {});
      if (refused_.size() < kMaxLingering) {
        refused_.push_back({fd, absl::Now() + absl::Seconds(1)});
      } else {
        close(fd);
      }
      lock.unlock();
      ReportLimitHit(limit, n, absl::StrCat("data-plane client ", host),
                     absl::StrCat("refused: ", why));
      continue;
    }
    const int id = next_id_++;
    Connection& c = connections_[id];
    c.fd = fd;
    c.host = host;
    // The first frame (auth or request) is due frame_timeout after connect.
    c.deadline = absl::Now() + options_.frame_timeout;
    c.thread = std::thread([this, id, fd] { Serve(id, fd); });
    UpdateConnectionGaugeLocked();
  }
}

const char* DataPlaneServer::OverLimitLocked(const std::string& host) const {
  int open = 0, from_host = 0;
  for (const auto& [id, c] : connections_) {
    if (c.done) continue;
    ++open;
    if (c.host == host) ++from_host;
  }
  if (open >= options_.max_connections) return kLimitConnections;
  if (from_host >= options_.max_connections_per_peer) {
    return kLimitPeerConnections;
  }
  return nullptr;
}

void DataPlaneServer::ReportLimitHit(const char* limit, int64_t n,
                                     const std::string& peer,
                                     const std::string& detail) {
  if (handler_->metrics() != nullptr) {
    handler_->metrics()->RecordLimitHit(limit);
  }
  if (ShouldLogOccurrence(n)) {
    std::cerr << "paragan_server: data plane: " << peer << " " << detail << " ["
              << limit << ", " << n << " so far]" << std::endl;
  }
}

int64_t DataPlaneServer::limit_hits(const std::string& limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = limit_hits_.find(limit);
  return it == limit_hits_.end() ? 0 : it->second;
}

void DataPlaneServer::WatchdogLoop() {
  // Deadlines are seconds long; a tenth of the frame timeout (at most a
  // quarter second) keeps the overshoot small.
  const absl::Duration period =
      std::min(absl::Milliseconds(250), options_.frame_timeout / 10);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_.load()) {
    watchdog_wake_.wait_for(lock, absl::ToChronoMilliseconds(period));
    const absl::Time now = absl::Now();
    DrainRefusedLocked(now);
    std::vector<std::pair<std::string, int64_t>> cut;  // host, count
    for (auto& [id, c] : connections_) {
      if (c.done || c.cut || c.deadline > now) continue;
      const int64_t n = ++limit_hits_[kLimitSlowFrame];
      // Wakes the connection's thread from its recv or send; it ends.
      shutdown(c.fd, SHUT_RDWR);
      c.cut = true;
      cut.emplace_back(c.host, n);
    }
    if (cut.empty()) continue;
    lock.unlock();
    for (const auto& [host, n] : cut) {
      ReportLimitHit(
          kLimitSlowFrame, n, absl::StrCat("data-plane client ", host),
          absl::StrCat("cut: a frame not sent (or a reply not taken) within ",
                       absl::FormatDuration(options_.frame_timeout), " + ",
                       options_.min_bytes_per_s, " bytes/s"));
    }
    lock.lock();
  }
}

void DataPlaneServer::DrainRefusedLocked(absl::Time now) {
  char sink[16384];
  for (auto it = refused_.begin(); it != refused_.end();) {
    // At most 1 MiB per connection and tick: a client that keeps sending
    // cannot hold the watchdog (and mu_); its close_at still comes.
    ssize_t n = -1;
    errno = EAGAIN;
    for (int i = 0; i < 64; ++i) {
      n = recv(it->fd, sink, sizeof(sink), MSG_DONTWAIT);
      if (n <= 0) break;
    }
    const bool ended =
        n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    if (ended || now >= it->close_at || stopping_.load()) {
      close(it->fd);
      it = refused_.erase(it);
    } else {
      ++it;
    }
  }
}

void DataPlaneServer::ExpectBytes(int id, uint64_t bytes) {
  const absl::Time deadline =
      absl::Now() + options_.frame_timeout +
      absl::Seconds(static_cast<double>(bytes) / options_.min_bytes_per_s);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second.deadline = deadline;
}

void DataPlaneServer::NoDeadline(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second.deadline = absl::InfiniteFuture();
}

namespace {

// The peer's address and port ("?" and 0 when unknown).
std::pair<std::string, int> PeerAddress(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    }
  }
  return {host, port};
}

}  // namespace

std::string DataPlaneServer::PeerHost(int fd) { return PeerAddress(fd).first; }

std::string DataPlaneServer::Peer(int fd) {
  const auto [host, port] = PeerAddress(fd);
  return absl::StrCat("data-plane client ", host, ":", port);
}

bool DataPlaneServer::Authenticate(int id, int fd) {
  // Before the token, a connection gets at most kDataPlaneMaxAuthBytes of
  // memory, not a frame's 16 MiB.
  FrameHeader header;
  std::string token;
  absl::Status read =
      RecvFrameStart(fd, &header, &token, kDataPlaneMaxAuthBytes);
  if (!read.ok() && !absl::IsInvalidArgument(read)) return false;  // gone
  const CallAuthenticator& auth = handler_->auth();
  const absl::Status st =
      read.ok() && header.kind == static_cast<uint16_t>(FrameKind::kAuth) &&
              header.payload_bytes == 0
          ? auth.CheckToken(token, Peer(fd), "a data-plane connection")
          : auth.Refuse("the first frame is not an auth frame", Peer(fd),
                        "a data-plane connection");
  // Answered either way, then the connection ends if refused.
  ExpectBytes(id, 0);
  ReplyError(fd, st, kMaxDiscardBytes + 1);
  if (!st.ok()) {
    // Closing with the client's unread bytes queued would reset the
    // connection and could drop the reply before the client reads it: take
    // in what it already sent (bounded: 1 MiB, 1 s) first.
    char sink[16384];
    size_t drained = 0;
    const absl::Time end = absl::Now() + absl::Seconds(1);
    while (drained < (1u << 20) && absl::Now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) break;  // nothing more within 100 ms
      const ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
  }
  return st.ok();
}

void DataPlaneServer::Serve(int id, int fd) {
  // Everything the connection allocated is gone before it counts as done.
  ServeFrames(id, fd);
  std::lock_guard<std::mutex> lock(mu_);
  close(fd);
  auto it = connections_.find(id);
  if (it != connections_.end()) {
    it->second.fd = -1;
    it->second.done = true;
  }
  UpdateConnectionGaugeLocked();
}

int DataPlaneServer::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return OpenConnectionsLocked();
}

int DataPlaneServer::OpenConnectionsLocked() const {
  int open = 0;
  for (const auto& [id, c] : connections_) open += c.done ? 0 : 1;
  return open;
}

void DataPlaneServer::ServeFrames(int id, int fd) {
  TensorMap scratch;
  // The first frame is due by the deadline set at accept; after an auth
  // frame the connection may idle until its first call.
  const bool admitted = !handler_->auth().enabled() || Authenticate(id, fd);
  bool first = !handler_->auth().enabled();
  while (admitted && !stopping_.load()) {
    if (!first) {
      NoDeadline(id);
      if (!WaitReadable(fd, options_.io_timeout)) break;  // idle: dropped
      ExpectBytes(id, 0);  // the header and metadata
    }
    first = false;
    FrameHeader header;
    std::string meta;
    absl::Status st = RecvFrameStart(fd, &header, &meta);
    // The payload, read or discarded, under the same clock.
    if (st.ok()) ExpectBytes(id, header.payload_bytes);
    if (!st.ok()) {
      // Not our protocol: say so once, then hang up. A closed or idle
      // connection just ends.
      if (absl::IsInvalidArgument(st)) ReplyError(fd, st, kMaxDiscardBytes + 1);
      break;
    }
    bool keep = false;
    switch (static_cast<FrameKind>(header.kind)) {
      case FrameKind::kPull:
        keep = HandlePull(id, fd, header, meta);
        break;
      case FrameKind::kPush:
        keep = HandlePush(id, fd, header, meta, &scratch);
        break;
      case FrameKind::kAuth: {
        // Again, or to a shard without authentication (which accepts it).
        absl::Status st = handler_->auth().CheckToken(
            meta, Peer(fd), "a data-plane connection");
        keep = ReplyError(fd, st, header.payload_bytes) && st.ok();
        break;
      }
      default:
        ReplyError(fd,
                   absl::InvalidArgumentError(
                       "data plane: a client sent a reply frame"),
                   kMaxDiscardBytes + 1);
        break;
    }
    if (!keep) break;
  }
}

void DataPlaneServer::UpdateConnectionGaugeLocked() {
  if (handler_->metrics() == nullptr) return;
  handler_->metrics()->SetDataPlaneConnections(OpenConnectionsLocked());
}

bool DataPlaneServer::ReplyError(int fd, const absl::Status& status,
                                 uint64_t unread_payload) {
  const bool keep = unread_payload <= kMaxDiscardBytes;
  if (keep && unread_payload > 0 && !Discard(fd, unread_payload).ok()) {
    return false;
  }
  if (!SendFrame(fd, FrameKind::kReply, ErrorReply(status), {}).ok()) {
    return false;
  }
  return keep;
}

bool DataPlaneServer::HandlePull(int id, int fd, const FrameHeader& header,
                                 const std::string& meta) {
  v1::PullRequest request;
  if (!request.ParseFromString(meta)) {
    return ReplyError(fd,
                      absl::InvalidArgumentError(
                          "data plane: pull metadata is not a PullRequest"),
                      header.payload_bytes);
  }
  if (header.payload_bytes != 0) {
    return ReplyError(
        fd,
        absl::InvalidArgumentError("data plane: a pull frame has a payload"),
        header.payload_bytes);
  }
  NoDeadline(id);  // a pull with min_version waits for the shard
  absl::StatusOr<ShardHandler::PullPlan> plan = handler_->PreparePull(
      request, absl::Now() + options_.io_timeout,
      [this, fd] { return stopping_.load() || PeerGone(fd); });
  if (!plan.ok()) {
    ExpectBytes(id, 0);
    return ReplyError(fd, plan.status(), 0);
  }
  v1::DataPlaneReply reply;
  reply.set_version(plan->snapshot.version);
  reply.set_dtype(request.dtype());
  reply.set_table(plan->table);
  TensorPayload payload(request.dtype());
  for (const SharedTableTensor& t : plan->snapshot.tensors) {
    v1::DataPlaneTensor* out = reply.add_tensors();
    out->set_name(t.spec.name);
    for (int64_t d : t.spec.shape) out->add_shape(d);
    out->set_kind(t.spec.trainable ? v1::PARAMETER : v1::VALUE);
    payload.Add(t.values.get(), NumElements(t.spec.shape));
  }
  ExpectBytes(id, payload.bytes());  // a client not reading stalls the send
  if (!SendFrame(fd, FrameKind::kReply, reply, payload.pieces()).ok()) {
    return false;
  }
  handler_->RecordPull(plan->table, payload.bytes());
  return true;
}

bool DataPlaneServer::HandlePush(int id, int fd, const FrameHeader& header,
                                 const std::string& meta, TensorMap* scratch) {
  v1::DataPlanePush push;
  if (!push.ParseFromString(meta)) {
    return ReplyError(fd,
                      absl::InvalidArgumentError(
                          "data plane: push metadata is not a DataPlanePush"),
                      header.payload_bytes);
  }
  auto refuse = [&](const absl::Status& st) {
    return ReplyError(
        fd,
        handler_->RecordInvalidPush(
            push.table(), static_cast<int64_t>(header.payload_bytes), st),
        header.payload_bytes);
  };
  const int64_t elem = WireDTypeSize(push.dtype());
  if (elem == 0) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("unknown dtype ", push.dtype())));
  }
  if (push.tensors().empty()) {
    return refuse(absl::InvalidArgumentError("a push with no tensors"));
  }
  // Every check that the gRPC path makes per tensor, before any payload byte
  // is read: a refused push changes nothing.
  absl::StatusOr<ShardHandler::PushTarget> target =
      handler_->BeginPush(push.table(), push.worker_id());
  if (!target.ok()) return refuse(target.status());
  std::set<std::string> seen;
  std::vector<int64_t> counts;
  int64_t wire_bytes = 0, float_bytes = 0;
  for (const v1::DataPlaneTensor& t : push.tensors()) {
    const Shape shape(t.shape().begin(), t.shape().end());
    int64_t n = 0;
    absl::Status st =
        CheckedNumElements(shape, absl::StrCat("tensor '", t.name(), "'"), &n);
    if (!st.ok()) return refuse(st);
    if (!seen.insert(t.name()).second) {
      return refuse(absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name(), "' sent twice in one push")));
    }
    st = target->CheckTensor(t.name(), shape, t.kind());
    if (!st.ok()) return refuse(st);
    float_bytes += 4 * n;
    if (float_bytes > handler_->max_push_bytes()) {
      return refuse(absl::ResourceExhaustedError(absl::StrCat(
          "tensor '", t.name(), "': the push would hold ", float_bytes,
          " bytes, over the limit of ", handler_->max_push_bytes())));
    }
    wire_bytes += elem * n;
    counts.push_back(n);
  }
  if (static_cast<uint64_t>(wire_bytes) != header.payload_bytes) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "push payload of ", header.payload_bytes, " bytes, but its ",
        push.tensors_size(), " tensors take ", wire_bytes)));
  }
  TensorMap gradients, buffers;
  std::vector<char> staging;  // bfloat16 pushes
  for (int i = 0; i < push.tensors_size(); ++i) {
    const v1::DataPlaneTensor& t = push.tensors(i);
    std::vector<float>& values =
        (t.kind() == v1::GRADIENT ? gradients : buffers)[t.name()];
    const size_t n = static_cast<size_t>(counts[static_cast<size_t>(i)]);
    if (auto old = scratch->find(t.name()); old != scratch->end()) {
      values = std::move(old->second);
    }
    absl::Status st = RecvTensorValues(fd, push.dtype(), n, &values, &staging);
    if (!st.ok()) {
      (void)handler_->RecordInvalidPush(push.table(), wire_bytes, st);
      return false;  // the client is gone or stalled; nothing was applied
    }
  }
  NoDeadline(id);  // the shard's own time
  absl::StatusOr<v1::PushResponse> r =
      handler_->ApplyPush(*target, push.base_version(), push.push_id(),
                          gradients, buffers, wire_bytes);
  scratch->clear();
  for (TensorMap* m : {&gradients, &buffers}) {
    for (auto& [name, values] : *m) (*scratch)[name] = std::move(values);
  }
  ExpectBytes(id, 0);
  if (!r.ok()) return ReplyError(fd, r.status(), 0);
  v1::DataPlaneReply reply;
  *reply.mutable_push() = *std::move(r);
  return SendFrame(fd, FrameKind::kReply, reply, {}).ok();
}

}  // namespace paragan
