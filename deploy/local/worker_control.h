#ifndef PARAGAN_DEPLOY_LOCAL_WORKER_CONTROL_H_
#define PARAGAN_DEPLOY_LOCAL_WORKER_CONTROL_H_

// Changing the worker count of a running local job from another process,
// as `kubectl scale` changes a Deployment's: `paragan_local
// --out_dir=DIR --scale_workers=N` asks the launcher training in DIR,
// through files in DIR/control/ (renamed into place, so neither side reads
// half a file):
//   launcher.pid    the running launcher's pid (removed when it ends)
//   scale_request   "<id> <workers>", written by the command
//   scale_reply     "<id> ok|error" and a message line, by the launcher
// Files, not a port: nothing new listens, and only who can write DIR can
// change the job.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace paragan {
namespace local {

std::string ControlDir(const std::string& out_dir);

// The launcher's side.
class ScaleControl {
 public:
  explicit ScaleControl(std::string out_dir);
  ~ScaleControl();  // removes launcher.pid if Open wrote it
  ScaleControl(const ScaleControl&) = delete;
  ScaleControl& operator=(const ScaleControl&) = delete;

  // Writes launcher.pid; a request or reply left by an earlier run is
  // removed (it was meant for that run).
  absl::Status Open();

  struct Request {
    std::string id;
    int workers = 0;
  };
  // The request not answered yet; nullopt when there is none. A malformed
  // one is answered here with an error naming what was wrong.
  std::optional<Request> Poll();
  // Answers `request`: what happened, or the error.
  absl::Status Answer(const Request& request,
                      const absl::StatusOr<std::string>& outcome);

 private:
  std::string dir_;
  bool opened_ = false;
  std::string answered_;  // id of the last request answered
};

// The command's side: asks the launcher running in `out_dir` for `workers`
// workers and waits up to `timeout` for its answer. Ok: the launcher's
// message. FailedPrecondition when no launcher is running there, the
// launcher's error when it refused, DeadlineExceeded when it did not answer.
absl::StatusOr<std::string> RequestScale(const std::string& out_dir,
                                         int workers, absl::Duration timeout);

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_WORKER_CONTROL_H_
