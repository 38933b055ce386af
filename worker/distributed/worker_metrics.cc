#include "worker/distributed/worker_metrics.h"

namespace paragan {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,  0.5,    1,     2.5,  5,     10,   30};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& StalenessBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128};
  return *b;
}

prometheus::Counter& WorkerCounter(prometheus::Registry* r, const char* name,
                                   const char* help, const std::string& id) {
  return BuildCounter().Name(name).Help(help).Register(*r).Add(
      {{"worker", id}});
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry* r,
                             const std::string& worker_id,
                             const std::string& role)
    : worker_(worker_id),
      images_(BuildCounter()
                  .Name("paragan_worker_images_total")
                  .Help("Real images consumed by D steps")
                  .Register(*r)
                  .Add({{"worker", worker_id}})),
      steps_(BuildCounter()
                 .Name("paragan_worker_steps_total")
                 .Help("Steps of the worker's role done: G steps (D steps "
                       "for role d_only)")
                 .Register(*r)
                 .Add({{"worker", worker_id}})),
      d_loss_(BuildGauge()
                  .Name("paragan_worker_discriminator_loss")
                  .Help("D loss of the last D step")
                  .Register(*r)
                  .Add({{"worker", worker_id}})),
      g_loss_(BuildGauge()
                  .Name("paragan_worker_generator_loss")
                  .Help("G loss of the last G step")
                  .Register(*r)
                  .Add({{"worker", worker_id}})),
      d_real_(BuildGauge()
                  .Name("paragan_worker_discriminator_real_logit")
                  .Help("Mean D logit on the real images of the last "
                        "reported D step")
                  .Register(*r)
                  .Add({{"worker", worker_id}})),
      d_fake_(BuildGauge()
                  .Name("paragan_worker_discriminator_fake_logit")
                  .Help("Mean D logit on the fake images of the last "
                        "reported D step")
                  .Register(*r)
                  .Add({{"worker", worker_id}})),
      pushes_(BuildCounter()
                  .Name("paragan_worker_pushes_total")
                  .Help("Pushes to one shard")
                  .Register(*r)),
      pulls_(BuildCounter()
                 .Name("paragan_worker_pulls_total")
                 .Help("Pulls from one shard")
                 .Register(*r)),
      push_bytes_(BuildCounter()
                      .Name("paragan_worker_push_bytes_total")
                      .Help("Tensor bytes pushed (float32 equivalent)")
                      .Register(*r)),
      pull_bytes_(BuildCounter()
                      .Name("paragan_worker_pull_bytes_total")
                      .Help("Tensor bytes pulled (float32)")
                      .Register(*r)),
      push_latency_(BuildHistogram()
                        .Name("paragan_worker_push_latency_seconds")
                        .Help("Latency of one push to one shard")
                        .Register(*r)),
      pull_latency_(BuildHistogram()
                        .Name("paragan_worker_pull_latency_seconds")
                        .Help("Latency of one pull from one shard (includes "
                              "synchronous waits)")
                        .Register(*r)),
      staleness_(BuildHistogram()
                     .Name("paragan_worker_staleness")
                     .Help("Staleness reported for each push")
                     .Register(*r)),
      rejected_(BuildCounter()
                    .Name("paragan_worker_rejected_pushes_total")
                    .Help("Pushes refused by the staleness policy")
                    .Register(*r)
                    .Add({{"worker", worker_id}})),
      retries_(BuildCounter()
                   .Name("paragan_worker_retries_total")
                   .Help("RPC attempts retried after UNAVAILABLE or "
                         "DEADLINE_EXCEEDED")
                   .Register(*r)
                   .Add({{"worker", worker_id}})),
      published_(WorkerCounter(r, "paragan_worker_samples_published_total",
                               "Generated batches handed to the sample "
                               "buffer (role g_only)",
                               worker_id)),
      buffered_(BuildGauge()
                    .Name("paragan_worker_sample_buffer_batches")
                    .Help("Batches in the sample buffer after this worker's "
                          "last publish (role g_only)")
                    .Register(*r)
                    .Add({{"worker", worker_id}})),
      gate_wait_(WorkerCounter(
          r, "paragan_worker_wait_for_discriminator_seconds_total",
          "Time G steps waited for D to take its "
          "updates (role g_only)",
          worker_id)),
      sample_age_(BuildHistogram()
                      .Name("paragan_worker_sample_age")
                      .Help("G versions between the fake batch a D step used "
                            "and the newest one published (role d_only)")
                      .Register(*r)
                      .Add({{"worker", worker_id}}, StalenessBuckets())),
      stalls_(WorkerCounter(r, "paragan_worker_fake_stalls_total",
                            "D steps that waited over 2 ms for a fake batch "
                            "(role d_only)",
                            worker_id)),
      fake_wait_(WorkerCounter(r, "paragan_worker_fake_wait_seconds_total",
                               "Time D steps waited for fake batches (role "
                               "d_only)",
                               worker_id)),
      skipped_(WorkerCounter(r, "paragan_worker_fakes_skipped_total",
                             "Fake batches skipped as older than "
                             "max_sample_age (role d_only)",
                             worker_id)),
      current_role_(BuildGauge()
                        .Name("paragan_worker_role")
                        .Help("1 for the role this worker runs now (role auto "
                              "switches), 0 for the others")
                        .Register(*r)) {
  SetCurrentRole(role == "auto" ? "both" : role);
  BuildGauge()
      .Name("paragan_worker_info")
      .Help("1, labelled with the worker's role (both, g_only, d_only)")
      .Register(*r)
      .Add({{"worker", worker_id}, {"role", role}})
      .Set(1);
  for (const char* t : {"G", "D"}) {
    pushes_.Add(L(t));
    pulls_.Add(L(t));
    push_bytes_.Add(L(t));
    pull_bytes_.Add(L(t));
    push_latency_.Add(L(t), LatencyBuckets());
    pull_latency_.Add(L(t), LatencyBuckets());
    staleness_.Add(L(t), StalenessBuckets());
  }
}

