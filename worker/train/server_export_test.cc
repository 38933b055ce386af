// server_export: errors before and at the pull, and the outputs written from
// tables (as the shards would return them) against the trainer they came
// from, byte for byte. Pulling from live shards is covered end to end by
// tests/services/launcher_test.sh.

#include "worker/train/server_export.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/tensor_io.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/engine/params.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/training_run.h"

namespace paragan {
namespace {

std::string TempDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::filesystem::create_directories(path);
  return path;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A localhost port nothing listens on (bound, then released).
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A store's params and buffers as one shard table would return them.
std::map<std::string, PulledTensor> AsPulled(ParamStore& store) {
  std::map<std::string, PulledTensor> out;
  Backend* b = store.backend();
  for (Param& p : store.params()) {
    out[p.name] = {p.value.shape(), b->ToHost(p.value).ToVector()};
  }
  for (auto& [name, t] : store.buffers()) {
    out[name] = {t->shape(), b->ToHost(*t).ToVector()};
  }
  return out;
}

TEST(PullServerTables, NeedsAddresses) {
  auto t = PullServerTables({}, absl::Seconds(5));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PullServerTables, UnreachableShardNamesItsAddress) {
  const std::string target = "127.0.0.1:" + std::to_string(UnusedPort());
  auto t = PullServerTables({target}, absl::Seconds(5));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("pull G from shard 0 (" + target + ")"),
            std::string::npos)
      << t.status();
}

TEST(ExportFromServers, ChecksOptionsBeforePulling) {
  ServerExportOptions o;
  o.ps = {"127.0.0.1:1"};
  o.out_dir = TempDir("checks");
  o.num_samples = 0;
  auto w = ExportFromServers(o);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("num_samples"), std::string::npos);
}

// The files written from a fresh trainer's tables are those the trainer
// itself writes: same checkpoint bytes (weights, EMA, RNG state of
// trainer_seed), same samples for samples_seed.
TEST(WriteServerOutputs, MatchesTheTrainerTheTablesCameFrom) {
  constexpr uint64_t kSeed = 3;
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  TrainerConfig tc = DefaultTrainerConfig("dcgan32");
  tc.seed = kSeed;
  auto source = GanTrainer::Create(tc, backend.get());
  ASSERT_TRUE(source.ok()) << source.status();
  ServerTables tables;
  tables.g = AsPulled((*source)->model().generator());
  tables.d = AsPulled((*source)->model().discriminator());
  tables.g_ema = AsPulled((*source)->ema_model().generator());
  tables.have_ema = true;
  tables.g_version = 42;
  tables.d_version = 43;

  ServerExportOptions o;
  o.model = "dcgan32";
  o.out_dir = TempDir("export");
  o.num_samples = 16;
  o.trainer_seed = kSeed;
  o.samples_seed = kSeed + 1;
  auto written = WriteServerOutputs(o, tables);
  ASSERT_TRUE(written.ok()) << written.status();
  const std::vector<std::string> expected = {
      o.out_dir + "/grid_000042.png", o.out_dir + "/samples.npy",
      o.out_dir + "/samples.png", o.out_dir + "/checkpoint.pgt"};
  EXPECT_EQ(*written, expected);

  const std::string ref = TempDir("reference");
  auto arrays = (*source)->SaveState();
  ASSERT_TRUE(arrays.ok());
  ASSERT_TRUE(
      WriteCheckpoint(ref + "/checkpoint.pgt", std::move(*arrays)).ok());
  ASSERT_TRUE(
      WriteSamples(source->get(), o.num_samples, kSeed + 1, ref + "/samples")
          .ok());
  EXPECT_EQ(ReadAll(o.out_dir + "/checkpoint.pgt"),
            ReadAll(ref + "/checkpoint.pgt"));
  EXPECT_EQ(ReadAll(o.out_dir + "/samples.npy"), ReadAll(ref + "/samples.npy"));
  EXPECT_EQ(ReadAll(o.out_dir + "/samples.png"), ReadAll(ref + "/samples.png"));
}

TEST(WriteServerOutputs, MissingTensorIsDataLoss) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  auto source =
      GanTrainer::Create(DefaultTrainerConfig("dcgan32"), backend.get());
  ASSERT_TRUE(source.ok()) << source.status();
  ServerTables tables;
  tables.g = AsPulled((*source)->model().generator());
  tables.d = AsPulled((*source)->model().discriminator());
  const std::string dropped = tables.d.begin()->first;
  tables.d.erase(tables.d.begin());
  ServerExportOptions o;
  o.out_dir = TempDir("missing");
  auto written = WriteServerOutputs(o, tables);
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(written.status().message().find("D: no shard returned tensor '" +
                                            dropped + "'"),
            std::string::npos)
      << written.status();
}

}  // namespace
}  // namespace paragan
