#ifndef PARAGAN_SERVER_DATA_PLANE_SERVER_H_
#define PARAGAN_SERVER_DATA_PLANE_SERVER_H_

// The server side of a shard's tensor data plane (server/data_plane.h): it
// accepts TCP connections and answers Pull and Push frames through the
// shard's ShardHandler, as the gRPC service does: same checks, policies,
// leases and metrics. A thread per connection: a shard
// has a few connections per worker, each busy with one call at a time.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

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
  };

  // Listens and serves in background threads; `handler` must outlive the
  // server. Also tells the handler the port to advertise to workers.
  static absl::StatusOr<std::unique_ptr<DataPlaneServer>> Start(
      const Options& options, ShardHandler* handler);
  ~DataPlaneServer();

  int port() const { return port_; }
  // Connections being served now (a test waits for 0).
  int open_connections() const;
  // Stops accepting, ends every connection (a call in progress fails on the
  // client's side) and joins the threads. Idempotent.
  void Shutdown();

 private:
  DataPlaneServer(const Options& options, ShardHandler* handler)
      : options_(options), handler_(handler) {}
  void AcceptLoop();
  void Serve(int id, int fd);
  void ServeFrames(int fd);
  // With authentication on: reads the connection's first frame, which must
  // be an auth frame with the shard's token, and answers it.
  bool Authenticate(int fd);
  static std::string Peer(int fd);
  // Each answers one request frame whose header and metadata were read;
  // false: the connection is no longer usable.
  bool HandlePull(int fd, const FrameHeader& header, const std::string& meta);
  // `scratch`: the connection's buffers of its previous push, reused so
  // that a push costs no allocation (nor the zero-filling of a new vector).
  bool HandlePush(int fd, const FrameHeader& header, const std::string& meta,
                  TensorMap* scratch);
  // Sends an error reply; first consumes `unread_payload` bytes (so that the
  // client, still sending them, reads the reply instead of a reset) unless
  // there are too many. False: the connection must close.
  bool ReplyError(int fd, const absl::Status& status, uint64_t unread_payload);

  void UpdateConnectionGaugeLocked();  // needs mu_

  const Options options_;
  ShardHandler* const handler_;
  Socket listener_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  struct Connection {
    int fd = -1;
    std::thread thread;
    bool done = false;
  };
  mutable std::mutex mu_;
  std::map<int, Connection> connections_;  // by id
  int next_id_ = 0;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_DATA_PLANE_SERVER_H_
