#ifndef PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_
#define PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_

// The local launcher: on one machine, has paragan_init write the networks'
// initial state, starts the parameter-server shards, the data service and
// the workers as child processes on free localhost ports, shows one progress
// line every few seconds, stops everything in order (workers, data service,
// shards) on Ctrl-C / SIGTERM or when the step or time budget is spent, has
// paragan_sample --ps write the EMA generator's samples and a combined
// checkpoint from the shards before they stop, and writes a summary. The
// model code stays in those tools: the launcher links none.
//
// The pieces (README.md here): job.h describes the processes,
// process_group.h runs them, monitor.h reads the progress from the services,
// summary.h writes what the run did.

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deploy/local/job.h"
#include "deploy/local/monitor.h"
#include "deploy/local/process_group.h"
#include "deploy/local/summary.h"

namespace paragan {
namespace local {

// Finds the bazel-bin directory that holds the five binaries (server, data
// service, worker, paragan_init, paragan_sample): `flag` if
// set, else derived from this executable's path
// (<bin>/deploy/local/paragan_local), else ./bazel-bin. The error names the
// missing binaries and the bazel command that builds them.
// `with_eval`: paragan_eval is needed too (the job has an evaluator).
absl::StatusOr<std::string> FindBinDir(const std::string& flag,
                                       bool with_eval = true);

// Runs everything; returns when the run ended and the outputs are written.
// `stop` becomes true on SIGINT/SIGTERM (the caller's handler). The status is
// an error when a process failed to start (e.g. a shard refusing its flags),
// a shard or the data service died, every worker died, or the outputs could
// not be written; summary.txt/json are written in every case where out_dir
// is writable.
absl::Status RunLocal(const LauncherOptions& options,
                      const std::atomic<bool>* stop, RunSummary* summary);

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_
