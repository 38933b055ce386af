#ifndef PARAGAN_WORKER_DISTRIBUTED_PUSH_JOURNAL_H_
#define PARAGAN_WORKER_DISTRIBUTED_PUSH_JOURNAL_H_

// An append-only record of a worker's pushes, one line per push sent and one
// per answer, for checking from outside that every accepted push was applied
// exactly once (tests/chaos). Each line is one write(2) to a file opened with
// O_APPEND, so a SIGKILLed worker leaves every line it wrote complete: a push
// with a "send" line and no "done" line is one whose outcome the worker never
// learned.
//
//   send t=<unix ns> worker=<id> table=<G|D> shard=<s> id=<push id> base=<v>
//   done t=<unix ns> worker=<id> table=<G|D> shard=<s> id=<push id>
//        accepted=<0|1> applied=<0|1> duplicate=<0|1> version=<new version>
//   fail t=<unix ns> worker=<id> table=<G|D> shard=<s> id=<push id>
//        code=<status code name>
//
// "done" carries the shard's answer to the last attempt (with duplicate=1 it
// is the first attempt's result, repeated); "fail" is a push given up
// (refused for resync, or out of retries): its last attempt changed nothing,
// but an earlier attempt whose answer was lost may have been applied.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/paragan.pb.h"

namespace paragan {

class PushJournal {
 public:
  // Opens (creating, appending to) `path`.
  static absl::StatusOr<std::unique_ptr<PushJournal>> Open(
      const std::string& path, const std::string& worker_id);
  ~PushJournal();
  PushJournal(const PushJournal&) = delete;
  PushJournal& operator=(const PushJournal&) = delete;

  void Sent(const std::string& table, int shard, uint64_t push_id,
            int64_t base_version);
  void Answered(const std::string& table, int shard, uint64_t push_id,
                const v1::PushResponse& response);
  void GaveUp(const std::string& table, int shard, uint64_t push_id,
              const absl::Status& why);

  // The first write that failed (a full disk), or OK.
  absl::Status status() const;

 private:
  PushJournal(int fd, std::string worker_id)
      : fd_(fd), worker_id_(std::move(worker_id)) {}
  void Append(const std::string& kind, const std::string& table, int shard,
              uint64_t push_id, const std::string& rest);

  const int fd_;
  const std::string worker_id_;
  mutable std::mutex mu_;
  absl::Status status_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_PUSH_JOURNAL_H_
