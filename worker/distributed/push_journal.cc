#include "worker/distributed/push_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace paragan {

absl::StatusOr<std::unique_ptr<PushJournal>> PushJournal::Open(
    const std::string& path, const std::string& worker_id) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot open push journal ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<PushJournal>(new PushJournal(fd, worker_id));
}

PushJournal::~PushJournal() { close(fd_); }

void PushJournal::Sent(const std::string& table, int shard, uint64_t push_id,
                       int64_t base_version) {
  Append("send", table, shard, push_id, absl::StrCat(" base=", base_version));
}

void PushJournal::Answered(const std::string& table, int shard,
                           uint64_t push_id, const v1::PushResponse& response) {
  Append("done", table, shard, push_id,
         absl::StrCat(" accepted=", response.accepted() ? 1 : 0,
                      " applied=", response.applied() ? 1 : 0,
                      " duplicate=", response.duplicate() ? 1 : 0,
                      " version=", response.new_version()));
}

void PushJournal::GaveUp(const std::string& table, int shard, uint64_t push_id,
                         const absl::Status& why) {
  Append("fail", table, shard, push_id,
         absl::StrCat(" code=", absl::StatusCodeToString(why.code())));
}

absl::Status PushJournal::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void PushJournal::Append(const std::string& kind, const std::string& table,
                         int shard, uint64_t push_id, const std::string& rest) {
  const std::string line = absl::StrCat(
      kind, " t=", absl::ToUnixNanos(absl::Now()), " worker=", worker_id_,
      " table=", table, " shard=", shard, " id=", push_id, rest, "\n");
  std::lock_guard<std::mutex> lock(mu_);
  if (!status_.ok()) return;
  // One write per line: complete lines survive a SIGKILL.
  const ssize_t n = write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    status_ = absl::UnavailableError(
        absl::StrCat("push journal write failed: ",
                     n < 0 ? std::strerror(errno) : "short write"));
  }
}

}  // namespace paragan