prometheus::Labels WorkerMetrics::L(const std::string& table) const {
  return {{"worker", worker_}, {"table", table}};
}

void WorkerMetrics::RecordStep(int64_t images, double d_loss, double g_loss) {
  images_.Increment(static_cast<double>(images));
  steps_.Increment();
  d_loss_.Set(d_loss);
  g_loss_.Set(g_loss);
}

void WorkerMetrics::RecordLogits(double d_real, double d_fake) {
  d_real_.Set(d_real);
  d_fake_.Set(d_fake);
}

void WorkerMetrics::RecordPull(const std::string& table, int64_t bytes,
                               double seconds) {
  pulls_.Add(L(table)).Increment();
  pull_bytes_.Add(L(table)).Increment(static_cast<double>(bytes));
  pull_latency_.Add(L(table), LatencyBuckets()).Observe(seconds);
}

void WorkerMetrics::RecordPush(const std::string& table, int64_t bytes,
                               double seconds, bool accepted,
                               int64_t staleness) {
  pushes_.Add(L(table)).Increment();
  push_bytes_.Add(L(table)).Increment(static_cast<double>(bytes));
  push_latency_.Add(L(table), LatencyBuckets()).Observe(seconds);
  staleness_.Add(L(table), StalenessBuckets())
      .Observe(static_cast<double>(staleness));
  if (!accepted) rejected_.Increment();
}

void WorkerMetrics::RecordRetry() { retries_.Increment(); }

void WorkerMetrics::RecordPublished(int64_t batches, int64_t buffered) {
  published_.Increment(static_cast<double>(batches));
  if (buffered >= 0) buffered_.Set(static_cast<double>(buffered));
}

void WorkerMetrics::RecordGateWait(double seconds) {
  gate_wait_.Increment(seconds);
}

void WorkerMetrics::RecordSampleAge(int64_t age) {
  sample_age_.Observe(static_cast<double>(age));
}

void WorkerMetrics::RecordFakeWait(double seconds, bool stalled) {
  fake_wait_.Increment(seconds);
  if (stalled) stalls_.Increment();
}

void WorkerMetrics::RecordFakeSkipped() { skipped_.Increment(); }

void WorkerMetrics::SetCurrentRole(const std::string& role) {
  for (const char* r : {"both", "g_only", "d_only"}) {
    current_role_.Add({{"worker", worker_}, {"role", r}})
        .Set(role == r ? 1.0 : 0.0);
  }
}

}  // namespace paragan
