#ifndef PARAGAN_WORKER_DISTRIBUTED_SAMPLE_EXCHANGE_H_
#define PARAGAN_WORKER_DISTRIBUTED_SAMPLE_EXCHANGE_H_

// The decoupled schedule's hand-off between roles: G workers publish each
// batch they generate (SampleSink) and D workers train on those batches
// (FakeSource) instead of running G themselves. In production both ends are
// the data service's sample buffer (data_service_provider.h); tests plug in
// their own. Role auto adds a third seam: RoleClient, a worker's line to
// the role coordinator.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "proto/paragan.pb.h"

namespace paragan {

class SampleSink {
 public:
  virtual ~SampleSink() = default;
  // Hands one generated batch (host [B, C, H, W]; labels empty or B) that G
  // version `g_version` produced. Blocking.
  virtual absl::Status Publish(const Tensor& images,
                               const std::vector<int>& labels,
                               int64_t g_version) = 0;
  // Batches waiting in the buffer after the last Publish; -1: unknown.
  virtual int64_t buffered() const { return -1; }
  // Batches the buffer dropped so far because it was full.
  virtual int64_t dropped() const { return 0; }
  // Unblocks a pending Publish (which then fails with CANCELLED).
  virtual void Cancel() {}
};

// What a FakeSource says about the batch it returned.
struct FakeBatchInfo {
  int64_t g_version = 0;         // the G version that produced it
  int64_t newest_g_version = 0;  // the newest G version published by then
  int64_t age() const { return newest_g_version - g_version; }
};

class FakeSource {
 public:
  virtual ~FakeSource() = default;
  // Blocks until a generated batch is available: host images [B, C, H, W],
  // B labels (zeros when published without labels). DEADLINE_EXCEEDED when
  // none came by `deadline` (a role auto worker must still report).
  virtual absl::Status Next(Tensor* host_images, std::vector<int>* labels,
                            FakeBatchInfo* info,
                            absl::Time deadline = absl::InfiniteFuture()) = 0;
  virtual void Cancel() {}
};

// An auto worker's line to the role coordinator (the data service's
// AssignRole; tests fake it).
class RoleClient {
 public:
  virtual ~RoleClient() = default;
  virtual absl::StatusOr<v1::RoleAssignment> Report(
      const v1::RoleReport& report) = 0;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_SAMPLE_EXCHANGE_H_
