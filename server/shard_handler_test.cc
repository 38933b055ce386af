// The transport-neutral core without any transport: what both the gRPC
// service and the data plane rely on.

#include "server/shard_handler.h"

#include <cmath>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

class ShardHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TableConfig g{kGeneratorTable, {1e-4f, 0.0f, 0.999f, 1e-6f}, {}};
    g.ema_decay = 0.9f;
    TableConfig d{kDiscriminatorTable, {4e-4f, 0.0f, 0.999f, 1e-6f}, {}};
    g_ =
        ParameterTable::Create(g, {{{"g.w", {2, 3}, true}, {1, 2, 3, 4, 5, 6}}})
            .value();
    d_ = ParameterTable::Create(
             d, {{{"d.w", {2}, true}, {1, 2}}, {{"d.bn", {2}, false}, {0, 0}}})
             .value();
    ServiceOptions o;
    o.shard_id = 1;
    o.num_shards = 2;
    o.model = "test";
    handler_ = std::make_unique<ShardHandler>(
        o, std::vector<ParameterTable*>{g_.get(), d_.get()}, nullptr);
  }

  std::unique_ptr<ParameterTable> g_, d_;
  std::unique_ptr<ShardHandler> handler_;
};

TEST_F(ShardHandlerTest, RegisterDescribesTheTablesAndRole) {
  v1::RegisterRequest req;
  req.set_worker_id("w");
  req.set_role(v1::D_ONLY);
  absl::StatusOr<v1::RegisterResponse> r = handler_->Register(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shard_id(), 1);
  EXPECT_EQ(r->model(), "test");
  ASSERT_EQ(r->push_tables_size(), 1);
  EXPECT_EQ(r->push_tables(0), kDiscriminatorTable);
  EXPECT_EQ(r->tables_size(), 2);
  EXPECT_EQ(r->tables(0).update_rule().staleness_policy_name(), "accept");
  req.set_worker_id("");
  EXPECT_EQ(handler_->Register(req).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardHandlerLimitsTest, WorkersBeyondMaxWorkersAreRefusedUntilOneLeaves) {
  TableConfig g{kGeneratorTable, {1e-4f, 0.0f, 0.999f, 1e-6f}, {}};
  TableConfig d{kDiscriminatorTable, {4e-4f, 0.0f, 0.999f, 1e-6f}, {}};
  g.worker_lease = d.worker_lease = absl::Milliseconds(200);
  auto gt = ParameterTable::Create(g, {{{"g.w", {2}, true}, {1, 2}}}).value();
  auto dt = ParameterTable::Create(d, {{{"d.w", {2}, true}, {1, 2}}}).value();
  ServiceOptions o;
  o.model = "test";
  o.max_workers = 2;
  ShardHandler handler(o, {gt.get(), dt.get()}, nullptr);
  auto reg = [&](const std::string& id, v1::WorkerRole role) {
    v1::RegisterRequest req;
    req.set_worker_id(id);
    req.set_role(role);
    return handler.Register(req).status();
  };
  ASSERT_TRUE(reg("w0", v1::BOTH).ok());
  ASSERT_TRUE(reg("w1", v1::G_ONLY).ok());
  // G holds two: a third G worker is refused, naming the flag; D has room.
  const absl::Status third = reg("w2", v1::BOTH);
  EXPECT_TRUE(absl::IsResourceExhausted(third)) << third;
  EXPECT_NE(third.message().find("--max_workers"), std::string::npos) << third;
  EXPECT_FALSE(gt->IsRegistered("w2"));
  EXPECT_FALSE(dt->IsRegistered("w2")) << "a refused worker half-registered";
  EXPECT_TRUE(reg("w2", v1::D_ONLY).ok());
  // Registering again is not a new worker.
  EXPECT_TRUE(reg("w0", v1::BOTH).ok());
  EXPECT_TRUE(reg("w1", v1::G_ONLY).ok());
  // Leases expire: room again.
  absl::SleepFor(absl::Milliseconds(300));
  handler.ExpireLeases();
  EXPECT_TRUE(reg("w3", v1::BOTH).ok());
}

TEST_F(ShardHandlerTest, BeginPushChecksTableAndWorkerOnce) {
  EXPECT_EQ(handler_->BeginPush("G_ema", "w").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(handler_->BeginPush("X", "w").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_->BeginPush("D", "w").status().code(),
            absl::StatusCode::kFailedPrecondition);  // not registered
  v1::RegisterRequest req;
  req.set_worker_id("w");
  req.set_role(v1::BOTH);
  ASSERT_TRUE(handler_->Register(req).ok());
  absl::StatusOr<ShardHandler::PushTarget> t = handler_->BeginPush("D", "w");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->table_name(), "D");
  EXPECT_TRUE(t->CheckTensor("d.w", {2}, v1::GRADIENT).ok());
  EXPECT_TRUE(t->CheckTensor("d.bn", {2}, v1::VALUE).ok());
  EXPECT_EQ(t->CheckTensor("g.w", {2, 3}, v1::GRADIENT).code(),
            absl::StatusCode::kInvalidArgument);  // another table's
  EXPECT_EQ(t->CheckTensor("d.w", {1, 2}, v1::GRADIENT).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->CheckTensor("d.bn", {2}, v1::GRADIENT).code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<v1::PushResponse> r = handler_->ApplyPush(
      *t, 0, 1, {{"d.w", {0.5f, -0.5f}}}, {{"d.bn", {3, 4}}}, 16);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  EXPECT_EQ(r->new_version(), 1);
  EXPECT_EQ(d_->version(), 1);
  // A NaN is refused by the table and changes nothing.
  r = handler_->ApplyPush(*t, 1, 2, {{"d.w", {std::nanf(""), 0}}}, {}, 8);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d_->version(), 1);

  const v1::StateResponse state = handler_->GetState();
  ASSERT_EQ(state.tables_size(), 2);
  EXPECT_EQ(state.tables(0).name(), "D");
  EXPECT_EQ(state.tables(0).version(), 1);
  EXPECT_EQ(state.tables(0).accepted_pushes(), 1);
}

}  // namespace
}  // namespace paragan
