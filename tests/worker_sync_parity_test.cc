// System test (a): paragan_worker against two real paragan_server shards in
// synchronous mode with one worker (--sync_workers=1, reject_above_bound,
// bound 0) ends with the G and D weights and buffers of the single-process
// trainer after the same number of steps (same seed, same data order).
//
// args: <paragan_server> <paragan_worker>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"
#include "server/ps_client.h"
#include "tests/worker_test_util.h"
#include "worker/train/gan_trainer.h"

namespace paragan {
namespace {

using namespace worker_test;  // NOLINT

constexpr int kSteps = 30, kBatch = 8, kShards = 2;
constexpr uint64_t kSeed = 11;

TEST(WorkerSyncParityTest, OneSyncWorkerMatchesTheSingleProcessTrainer) {
  const std::string g_server = Arg(1), g_worker = Arg(2);
  ASSERT_FALSE(g_worker.empty()) << "args: <paragan_server> <paragan_worker>";
  const std::string dir = TmpDir();
  std::vector<pid_t> servers;
  std::vector<std::string> addresses;
  for (int s = 0; s < kShards; ++s) {
    pid_t pid = 0;
    const std::string address = StartShard(
        g_server, s, kShards,
        {absl::StrCat("--init=", WriteDcganInit(kSeed)), "--sync_workers=1",
         "--staleness_policy=reject_above_bound", "--staleness_bound=0"},
        &pid);
    servers.push_back(pid);
    ASSERT_FALSE(address.empty())
        << ReadFile(absl::StrCat(dir, "/server", s, ".log"));
    addresses.push_back(address);
  }
  const std::string wlog = dir + "/worker.log";
  const pid_t worker =
      Spawn({g_worker, "--worker_id=parity",
             absl::StrCat("--ps=", addresses[0], ",", addresses[1]),
             "--dataset=synthetic", "--synthetic_size=256",
             absl::StrCat("--batch_size=", kBatch),
             absl::StrCat("--steps=", kSteps), absl::StrCat("--seed=", kSeed),
             "--threads=1", "--cpu_layout=blocked", "--log_every=10"},
            wlog);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(WaitExit(worker, 100), 0) << ReadFile(wlog);
  std::cout << ReadFile(wlog) << "worker took "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             t0)
                   .count()
            << " s" << std::endl;
  EXPECT_NE(ReadFile(wlog).find(absl::StrCat(
                "paragan_worker: parity done after ", kSteps, " steps")),
            std::string::npos);

  // The same run in one process: paragan_train's data order.
  std::unique_ptr<Backend> backend = MakeCpuBackend(1, CpuConvLayout::kBlocked);
  DatasetSpec spec;
  spec.name = "synthetic";
  spec.synthetic_size = 256;
  spec.seed = kSeed;
  std::unique_ptr<Dataset> data = OpenDataset(spec).value();
  std::unique_ptr<GanTrainer> trainer =
      TrainOneProcess(*data, backend.get(), kBatch, kSteps, kSeed);

  // Every tensor of both tables, from the shards.
  int compared = 0, exact = 0;
  double max_diff = 0;
  for (const std::string& table : {std::string("G"), std::string("D")}) {
    ParamStore& store = table == "G" ? trainer->model().generator()
                                     : trainer->model().discriminator();
    for (int s = 0; s < kShards; ++s) {
      ParameterServerClient client(
          ParameterServerClient::Connect(addresses[s]));
      absl::StatusOr<PulledTable> pulled = client.Pull(table, "parity-check");
      ASSERT_TRUE(pulled.ok()) << pulled.status();
      if (pulled->version >= 0) {
        EXPECT_EQ(pulled->version, kSteps) << table;
      }
      for (const auto& [name, t] : pulled->tensors) {
        const Param* p = store.FindParam(name);
        const Tensor* v = p ? &p->value : store.FindBuffer(name);
        ASSERT_NE(v, nullptr) << name;
        const std::vector<float> want = backend->ToHost(*v).ToVector();
        ASSERT_EQ(want.size(), t.values.size()) << name;
        bool same = true;
        for (size_t i = 0; i < want.size(); ++i) {
          const double d = std::fabs(double(want[i]) - t.values[i]);
          max_diff = std::max(max_diff, d);
          EXPECT_LE(d, 1e-5 + 1e-4 * std::fabs(want[i]))
              << table << " " << name << "[" << i << "]";
          if (want[i] != t.values[i]) same = false;
          if (d > 1e-5 + 1e-4 * std::fabs(want[i])) break;
        }
        ++compared;
        exact += same;
      }
    }
  }
  // The servers' EMA of G (table G_ema) against the trainer's EMA generator.
  int ema_compared = 0;
  double ema_max_diff = 0;
  ParamStore& ema = trainer->ema_model().generator();
  for (int s = 0; s < kShards; ++s) {
    ParameterServerClient client(ParameterServerClient::Connect(addresses[s]));
    absl::StatusOr<PulledTable> pulled = client.Pull("G_ema", "parity-check");
    ASSERT_TRUE(pulled.ok()) << pulled.status();
    for (const auto& [name, t] : pulled->tensors) {
      const Param* p = ema.FindParam(name);
      if (p == nullptr) continue;  // buffers: G's, compared above
      const std::vector<float> want = backend->ToHost(p->value).ToVector();
      ASSERT_EQ(want.size(), t.values.size()) << name;
      for (size_t i = 0; i < want.size(); ++i) {
        const double d = std::fabs(double(want[i]) - t.values[i]);
        ema_max_diff = std::max(ema_max_diff, d);
        ASSERT_LE(d, 1e-5 + 1e-4 * std::fabs(want[i]))
            << "G_ema " << name << "[" << i << "]";
      }
      ++ema_compared;
    }
  }
  EXPECT_EQ(ema_compared, static_cast<int>(ema.params().size()));
  std::cout << "EMA of G: " << ema_compared << " tensors, max |diff| "
            << ema_max_diff << std::endl;
  const size_t total = trainer->model().generator().params().size() +
                       trainer->model().generator().buffers().size() +
                       trainer->model().discriminator().params().size() +
                       trainer->model().discriminator().buffers().size();
  EXPECT_EQ(compared, static_cast<int>(total));
  std::cout << "compared " << compared << " tensors after " << kSteps
            << " steps: " << exact << " bit-identical, max |diff| " << max_diff
            << std::endl;
  for (pid_t p : servers) {
    kill(p, SIGTERM);
    EXPECT_EQ(WaitExit(p, 20), 0);
  }
}

}  // namespace
}  // namespace paragan
