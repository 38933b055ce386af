#include "common/grpc_health.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/impl/codegen/method_handler.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/impl/codegen/rpc_service_method.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/health.pb.h"

namespace paragan {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "paragan.v1.ParameterServer";

// A synchronous service, as the shard's and the data service's are (the
// health service's own completion queue beside them is what made gRPC
// clone listeners).
class SyncService : public grpc::Service {
 public:
  SyncService() {
    using Request = grpc::health::v1::HealthCheckRequest;
    using Response = grpc::health::v1::HealthCheckResponse;
    AddMethod(new grpc::internal::RpcServiceMethod(
        "/paragan.test.Sync/Ping", grpc::internal::RpcMethod::NORMAL_RPC,
        new grpc::internal::RpcMethodHandler<SyncService, Request, Response>(
            [](SyncService*, grpc::ServerContext*, const Request*, Response*) {
              return grpc::Status::OK;
            },
            this)));
  }
};

class GrpcHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    EnableHealthService(&builder);
    builder.RegisterService(&sync_);
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

  SyncService sync_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string target_;
};

// TCP sockets in LISTEN state that this process holds.
int ListeningSockets() {
  std::set<std::string> inodes;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[256];
      const std::string link = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      const std::string t(target, n);
      if (t.rfind("socket:[", 0) == 0) inodes.insert(t.substr(8, t.size() - 9));
    }
    closedir(d);
  }
  int listening = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout,
          inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >>
          timeout >> inode;
      if (state == "0A" && inodes.count(inode)) ++listening;
    }
  }
  return listening;
}

// A server on port 0 listens on the one port it reports, not also on a
// clone (SO_REUSEPORT) bound to another random port.
TEST_F(GrpcHealthTest, ListensOnTheReportedPortOnly) {
  EXPECT_EQ(ListeningSockets(), 1);
}

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
