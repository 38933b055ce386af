#ifndef PARAGAN_WORKER_EVAL_TRAINER_EVAL_H_
#define PARAGAN_WORKER_EVAL_TRAINER_EVAL_H_

// The single-process trainer's evaluator (paragan_train --eval_every_s): a
// QualityObserver that scores each state the run hands it in a thread of its
// own, on its own one-thread CPU backend at idle CPU priority (SCHED_IDLE), so
// the training loop only pays for the snapshot. Rows go to fid.csv / fid.png
// and a line on stdout, as the launcher's live evaluator writes them.

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor_io.h"
#include "worker/engine/backend.h"
#include "worker/eval/background_priority.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/feature_network.h"
#include "worker/eval/fid_log.h"
#include "worker/train/training_run.h"

namespace paragan::eval {

struct TrainerEvalOptions {
  std::string network = "fmnist-cnn";
  std::string weights;            // the network's weights ("": its own)
  std::string reference;          // stats .pgt (computed there when missing)
  std::string data_dir;           // Fashion-MNIST, for computing the reference
  int64_t num_samples = 2000;     // per round while training
  int64_t final_samples = 10000;  // the round after training (0: none)
  uint64_t seed = 1;              // the samples' z, the same every round
  int threads = 1;                // the evaluator's own CPU threads
  // How its thread yields the CPU to training.
  BackgroundPriority priority = BackgroundPriority::kIdle;
  // A round starved that long finishes at nice 19 (RoundPriority; 0: never).
  double escalate_after_s = 120;
  std::string csv, png;  // fid.csv / fid.png ("" : none)
  EvalOptions eval;
};

class TrainerEvaluator : public QualityObserver {
 public:
  // Starts the thread, which opens the network and loads (or computes) the
  // reference before returning, so a bad network, weights or reference
  // file fails here, before training starts.
  static absl::StatusOr<std::unique_ptr<TrainerEvaluator>> Start(
      TrainerEvalOptions options);
  ~TrainerEvaluator() override;  // drops a round in flight

  bool Ready() override;
  void Observe(std::vector<NamedArray> state, int64_t step,
               double wall_s) override;
  absl::Status Finish(std::vector<NamedArray> state, int64_t step,
                      double wall_s) override;

  // Rows scored so far (fid.csv's, including earlier runs').
  std::vector<FidRow> rows();

 private:
  struct Job {
    std::vector<NamedArray> state;
    int64_t step = 0;
    double wall_s = 0;
    bool final = false;
  };
  struct Scorer;
  explicit TrainerEvaluator(TrainerEvalOptions options);
  absl::Status SetUp();  // in the thread
  // The backend and feature network, created on (and only ever used and
  // destroyed by) the calling thread: oneDNN primitives may not migrate.
  absl::Status OpenNetwork();
  void CloseNetwork();
  void Loop();
  // Samples, scores and records one state (on whichever thread holds the
  // scorer: the evaluator's while training, the caller's in Finish).
  absl::Status Score(const Job& job, int64_t num_samples);

  const TrainerEvalOptions o_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> job_;     // guarded by mu_
  bool busy_ = false;          // guarded by mu_: a job taken, not yet done
  bool quit_ = false;          // guarded by mu_
  bool setup_done_ = false;    // guarded by mu_
  absl::Status setup_status_;  // guarded by mu_
  std::vector<FidRow> rows_;   // guarded by mu_
  // Used by one thread at a time: the evaluator's, then Finish's caller
  // (each with a backend and network of its own).
  std::unique_ptr<Scorer> scorer_;
  std::thread thread_;
};

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_TRAINER_EVAL_H_
