#ifndef PARAGAN_DEPLOY_LOCAL_SUMMARY_H_
#define PARAGAN_DEPLOY_LOCAL_SUMMARY_H_

// The run's summary: what summary.txt and summary.json hold and what the
// launcher prints at the end.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "deploy/local/process_group.h"

namespace paragan {
namespace local {

struct RunSummary {
  std::string model;
  std::string mode;  // "async" | "sync"
  // "coupled" | "decoupled" (then g_workers + d_workers == num_workers)
  std::string schedule = "coupled";
  int g_workers = 0, d_workers = 0;
  std::string staleness_policy;
  bool momentum_compensation = false;
  int num_workers = 0, num_shards = 0, batch_size = 0;
  int64_t g_steps = 0;           // G table version at the end (shards)
  int64_t d_steps = 0;           // D table version at the end (shards)
  int64_t g_steps_this_run = 0;  // G steps since the workers started
  int64_t worker_steps = 0;      // sum of the workers' last reported steps
  double wall_s = 0;             // launcher start to end
  double train_s = 0;            // workers started to workers stopped
  // g_steps_this_run * batch_size (* num_workers in sync mode) / train_s
  double img_s = 0;
  double img_s_last = 0;  // sum of the workers' last reported rates
  double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;
  double staleness_d = 0, staleness_g = 0;
  int64_t rejected = 0;
  // The live evaluator's last result; eval_rounds 0: none finished.
  std::string eval_network;
  double eval_fid = 0;
  int64_t eval_g_version = 0, eval_rounds = 0;
  // The final evaluation after training (final_fid_samples 0: none).
  std::string final_fid_network;
  double final_fid = 0;
  int64_t final_fid_g_step = 0, final_fid_samples = 0;
  std::map<std::string, double> worker_img_s;
  // Decoupled: the G workers' G steps/s at their last reports (they read
  // no images), and D's mean sample age, stalls and skipped samples.
  std::map<std::string, double> g_worker_steps_s;
  double sample_age = 0;
  int64_t stalls = 0, skipped_samples = 0;
  std::vector<ProcessReport> processes;
  std::vector<std::string> outputs;  // files written
  std::string error;                 // empty: the run ended normally
};
std::string SummaryText(const RunSummary& s);
std::string SummaryJson(const RunSummary& s);

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_SUMMARY_H_
