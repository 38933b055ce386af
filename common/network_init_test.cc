#include "common/network_init.h"

#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/tensor_io.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name + "_" + std::to_string(getpid());
}

NetworkInit Example() {
  NetworkInit n;
  n.model = "dcgan32";
  n.signature = "dcgan32 c=1 r=32";
  n.g_adam = {2e-4f, 0.5f, 0.999f, 1e-8f};
  n.d_adam = {4e-4f, 0.0f, 0.99f, 1e-6f};
  n.d_steps_per_g_step = 2;
  n.g = {{{"fc.w", {2, 3}, true}, {1, 2, 3, 4, 5, 6}},
         {{"bn.mean", {3}, false}, {0, 0.5f, 1}}};
  n.d = {{{"conv.w", {1, 1, 2, 2}, true}, {-1, 1, -2, 2}}};
  return n;
}

TEST(NetworkInit, RoundTripsEverything) {
  const std::string path = TempPath("init.pgt");
  const NetworkInit n = Example();
  ASSERT_TRUE(WriteNetworkInit(path, n).ok());
  absl::StatusOr<NetworkInit> r = ReadNetworkInit(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "dcgan32");
  EXPECT_EQ(r->signature, n.signature);
  EXPECT_EQ(r->d_adam.lr, 4e-4f);
  EXPECT_EQ(r->d_adam.beta2, 0.99f);
  EXPECT_EQ(r->g_adam.beta1, 0.5f);
  EXPECT_EQ(r->d_steps_per_g_step, 2);
  ASSERT_EQ(r->g.size(), 2u);
  ASSERT_EQ(r->d.size(), 1u);
  EXPECT_EQ(r->g[0].spec.name, "fc.w");
  EXPECT_TRUE(r->g[0].spec.trainable);
  EXPECT_EQ(r->g[0].spec.shape, (Shape{2, 3}));
  EXPECT_EQ(r->g[0].values, n.g[0].values);
  EXPECT_EQ(r->g[1].spec.name, "bn.mean");
  EXPECT_FALSE(r->g[1].spec.trainable);
  EXPECT_EQ(r->d[0].values, n.d[0].values);
}

TEST(NetworkInit, RefusesOtherFilesWithTheirName) {
  const std::string path = TempPath("not_init.pgt");
  absl::StatusOr<NamedArray> a = MakeFloatArray("G/fc.w", {1}, {1.0f});
  ASSERT_TRUE(WriteTensorFile(path, {*a}).ok());
  absl::StatusOr<NetworkInit> r = ReadNetworkInit(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  EXPECT_NE(r.status().message().find("paragan_init"), std::string::npos);

  EXPECT_FALSE(ReadNetworkInit(TempPath("missing.pgt")).ok());
}

TEST(NetworkInit, RefusesNonFiniteValuesAndMissingNetworks) {
  const std::string path = TempPath("bad_init.pgt");
  NetworkInit n = Example();
  n.d[0].values[2] = std::nanf("");
  ASSERT_TRUE(WriteNetworkInit(path, n).ok());
  absl::StatusOr<NetworkInit> r = ReadNetworkInit(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("D/param/conv.w"), std::string::npos);

  n = Example();
  n.d.clear();
  ASSERT_TRUE(WriteNetworkInit(path, n).ok());
  r = ReadNetworkInit(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("both networks"), std::string::npos);

  n = Example();
  n.g_adam.lr = 0;
  ASSERT_TRUE(WriteNetworkInit(path, n).ok());
  EXPECT_FALSE(ReadNetworkInit(path).ok());
}

TEST(NetworkInit, RoundTripsTheWorkerLeaseHint) {
  const std::string path = TempPath("lease_init.pgt");
  NetworkInit n = Example();
  for (double lease : {180.0, 0.25, 0.0}) {
    n.worker_lease_s = lease;
    ASSERT_TRUE(WriteNetworkInit(path, n).ok());
    absl::StatusOr<NetworkInit> r = ReadNetworkInit(path);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->worker_lease_s, lease);
  }
  EXPECT_EQ(NetworkInit().worker_lease_s, 30);
  n.worker_lease_s = -1;
  EXPECT_FALSE(WriteNetworkInit(path, n).ok());
}

// Files written before the hint existed stay valid and read as 30 s.
TEST(NetworkInit, AFileWithoutTheLeaseHintReadsAs30) {
  const std::string path = TempPath("old_init.pgt");
  NetworkInit n = Example();
  n.worker_lease_s = 180;
  ASSERT_TRUE(WriteNetworkInit(path, n).ok());
  absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
  ASSERT_TRUE(arrays.ok()) << arrays.status();
  std::vector<NamedArray> old;
  for (NamedArray& a : *arrays) {
    if (a.name != "init/worker_lease_s") old.push_back(std::move(a));
  }
  ASSERT_EQ(old.size(), arrays->size() - 1);
  ASSERT_TRUE(WriteTensorFile(path, old).ok());
  absl::StatusOr<NetworkInit> r = ReadNetworkInit(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->worker_lease_s, 30);
  EXPECT_EQ(r->d_steps_per_g_step, 2);
  EXPECT_EQ(r->g.size(), 2u);
}

TEST(NetworkInit, RefusesABadLeaseHint) {
  const std::string path = TempPath("bad_lease_init.pgt");
  ASSERT_TRUE(WriteNetworkInit(path, Example()).ok());
  for (const std::vector<float>& bad :
       {std::vector<float>{-1.0f}, std::vector<float>{std::nanf("")},
        std::vector<float>{30.0f, 30.0f}}) {
    absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
    ASSERT_TRUE(arrays.ok()) << arrays.status();
    for (NamedArray& a : *arrays) {
      if (a.name != "init/worker_lease_s") continue;
      absl::StatusOr<NamedArray> b =
          MakeFloatArray(a.name, {static_cast<int64_t>(bad.size())}, bad);
      ASSERT_TRUE(b.ok());
      a = *std::move(b);
    }
    const std::string bad_path = path + ".bad";
    ASSERT_TRUE(WriteTensorFile(bad_path, *arrays).ok());
    absl::StatusOr<NetworkInit> r = ReadNetworkInit(bad_path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("init/worker_lease_s"),
              std::string::npos)
        << r.status();
  }
}

}  // namespace
}  // namespace paragan
