#include "deploy/local/summary.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_text.h"

namespace paragan {
namespace local {
namespace {

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  return absl::StrFormat("%.6g", x);
}

}  // namespace

std::string SummaryText(const RunSummary& s) {
  std::string out;
  const std::string workers =
      s.schedule == "decoupled" && s.g_workers + s.d_workers == 0
          ? absl::StrCat(s.num_workers,
                         " worker(s) with roles balanced by the data service "
                         "(decoupled schedule), ")
      : s.schedule == "decoupled"
          ? absl::StrCat(s.g_workers, " G + ", s.d_workers,
                         " D worker(s) (decoupled schedule), ")
          : absl::StrCat(s.num_workers, " worker(s), ");
  absl::StrAppend(&out, "ParaGAN local run: ", s.model, ", ", s.num_shards,
                  " parameter-server shard(s), ", workers, s.mode,
                  " (staleness policy ", s.staleness_policy,
                  s.momentum_compensation ? ", momentum compensation" : "",
                  "), batch ", s.batch_size, "\n");
  absl::StrAppend(&out, "result: ",
                  s.error.empty() ? "ok" : absl::StrCat("ERROR: ", s.error),
                  "\n");
  absl::StrAppendFormat(&out,
                        "G steps (G table version) %d, D steps %d; %d G steps "
                        "in this run\n",
                        s.g_steps, s.d_steps, s.g_steps_this_run);
  absl::StrAppendFormat(&out, "worker steps (all workers) %d\n",
                        s.worker_steps);
  absl::StrAppendFormat(&out, "wall time %.1f s (training %.1f s)\n", s.wall_s,
                        s.train_s);
  absl::StrAppendFormat(&out,
                        "images/s %.1f over the training time (D steps of "
                        "this run x batch x workers per step / training s); "
                        "%.1f at the workers' last reports\n",
                        s.img_s, s.img_s_last);
  for (const auto& [id, r] : s.worker_img_s) {
    if (auto g = s.g_worker_steps_s.find(id); g != s.g_worker_steps_s.end()) {
      absl::StrAppendFormat(&out, "  %s: %.2f G steps/s at its last report\n",
                            id, g->second);
    } else {
      absl::StrAppendFormat(&out, "  %s: %.1f img/s at its last report\n", id,
                            r);
    }
  }
  if (s.schedule == "decoupled") {
    absl::StrAppendFormat(&out,
                          "samples: D trained on fakes %.2f G versions old "
                          "(mean at the last reports), stalled %d times, "
                          "skipped %d as too old\n",
                          s.sample_age, s.stalls, s.skipped_samples);
  }
  absl::StrAppendFormat(&out,
                        "final losses D %.4f G %.4f (mean logits real %.3f "
                        "fake %.3f)\n",
                        s.d_loss, s.g_loss, s.d_real, s.d_fake);
  absl::StrAppendFormat(&out, "mean staleness D %.3f G %.3f\n", s.staleness_d,
                        s.staleness_g);
  absl::StrAppendFormat(&out, "rejected pushes %d\n", s.rejected);
  if (s.eval_rounds > 0) {
    absl::StrAppendFormat(&out,
                          "last live FID(%s) %.3f at G step %d (%d "
                          "evaluations, fid.csv)\n",
                          s.eval_network, s.eval_fid, s.eval_g_version,
                          s.eval_rounds);
  }
  if (s.final_fid_samples > 0) {
    absl::StrAppendFormat(&out,
                          "final FID(%s) %.3f at G step %d (%d samples)\n",
                          s.final_fid_network, s.final_fid, s.final_fid_g_step,
                          s.final_fid_samples);
  }
  absl::StrAppend(&out, "processes:\n");
  for (const ProcessReport& p : s.processes) {
    absl::StrAppendFormat(&out, "  %-10s pid %-7d %s%s\n", p.name, p.pid,
                          p.exit, p.ok ? "" : "  <-- unexpected");
  }
  if (!s.outputs.empty()) {
    absl::StrAppend(&out, "outputs:\n");
    for (const std::string& f : s.outputs) absl::StrAppend(&out, "  ", f, "\n");
  }
  return out;
}

std::string SummaryJson(const RunSummary& s) {
  std::string out = "{\n";
  auto str = [&](const char* k, const std::string& v) {
    absl::StrAppend(&out, "  \"", k, "\": ", JsonString(v), ",\n");
  };
  auto num = [&](const char* k, double v) {
    absl::StrAppend(&out, "  \"", k, "\": ", JsonNumber(v), ",\n");
  };
  auto integer = [&](const char* k, int64_t v) {
    absl::StrAppend(&out, "  \"", k, "\": ", v, ",\n");
  };
  str("model", s.model);
  str("mode", s.mode);
  str("schedule", s.schedule);
  integer("g_workers", s.g_workers);
  integer("d_workers", s.d_workers);
  str("staleness_policy", s.staleness_policy);
  absl::StrAppend(&out, "  \"momentum_compensation\": ",
                  s.momentum_compensation ? "true" : "false", ",\n");
  integer("num_workers", s.num_workers);
  integer("num_shards", s.num_shards);
  integer("batch_size", s.batch_size);
  integer("g_steps", s.g_steps);
  integer("d_steps", s.d_steps);
  integer("g_steps_this_run", s.g_steps_this_run);
  integer("worker_steps", s.worker_steps);
  num("wall_s", s.wall_s);
  num("train_s", s.train_s);
  num("images_per_s", s.img_s);
  num("images_per_s_last", s.img_s_last);
  num("d_loss", s.d_loss);
  num("g_loss", s.g_loss);
  num("d_real", s.d_real);
  num("d_fake", s.d_fake);
  num("staleness_d", s.staleness_d);
  num("staleness_g", s.staleness_g);
  integer("rejected_pushes", s.rejected);
  if (s.eval_rounds > 0) {
    str("eval_network", s.eval_network);
    num("eval_fid", s.eval_fid);
    integer("eval_g_version", s.eval_g_version);
    integer("eval_rounds", s.eval_rounds);
  }
  if (s.final_fid_samples > 0) {
    str("final_fid_network", s.final_fid_network);
    num("final_fid", s.final_fid);
    integer("final_fid_g_step", s.final_fid_g_step);
    integer("final_fid_samples", s.final_fid_samples);
  }
  out += "  \"worker_images_per_s\": {";
  bool first = true;
  for (const auto& [id, r] : s.worker_img_s) {
    absl::StrAppend(&out, first ? "" : ", ", JsonString(id), ": ",
                    JsonNumber(r));
    first = false;
  }
  out += "},\n  \"processes\": [";
  first = true;
  for (const ProcessReport& p : s.processes) {
    absl::StrAppend(&out, first ? "\n" : ",\n",
                    "    {\"name\": ", JsonString(p.name), ", \"pid\": ", p.pid,
                    ", \"exit\": ", JsonString(p.exit),
                    ", \"ok\": ", p.ok ? "true" : "false", "}");
    first = false;
  }
  out += "\n  ],\n  \"outputs\": [";
  first = true;
  for (const std::string& f : s.outputs) {
    absl::StrAppend(&out, first ? "" : ", ", JsonString(f));
    first = false;
  }
  absl::StrAppend(&out, "],\n  \"ok\": ", s.error.empty() ? "true" : "false",
                  ",\n  \"error\": ", JsonString(s.error), "\n}\n");
  return out;
}

}  // namespace local
}  // namespace paragan
