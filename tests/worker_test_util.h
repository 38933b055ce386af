#ifndef PARAGAN_TESTS_WORKER_TEST_UTIL_H_
#define PARAGAN_TESTS_WORKER_TEST_UTIL_H_

// Helpers of the worker system tests: child processes with their output in
// a log file, and a parameter-server shard started on a free port.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/network_init.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/datasets/sampler.h"
#include "gtest/gtest.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/init_networks.h"

namespace paragan {
namespace worker_test {

// DCGAN-32 trained in one process for `steps` G steps of `batch` images of
// `data` (paragan_train's loop and data order, labels 0): the reference the
// distributed runs are compared with.
inline std::unique_ptr<GanTrainer> TrainOneProcess(const Dataset& data,
                                                   Backend* backend, int batch,
                                                   int steps, uint64_t seed) {
  TrainerConfig config = DefaultTrainerConfig("dcgan32");
  config.batch_size = batch;
  config.seed = seed;
  std::unique_ptr<GanTrainer> trainer =
      GanTrainer::Create(config, backend).value();
  EpochSampler sampler(data.info().size, seed);
  Tensor host = Tensor::Host({batch, 1, 32, 32});
  std::vector<int64_t> indices;
  for (int i = 0; i < steps; ++i) {
    trainer->Step([&](Tensor* images, std::vector<int>* labels) {
      sampler.NextBatch(batch, &indices);
      labels->assign(batch, 0);
      LoadBatch(data, indices, host.data(), labels->data(), 1);
      *images = backend->FromHost(host);
    });
  }
  return trainer;
}

// The binaries, from the test's arguments (gtest_main keeps them).
inline std::string Arg(int i) {
  const std::vector<std::string> argv = ::testing::internal::GetArgvs();
  return static_cast<int>(argv.size()) > i ? argv[i] : "";
}

inline std::string TmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d ? d : "/tmp";
}

inline pid_t Spawn(const std::vector<std::string>& argv,
                   const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline int WaitExit(pid_t pid, int timeout_s) {
  for (int i = 0; i < timeout_s * 10; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// Writes dcgan32's initial networks from `seed` (what paragan_init writes)
// into the test's directory; returns the file for the shards' --init.
inline std::string WriteDcganInit(uint64_t seed) {
  TrainerConfig config = DefaultTrainerConfig("dcgan32");
  config.seed = seed;
  const std::string path = absl::StrCat(TmpDir(), "/init-", seed, ".pgt");
  absl::StatusOr<NetworkInit> init = MakeNetworkInit(config);
  EXPECT_TRUE(init.ok()) << init.status();
  if (!init.ok()) return "";
  const absl::Status st = WriteNetworkInit(path, *init);
  EXPECT_TRUE(st.ok()) << st;
  return path;
}

// Starts shard `shard` of `num_shards` with `flags` (among them --init) on a
// free port; returns
// "127.0.0.1:<port>" ("" on failure) and sets *pid.
inline std::string StartShard(const std::string& server, int shard,
                              int num_shards,
                              const std::vector<std::string>& flags,
                              pid_t* pid) {
  const std::string dir = TmpDir();
  const std::string port_file = absl::StrCat(dir, "/port", shard);
  std::remove(port_file.c_str());
  std::vector<std::string> argv = {server,
                                   "--port=0",
                                   "--bind_address=127.0.0.1",
                                   absl::StrCat("--shard_id=", shard),
                                   absl::StrCat("--num_shards=", num_shards),
                                   absl::StrCat("--port_file=", port_file)};
  argv.insert(argv.end(), flags.begin(), flags.end());
  *pid = Spawn(argv, absl::StrCat(dir, "/server", shard, ".log"));
  std::string port;
  for (int i = 0; i < 300 && port.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    port = ReadFile(port_file);
  }
  while (!port.empty() && port.back() == '\n') port.pop_back();
  return port.empty() ? "" : "127.0.0.1:" + port;
}

}  // namespace worker_test
}  // namespace paragan

#endif  // PARAGAN_TESTS_WORKER_TEST_UTIL_H_
