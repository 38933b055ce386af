#include "common/grpc_health.h"

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "paragan.v1.ParameterServer";

class GrpcHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EnableHealthService();
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&generic_);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    target_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override { server_->Shutdown(); }

  absl::StatusOr<HealthState> Check(const std::string& service) {
    return CheckHealth(target_, ClientSecurity(), service, absl::Seconds(5));
  }

  grpc::CallbackGenericService generic_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string target_;
};

TEST_F(GrpcHealthTest, ServerIsServingOnceStarted) {
  absl::StatusOr<HealthState> s = Check("");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, HealthState::kServing);
}

TEST_F(GrpcHealthTest, NamedServiceIsUnknownUntilMarkedServing) {
  absl::StatusOr<HealthState> before = Check(kService);
  EXPECT_EQ(before.status().code(), absl::StatusCode::kNotFound)
      << before.status();
  EXPECT_THAT(before.status().message(), HasSubstr(kService));
  MarkServing(server_.get(), kService);
  absl::StatusOr<HealthState> after = Check(kService);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, HealthState::kServing);
}

TEST_F(GrpcHealthTest, StoppingMarksEveryServiceNotServing) {
  MarkServing(server_.get(), kService);
  MarkStopping(server_.get());
  for (const std::string service : {"", kService}) {
    absl::StatusOr<HealthState> s = Check(service);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(*s, HealthState::kNotServing) << "service '" << service << "'";
  }
}

TEST(GrpcHealthUnreachableTest, NoServerIsAnErrorWithinTheTimeout) {
  // Port 1 on loopback: nothing listens there for an unprivileged test.
  const absl::Time start = absl::Now();
  absl::StatusOr<HealthState> s =
      CheckHealth("127.0.0.1:1", ClientSecurity(), "", absl::Seconds(1));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("health check of 127.0.0.1:1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(HealthStateNameTest, NamesEveryState) {
  EXPECT_EQ(HealthStateName(HealthState::kServing), "SERVING");
  EXPECT_EQ(HealthStateName(HealthState::kNotServing), "NOT_SERVING");
  EXPECT_EQ(HealthStateName(HealthState::kUnknown), "UNKNOWN");
}

}  // namespace
}  // namespace paragan
