#ifndef PARAGAN_SERVER_DATA_PLANE_SERVER_H_
#define PARAGAN_SERVER_DATA_PLANE_SERVER_H_

// The server side of a shard's tensor data plane (server/data_plane.h): it
// accepts TCP connections and answers Pull and Push frames through the
// shard's ShardHandler, as the gRPC service does: same checks, policies,
// leases and metrics. A thread per connection: a shard
// has a few connections per worker, each busy with one call at a time.
// Bounded against clients that misbehave: connections in total and per
// client address, and the time a frame may take to arrive (or its reply to
// be taken), so that a client trickling bytes cannot hold a thread.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/data_plane.h"
#include "server/shard_handler.h"

namespace paragan {

class DataPlaneServer {
 public:
  struct Options {
    std::string bind_address = "0.0.0.0";
    int port = 0;  // 0: the kernel picks a free port
    // A call whose bytes stop flowing for this long is dropped; so is a
    // connection idle for this long (clients reconnect).
    absl::Duration io_timeout = absl::Minutes(5);
    // Connections over either limit are closed at once (the client falls
    // back to gRPC). A worker holds a few per shard; a machine running many
    // workers shares its address.
    int max_connections = 512;
    int max_connections_per_peer = 64;  // per client IP address
    // Once a frame's first byte has arrived, the rest (and, for a reply, the
    // client taking it) must follow within frame_timeout + bytes /
    // min_bytes_per_s, or the connection is cut. The first frame of a
    // connection gets frame_timeout from the connect.
    absl::Duration frame_timeout = absl::Seconds(30);
    double min_bytes_per_s = 1 << 20;
  };

  // The limits a refusal or a cut connection is counted under (the
  // `limit` label of paragan_ps_limit_refusals_total).
  static constexpr char kLimitConnections[] = "data_plane_connections";
  static constexpr char kLimitPeerConnections[] =
      "data_plane_connections_per_peer";
  static constexpr char kLimitSlowFrame[] = "data_plane_frame_time";

  // Listens and serves in background threads; `handler` must outlive the
  // server. Also tells the handler the port to advertise to workers.
  static absl::StatusOr<std::unique_ptr<DataPlaneServer>> Start(
      const Options& options, ShardHandler* handler);
  ~DataPlaneServer();

  int port() const { return port_; }
  // Connections being served now (a test waits for 0).
  int open_connections() const;
  // Connections refused or cut under `limit` (kLimit*) so far.
  int64_t limit_hits(const std::string& limit) const;
  // Stops accepting, ends every connection (a call in progress fails on the
  // client's side) and joins the threads. Idempotent.
  void Shutdown();

 private:
  DataPlaneServer(const Options& options, ShardHandler* handler)
      : options_(options), handler_(handler) {}
  void AcceptLoop();
  // Whether a new connection from `host` fits the limits (needs mu_); the
  // limit it would break otherwise.
  const char* OverLimitLocked(const std::string& host) const;
  // Counts (metric) and logs, rate-limited, the n-th hit of `limit`.
  void ReportLimitHit(const char* limit, int64_t n, const std::string& peer,
                      const std::string& detail);
  // Takes in what refused connections sent and closes them once they end or
  // their time is up (needs mu_).
  void DrainRefusedLocked(absl::Time now);
  // Cuts connections past their deadline (ExpectBytes), until Shutdown.
  void WatchdogLoop();
  // The connection `id` must move `bytes` more (and its frame start) by
  // now + frame_timeout + bytes / min_bytes_per_s; NoDeadline: it may idle
  // (waiting for the next frame, or for the shard to answer).
  void ExpectBytes(int id, uint64_t bytes);
  void NoDeadline(int id);
  void Serve(int id, int fd);
  void ServeFrames(int id, int fd);
  // With authentication on: reads the connection's first frame, which must
  // be an auth frame with the shard's token, and answers it.
  bool Authenticate(int id, int fd);
  static std::string PeerHost(int fd);
  static std::string Peer(int fd);
  // Each answers one request frame whose header and metadata were read;
  // false: the connection is no longer usable.
  bool HandlePull(int id, int fd, const FrameHeader& header,
                  const std::string& meta);
  // `scratch`: the connection's buffers of its previous push, reused so
  // that a push costs no allocation (nor the zero-filling of a new vector).
  bool HandlePush(int id, int fd, const FrameHeader& header,
                  const std::string& meta, TensorMap* scratch);
  // Sends an error reply; first consumes `unread_payload` bytes (so that the
  // client, still sending them, reads the reply instead of a reset) unless
  // there are too many. False: the connection must close.
  bool ReplyError(int fd, const absl::Status& status, uint64_t unread_payload);

  int OpenConnectionsLocked() const;   // needs mu_
  void UpdateConnectionGaugeLocked();  // needs mu_

  const Options options_;
  ShardHandler* const handler_;
  Socket listener_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::thread watchdog_thread_;
  struct Connection {
    int fd = -1;
    std::string host;  // the client's address
    std::thread thread;
    bool done = false;
    absl::Time deadline = absl::InfiniteFuture();
    bool cut = false;  // by the watchdog
  };
  mutable std::mutex mu_;
  std::condition_variable watchdog_wake_;
  std::map<int, Connection> connections_;  // by id
  std::map<std::string, int64_t> limit_hits_;
  // Refused connections waiting to close (DrainRefusedLocked); beyond
  // kMaxLingering at once they close at once.
  struct Refused {
    int fd;
    absl::Time close_at;
  };
  static constexpr size_t kMaxLingering = 256;
  std::vector<Refused> refused_;
  int next_id_ = 0;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_DATA_PLANE_SERVER_H_
